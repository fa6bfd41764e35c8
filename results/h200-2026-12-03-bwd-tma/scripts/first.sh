#!/usr/bin/env bash
# The Hopper backward's streamed tiles by TMA (mbarrier stages, no block barrier in the loop), first run:
# the backward suite with TMA and with CANDLE_FA2_BWD_NO_TMA=1, the ragged suite (cp.async: varlen),
# memcheck and racecheck of the small shapes, then forward + backward bf16 at d64/d128, TMA against
# cp.async alternated twice, torch SDPA beside, in this one call. Every step's log goes to $OUT as it runs.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L/gpu.txt"
timeout 150 $b/gpu_backward > "$L/tests.log" 2>&1; echo "gpu_backward rc=$?" >> "$L/tests.log"
pack
CANDLE_FA2_BWD_NO_TMA=1 timeout 150 $b/gpu_backward > "$L/tests-no-tma.log" 2>&1
echo "gpu_backward no-tma rc=$?" >> "$L/tests-no-tma.log"
timeout 90 $b/gpu_ragged > "$L/ragged.log" 2>&1; echo "gpu_ragged rc=$?" >> "$L/ragged.log"
pack
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  timeout 120 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$L/$tool.log" 2>&1; echo "$tool rc=$?" >> "$L/$tool.log"
  pack
done
args="--modes fwd_bwd --dtypes bf16 --hdims 64,128 --seqlens 1024,2048,4096,8192,16384"
for rep in 1 2; do
  timeout 80 $b/gpu_attention $args --out "$L/bench-tma.jsonl" >> "$L/bench.log" 2>&1
  CANDLE_FA2_BWD_NO_TMA=1 timeout 80 $b/gpu_attention $args --out "$L/bench-cpasync.jsonl" >> "$L/bench.log" 2>&1
  pack
done
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
pack
