#!/usr/bin/env bash
# Installs the CUDA 13.0 toolchain from PyPI into a git-ignored prefix (.cuda/), for machines without one.
# Idempotent: a second run with the same pins does nothing.
#
#   scripts/install_cuda.sh           compiler and headers: enough for `cargo check --features cuda`
#   scripts/install_cuda.sh --link    also the libraries and a libcuda link stub, to link test/bench binaries
#
# Then: source <(scripts/install_cuda.sh --env)   (prints the exports below: the toolkit for building, and
# LD_LIBRARY_PATH so that what was linked here runs, with the libcuda stub only where no driver is installed)
#
# Pins: the GPU host's driver serves CUDA 13.0 and JIT-compiles PTX only from nvcc 13.0, so every piece is
# 13.0.x. nvidia-nvvm is pinned explicitly: unpinned, pip pulls a newer one.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${CANDLE_FA2_CUDA_PREFIX:-$here/.cuda}
root=$prefix/root

if [ "${1:-}" = "--env" ]; then
  # Link time: the libraries and the libcuda stub. Run time: the libraries (binaries linked here need
  # libcudart.so.13 and cuBLAS); the stub only where no driver's libcuda.so.1 can be found, since ahead of a
  # real driver it would break CUDA.
  driver=no
  if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then driver=yes; fi
  IFS=: read -ra dirs <<< "${LD_LIBRARY_PATH:-}"
  for d in "${dirs[@]}"; do [ -n "$d" ] && [ -e "$d/libcuda.so.1" ] && [ "$d" != "$root/stubs" ] && driver=yes; done
  runtime=$root/lib64
  [ "$driver" = no ] && runtime=$runtime:$root/stubs
  echo "export CUDA_ROOT=$root CUDA_PATH=$root PATH=$root/bin:\$PATH" \
       "LIBRARY_PATH=$root/lib64:$root/stubs:\${LIBRARY_PATH:-} LD_LIBRARY_PATH=$runtime:\${LD_LIBRARY_PATH:-}" \
       "CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
  exit 0
fi

compile_pkgs="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85"
link_pkgs="nvidia-cublas==13.0.0.19 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88"

pip_install() { # $1: stamp name, rest: packages
  local stamp=$prefix/.$1.done; shift
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$*" ]; then return; fi
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$prefix/pypi" --upgrade $@
  echo "$*" > "$stamp"
}

mkdir -p "$prefix"
pip_install compile $compile_pkgs
[ "${1:-}" = "--link" ] && pip_install link $compile_pkgs $link_pkgs

cu=$prefix/pypi/nvidia/cu13
mkdir -p "$root/lib64"
for d in bin include nvvm; do ln -sfn "$cu/$d" "$root/$d"; done
for f in "$cu"/lib/*.so*; do ln -sf "$f" "$root/lib64/"; done
# Unversioned names for the linker.
for l in "$root"/lib64/lib*.so.[0-9]*; do
  base=${l%%.so.*}.so; [ -e "$base" ] || ln -sf "$(basename "$l")" "$base"
done

# libcuda does not come from PyPI; the real one is the driver's. A stub that exports every cu* entry point of
# cuda.h is enough to link, and lets binaries start on a machine without a driver (CPU runs). It lives apart
# in stubs/, like a toolkit's, so that lib64/ can be on the run-time path without shadowing a real driver.
rm -f "$root/lib64/libcuda.so" "$root/lib64/libcuda.so.1"  # where earlier versions of this script put it
if [ "${1:-}" = "--link" ] && [ ! -f "$root/stubs/libcuda.so" ]; then
  mkdir -p "$root/stubs"
  tmp=$(mktemp -d)
  gcc -E -I"$root/include" "$root/include/cuda.h" \
    | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u \
    | awk '{print "void " $1 "(void) {}"}' > "$tmp/stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/stubs/libcuda.so" "$tmp/stub.c"
  ln -sf libcuda.so "$root/stubs/libcuda.so.1"
  rm -rf "$tmp"
fi
"$root/bin/nvcc" --version | tail -2
