#!/usr/bin/env bash
# Persistent forward, second build (persistent blocks where the static walk balances the call's tiles,
# else a block per tile): the test of several tiles per block with persistent blocks forced, then forward
# TFLOP/s of CANDLE_FA2_WS_PERSISTENT=0 (a block per tile, as before), the default and =1 (always
# persistent) in turn, around torch SDPA, bf16; e4m3 with 0 and the default.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
CANDLE_FA2_WS_PERSISTENT=1 timeout 120 $b/gpu_forward persistent > "$out/tests-first.log" 2>&1
echo "gpu_forward persistent (forced) rc=$?" >> "$out/tests-first.log"
grep -q "rc=0" "$out/tests-first.log" || exit 1
args="--modes fwd --seqlens 512,1024,2048,4096,8192,16384 --hdims 64,128,256"
ours() {
  for w in 0 auto 1; do
    CANDLE_FA2_WS_PERSISTENT=$w timeout 100 $b/gpu_attention $args --dtypes bf16 |
      sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"walk-$w\"/" >> "$out/bench.jsonl"
  done
}
ours 2> "$out/bench.log"
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py $args --dtypes bf16 --out "$out/bench.jsonl" \
  >> "$out/bench.log" 2>&1
ours 2>> "$out/bench.log"
for w in 0 auto 0 auto; do
  CANDLE_FA2_WS_PERSISTENT=$w timeout 60 $b/gpu_attention --modes fwd --seqlens 512,2048,16384 --hdims 128,256 \
    --dtypes fp8 | sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"walk-$w\"/" >> "$out/fp8.jsonl"
done 2>> "$out/bench.log"
echo done >> "$out/bench.log"
