#!/usr/bin/env bash
# The final build's remaining checks (final.sh's logs of these did not come back: a call returns at most
# 8 files): the persistent test forced, the library's tests, the backward suite, racecheck of the forward's
# small shapes by default and with 2 blocks walking every tile. The logs go back as one tarball.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"; logs=/tmp/logs; mkdir -p $logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
pack() { tar -C $logs -czf "$out/logs.tgz" .; }
CANDLE_FA2_WS_PERSISTENT=1 timeout 60 $b/gpu_forward persistent > $logs/persistent-forced.log 2>&1
echo "persistent forced rc=$?" >> $logs/persistent-forced.log; pack
{ timeout 30 $b/candle_fa2; echo "lib rc=$?"; } > $logs/lib.log 2>&1; pack
timeout 200 $b/gpu_backward > $logs/gpu_backward.log 2>&1; echo "gpu_backward rc=$?" >> $logs/gpu_backward.log; pack
timeout 90 $san --tool racecheck --error-exitcode 9 $b/gpu_forward sanitizer_shapes --test-threads=1 \
  > $logs/racecheck.log 2>&1; echo "racecheck rc=$?" >> $logs/racecheck.log; pack
CANDLE_FA2_FWD_BLOCKS=2 timeout 150 $san --tool racecheck --error-exitcode 9 $b/gpu_forward sanitizer_shapes \
  --test-threads=1 > $logs/racecheck-2blocks.log 2>&1; echo "racecheck-2blocks rc=$?" >> $logs/racecheck-2blocks.log
pack
