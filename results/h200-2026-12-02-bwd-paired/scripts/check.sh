#!/usr/bin/env bash
# The paired-warpgroup d256 backward (kernels/sm90/flash_bwd_sm90_paired.cuh), first run: the backward
# suite, then forward + backward TFLOP/s at d256 (and d128, whose kernel the refactor touched) beside the
# mma.sync path (CANDLE_FA2_NO_WGMMA=1) and torch SDPA, bf16, in one call; memcheck of the small shapes last.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
timeout 240 $b/gpu_backward > "$out/tests.log" 2>&1; echo "gpu_backward rc=$?" >> "$out/tests.log"
args="--modes fwd_bwd --dtypes bf16 --seqlens 512,2048,8192,16384"
timeout 90 $b/gpu_attention $args --hdims 128,256 --out "$out/bench.jsonl" > "$out/bench.log" 2>&1
CANDLE_FA2_NO_WGMMA=1 timeout 60 $b/gpu_attention $args --hdims 256 --out "$out/mma.jsonl" >> "$out/bench.log" 2>&1
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py $args --hdims 128,256 --out "$out/torch.jsonl" \
  >> "$out/bench.log" 2>&1
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
timeout 150 $san --tool memcheck --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
  > "$out/memcheck.log" 2>&1; echo "memcheck rc=$?" >> "$out/memcheck.log"
