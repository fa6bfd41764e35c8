#!/usr/bin/env bash
# Warp-specialised TMA forward, tile variants (CANDLE_FA2_SM90_WS): 1 the first build's tiles (key blocks
# 128/128/64 at d64/d128/d256, two stages), 3 wider key blocks (192/176/80), 4 three stages at d64/d128;
# 0 the cp.async wgmma kernel (and mma.sync below 2k keys at d64). The forward suite on 1, 3 and 4, memcheck
# on 3; the bench in the order 0 1 3 4 4 3 1 0 and torch SDPA on the same rows; fp16 once for 0 and 1.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
for ws in 1 3 4; do
  CANDLE_FA2_SM90_WS=$ws timeout 100 $b/gpu_forward > "$out/tests-ws$ws.log" 2>&1; echo "gpu_forward ws=$ws rc $?" >> "$out/summary.txt"
done
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
CANDLE_FA2_SM90_WS=3 timeout 100 "$san" --tool memcheck --error-exitcode 9 $b/gpu_forward sanitizer_shapes --test-threads=1 > "$out/sanitizer-memcheck-ws3.log" 2>&1
echo "sanitizer memcheck ws=3 rc $?" >> "$out/summary.txt"
cat "$out/summary.txt"
run() {  # run TAG ARGS...: the bench, its lines tagged
  local tag=$1; shift
  timeout 100 $b/gpu_attention "$@" 2>> "$out/bench.err" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$tag/" >> "$out/bench.jsonl"
}
F="--modes fwd --dtypes bf16 --hdims 64,128,256 --seqlens 512,1024,2048,4096,16384"
for ws in 0 1 3 4 4 3 1 0; do
  CANDLE_FA2_SM90_WS=$ws run ws$ws $F
done
for ws in 0 1; do CANDLE_FA2_SM90_WS=$ws run ws$ws ${F/bf16/fp16}; done
echo "bench done $(date +%s)" >> "$out/summary.txt"
PYTHONUNBUFFERED=1 timeout 200 python3 scripts/bench_torch_sdpa.py --modes fwd --dtypes bf16,fp16 --hdims 64,128,256 \
  --seqlens 512,1024,2048,4096,16384 --out "$out/bench.jsonl" > "$out/torch.txt" 2>&1; echo "torch rc $?" >> "$out/summary.txt"
python3 - "$out/bench.jsonl" > "$out/compare.txt" <<'PY'
import json, sys, collections
vals = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    if 'hdim' not in r: continue
    vals[((r['dtype'], r['hdim'], r['causal'], r['seqlen']), r['impl'])].append(r['tflops'])
impls = ['ws0', 'ws1', 'ws3', 'ws4']
others = sorted({i for (_, i) in vals if i not in impls})
print('dtype hdim causal seqlen |', ' '.join(impls), '|', ' '.join(others), '| ws1/ws0 ws3/ws1 ws4/ws1 best-ws/best-torch')
for k in sorted({k for (k, _) in vals}):
    m = {i: sum(v) / len(v) for (kk, i), v in vals.items() if kk == k}
    best = max([m[i] for i in others if i in m] or [0])
    ours = max([m[i] for i in impls[1:] if i in m] or [0])
    r = lambda a, b: '%.3f' % (m[a] / m[b]) if a in m and b in m else '-'
    print(*k, '|', ' '.join('%.0f' % m.get(i, 0) for i in impls), '|', ' '.join('%.0f' % m.get(i, 0) for i in others),
          '|', r('ws1', 'ws0'), r('ws3', 'ws1'), r('ws4', 'ws1'), '%.3f' % (ours / best) if best else '-')
PY
cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out"/tests-ws*.log; tail -n 3 "$out"/sanitizer-*.log; cat "$out/compare.txt"; tail -3 "$out/bench.err"
