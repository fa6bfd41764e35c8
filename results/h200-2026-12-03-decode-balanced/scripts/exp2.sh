#!/usr/bin/env bash
# Persistent decode blocks capped at 128 (CANDLE_FA2_DECODE_BLOCKS=128: 4 items per block at 64 x 2k, 2 at
# 32 x 4k, no block with one fewer) against the 132 of the device, both on the schedule before
# (CANDLE_FA2_DECODE_BALANCED=0), alternated (132 128 128 132): is the last round's idle SMs what costs,
# or the SMs' count? Same build as exp1.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
s=$(date +%s)
rows=64x2048x1x128,32x4096x1x128,128x1024x1x128,33x4096x1x128,64x2048x1x96,32x4096x1x96
args="--modes decode --dtypes bf16 --decode-rows $rows"
for v in b132:X=1 b128:CANDLE_FA2_DECODE_BLOCKS=128 b128:CANDLE_FA2_DECODE_BLOCKS=128 b132:X=1 \
         balanced:CANDLE_FA2_DECODE_BALANCED=1 balanced:CANDLE_FA2_DECODE_BALANCED=1; do
  bal=0; [ "${v%%:*}" = balanced ] && bal=1
  env CANDLE_FA2_DECODE_BALANCED=$bal ${v#*:} timeout 60 $b/gpu_attention $args --out "$L/bench-${v%%:*}.jsonl" >> "$L/bench.log" 2>&1
  echo "${v%%:*} rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
done
PYTHONUNBUFFERED=1 timeout 100 python3 scripts/bench_torch_sdpa.py $args --backends flash,cudnn --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
python3 results/h200-2026-12-03-decode-balanced/scripts/ab_decode.py "$L" b128,balanced,b132 > "$L/ab.txt" 2>&1; pack
cat "$L/summary.txt" "$L/ab.txt"
