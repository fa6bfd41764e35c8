#!/usr/bin/env bash
# Third build (blocks whose tiles all lack keys skip the turn barriers): racecheck of the forward's small
# shapes with 2 persistent blocks and with the default walk, memcheck with 2 blocks, the forward suite by
# default and with one block walking every tile. Each step's log as it ends.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
sanitize() {  # NAME TOOL [ENV...]
  local name=$1 tool=$2; shift 2
  env "$@" timeout 90 $san --tool $tool --error-exitcode 9 $b/gpu_forward sanitizer_shapes --test-threads=1 \
    > "$out/$name.log" 2>&1; echo "$name rc=$?" >> "$out/$name.log"
}
sanitize racecheck-2blocks racecheck CANDLE_FA2_FWD_BLOCKS=2
sanitize racecheck racecheck CANDLE_FA2_WS_PERSISTENT=auto
sanitize memcheck-2blocks memcheck CANDLE_FA2_FWD_BLOCKS=2
timeout 90 $b/gpu_forward > "$out/gpu_forward.log" 2>&1; echo "gpu_forward rc=$?" >> "$out/gpu_forward.log"
CANDLE_FA2_FWD_BLOCKS=1 timeout 90 $b/gpu_forward > "$out/gpu_forward-1block.log" 2>&1
echo "gpu_forward FWD_BLOCKS=1 rc=$?" >> "$out/gpu_forward-1block.log"
