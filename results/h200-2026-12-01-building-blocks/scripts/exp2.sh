#!/usr/bin/env bash
# Base (5180c69's kernels: .gpu/base.tar.xz) against this build in one call, in the order base, new, new,
# base: forward (wgmma; mma.sync with CANDLE_FA2_NO_WGMMA=1), forward + backward, decode, and the forward
# with softcap 30 (new only: wgmma, and mma.sync with CANDLE_FA2_NO_WGMMA=1, what base ran). Then the
# decode's item-count test: GB/s against batch where batch x 8 KV heads is or is not a multiple of the
# H200's 132 persistent blocks.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
bash .gpu/run.sh test --list > /dev/null 2>&1
mkdir -p /tmp/base-bin && xz -dc .gpu/base.tar.xz | tar -C /tmp/base-bin -xf -
run() {  # run TAG BIN_DIR ARGS...: the bench, its lines tagged
  local tag=$1 dir=$2; shift 2
  timeout 150 "$dir/gpu_attention" "$@" 2>> "$out/bench.err" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$tag/" >> "$out/bench.jsonl"
}
F="--modes fwd --dtypes bf16 --hdims 64,128,256 --seqlens 1024,4096,16384"
M="--modes fwd --dtypes bf16 --hdims 64,128,256 --seqlens 4096"
B="--modes fwd_bwd --dtypes bf16 --hdims 64,128,256 --seqlens 2048,8192"
D="--modes decode --dtypes bf16"
C="--modes fwd --dtypes bf16 --hdims 64,128,256 --seqlens 4096,16384 --softcap 30"
CM="--modes fwd --dtypes bf16 --hdims 64,128,256 --seqlens 4096 --softcap 30"
for pass in base new new base; do
  dir=/tmp/base-bin/bin; [ $pass = new ] && dir=/tmp/candle-fa2-bin/bin
  run $pass $dir $F
  CANDLE_FA2_NO_WGMMA=1 run $pass-mma $dir $M
  run $pass $dir $B
  run $pass $dir $D
  # The base bench has no --softcap: the softcap rows compare new's wgmma and mma.sync kernels.
  [ $pass = new ] && run $pass $dir $C && CANDLE_FA2_NO_WGMMA=1 run $pass-mma $dir $CM
  echo "$pass done $(date +%s)" >> "$out/summary.txt"
done
R=32x4096x1x128,33x4096x1x128,31x4096x1x128,64x2048x1x128,66x2048x1x128,62x2048x1x128
run tail /tmp/candle-fa2-bin/bin --modes decode --dtypes bf16 --decode-rows $R
CANDLE_FA2_DECODE_PERSISTENT=0 run tail-nonpersistent /tmp/candle-fa2-bin/bin --modes decode --dtypes bf16 --decode-rows $R
python3 - "$out/bench.jsonl" > "$out/compare.txt" <<'PY'
import json, sys, collections
vals = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    key = (r['mode'], r.get('hdim'), r.get('causal', ''), r.get('seqlen', ''), r.get('batch', ''), r.get('kvlen', ''), r.get('seqlen_q', ''))
    impl = r['impl']
    if impl.startswith('tail'): passname, variant = impl, ''
    else: passname, _, variant = impl.partition('-')
    vals[(key, variant, passname)].append(r.get('tflops') or r.get('GBps'))
print('mode hdim causal seqlen batch kvlen sq variant | base (2 runs) | new (2 runs) | new/base')
for (k, var) in sorted({(k, v) for (k, v, p) in vals}):
    b, n = vals.get((k, var, 'base'), []), vals.get((k, var, 'new'), [])
    if n:
        ratio = '%.3f' % ((sum(n) / len(n)) / (sum(b) / len(b))) if b else ''
        print(*k, var, '|', b, '|', n, '|', ratio)
# softcap: new's wgmma kernel against its mma.sync one (what base ran on Hopper)
for (k, var, p), v in sorted(vals.items()):
    if var == 'mma-softcap':
        w = vals.get((k, 'softcap', 'new'), [])
        if w: print('softcap wgmma / mma.sync', *k, w, v, '%.3f' % ((sum(w) / len(w)) / (sum(v) / len(v))))
for (k, var, p), v in sorted(vals.items()):
    if p.startswith('tail'): print(p, *k, v)
PY
cat "$out/compare.txt"; tail -3 "$out/bench.err"; cat "$out/summary.txt"
