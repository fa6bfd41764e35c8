#!/usr/bin/env bash
# Persistent blocks for the warp-specialised forward (kernels/sm90/tile_schedule.cuh), first build: the test
# of several tiles per block, then forward TFLOP/s of three walks on one build
# (CANDLE_FA2_WS_PERSISTENT: 0 a block per tile as before, 2 persistent heads first, 1 persistent with
# causal calls heaviest first) in turn, around torch SDPA, bf16 and e4m3.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
{
  timeout 120 $b/gpu_forward persistent --nocapture; echo "gpu_forward persistent rc=$?"
} > "$out/tests-first.log" 2>&1
grep -q "persistent rc=0" "$out/tests-first.log" || exit 1
args="--modes fwd --seqlens 512,1024,2048,4096,16384 --hdims 64,128,256"
ours() {
  for w in 0 2 1; do
    CANDLE_FA2_WS_PERSISTENT=$w timeout 90 $b/gpu_attention $args --dtypes bf16 |
      sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"walk$w\"/" >> "$out/bench.jsonl"
  done
}
ours 2> "$out/bench.log"
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py $args --dtypes bf16 --out "$out/bench.jsonl" \
  >> "$out/bench.log" 2>&1
ours 2>> "$out/bench.log"
for w in 0 1 0 1; do
  CANDLE_FA2_WS_PERSISTENT=$w timeout 60 $b/gpu_attention --modes fwd --seqlens 512,2048,16384 --hdims 128,256 \
    --dtypes fp8 | sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"walk$w\"/" >> "$out/fp8.jsonl"
done 2>> "$out/bench.log"
echo done >> "$out/bench.log"
