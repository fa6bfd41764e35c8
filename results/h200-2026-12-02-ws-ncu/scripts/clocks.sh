#!/usr/bin/env bash
# Is the bench's ours/cuDNN gap (0.84 at d128 4k) the kernels' (ncu: 0.95) or the clocks'? Sustained runs of
# the forward, d128 and d64 at 4k, ours then cuDNN then ours, with the SM clock and board power sampled every
# 100 ms; each phase's start and end in phases.txt.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 > "$out/smi.csv" 2>&1 &
smi=$!
nvidia-smi --query-gpu=timestamp,clocks_throttle_reasons.active --format=csv,noheader -lms 500 > "$out/reasons.csv" 2>&1 &
smi2=$!
S=$(printf '4096,%.0s' $(seq 24))
phase() { echo "$1 start $(date +%s.%N)" >> "$out/phases.txt"; shift; "$@"; echo "end $(date +%s.%N)" >> "$out/phases.txt"; }
for hdim in 128 64; do
  phase "ours-d$hdim" timeout 120 $b/gpu_attention --modes fwd --dtypes bf16 --hdims $hdim --seqlens $S --causal no --out "$out/bench.jsonl" > /dev/null
  phase "cudnn-d$hdim" timeout 120 python3 scripts/bench_torch_sdpa.py --modes fwd --dtypes bf16 --hdims $hdim --seqlens $S \
    --backends cudnn --out "$out/bench.jsonl" > /dev/null 2>&1
  phase "ours-d$hdim-again" timeout 120 $b/gpu_attention --modes fwd --dtypes bf16 --hdims $hdim --seqlens $S --causal no --out "$out/bench.jsonl" > /dev/null
done
kill $smi $smi2
