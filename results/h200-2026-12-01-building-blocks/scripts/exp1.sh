#!/usr/bin/env bash
# Building blocks (common/softmax.cuh, logits.cuh, mask.cuh, fragment_col): every suite and the sanitizer
# on every suite's small shapes (run.sh serving), the backward and decode suites at 99 KB.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
timeout 560 bash .gpu/run.sh serving "$out/serving" > "$out/serving.txt" 2>&1; echo "serving rc $?" >> "$out/summary.txt"
b=/tmp/candle-fa2-bin/bin
for t in gpu_backward gpu_decode; do
  CANDLE_FA2_MAX_SMEM=101376 timeout 120 $b/$t >> "$out/small.log" 2>&1; echo "99KB $t rc $?" >> "$out/summary.txt"
done
tail -n 14 "$out/serving.txt"; cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out/small.log"
