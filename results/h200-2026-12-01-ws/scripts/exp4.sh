#!/usr/bin/env bash
# The shipped build's speed: the bench part of run.sh all (forward bf16/fp16 and mma.sync, forward +
# backward at d64/d128 and mma.sync, memory, torch SDPA beside, compare.md / compare-mma.md / fwd.svg), plus
# the cp.async wgmma forward (CANDLE_FA2_NO_WS=1, tagged candle-fa2-nows) on the forward and forward +
# backward rows, for the version comparison.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
step() { local t=$1; shift; timeout "$t" "$@" 2>> "$out/bench.err"; echo "rc $? $(date +%s): $*" >> "$out/summary.txt"; }
tag() { sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"candle-fa2-$1\"/"; }
step 90 $b/gpu_attention --dtypes bf16,fp16 --out "$out/bench.jsonl" > /dev/null
CANDLE_FA2_NO_WS=1 step 90 $b/gpu_attention --dtypes bf16 | tag nows >> "$out/bench.jsonl"
CANDLE_FA2_NO_WGMMA=1 step 90 $b/gpu_attention --dtypes bf16,fp16 | tag mma >> "$out/bench.jsonl"
step 90 $b/gpu_attention --modes fwd_bwd --hdims 64,128 --out "$out/bench.jsonl" > /dev/null
CANDLE_FA2_NO_WS=1 step 90 $b/gpu_attention --modes fwd_bwd --hdims 64,128 | tag nows >> "$out/bench.jsonl"
CANDLE_FA2_NO_WGMMA=1 step 90 $b/gpu_attention --modes fwd_bwd --hdims 64,128 | tag mma >> "$out/bench.jsonl"
step 60 $b/gpu_attention --memory --out "$out/bench.jsonl" > /dev/null
export PYTHONUNBUFFERED=1
step 150 python3 scripts/bench_torch_sdpa.py --dtypes bf16,fp16 --out "$out/bench.jsonl" > /dev/null
step 120 python3 scripts/bench_torch_sdpa.py --modes fwd_bwd --hdims 64,128 --out "$out/bench.jsonl" > /dev/null
step 60 python3 scripts/bench_torch_sdpa.py --memory --out "$out/bench.jsonl" > /dev/null
python3 scripts/compare.py "$out/bench.jsonl" --markdown "$out/compare.md" --svg "$out/fwd.svg" > /dev/null
python3 scripts/compare.py "$out/bench.jsonl" --ours candle-fa2-mma --markdown "$out/compare-mma.md" > /dev/null
python3 scripts/compare.py "$out/bench.jsonl" --ours candle-fa2-nows --markdown "$out/compare-nows.md" > /dev/null
cat "$out/summary.txt"; cat "$out/compare.md"; tail -3 "$out/bench.err"
