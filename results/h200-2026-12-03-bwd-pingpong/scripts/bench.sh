#!/usr/bin/env bash
# Forward + backward bf16 at d64/d128: default (TMA, turns), CANDLE_FA2_BWD_NO_PINGPONG=1,
# CANDLE_FA2_BWD_NO_TMA=1 (cp.async, the kernel before), alternated twice, torch SDPA beside, in one call.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
args="--modes fwd_bwd --dtypes bf16 --hdims 64,128 --seqlens 1024,2048,4096,8192,16384"
for rep in 1 2; do
  for v in default:X=1 no-pingpong:CANDLE_FA2_BWD_NO_PINGPONG=1 cpasync:CANDLE_FA2_BWD_NO_TMA=1; do
    s=$(date +%s)
    env ${v#*:} timeout 80 $b/gpu_attention $args --out "$L/bench-${v%%:*}.jsonl" >> "$L/bench.log" 2>&1
    echo "${v%%:*} rep $rep rc=$? $(( $(date +%s) - s )) s" >> "$L/bench.log"
    pack
  done
done
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
pack
