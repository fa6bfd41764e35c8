#!/usr/bin/env bash
# The shipped build (warp-specialised TMA forward by default): every GPU suite (run.sh test), the forward and
# backward suites on the cp.async wgmma forward (CANDLE_FA2_NO_WS=1) and on mma.sync at 99 KB of shared
# memory (as run.sh all), memcheck and racecheck on every suite's small shapes (run.sh sanitize).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
timeout 300 bash .gpu/run.sh test > "$out/tests.log" 2>&1; echo "run.sh test rc $?" >> "$out/summary.txt"
b=/tmp/candle-fa2-bin/bin
for t in gpu_forward gpu_backward; do
  CANDLE_FA2_NO_WS=1 timeout 100 $b/$t > "$out/tests-nows-$t.log" 2>&1; echo "$t NO_WS rc $?" >> "$out/summary.txt"
  CANDLE_FA2_MAX_SMEM=101376 CANDLE_FA2_NO_WGMMA=1 timeout 100 $b/$t > "$out/tests-99KB-$t.log" 2>&1
  echo "$t 99KB mma.sync rc $?" >> "$out/summary.txt"
done
timeout 200 bash .gpu/run.sh sanitize > "$out/sanitizer.log" 2>&1; echo "run.sh sanitize rc $?" >> "$out/summary.txt"
cat "$out/summary.txt"; grep -hE "^== |^test result|FAILED|panicked" "$out"/tests*.log | sort | uniq -c | sort -rn | head -30
grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/sanitizer.log"
