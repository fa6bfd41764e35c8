#!/usr/bin/env bash
# The committed build (row statistics and gradient stores as shared functions, the same registers per
# kernel): backward and ragged suites, memcheck and racecheck of the backward's small shapes, and ours at
# d64/d128/d256 bf16 forward + backward (the refactor touches every Hopper backward).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
for t in gpu_backward gpu_ragged; do
  timeout 150 $b/$t > "$out/$t.log" 2>&1; echo "$t rc=$?" >> "$out/$t.log"
done
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  timeout 170 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$out/$tool.log" 2>&1; echo "$tool rc=$?" >> "$out/$tool.log"
done
timeout 90 $b/gpu_attention --modes fwd_bwd --dtypes bf16 --hdims 64,128,256 --seqlens 2048,8192 \
  --out "$out/bench.jsonl" > /dev/null 2>&1
