#!/usr/bin/env bash
# Installs a CUDA toolchain from package registries into a git-ignored prefix, for machines without one.
# Idempotent: a second run with the same pins does nothing.
#
#   scripts/install_cuda.sh            CUDA 13.0's compiler and headers into .cuda/: enough for
#                                      `cargo check --features cuda`
#   scripts/install_cuda.sh --link     also the libraries and a libcuda link stub, to link test/bench binaries
#   scripts/install_cuda.sh --cuda 12  CUDA 12.4's compiler and headers into .cuda-12/ (compile only), to check
#                                      that the kernels still build with a CUDA 12 toolkit
#                                      (scripts/check_toolkit.sh .cuda-12/root)
#
# Then: source <(scripts/install_cuda.sh --env)   (prints the exports below: the toolkit for building, and
# LD_LIBRARY_PATH so that what was linked here runs, with the libcuda stub only where no driver is installed);
# `--cuda 12 --env` prints the CUDA 12 toolkit's.
#
# Pins: the GPU host's driver serves CUDA 13.0 and JIT-compiles PTX only from nvcc 13.0, so every piece is
# 13.0.x. nvidia-nvvm is pinned explicitly: unpinned, pip pulls a newer one.
#
# CUDA 12 has no nvcc on PyPI: nvidia-cuda-nvcc-cu12 holds only ptxas, libnvvm and the crt headers. The
# compiler driver and its passes (nvcc, cicc, cudafe++, fatbinary, nvlink; cuobjdump too) come from Debian 13's
# nvidia-cuda-toolkit 12.4.131 (non-free), downloaded with apt under the prefix (the system's apt sources and
# packages are left alone) and unpacked there; the headers from PyPI's cu12 wheels of the same release.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mode=compile cuda=13
while [ $# -gt 0 ]; do
  case $1 in
    --env) mode=env ;;
    --link) mode=link ;;
    --cuda) cuda=${2:?--cuda takes 12 or 13}; shift ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
  shift
done
case $cuda in
  13) prefix=${CANDLE_FA2_CUDA_PREFIX:-$here/.cuda} ;;
  12) prefix=${CANDLE_FA2_CUDA12_PREFIX:-$here/.cuda-12} ;;
  *) echo "install_cuda.sh: --cuda $cuda: 12 or 13" >&2; exit 2 ;;
esac
root=$prefix/root

if [ "$mode" = env ] && [ "$cuda" = 12 ]; then
  echo "export CUDA_ROOT=$root CUDA_PATH=$root PATH=$root/bin:\$PATH CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
  exit 0
fi
if [ "$mode" = env ]; then
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

pip_install() { # $1: stamp name, rest: packages
  local stamp=$prefix/.$1.done; shift
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$*" ]; then return; fi
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$prefix/pypi" --upgrade $@
  echo "$*" > "$stamp"
}

if [ "$cuda" = 12 ]; then
  [ "$mode" = link ] && { echo "install_cuda.sh: --cuda 12 installs the compiler only (no --link)" >&2; exit 2; }
  mkdir -p "$prefix"
  pip_install compile nvidia-cuda-nvcc-cu12==12.4.131 nvidia-cuda-runtime-cu12==12.4.127 \
    nvidia-cuda-cccl-cu12==12.4.127.post1
  deb=nvidia-cuda-toolkit=12.4.131~12.4.1-2
  stamp=$prefix/.deb.done
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$deb" ]; then
    # apt with its own state under the prefix: Debian 13's non-free list, read only by these two commands.
    apt=$prefix/apt
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie non-free" \
      > "$apt/sources.list"
    opts=(-o Dir::Etc::sourcelist="$apt/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$apt/lists"
          -o Dir::Cache="$apt/cache" -o Dir::State::status=/dev/null -o APT::Sandbox::User="$(id -un)")
    apt-get "${opts[@]}" -qq update
    (cd "$apt/debs" && rm -f ./*.deb && apt-get "${opts[@]}" -qq download "$deb")
    rm -rf "$prefix/deb" && dpkg-deb -x "$apt/debs"/nvidia-cuda-toolkit_*.deb "$prefix/deb"
    rm -rf "$apt/debs" "$apt/cache"
    echo "$deb" > "$stamp"
  fi
  # A toolkit's layout: the Debian binaries in bin/ and nvvm/bin/ (copied: nvcc reads nvcc.profile beside
  # its own file), every header in include/, libdevice in nvvm/.
  rm -rf "$root" && mkdir -p "$root/bin" "$root/nvvm/bin" "$root/include"
  tk=$prefix/deb/usr/lib/nvidia-cuda-toolkit
  cp -a "$tk/bin/nvcc" "$tk/bin/crt" "$root/bin/"
  for b in cudafe++ fatbinary nvlink bin2c ptxas cuobjdump nvdisasm nvprune; do cp -a "$prefix/deb/usr/bin/$b" "$root/bin/"; done
  cp -a "$tk/bin/cicc" "$root/nvvm/bin/"
  cp -a "$tk/libdevice" "$root/nvvm/"
  for d in cuda_runtime cuda_cccl cuda_nvcc; do
    for f in "$prefix/pypi/nvidia/$d/include"/*; do
      case $(basename "$f") in __init__.py | __pycache__) ;; *) ln -sfn "$f" "$root/include/" ;; esac
    done
  done
  cat > "$root/bin/nvcc.profile" <<'PROFILE'
TOP              = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH            += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES        +=  "-I$(TOP)/include" $(_SPACE_)
PROFILE
  "$root/bin/nvcc" --version | tail -2
  exit 0
fi

compile_pkgs="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85"
link_pkgs="nvidia-cublas==13.0.0.19 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88"

mkdir -p "$prefix"
pip_install compile $compile_pkgs
[ "$mode" = link ] && pip_install link $compile_pkgs $link_pkgs

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
if [ "$mode" = link ] && [ ! -f "$root/stubs/libcuda.so" ]; then
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
