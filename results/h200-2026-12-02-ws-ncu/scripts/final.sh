#!/usr/bin/env bash
# The README's forward and forward + backward tables with torch timed as ours is (back to back, the
# bench_torch_sdpa.py default for fwd / fwd_bwd since 2026-12-02): ours, then torch flash and cuDNN, bf16
# and fp16, every seqlen; SM clock and power sampled every 100 ms.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv,noheader -lms 100 > "$out/smi.csv" 2>&1 &
smi=$!
phase() { echo "$1 start $(date +%s.%N)" >> "$out/phases.txt"; shift; "$@"; echo "end $(date +%s.%N)" >> "$out/phases.txt"; }
phase ours timeout 240 $b/gpu_attention --modes fwd,fwd_bwd --dtypes bf16,fp16 --out "$out/bench.jsonl" > /dev/null
phase torch env PYTHONUNBUFFERED=1 timeout 300 python3 scripts/bench_torch_sdpa.py --modes fwd,fwd_bwd --dtypes bf16,fp16 \
  --out "$out/bench.jsonl" > /dev/null 2>&1
kill $smi
