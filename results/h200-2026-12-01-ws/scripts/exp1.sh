#!/usr/bin/env bash
# Warp-specialised TMA forward (sm90/flash_fwd_sm90_ws.cuh), first build: the forward suite on it (default),
# without ping-pong (CANDLE_FA2_SM90_WS=2) and on the cp.async wgmma kernel (=0); memcheck and racecheck on
# the suite's small shapes; then the forward bench, the three kernels in the order 0 1 2 2 1 0, and torch
# SDPA (flash, cuDNN) on the same rows.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
for ws in 1 2 0; do
  CANDLE_FA2_SM90_WS=$ws timeout 150 $b/gpu_forward > "$out/tests-ws$ws.log" 2>&1; echo "gpu_forward ws=$ws rc $?" >> "$out/summary.txt"
done
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck; do
  timeout 150 "$san" --tool $tool --error-exitcode 9 $b/gpu_forward sanitizer_shapes --test-threads=1 > "$out/sanitizer-$tool.log" 2>&1
  echo "sanitizer $tool rc $?" >> "$out/summary.txt"
done
cat "$out/summary.txt"
run() {  # run TAG ARGS...: the bench, its lines tagged
  local tag=$1; shift
  timeout 120 $b/gpu_attention "$@" 2>> "$out/bench.err" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$tag/" >> "$out/bench.jsonl"
}
F="--modes fwd --dtypes bf16 --hdims 64,128,256 --seqlens 512,1024,2048,4096,16384"
for ws in 0 1 2 2 1 0; do
  CANDLE_FA2_SM90_WS=$ws run ws$ws $F
  echo "ws=$ws done $(date +%s)" >> "$out/summary.txt"
done
PYTHONUNBUFFERED=1 timeout 200 python3 scripts/bench_torch_sdpa.py --modes fwd --dtypes bf16 --hdims 64,128,256 \
  --seqlens 512,1024,2048,4096,16384 --out "$out/bench.jsonl" > "$out/torch.txt" 2>&1; echo "torch rc $?" >> "$out/summary.txt"
python3 - "$out/bench.jsonl" > "$out/compare.txt" <<'PY'
import json, sys, collections
vals = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    vals[((r['hdim'], r['causal'], r['seqlen']), r['impl'])].append(r['tflops'])
impls = ['ws0', 'ws1', 'ws2']
others = sorted({i for (_, i) in vals if i not in impls})
print('hdim causal seqlen |', ' '.join(impls), '|', ' '.join(others), '| ws1/ws0 ws2/ws0 ws1/best-torch')
for k in sorted({k for (k, _) in vals}):
    m = {i: sum(v) / len(v) for (kk, i), v in vals.items() if kk == k}
    best = max([m[i] for i in others if i in m] or [0])
    r = lambda a, b: '%.3f' % (m[a] / m[b]) if a in m and b in m else '-'
    print(*k, '|', ' '.join('%.0f' % m.get(i, 0) for i in impls), '|', ' '.join('%.0f' % m.get(i, 0) for i in others),
          '|', r('ws1', 'ws0'), r('ws2', 'ws0'), '%.3f' % (m.get('ws1', 0) / best) if best else '-')
PY
cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out"/tests-ws*.log; tail -n 4 "$out"/sanitizer-*.log; cat "$out/compare.txt"; tail -3 "$out/bench.err"
