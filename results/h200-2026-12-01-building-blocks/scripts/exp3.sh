#!/usr/bin/env bash
# The final build (softcap on wgmma at d128/d256 only; the decode's mask from the block's offset): every
# suite and the sanitizer on every suite's small shapes (run.sh serving), the backward and decode suites at
# 99 KB; the softcap rows on wgmma and mma.sync; base and new decode rows in one call (base, new, new, base).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
timeout 400 bash .gpu/run.sh serving "$out/serving" > "$out/serving.txt" 2>&1; echo "serving rc $?" >> "$out/summary.txt"
b=/tmp/candle-fa2-bin/bin
for t in gpu_backward gpu_decode; do
  CANDLE_FA2_MAX_SMEM=101376 timeout 100 $b/$t >> "$out/small.log" 2>&1; echo "99KB $t rc $?" >> "$out/summary.txt"
done
mkdir -p /tmp/base-bin && xz -dc .gpu/base.tar.xz | tar -C /tmp/base-bin -xf -
run() {  # run TAG BIN_DIR ARGS...: the bench, its lines tagged
  local tag=$1 dir=$2; shift 2
  timeout 100 "$dir/gpu_attention" "$@" 2>> "$out/bench.err" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$tag/" >> "$out/bench.jsonl"
}
C="--modes fwd --dtypes bf16 --hdims 64,128,256 --seqlens 4096,16384 --softcap 30"
run new $b $C
CANDLE_FA2_NO_WGMMA=1 run new-mma $b $C
for pass in base new new base; do
  dir=/tmp/base-bin/bin; [ $pass = new ] && dir=$b
  run $pass $dir --modes decode --dtypes bf16
done
python3 - "$out/bench.jsonl" > "$out/compare.txt" <<'PY'
import json, sys, collections
vals = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    key = (r['mode'], r.get('hdim'), r.get('causal', ''), r.get('seqlen', ''), r.get('batch', ''), r.get('kvlen', ''), r.get('seqlen_q', ''))
    vals[(key, r['impl'])].append(r.get('tflops') or r.get('GBps'))
keys = sorted({k for (k, i) in vals})
for k in keys:
    if k[0] == 'decode':
        b, n = vals[(k, 'base')], vals[(k, 'new')]
        print(*k, '| base', b, '| new', n, '| %.3f' % ((sum(n) / len(n)) / (sum(b) / len(b))))
    else:
        w, m = vals[(k, 'new-softcap')], vals[(k, 'new-mma-softcap')]
        print(*k, 'softcap | wgmma', w, '| mma.sync', m, '| %.3f' % (w[0] / m[0]))
PY
tail -n 8 "$out/serving.txt"; cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out/small.log"; cat "$out/compare.txt"; tail -3 "$out/bench.err"
