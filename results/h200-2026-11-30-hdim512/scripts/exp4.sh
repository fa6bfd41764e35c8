#!/usr/bin/env bash
# d512 backward with split S/dP: suites (all), 99 KB backward, sanitizer, fwd_bwd d512 beside torch efficient.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
t0=$(date +%s); el(){ echo "$(( $(date +%s) - t0 ))s"; }
for t in gpu_backward gpu_forward gpu_decode gpu_ragged candle_fa2; do
  echo "== $t" >> "$out/tests.log"
  timeout 200 $b/$t >> "$out/tests.log" 2>&1; echo "$t rc $? at $(el)" >> "$out/summary.txt"
done
CANDLE_FA2_NO_WGMMA=1 timeout 120 $b/gpu_backward >> "$out/tests.log" 2>&1; echo "nowgmma bwd rc $? at $(el)" >> "$out/summary.txt"
for f in grad_every_instantiation grad_sanitizer_shapes; do
  CANDLE_FA2_MAX_SMEM=101376 timeout 150 $b/gpu_backward $f >> "$out/tests.log" 2>&1; echo "99KB bwd $f rc $?" >> "$out/summary.txt"
done
timeout 100 $b/gpu_attention --modes fwd_bwd --dtypes bf16 --hdims 512 --seqlens 1024,4096,16384 --out "$out/bench.jsonl" > /dev/null 2> "$out/bench.err"
for dq in 1; do CANDLE_FA2_MAX_SMEM=101376 timeout 60 $b/gpu_attention --modes fwd_bwd --dtypes bf16 --hdims 512 --seqlens 4096 2>>"$out/bench.err" | sed 's/"impl": "candle-fa2"/"impl": "candle-fa2-99KB"/' >> "$out/bench.jsonl"; done
PYTHONUNBUFFERED=1 timeout 100 python3 scripts/bench_torch_sdpa.py --modes fwd_bwd --dtypes bf16 --hdims 512 --seqlens 1024,4096,16384 --backends efficient --out "$out/bench.jsonl" > /dev/null 2>> "$out/bench.err"
echo "bench done at $(el)" >> "$out/summary.txt"
for tool in memcheck racecheck; do
  timeout 150 "$san" --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 2>&1 | tail -n 4 >> "$out/sanitizer.log"
  echo "san bwd $tool rc ${PIPESTATUS[0]} at $(el)" >> "$out/summary.txt"
done
cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out/tests.log" | head -30
python3 - "$out/bench.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    if 'impl' in r: print(r['impl'], r.get('mode'), r.get('hdim'), r.get('causal'), r.get('seqlen'), r.get('batch'), r.get('tflops'), r.get('error', '')[:50])
PY
