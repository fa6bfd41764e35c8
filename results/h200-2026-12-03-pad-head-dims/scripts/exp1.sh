#!/usr/bin/env bash
# Early refills (a warp's copy into a stage leaves as soon as it has computed on that stage, so two tiles
# are in flight per warp with two stages, not one): the decode suite at three configurations, memcheck and
# racecheck of the decode sanitizer shapes (2 blocks, both shared-memory budgets), the ragged suite (5
# blocks), then the default decode rows in bf16, early against CANDLE_FA2_DECODE_EARLY_REFILL=0 alternated
# (new old old new), torch SDPA flash and cuDNN beside; paged against contiguous (serving mode) for both.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$L/gpu.txt"
s=$(date +%s)
step() { echo "$1 rc=$2 $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack; }
timeout 120 $b/gpu_decode > "$L/tests.log" 2>&1; step "decode suite" $?
CANDLE_FA2_DECODE_BLOCKS=3 timeout 120 $b/gpu_decode >> "$L/tests.log" 2>&1; step "decode suite, 3 blocks" $?
CANDLE_FA2_MAX_SMEM=101376 timeout 120 $b/gpu_decode >> "$L/tests.log" 2>&1; step "decode suite, 99 KB" $?
for smem in "" 101376; do
  for tool in memcheck racecheck; do
    CANDLE_FA2_MAX_SMEM=$smem CANDLE_FA2_DECODE_BLOCKS=2 timeout 150 "$san" --tool $tool --error-exitcode 9 \
      $b/gpu_decode decode_sanitizer_shapes --test-threads=1 > "$L/san-$tool-$smem.log" 2>&1
    step "$tool smem=$smem" $?
  done
done
CANDLE_FA2_DECODE_BLOCKS=5 timeout 150 $b/gpu_ragged > "$L/ragged.log" 2>&1; step "ragged suite, 5 blocks" $?
args="--modes decode --dtypes bf16"
for v in new:X=1 old:CANDLE_FA2_DECODE_EARLY_REFILL=0 old:CANDLE_FA2_DECODE_EARLY_REFILL=0 new:X=1; do
  env ${v#*:} timeout 90 $b/gpu_attention $args --out "$L/bench-${v%%:*}.jsonl" >> "$L/bench.log" 2>&1
  step "bench ${v%%:*}" $?
done
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --backends flash,cudnn --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
step "torch" $?
python3 results/h200-2026-12-03-decode-balanced/scripts/ab_decode.py "$L" new,old > "$L/ab.txt" 2>&1; pack
for v in new:X=1 old:CANDLE_FA2_DECODE_EARLY_REFILL=0; do
  env ${v#*:} timeout 120 $b/gpu_attention --modes serving --out "$L/serving-${v%%:*}.jsonl" >> "$L/bench.log" 2>&1
  step "serving ${v%%:*}" $?
done
cat "$L/summary.txt" "$L/ab.txt"
