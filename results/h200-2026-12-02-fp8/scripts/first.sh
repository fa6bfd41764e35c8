#!/usr/bin/env bash
# The FP8 forward (kernels/sm90/fwd_fp8.cuh), first run: its suite (tests/gpu_forward.rs fp8_forward), the
# params layout test, then forward TFLOP/s of e4m3 beside our bf16 and torch SDPA's bf16 in one call.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
ls $b > "$out/bins.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
timeout 60 $b/candle_fa2 > "$out/lib.log" 2>&1; echo "lib rc=$?" >> "$out/lib.log"
timeout 240 $b/gpu_forward fp8_forward --nocapture > "$out/tests.log" 2>&1; echo "fp8_forward rc=$?" >> "$out/tests.log"
args="--modes fwd --seqlens 1024,4096,16384 --hdims 128,256"
timeout 60 $b/gpu_attention $args --dtypes fp8 --out "$out/bench.jsonl" > "$out/bench.log" 2>&1
timeout 60 $b/gpu_attention $args --dtypes bf16 --out "$out/bench.jsonl" >> "$out/bench.log" 2>&1
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --dtypes bf16 --out "$out/torch.jsonl" \
  >> "$out/bench.log" 2>&1
timeout 60 $b/gpu_attention $args --dtypes fp8 --out "$out/bench.jsonl" >> "$out/bench.log" 2>&1
