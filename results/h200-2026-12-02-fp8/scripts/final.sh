#!/usr/bin/env bash
# The shipped FP8 forward (f32 exps, 128-key blocks; head dims up to 64 widened to bf16): every GPU suite
# (with CANDLE_FA2_NO_WGMMA=1 the FP8 tests once more, on the widening path), compute-sanitizer memcheck
# and racecheck of the forward's small shapes (FP8 among them), then e4m3 forward TFLOP/s beside our bf16
# and torch SDPA's bf16 in one call, ours before and after torch.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
{
  timeout 60 $b/candle_fa2; echo "lib rc=$?"
  timeout 60 $b/wgmma_layout; echo "wgmma_layout rc=$?"
  timeout 150 $b/gpu_forward fp8 --nocapture; echo "gpu_forward fp8 rc=$?"
  timeout 200 $b/gpu_forward --skip fp8; echo "gpu_forward rc=$?"
  CANDLE_FA2_NO_WGMMA=1 timeout 100 $b/gpu_forward fp8 --nocapture; echo "gpu_forward fp8 NO_WGMMA rc=$?"
  for s in gpu_backward gpu_decode gpu_ragged; do timeout 240 $b/$s; echo "$s rc=$?"; done
} > "$out/tests.log" 2>&1
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  timeout 200 $san --tool $tool --error-exitcode 9 $b/gpu_forward sanitizer_shapes --test-threads=1 \
    > "$out/$tool.log" 2>&1; echo "$tool rc=$?" >> "$out/$tool.log"
done
args="--modes fwd --seqlens 512,2048,8192,16384 --hdims 64,128,256"
ours() { for dt in fp8 bf16; do timeout 80 $b/gpu_attention $args --dtypes $dt --out "$out/bench.jsonl"; done; }
ours > "$out/bench.log" 2>&1
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py $args --dtypes bf16 --out "$out/bench.jsonl" \
  >> "$out/bench.log" 2>&1
ours >> "$out/bench.log" 2>&1
