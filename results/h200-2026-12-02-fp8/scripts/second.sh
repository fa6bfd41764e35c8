#!/usr/bin/env bash
# The FP8 forward with the crate's own e4m3 conversions (kernels/fp8_convert.cu): the forward suite (every
# test, the bf16 warp-specialised kernel was touched), the params layout test, then forward TFLOP/s of
# e4m3 beside our bf16 and torch SDPA's bf16 in one call (ours twice, around torch).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
timeout 60 $b/candle_fa2 > "$out/lib.log" 2>&1; echo "lib rc=$?" >> "$out/lib.log"
timeout 100 $b/gpu_forward fp8 --nocapture > "$out/fp8-tests.log" 2>&1; echo "fp8 rc=$?" >> "$out/fp8-tests.log"
timeout 300 $b/gpu_forward --skip fp8 > "$out/tests.log" 2>&1; echo "gpu_forward rc=$?" >> "$out/tests.log"
args="--modes fwd --seqlens 1024,4096,16384 --hdims 128,256"
for dt in fp8 bf16; do timeout 60 $b/gpu_attention $args --dtypes $dt --out "$out/bench.jsonl" >> "$out/bench.log" 2>&1; done
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --dtypes bf16 --out "$out/torch.jsonl" \
  >> "$out/bench.log" 2>&1
for dt in fp8 bf16; do timeout 60 $b/gpu_attention $args --dtypes $dt --out "$out/bench2.jsonl" >> "$out/bench.log" 2>&1; done
