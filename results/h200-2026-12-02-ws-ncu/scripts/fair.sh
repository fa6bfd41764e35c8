#!/usr/bin/env bash
# The same timing for both: ours (benches/gpu_attention.rs, back to back, no flush) beside torch's flash
# and cuDNN timed back to back too (--flush none) and as before (--flush read: an L2-evicting read before
# each timed call), SM clock and board power sampled every 100 ms, phases in phases.txt.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv,noheader -lms 100 > "$out/smi.csv" 2>&1 &
smi=$!
phase() { echo "$1 start $(date +%s.%N)" >> "$out/phases.txt"; shift; "$@"; echo "end $(date +%s.%N)" >> "$out/phases.txt"; }
A="--modes fwd --dtypes bf16 --hdims 64,128,256 --seqlens 1024,4096,16384"
for rep in 1 2; do
  phase ours timeout 120 $b/gpu_attention $A --out "$out/bench.jsonl" > /dev/null
  for flush in none read; do
    phase "torch-$flush" timeout 200 python3 scripts/bench_torch_sdpa.py $A --flush $flush --out "$out/torch-$flush.jsonl" > /dev/null 2>&1
  done
done
kill $smi
