#!/usr/bin/env bash
# Decode at d512 (V parts): suites, the 99 KB budget, decode bench beside torch and the prefill kernel, sanitizer.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
t0=$(date +%s); el(){ echo "$(( $(date +%s) - t0 ))s"; }
for t in gpu_decode gpu_forward gpu_backward gpu_ragged candle_fa2; do
  echo "== $t" >> "$out/tests.log"
  timeout 200 $b/$t >> "$out/tests.log" 2>&1; echo "$t rc $? at $(el)" >> "$out/summary.txt"
done
CANDLE_FA2_DECODE_BLOCKS=3 timeout 120 $b/gpu_decode >> "$out/tests.log" 2>&1; echo "decode 3 blocks rc $? at $(el)" >> "$out/summary.txt"
CANDLE_FA2_MAX_SMEM=101376 timeout 120 $b/gpu_decode >> "$out/tests.log" 2>&1; echo "decode 99KB rc $? at $(el)" >> "$out/summary.txt"
CANDLE_FA2_MAX_SMEM=101376 timeout 120 $b/gpu_ragged >> "$out/tests.log" 2>&1; echo "ragged 99KB rc $? at $(el)" >> "$out/summary.txt"
timeout 100 $b/gpu_attention --modes decode --dtypes bf16 --out "$out/bench.jsonl" > /dev/null 2> "$out/bench.err"
CANDLE_FA2_MAX_SMEM=101376 timeout 60 $b/gpu_attention --modes decode --dtypes bf16 2>> "$out/bench.err" | grep '"hdim": 512' | sed 's/"impl": "candle-fa2"/"impl": "candle-fa2-99KB"/' > "$out/bench_small.jsonl"
CANDLE_FA2_NO_DECODE=1 timeout 90 $b/gpu_attention --modes decode --dtypes bf16 2>> "$out/bench.err" | sed 's/"impl": "candle-fa2"/"impl": "candle-fa2-prefill-kernel"/' >> "$out/bench.jsonl"
echo "ours bench at $(el)" >> "$out/summary.txt"
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py --modes decode --dtypes bf16 --backends flash,cudnn,efficient --out "$out/bench.jsonl" > /dev/null 2>> "$out/bench.err"
python3 scripts/decode_table.py "$out/bench.jsonl" --markdown "$out/decode.md" > /dev/null 2>> "$out/bench.err"
echo "bench done at $(el)" >> "$out/summary.txt"
for smem in "" 101376; do
  for tool in memcheck racecheck; do
    CANDLE_FA2_MAX_SMEM=$smem CANDLE_FA2_DECODE_BLOCKS=2 timeout 150 "$san" --tool $tool --error-exitcode 9 $b/gpu_decode decode_sanitizer_shapes --test-threads=1 2>&1 | tail -n 4 >> "$out/sanitizer.log"
    echo "san decode smem=$smem $tool rc ${PIPESTATUS[0]} at $(el)" >> "$out/summary.txt"
  done
done
for s in gpu_ragged:ragged_sanitizer_shapes gpu_forward:sanitizer_shapes; do
  timeout 100 "$san" --tool memcheck --error-exitcode 9 $b/${s%%:*} ${s#*:} --test-threads=1 2>&1 | tail -n 4 >> "$out/sanitizer.log"
  echo "san $s memcheck rc ${PIPESTATUS[0]} at $(el)" >> "$out/summary.txt"
done
cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out/tests.log" | head -30; cat "$out/decode.md"
