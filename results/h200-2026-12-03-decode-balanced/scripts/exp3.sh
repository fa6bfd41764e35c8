#!/usr/bin/env bash
# The shipped build (persistent decode blocks: the fewest that take as many rounds): its default against
# CANDLE_FA2_DECODE_BLOCKS=132 (one block per SM, the choice before), alternated (new old old new), on the
# persistent rows and two that are not; torch SDPA flash and cuDNN beside. Then split counts forced at
# d64 1 x 64k and 8 x 8k (the heuristic's: the run without --num-splits).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$L/gpu.txt"
s=$(date +%s)
rows=64x2048x1x128,32x4096x1x128,128x1024x1x128,33x4096x1x128,16x32768x1x128,8x8192x1x128,64x2048x1x96,32x4096x1x96
args="--modes decode --dtypes bf16 --decode-rows $rows"
for v in new:X=1 old:CANDLE_FA2_DECODE_BLOCKS=132 old:CANDLE_FA2_DECODE_BLOCKS=132 new:X=1; do
  env ${v#*:} timeout 60 $b/gpu_attention $args --out "$L/bench-${v%%:*}.jsonl" >> "$L/bench.log" 2>&1
  echo "${v%%:*} rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
done
PYTHONUNBUFFERED=1 timeout 100 python3 scripts/bench_torch_sdpa.py $args --backends flash,cudnn --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
python3 results/h200-2026-12-03-decode-balanced/scripts/ab_decode.py "$L" new,old > "$L/ab.txt" 2>&1; pack
d64=--decode-rows=1x65536x1x64,8x8192x1x64
for n in heuristic 16 24 33 48 64 heuristic; do
  sp=; [ $n = heuristic ] || sp="--num-splits $n"
  timeout 60 $b/gpu_attention --modes decode --dtypes bf16 $d64 $sp | sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"splits-$n\"/" >> "$L/d64-splits.jsonl" 2>> "$L/bench.log"
done
PYTHONUNBUFFERED=1 timeout 60 python3 scripts/bench_torch_sdpa.py --modes decode --dtypes bf16 $d64 --backends flash,cudnn --out "$L/d64-splits.jsonl" >> "$L/bench.log" 2>&1
echo "d64 splits $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
python3 - "$L/d64-splits.jsonl" > "$L/d64-splits.txt" <<'PY'
import json, sys, collections
r = collections.defaultdict(list)
for line in open(sys.argv[1]):
    j = json.loads(line)
    if "GBps" in j: r[(j["batch"], j["kvlen"])].append(f'{j["impl"]} {j["GBps"]:.0f}')
for k, v in r.items(): print(k, "; ".join(v))
PY
pack; cat "$L/summary.txt" "$L/ab.txt" "$L/d64-splits.txt"
