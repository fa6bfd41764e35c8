#!/usr/bin/env bash
# The balanced decode schedule: the decode suite (default, 3 persistent blocks), balanced against
# CANDLE_FA2_DECODE_BALANCED=0 (the schedule before) on the bench's d128 rows and d96 ones, alternated
# (on off off on), torch SDPA flash and cuDNN beside, then memcheck and racecheck of the sanitizer shapes
# with 2 persistent blocks. One call; each step its own limit, logs under $OUT/logs as they come.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$L/gpu.txt"
s=$(date +%s)
timeout 150 $b/gpu_decode > "$L/tests.log" 2>&1; echo "gpu_decode rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"
CANDLE_FA2_DECODE_BLOCKS=3 timeout 150 $b/gpu_decode > "$L/tests-3blocks.log" 2>&1
echo "gpu_decode 3 blocks rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
rows=1x8192x1x128,8x8192x1x128,32x4096x1x128,1x65536x1x128,16x32768x1x128,64x2048x1x128,8x8192x4x128,16x32768x4x128,32x4096x1x96,64x2048x1x96,16x32768x1x96,128x1024x1x128,33x4096x1x128
args="--modes decode --dtypes bf16 --decode-rows $rows"
for v in balanced:X=1 before:CANDLE_FA2_DECODE_BALANCED=0 before:CANDLE_FA2_DECODE_BALANCED=0 balanced:X=1; do
  env ${v#*:} timeout 90 $b/gpu_attention $args --out "$L/bench-${v%%:*}.jsonl" >> "$L/bench.log" 2>&1
  echo "${v%%:*} rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
done
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py $args --backends flash,cudnn --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
echo "torch rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
python3 results/h200-2026-12-03-decode-balanced/scripts/ab_decode.py "$L" balanced,before > "$L/ab.txt" 2>&1; pack
for tool in memcheck racecheck; do
  CANDLE_FA2_DECODE_BLOCKS=2 timeout 150 "$sanitizer" --tool "$tool" --error-exitcode 9 \
    "$b/gpu_decode" decode_sanitizer_shapes --test-threads=1 > "$L/$tool.log" 2>&1
  echo "$tool rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; tail -n 4 "$L/$tool.log" >> "$L/summary.txt"; pack
done
cat "$L/summary.txt" "$L/ab.txt"
