#!/usr/bin/env bash
# The final build: run.sh serving (every suite, ragged at 99 KB, sanitizer on every suite's small shapes),
# then the backward and decode at 99 KB, and the d512 forward + backward bench beside torch efficient.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
bash .gpu/run.sh serving "$out/serving" > "$out/serving.txt" 2>&1
b=/tmp/candle-fa2-bin/bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for t in gpu_backward gpu_decode; do
  CANDLE_FA2_MAX_SMEM=101376 timeout 150 $b/$t >> "$out/small.log" 2>&1; echo "99KB $t rc $?" >> "$out/summary.txt"
done
timeout 100 $b/gpu_attention --modes fwd,fwd_bwd --dtypes bf16 --hdims 512 --seqlens 1024,4096,16384 --out "$out/bench.jsonl" > /dev/null 2>> "$out/small.log"
PYTHONUNBUFFERED=1 timeout 100 python3 scripts/bench_torch_sdpa.py --modes fwd,fwd_bwd --dtypes bf16 --hdims 512 --seqlens 1024,4096,16384 --backends efficient --out "$out/bench.jsonl" > /dev/null 2>> "$out/small.log"
tail -n 12 "$out/serving.txt"; cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out/small.log"
python3 - "$out/bench.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    if 'impl' in r: print(r['impl'], r.get('mode'), r.get('hdim'), r.get('causal'), r.get('seqlen'), r.get('tflops'))
PY
