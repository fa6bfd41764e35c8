#!/usr/bin/env bash
# d512 forward with split S: suites, 99 KB, sanitizer; fwd/fwd_bwd bench d512 (and d256) beside torch; decode d512 rows beside torch efficient.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
t0=$(date +%s); el(){ echo "$(( $(date +%s) - t0 ))s"; }
for t in gpu_forward gpu_backward gpu_decode gpu_ragged candle_fa2; do
  echo "== $t" >> "$out/tests.log"
  timeout 200 $b/$t >> "$out/tests.log" 2>&1; echo "$t rc $? at $(el)" >> "$out/summary.txt"
done
for f in every_instantiation sanitizer_shapes; do
  CANDLE_FA2_MAX_SMEM=101376 timeout 100 $b/gpu_forward $f >> "$out/tests.log" 2>&1; echo "99KB fwd $f rc $?" >> "$out/summary.txt"
done
timeout 100 $b/gpu_attention --modes fwd,fwd_bwd --dtypes bf16 --hdims 512 --seqlens 1024,4096,16384 --out "$out/bench.jsonl" > /dev/null 2> "$out/bench.err"
echo "ours fwd at $(el)" >> "$out/summary.txt"
PYTHONUNBUFFERED=1 timeout 100 python3 scripts/bench_torch_sdpa.py --modes fwd,fwd_bwd --dtypes bf16 --hdims 512 --seqlens 1024,4096,16384 --backends efficient --out "$out/bench.jsonl" > /dev/null 2>> "$out/bench.err"
timeout 60 $b/gpu_attention --modes decode --dtypes bf16 2>> "$out/bench.err" | grep '"hdim": 512' >> "$out/bench.jsonl"
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py --modes decode --dtypes bf16 --backends efficient --out "$out/torch_decode.jsonl" > /dev/null 2>> "$out/bench.err"
grep '"hdim": 512' "$out/torch_decode.jsonl" >> "$out/bench.jsonl"
echo "bench done at $(el)" >> "$out/summary.txt"
for tool in memcheck racecheck; do
  timeout 120 "$san" --tool $tool --error-exitcode 9 $b/gpu_forward sanitizer_shapes --test-threads=1 2>&1 | tail -n 4 >> "$out/sanitizer.log"
  echo "san fwd $tool rc ${PIPESTATUS[0]} at $(el)" >> "$out/summary.txt"
done
cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out/tests.log" | head -30
python3 - "$out/bench.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    if 'impl' in r: print(r['impl'], r.get('mode'), r.get('hdim'), r.get('causal'), r.get('seqlen', r.get('kvlen')), r.get('batch'), r.get('tflops', r.get('GBps')), r.get('error', '')[:50])
PY
