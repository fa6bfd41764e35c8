#!/usr/bin/env bash
# After the review's refactor (shared q/k tensor maps, operand views): the forward (FP8 on both paths) and
# backward suites.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
{
  timeout 60 $b/candle_fa2; echo "lib rc=$?"
  timeout 200 $b/gpu_forward; echo "gpu_forward rc=$?"
  CANDLE_FA2_NO_WGMMA=1 timeout 100 $b/gpu_forward fp8; echo "gpu_forward fp8 NO_WGMMA rc=$?"
  timeout 240 $b/gpu_backward; echo "gpu_backward rc=$?"
} > "$out/tests.log" 2>&1
