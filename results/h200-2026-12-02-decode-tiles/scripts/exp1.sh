#!/usr/bin/env bash
# Decode tile variants at d64 and d256 (FA2_DECODE_VARIANT, an experiment build): GB/s on the rows where the
# decode trails torch, every variant twice in the order 0..6 6..0, forced split counts at d64, torch beside.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
run() {  # run TAG ARGS...: the bench, its lines tagged
  local tag=$1; shift
  timeout 60 $b/gpu_attention "$@" 2>> "$out/bench.err" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$tag/" >> "$out/bench.jsonl"
}
R256="--modes decode --dtypes bf16 --decode-rows 1x65536x1x256,8x8192x1x256,16x32768x1x256"
R64="--modes decode --dtypes bf16 --decode-rows 1x65536x1x64,8x8192x1x64,16x32768x1x64"
for v in 0 1 2 3 4 5 6 6 5 4 3 2 1 0; do
  FA2_DECODE_VARIANT=$v run v$v $R256
  FA2_DECODE_VARIANT=$v run v$v $R64
  echo "v$v $(date +%s)" >> "$out/summary.txt"
done
for s in 8 16 24 32 48 64 96 128; do
  run s$s --num-splits $s $R64
  FA2_DECODE_VARIANT=2 run v2s$s --num-splits $s $R256
done
echo "splits $(date +%s)" >> "$out/summary.txt"
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py --modes decode --dtypes bf16 --hdims 64,256 \
  --out "$out/bench.jsonl" > "$out/torch.txt" 2>&1; echo "torch rc $?" >> "$out/summary.txt"
