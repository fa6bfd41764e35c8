#!/usr/bin/env bash
# The committed build (TMA streaming with turns at d64/d128, the paired d256 kernel on cp.async, dq_accum
# only where used): the backward suite, racecheck and memcheck of the sanitizer tests (d256 among the
# reused-stage shapes now), every GPU suite (run.sh test).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in racecheck memcheck; do
  timeout 150 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$L/$tool.log" 2>&1; echo "$tool rc=$?" >> "$L/$tool.log"
  gzip -f "$L/$tool.log" && zcat "$L/$tool.log.gz" | tail -n 3 > "$L/$tool.tail"
  pack
done
timeout 240 bash .gpu/run.sh test > "$L/suites.log" 2>&1; echo "run.sh test rc=$?" >> "$L/suites.log"
grep -E "^== |test result|FAILED|panicked|rc=" "$L/suites.log" > "$L/suites.tail"; gzip -f "$L/suites.log"
pack
