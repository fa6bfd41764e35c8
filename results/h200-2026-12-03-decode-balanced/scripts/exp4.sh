#!/usr/bin/env bash
# Experiment build (d128 K/V rows by cp.async.bulk, CANDLE_FA2_DECODE_BULK=STAGES, on top of the even
# rounds): cp.async (0) against bulk with 2 and 3 stages on the d128 decode rows, alternated (0 2 3 3 2 0),
# torch SDPA beside; the decode suite with bulk 2 and 3, the ragged suite (paged decode) with bulk 3,
# memcheck and racecheck of the decode sanitizer shapes with bulk 3 and 2 persistent blocks.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$L/gpu.txt"
s=$(date +%s)
rows=1x8192x1x128,8x8192x1x128,32x4096x1x128,1x65536x1x128,16x32768x1x128,64x2048x1x128,8x8192x4x128,16x32768x4x128,128x1024x1x128
args="--modes decode --dtypes bf16 --decode-rows $rows"
for v in 0 2 3 3 2 0; do
  CANDLE_FA2_DECODE_BULK=$v timeout 60 $b/gpu_attention $args --out "$L/bench-bulk$v.jsonl" >> "$L/bench.log" 2>&1
  echo "bulk $v rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
done
PYTHONUNBUFFERED=1 timeout 100 python3 scripts/bench_torch_sdpa.py $args --backends flash,cudnn --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
python3 results/h200-2026-12-03-decode-balanced/scripts/ab_decode.py "$L" bulk2,bulk3,bulk0 > "$L/ab.txt" 2>&1; pack
cat "$L/ab.txt"
for v in 2 3; do
  CANDLE_FA2_DECODE_BULK=$v timeout 120 $b/gpu_decode > "$L/tests-bulk$v.log" 2>&1
  echo "gpu_decode bulk $v rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
done
CANDLE_FA2_DECODE_BULK=3 timeout 150 $b/gpu_ragged > "$L/ragged-bulk3.log" 2>&1
echo "gpu_ragged bulk 3 rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
for tool in memcheck racecheck; do
  CANDLE_FA2_DECODE_BULK=3 CANDLE_FA2_DECODE_BLOCKS=2 timeout 120 "$sanitizer" --tool "$tool" --error-exitcode 9 \
    "$b/gpu_decode" decode_sanitizer_shapes --test-threads=1 > "$L/$tool.log" 2>&1
  echo "$tool rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; tail -n 4 "$L/$tool.log" >> "$L/summary.txt"; pack
done
cat "$L/summary.txt"
