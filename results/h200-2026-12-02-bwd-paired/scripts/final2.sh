#!/usr/bin/env bash
# After the exchange's producers sync rather than arrive at its named barriers (racecheck reported every
# arrive-ordered exchange as a race): the backward suite, memcheck and racecheck of its small shapes, then
# forward + backward at d256, bf16 and fp16, ours beside torch SDPA (flash, cuDNN) in this one call.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
timeout 150 $b/gpu_backward > "$out/tests.log" 2>&1; echo "gpu_backward rc=$?" >> "$out/tests.log"
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  timeout 170 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$out/$tool.log" 2>&1; echo "$tool rc=$?" >> "$out/$tool.log"
done
args="--modes fwd_bwd --dtypes bf16,fp16 --hdims 256 --seqlens 512,2048,8192,16384"
timeout 90 $b/gpu_attention $args --out "$out/bench.jsonl" > "$out/bench.log" 2>&1
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --out "$out/bench.jsonl" >> "$out/bench.log" 2>&1
