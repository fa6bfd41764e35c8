#!/usr/bin/env bash
# d256 paired backward, 32-wide streamed tiles in three stages (the scores issued first, the gradients of
# the step before running under the exchange; the pack built with FA2_BWD_D256_BLOCK_C=32) against 64-wide
# in two (the variant binary c64), alternated twice; softcap 30 on both; then the backward suite, memcheck
# and racecheck on the 32-wide build.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
rm -rf /tmp/v && mkdir -p /tmp/v && xz -dc .gpu/variants.tar.xz | tar -C /tmp/v -xf -
A="--modes fwd_bwd --dtypes bf16 --hdims 256 --seqlens 512,2048,8192,16384"
S="--modes fwd_bwd --dtypes bf16 --hdims 256 --seqlens 2048,8192 --softcap 30"
for rep in 1 2; do
  for args in "$A" "$S"; do
    timeout 60 $b/gpu_attention $args 2>> "$out/bench.err" | sed 's/"impl": "candle-fa2/"impl": "c32/' >> "$out/bench.jsonl"
    timeout 60 /tmp/v/variants/c64 $args 2>> "$out/bench.err" | sed 's/"impl": "candle-fa2/"impl": "c64/' >> "$out/bench.jsonl"
  done
done
timeout 150 $b/gpu_backward > "$out/tests.log" 2>&1; echo "gpu_backward rc=$?" >> "$out/tests.log"
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  timeout 170 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$out/$tool.log" 2>&1; echo "$tool rc=$?" >> "$out/$tool.log"
done
