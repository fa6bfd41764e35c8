#!/usr/bin/env bash
# Builds the GPU bench binary once per set of extra nvcc flags, so several kernel variants are timed side by
# side in one call on the GPU host. A variant is a -D switch: wrap the tile parameter under test in
# a tile table (kernels/sm80/*_tiles.cuh, kernels/sm90/*_tiles.cuh, kernels/sm80/decode_configs.cuh) in
# `#ifndef NAME / #define NAME default`, measure, then bake the winner in.
#
#   scripts/gpu_variants.sh NAME="-DFOO=1 -DBAR=2" NAME2="..."    (here: builds into .gpu/variants.tar.xz)
#   bash .gpu/run.sh variants OUTDIR [BENCH ARGS]                   (there: runs every variant's bench)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_cuda.sh --link >/dev/null
source <(scripts/install_cuda.sh --env)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/gpu}
dir=.gpu/variants
rm -rf "$dir" && mkdir -p "$dir"
for spec in "$@"; do
  name=${spec%%=*}
  flags=${spec#*=}
  echo "== $name: $flags"
  exe=$(CANDLE_FA2_NVCC_FLAGS="$flags" cargo bench --features cuda --bench gpu_attention --no-run \
          --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"): print(m["executable"])')
  cp "$exe" "$dir/$name" && strip "$dir/$name"
  echo "$flags" > "$dir/$name.flags"
done
tar -C .gpu -cf - variants | xz -T0 -6 > .gpu/variants.tar.xz
rm -rf "$dir"
du -sh .gpu/variants.tar.xz
