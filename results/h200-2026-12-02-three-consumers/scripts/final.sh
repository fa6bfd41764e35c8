#!/usr/bin/env bash
# Three consumers at d64, final build (two for causal / windowed calls below 4096 queries): the forward suite
# by default and with one block walking every tile, the persistent test forced, the library and backward
# suites, memcheck and racecheck of the forward's small shapes (default walk; racecheck also with 2 blocks,
# which timed out before); then the forward beside torch SDPA (bf16, d64 / d128 / d256, ours twice around
# torch) and e4m3. Each step's log as it ends.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
timeout 150 $b/gpu_forward > "$out/gpu_forward.log" 2>&1; echo "gpu_forward rc=$?" >> "$out/gpu_forward.log"
CANDLE_FA2_WS_PERSISTENT=1 timeout 60 $b/gpu_forward persistent > "$out/persistent-forced.log" 2>&1
echo "persistent forced rc=$?" >> "$out/persistent-forced.log"
grep -q "gpu_forward rc=0" "$out/gpu_forward.log" || exit 1
args="--modes fwd --seqlens 512,1024,2048,4096,8192,16384 --hdims 64,128,256"
timeout 120 $b/gpu_attention $args --dtypes bf16 > "$out/ours1.jsonl" 2> "$out/bench.log"
PYTHONUNBUFFERED=1 timeout 200 python3 scripts/bench_torch_sdpa.py $args --dtypes bf16 --out "$out/torch.jsonl" \
  >> "$out/bench.log" 2>&1
timeout 120 $b/gpu_attention $args --dtypes bf16 > "$out/ours2.jsonl" 2>> "$out/bench.log"
timeout 60 $b/gpu_attention --modes fwd --seqlens 512,2048,16384 --hdims 128,256 --dtypes fp8 \
  > "$out/fp8.jsonl" 2>> "$out/bench.log"
echo "bench done" >> "$out/bench.log"
CANDLE_FA2_FWD_BLOCKS=1 timeout 120 $b/gpu_forward > "$out/gpu_forward-1block.log" 2>&1
echo "gpu_forward FWD_BLOCKS=1 rc=$?" >> "$out/gpu_forward-1block.log"
{ timeout 30 $b/candle_fa2; echo "lib rc=$?"; timeout 150 $b/gpu_backward; echo "gpu_backward rc=$?"; } \
  > "$out/rest.log" 2>&1
for tool in memcheck racecheck; do
  timeout 90 $san --tool $tool --error-exitcode 9 $b/gpu_forward sanitizer_shapes --test-threads=1 \
    > "$out/$tool.log" 2>&1; echo "$tool rc=$?" >> "$out/$tool.log"
done
CANDLE_FA2_FWD_BLOCKS=2 timeout 120 $san --tool racecheck --error-exitcode 9 $b/gpu_forward sanitizer_shapes \
  --test-threads=1 > "$out/racecheck-2blocks.log" 2>&1; echo "racecheck-2blocks rc=$?" >> "$out/racecheck-2blocks.log"
