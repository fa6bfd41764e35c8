#!/usr/bin/env bash
# The shipped tiles (Large at d64: 8 warps; d160-d256: 4 warps, copies through L1): Large against Small
# (CANDLE_FA2_MAX_SMEM=101376 selects Small) on the head dims exp1 did not time, twice in the order
# large small small large; then `run.sh decode` (suites at three budgets, ours / prefill kernel / torch,
# forward suite, memcheck and racecheck at both budgets).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
R="--modes decode --dtypes bf16 --decode-rows 1x65536x1x160,16x32768x1x160,1x65536x1x192,16x32768x1x192,8x8192x1x192,1x65536x1x224,16x32768x1x224,1x65536x1x64,8x8192x1x64,1x65536x1x256,8x8192x1x256"
for v in large small small large; do
  smem=; [ $v = small ] && smem=101376
  CANDLE_FA2_MAX_SMEM=$smem timeout 60 $b/gpu_attention $R 2>> "$out/summary.txt" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$v/" >> "$out/ab.jsonl"
  echo "$v $(date +%s)" >> "$out/summary.txt"
done
timeout 480 bash .gpu/run.sh decode "$out" >> "$out/summary.txt" 2>&1; echo "decode mode rc $?" >> "$out/summary.txt"
