#!/usr/bin/env bash
# The widening path of the FP8 forward without its output pass (v takes its descale as it widens) and
# with a contiguous fast path in the e4m3 conversion: the FP8 tests on both paths, the conversion test,
# then e4m3 (widened at d64, the kernel at d128) beside bf16, ours only, in one call.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
{
  timeout 150 $b/gpu_forward fp8 --nocapture; echo "gpu_forward fp8 rc=$?"
  CANDLE_FA2_NO_WGMMA=1 timeout 100 $b/gpu_forward fp8 --nocapture; echo "gpu_forward fp8 NO_WGMMA rc=$?"
} > "$out/tests.log" 2>&1
args="--modes fwd --seqlens 512,2048,8192,16384 --hdims 64,128"
for dt in fp8 bf16 fp8; do timeout 80 $b/gpu_attention $args --dtypes $dt --out "$out/bench.jsonl" >> "$out/bench.log" 2>&1; done
