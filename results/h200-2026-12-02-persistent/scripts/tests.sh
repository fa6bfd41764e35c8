#!/usr/bin/env bash
# The suites on the persistent forward's build: memcheck and racecheck of the forward's small shapes with 2
# persistent blocks, the forward suite (default, and with one block walking every tile), the library's tests,
# the backward suite. Each step's log as it ends.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  CANDLE_FA2_FWD_BLOCKS=2 timeout 150 $san --tool $tool --error-exitcode 9 $b/gpu_forward sanitizer_shapes \
    --test-threads=1 > "$out/$tool.log" 2>&1; echo "$tool rc=$?" >> "$out/$tool.log"
done
timeout 150 $b/gpu_forward > "$out/gpu_forward.log" 2>&1; echo "gpu_forward rc=$?" >> "$out/gpu_forward.log"
CANDLE_FA2_FWD_BLOCKS=1 timeout 150 $b/gpu_forward > "$out/gpu_forward-1block.log" 2>&1
echo "gpu_forward FWD_BLOCKS=1 rc=$?" >> "$out/gpu_forward-1block.log"
{ timeout 30 $b/candle_fa2; echo "lib rc=$?"; timeout 120 $b/gpu_backward; echo "gpu_backward rc=$?"; } > "$out/rest.log" 2>&1
