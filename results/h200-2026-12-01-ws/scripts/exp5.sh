#!/usr/bin/env bash
# The shipped build with softcap 30 (transformed logits): forward at 4k and 16k on the warp-specialised
# kernel (default), the cp.async wgmma one (CANDLE_FA2_NO_WS=1) and mma.sync (CANDLE_FA2_NO_WGMMA=1);
# forward + backward at 2k and 8k on the first two.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
run() {  # run TAG ARGS...: the bench, its lines tagged
  local tag=$1; shift
  timeout 100 $b/gpu_attention "$@" 2>> "$out/bench.err" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$tag/" >> "$out/bench.jsonl"
}
C="--modes fwd --dtypes bf16 --hdims 64,128,256 --seqlens 4096,16384 --softcap 30"
B="--modes fwd_bwd --dtypes bf16 --hdims 64,128 --seqlens 2048,8192 --softcap 30"
for pass in ws nows mma mma nows ws; do
  case $pass in nows) export CANDLE_FA2_NO_WS=1 ;; mma) export CANDLE_FA2_NO_WGMMA=1 ;; esac
  run $pass $C
  [ $pass != mma ] && run $pass $B
  unset CANDLE_FA2_NO_WS CANDLE_FA2_NO_WGMMA
done
python3 - "$out/bench.jsonl" > "$out/compare.txt" <<'PY'
import json, sys, collections
vals = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    vals[((r['mode'], r['hdim'], r['causal'], r['seqlen']), r['impl'].split('-')[0])].append(r['tflops'])
print('mode hdim causal seqlen | ws | nows | mma | ws/nows ws/mma')
for k in sorted({k for (k, _) in vals}):
    m = {i: sum(v) / len(v) for (kk, i), v in vals.items() if kk == k}
    f = lambda i: '%.0f' % m[i] if i in m else '-'
    r = lambda a, b: '%.2f' % (m[a] / m[b]) if a in m and b in m else '-'
    print(*k, '|', f('ws'), '|', f('nows'), '|', f('mma'), '|', r('ws', 'nows'), r('ws', 'mma'))
PY
cat "$out/compare.txt"; tail -3 "$out/bench.err"
