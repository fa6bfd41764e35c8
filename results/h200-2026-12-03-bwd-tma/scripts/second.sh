#!/usr/bin/env bash
# Second build: the KEYS pass's LSE and D through registers (racecheck did not follow cp.async's mbarrier
# arrival) and ping-pong turns between the two warpgroups behind CANDLE_FA2_BWD_PINGPONG=1. The backward
# suite, memcheck and racecheck of the small shapes (with and without turns), then forward + backward bf16
# at d64/d128: TMA, TMA with turns, cp.async, one timing each, torch SDPA beside, in this one call.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
timeout 100 $b/gpu_backward > "$L/tests.log" 2>&1; echo "gpu_backward rc=$?" >> "$L/tests.log"
CANDLE_FA2_BWD_PINGPONG=1 timeout 100 $b/gpu_backward > "$L/tests-turns.log" 2>&1
echo "gpu_backward turns rc=$?" >> "$L/tests-turns.log"
pack
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  timeout 100 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$L/$tool.log" 2>&1; echo "$tool rc=$?" >> "$L/$tool.log"
  pack
done
CANDLE_FA2_BWD_PINGPONG=1 timeout 100 $san --tool racecheck --error-exitcode 9 $b/gpu_backward \
  grad_sanitizer_shapes_stages_reused --test-threads=1 > "$L/racecheck-turns.log" 2>&1
echo "racecheck turns rc=$?" >> "$L/racecheck-turns.log"
pack
args="--modes fwd_bwd --dtypes bf16 --hdims 64,128 --seqlens 1024,2048,4096,8192,16384"
for rep in 1; do
  timeout 70 $b/gpu_attention $args --out "$L/bench-tma.jsonl" >> "$L/bench.log" 2>&1
  CANDLE_FA2_BWD_PINGPONG=1 timeout 70 $b/gpu_attention $args --out "$L/bench-turns.jsonl" >> "$L/bench.log" 2>&1
  CANDLE_FA2_BWD_NO_TMA=1 timeout 70 $b/gpu_attention $args --out "$L/bench-cpasync.jsonl" >> "$L/bench.log" 2>&1
  pack
done
PYTHONUNBUFFERED=1 timeout 100 python3 scripts/bench_torch_sdpa.py $args --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
pack
