#!/usr/bin/env bash
# Three consumer warpgroups (192-row tiles) in the warp-specialised forward, first build (d64 on three,
# FA3's d64 tile), and per-head FP8 descales: the forward suite by default and with one block walking every
# tile, the persistent test forced, memcheck and racecheck of the small shapes; then forward TFLOP/s of the
# default and of CANDLE_FA2_EXP_WS=1 (d64 on two consumers as before, d128 on three with 64-key blocks),
# twice around torch SDPA, bf16; e4m3 d128 / d256 once.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
timeout 150 $b/gpu_forward > "$out/gpu_forward.log" 2>&1; echo "gpu_forward rc=$?" >> "$out/gpu_forward.log"
{ CANDLE_FA2_WS_PERSISTENT=1 timeout 60 $b/gpu_forward persistent; echo "persistent forced rc=$?"
  CANDLE_FA2_EXP_WS=1 timeout 60 $b/gpu_forward persistent sanitizer; echo "exp persistent sanitizer rc=$?"
  timeout 30 $b/candle_fa2; echo "lib rc=$?"; } > "$out/tests-more.log" 2>&1
grep -q "gpu_forward rc=0" "$out/gpu_forward.log" || exit 1
args="--modes fwd --seqlens 512,1024,2048,4096,8192,16384 --hdims 64,128"
ours() {
  for e in 0 1; do
    CANDLE_FA2_EXP_WS=$e timeout 100 $b/gpu_attention $args --dtypes bf16 |
      sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"exp$e\"/" >> "$out/bench.jsonl"
  done
}
ours 2> "$out/bench.log"
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py $args --dtypes bf16 --out "$out/bench.jsonl" \
  >> "$out/bench.log" 2>&1
ours 2>> "$out/bench.log"
timeout 60 $b/gpu_attention --modes fwd --seqlens 512,2048,16384 --hdims 128,256 --dtypes fp8 \
  >> "$out/fp8.jsonl" 2>> "$out/bench.log"
echo "bench done" >> "$out/bench.log"
CANDLE_FA2_FWD_BLOCKS=1 timeout 120 $b/gpu_forward > "$out/gpu_forward-1block.log" 2>&1
echo "gpu_forward FWD_BLOCKS=1 rc=$?" >> "$out/gpu_forward-1block.log"
for tool in memcheck racecheck; do
  timeout 60 $san --tool $tool --error-exitcode 9 $b/gpu_forward sanitizer_shapes --test-threads=1 \
    > "$out/$tool.log" 2>&1; echo "$tool rc=$?" >> "$out/$tool.log"
done
