#!/usr/bin/env bash
# FP8 tile variants (scripts/gpu_variants.sh, -D switches of kernels/sm90/fwd_fp8.cuh's table): key blocks of
# 128 / 192 / 224 at d128, two or three stages, e4m3 forward TFLOP/s, each variant's bench in turn, twice.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
args="--modes fwd --dtypes fp8 --seqlens 1024,4096,16384 --hdims 128,256"
for rep in 1 2; do timeout 200 bash .gpu/run.sh variants "$out" $args > "$out/variants-$rep.log" 2>&1; done
