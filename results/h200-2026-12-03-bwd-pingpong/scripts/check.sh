#!/usr/bin/env bash
# The Hopper backward streamed by TMA with ping-pong turns (the default of this build), first call: the
# backward suite by default, with CANDLE_FA2_BWD_NO_PINGPONG=1 and with CANDLE_FA2_BWD_NO_TMA=1, the ragged
# suite (varlen: cp.async), then memcheck and racecheck of the small shapes (racecheck with and without
# turns). Every step's log goes to $OUT as it runs.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L/gpu.txt"
suite() {  # name, env...
  local name=$1; shift
  env "$@" timeout 100 $b/gpu_backward > "$L/tests-$name.log" 2>&1; echo "gpu_backward $name rc=$?" >> "$L/tests-$name.log"
  pack
}
suite default
suite no-pingpong CANDLE_FA2_BWD_NO_PINGPONG=1
suite no-tma CANDLE_FA2_BWD_NO_TMA=1
timeout 90 $b/gpu_ragged > "$L/ragged.log" 2>&1; echo "gpu_ragged rc=$?" >> "$L/ragged.log"
pack
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
sanitize() {  # tool, name, env...
  local tool=$1 name=$2; shift 2
  env "$@" timeout 120 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$L/$tool-$name.log" 2>&1; echo "$tool $name rc=$?" >> "$L/$tool-$name.log"
  gzip -f "$L/$tool-$name.log" && zcat "$L/$tool-$name.log.gz" | tail -3 > "$L/$tool-$name.tail"
  pack
}
sanitize racecheck default
sanitize racecheck no-pingpong CANDLE_FA2_BWD_NO_PINGPONG=1
sanitize memcheck default
