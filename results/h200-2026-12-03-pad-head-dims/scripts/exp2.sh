#!/usr/bin/env bash
# Early refills with and without L1: an experiment build whose CANDLE_FA2_DECODE_VARIANT picks the kernel
# (bit 0: early refills, bit 1: K/V copies by cp.async.cg where the configuration copies through L1).
# The decode suite with variant 3; then the default decode rows in bf16 for variants 0 1 2 3 3 2 1 0,
# torch SDPA flash and cuDNN beside; serving mode (paged against contiguous) for each variant, 0 1 2 3 3 2 1 0.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$L/gpu.txt"
s=$(date +%s)
step() { echo "$1 rc=$2 $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack; }
CANDLE_FA2_DECODE_VARIANT=3 timeout 120 $b/gpu_decode > "$L/tests.log" 2>&1; step "decode suite, variant 3" $?
args="--modes decode --dtypes bf16"
for v in 0 1 2 3 3 2 1 0; do
  CANDLE_FA2_DECODE_VARIANT=$v timeout 90 $b/gpu_attention $args --out "$L/bench-v$v.jsonl" >> "$L/bench.log" 2>&1
  step "bench v$v" $?
done
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --backends flash,cudnn --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
step "torch" $?
python3 results/h200-2026-12-03-decode-balanced/scripts/ab_decode.py "$L" v1,v2,v3,v0 > "$L/ab.txt" 2>&1; pack
for v in 0 1 2 3 3 2 1 0; do
  CANDLE_FA2_DECODE_VARIANT=$v timeout 120 $b/gpu_attention --modes serving --out "$L/serving-v$v.jsonl" >> "$L/bench.log" 2>&1
  step "serving v$v" $?
done
cat "$L/summary.txt" "$L/ab.txt"
# Head dims between the Hopper kernels' on the next one up (CANDLE_FA2_SM90_PAD: bit 0 forward, bit 1
# backward): the forward and backward suites with both, then bf16 timings at d80/d96/d160/d192, forward 0 1 1 0
# and forward + backward 1 3 3 1, torch SDPA beside.
CANDLE_FA2_SM90_PAD=3 timeout 200 $b/gpu_forward > "$L/pad-tests.log" 2>&1; step "forward suite, pad 3" $?
CANDLE_FA2_SM90_PAD=3 timeout 200 $b/gpu_backward >> "$L/pad-tests.log" 2>&1; step "backward suite, pad 3" $?
pad="--dtypes bf16 --hdims 80,96,160,192 --seqlens 1024,4096,16384"
for v in 0 1 1 0; do
  CANDLE_FA2_SM90_PAD=$v timeout 90 $b/gpu_attention --modes fwd $pad | sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"pad$v\"/" >> "$L/pad.jsonl" 2>> "$L/bench.log"
  step "fwd pad $v" $?
done
for v in 1 3 3 1; do
  CANDLE_FA2_SM90_PAD=$v timeout 120 $b/gpu_attention --modes fwd_bwd $pad | sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"pad$v\"/" >> "$L/pad.jsonl" 2>> "$L/bench.log"
  step "fwd_bwd pad $v" $?
done
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py --modes fwd,fwd_bwd $pad --backends flash,cudnn --out "$L/pad.jsonl" >> "$L/bench.log" 2>&1
step "torch pad rows" $?
python3 - "$L/pad.jsonl" > "$L/pad.txt" <<'PY'
import json, sys, collections
r = collections.defaultdict(list)
for line in open(sys.argv[1]):
    try: j = json.loads(line)
    except ValueError: continue
    if "tflops" not in j: continue
    r[(j["mode"], j["hdim"], j["seqlen"], j["causal"], j["impl"])].append(j["tflops"])
keys = sorted({k[:4] for k in r})
for k in keys:
    v = {i: sum(x) / len(x) for (m, h, s, c, i), x in r.items() if (m, h, s, c) == k}
    print(k, " ".join(f"{i} {t:.0f}" for i, t in sorted(v.items())))
PY
cat "$L/pad.txt"; pack
