#!/usr/bin/env bash
# The landed build: dq_atomics runs the two deterministic Hopper passes (the one-pass kernel not kept).
# The backward and ragged suites (and the dq_atomics tests on mma.sync), memcheck of the small shapes,
# then forward + backward bf16 with and without dq_atomics at d64/d128/d256 in one call.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
timeout 150 $b/gpu_backward > "$L/tests.log" 2>&1; echo "gpu_backward rc=$?" >> "$L/tests.log"
timeout 90 $b/gpu_ragged > "$L/ragged.log" 2>&1; echo "gpu_ragged rc=$?" >> "$L/ragged.log"
CANDLE_FA2_NO_WGMMA=1 timeout 90 $b/gpu_backward grad_every_instantiation grad_dq_atomics > "$L/tests-mma.log" 2>&1
echo "gpu_backward mma rc=$?" >> "$L/tests-mma.log"
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
timeout 120 $san --tool memcheck --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
  > "$L/memcheck.log" 2>&1; echo "memcheck rc=$?" >> "$L/memcheck.log"
pack
args="--modes fwd_bwd --dtypes bf16 --hdims 64,128,256 --seqlens 1024,4096,16384"
timeout 100 $b/gpu_attention $args --out "$L/bench.jsonl" >> "$L/bench.log" 2>&1
timeout 100 $b/gpu_attention $args --dq-atomics --out "$L/bench.jsonl" >> "$L/bench.log" 2>&1
pack
