#!/usr/bin/env bash
# Builds the GPU test and bench binaries (--features cuda) on a machine without a GPU and packs them,
# compressed, with scripts/gpu_run.sh into .gpu/ (git-ignored). Copy the repository with .gpu/ to a GPU host
# that has the NVIDIA driver and the CUDA 13 runtime libraries, then run `bash .gpu/run.sh all OUTDIR`.
# `CANDLE_FA2_PTX_ONLY=1 scripts/gpu_pack.sh` packs kernels of compute_80 PTX only (what Blackwell GPUs run), for
# `bash .gpu/run.sh ptx OUTDIR`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_cuda.sh --link >/dev/null
source <(scripts/install_cuda.sh --env)

# A target dir of its own: the CPU build in target/ keeps its artifacts (the feature sets differ).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/gpu}
pack=.gpu
# Only what this script makes is replaced: scripts/gpu_variants.sh keeps its variants.tar.xz here too.
rm -rf "$pack/bin" "$pack/bins.tar.xz" && mkdir -p "$pack/bin"
# Executables of every test target and of the benches, as cargo reports them.
list_executables() {
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    # What needs the GPU: the GPU suites, the unit tests of candle-fa2 (the params layout test calls the
    # kernels library), the GPU bench and the examples (of examples/, the crate candle-fa2-examples) named in
    # GPU_EXAMPLES. CPU-only suites stay home (CI runs them), the library tests of the examples crate among them;
    # each binary carries candle and the kernels, so the pack must stay small.
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    name, kind = m["target"]["name"], m["target"]["kind"]
    wanted = (name.startswith("gpu_") or ("lib" in kind and name == "candle_fa2")
              or ("example" in kind and name in sys.argv[1].split()))
    if wanted:
        print(name, m["executable"])' "$GPU_EXAMPLES"
}
# Examples worth running on the GPU host (end-to-end benchmarks); built with --features cuda too. All three
# commands build the workspace's default members (candle-fa2 and candle-fa2-examples, whose `cuda` feature
# forwards to candle-fa2's), so that they resolve one feature set and build candle once.
GPU_EXAMPLES=${GPU_EXAMPLES:-}
{
  cargo test --release --features cuda --no-run --message-format=json
  cargo bench --features cuda --no-run --message-format=json
  for ex in $GPU_EXAMPLES; do cargo build --release --features cuda --example "$ex" --message-format=json; done
} | list_executables | sort -u | while read -r name exe; do
  cp "$exe" "$pack/bin/$name"
  strip "$pack/bin/$name"
done
# The standalone sm_90a layout check (tests/cuda/wgmma_layout.cu): plain nvcc, no Rust.
nvcc -o "$pack/bin/wgmma_layout" tests/cuda/wgmma_layout.cu -I kernels -gencode=arch=compute_90a,code=sm_90a -std=c++17 -O2 \
  -cudart shared --cudadevrt none -L"$CUDA_ROOT/lib64" -L"$CUDA_ROOT/stubs"
# Every binary carries the same kernels (about 70 MB each): a dictionary larger than one binary lets xz
# store them once (12.6 MB instead of 64 for the six of 2026-11-30; the device takes 64 MiB in all).
tar -C "$pack" -cf - bin | xz -T1 --lzma2=preset=6,dict=192MiB > "$pack/bins.tar.xz"
rm -rf "$pack/bin"
cp scripts/gpu_run.sh "$pack/run.sh"
git rev-parse --short HEAD > "$pack/COMMIT" 2>/dev/null || echo unknown > "$pack/COMMIT"
# Which device code the kernels carry (build.rs), for run.sh's ptx mode.
case ${CANDLE_FA2_PTX_ONLY:-} in
  "" | 0) echo "${CANDLE_FA2_ARCHS:-sm_80,sm_90a,compute_80}" | tr , ' ' ;;
  *) echo "ptx-only compute_80" ;;
esac > "$pack/KERNELS"
du -sh "$pack"/*
