#!/usr/bin/env bash
# The landed build at the edges of the routed ranges (d72: 7/16 of d128's columns zeros, d136 and d224 on
# d256): bf16 forward and forward + backward, default against CANDLE_FA2_NO_SM90_PAD=1, alternated, torch beside.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
s=$(date +%s)
rows="--dtypes bf16 --hdims 72,136,224 --seqlens 1024,4096,16384"
for v in pad:X=1 mma:CANDLE_FA2_NO_SM90_PAD=1 mma:CANDLE_FA2_NO_SM90_PAD=1 pad:X=1; do
  env ${v#*:} timeout 150 $b/gpu_attention --modes fwd,fwd_bwd $rows | sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"${v%%:*}\"/" >> "$L/edges.jsonl" 2>> "$L/bench.log"
  echo "${v%%:*} rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"
done
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py --modes fwd,fwd_bwd $rows --backends flash,cudnn --out "$L/edges.jsonl" >> "$L/bench.log" 2>&1
echo "torch rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; cat "$L/summary.txt"
