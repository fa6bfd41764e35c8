#!/usr/bin/env bash
# The commit's build (transformed logits at d256 back on the cp.async kernel, WS_TRANSFORM): the forward
# suite on both Hopper forwards, memcheck and racecheck on its small shapes, and softcap 30 at d128/d256
# with and without the warp-specialised kernel.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
timeout 120 $b/gpu_forward > "$out/tests.log" 2>&1; echo "gpu_forward rc $?" >> "$out/summary.txt"
CANDLE_FA2_NO_WS=1 timeout 120 $b/gpu_forward > "$out/tests-nows.log" 2>&1; echo "gpu_forward NO_WS rc $?" >> "$out/summary.txt"
timeout 150 bash .gpu/run.sh sanitize gpu_forward:sanitizer_shapes > "$out/sanitizer.log" 2>&1; echo "sanitize gpu_forward rc $?" >> "$out/summary.txt"
C="--modes fwd --dtypes bf16 --hdims 128,256 --seqlens 4096,16384 --softcap 30"
for pass in ws nows nows ws; do
  [ $pass = nows ] && export CANDLE_FA2_NO_WS=1
  timeout 100 $b/gpu_attention $C 2>> "$out/bench.err" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$pass/" >> "$out/bench.jsonl"
  unset CANDLE_FA2_NO_WS
done
python3 - "$out/bench.jsonl" > "$out/compare.txt" <<'PY'
import json, sys, collections
vals = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r = json.loads(l)
    vals[((r['hdim'], r['causal'], r['seqlen']), r['impl'].split('-')[0])].append(r['tflops'])
for k in sorted({k for (k, _) in vals}):
    w, n = vals[(k, 'ws')], vals[(k, 'nows')]
    print(*k, 'default', w, 'NO_WS', n, '%.3f' % (sum(w) / sum(n)))
PY
cat "$out/summary.txt"; grep -hE "^test result|FAILED|panicked" "$out"/tests*.log; grep -E "SUMMARY" "$out/sanitizer.log"; cat "$out/compare.txt"
