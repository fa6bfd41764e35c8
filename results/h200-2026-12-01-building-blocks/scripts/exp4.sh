#!/usr/bin/env bash
# The backward on wgmma with transformed logits (softcap, ALiBi) at d64 and d128: the backward suite on both
# Hopper paths, its memcheck and racecheck; forward + backward with softcap 30 on wgmma and on mma.sync
# (CANDLE_FA2_NO_WGMMA=1); the plain forward + backward against base (5180c69's kernels), base-new-new-base.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
timeout 200 $b/gpu_backward > "$out/tests.log" 2>&1; echo "gpu_backward rc $?" >> "$out/summary.txt"
CANDLE_FA2_NO_WGMMA=1 timeout 200 $b/gpu_backward >> "$out/tests.log" 2>&1; echo "gpu_backward mma.sync rc $?" >> "$out/summary.txt"
timeout 120 $b/gpu_forward windows_softcap_alibi >> "$out/tests.log" 2>&1; echo "gpu_forward softcap rc $?" >> "$out/summary.txt"
for tool in memcheck racecheck; do
  timeout 200 "$san" --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 2>&1 | tail -n 4 >> "$out/sanitizer.log"
  echo "sanitizer $tool rc ${PIPESTATUS[0]}" >> "$out/summary.txt"
done
mkdir -p /tmp/base-bin && xz -dc .gpu/base.tar.xz | tar -C /tmp/base-bin -xf -
run() {  # run TAG BIN_DIR ARGS...: the bench, its lines tagged
  local tag=$1 dir=$2; shift 2
  timeout 100 "$dir/gpu_attention" "$@" 2>> "$out/bench.err" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$tag/" >> "$out/bench.jsonl"
}
C="--modes fwd_bwd --dtypes bf16 --hdims 64,128 --seqlens 2048,8192 --softcap 30"
run new $b $C
CANDLE_FA2_NO_WGMMA=1 run new-mma $b $C
for pass in base new new base; do
  dir=/tmp/base-bin/bin; [ $pass = new ] && dir=$b
  run $pass $dir --modes fwd_bwd --dtypes bf16 --hdims 64,128 --seqlens 2048,8192
done
python3 - "$out/bench.jsonl" > "$out/compare.txt" <<'PY'
import json, sys, collections
vals = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    vals[((r['mode'], r['hdim'], r['causal'], r['seqlen']), r['impl'])].append(r['tflops'])
for k in sorted({k for (k, i) in vals}):
    b, n = vals.get((k, 'base'), []), vals.get((k, 'new'), [])
    if b and n: print(*k, 'plain | base', b, '| new', n, '| %.3f' % ((sum(n) / len(n)) / (sum(b) / len(b))))
    w, m = vals.get((k, 'new-softcap'), []), vals.get((k, 'new-mma-softcap'), [])
    if w and m: print(*k, 'softcap | wgmma', w, '| mma.sync', m, '| %.3f' % (w[0] / m[0]))
PY
cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out/tests.log"; cat "$out/sanitizer.log"; cat "$out/compare.txt"; tail -3 "$out/bench.err"
