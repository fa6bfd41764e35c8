#!/usr/bin/env bash
# Compiles every kernel unit (kernels/**/*.cu) on its own with one toolkit's nvcc and the flags build.rs
# passes, and reports which compile: a check of a toolkit other than the one CI builds with (CUDA 13.0),
# without cargo. Not in CI: all 43 units took 43 minutes with CUDA 12.4 on 2 busy cores (2026-11-30).
#
#   scripts/check_toolkit.sh CUDA_ROOT [--ptx-only] [-j N] [UNIT.cu ...]
#
#   scripts/install_cuda.sh --cuda 12 && scripts/check_toolkit.sh .cuda-12/root     (CUDA 12.4)
#   scripts/check_toolkit.sh .cuda/root --ptx-only                                  (CANDLE_FA2_PTX_ONLY's flags)
#
# One line per unit (PASS or FAIL, seconds), the first error lines of each failure, then "N passed, N failed".
# Objects and full logs: target/check-toolkit/<nvcc release>[-ptx]/. Exit status 1 when a unit fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: scripts/check_toolkit.sh CUDA_ROOT [--ptx-only] [-j N] [UNIT.cu ...]}
shift
nvcc=$root/bin/nvcc
[ -x "$nvcc" ] || { echo "check_toolkit.sh: no nvcc at $nvcc" >&2; exit 2; }
ptx_only=no jobs=$(nproc) units=()
while [ $# -gt 0 ]; do
  case $1 in
    --ptx-only) ptx_only=yes ;;
    -j) jobs=${2:?-j takes a number}; shift ;;
    *) units+=("$1") ;;
  esac
  shift
done
[ ${#units[@]} -eq 0 ] && mapfile -t units < <(find kernels -name '*.cu' | sort)

# The flags of build.rs (cuda::build: targets, then common flags); keep the two in step.
if [ "$ptx_only" = yes ]; then
  targets=(-gencode=arch=compute_80,code=compute_80)
else
  targets=(-gencode=arch=compute_80,code=[sm_80,compute_80] -gencode=arch=compute_90a,code=sm_90a -DCANDLE_FA2_HAS_SM90A)
fi
flags=(--default-stream per-thread -std=c++17 -O3 --use_fast_math "-I$PWD/kernels" -Xcompiler -fPIC)

release=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
out=target/check-toolkit/cuda-$release
[ "$ptx_only" = yes ] && out=$out-ptx
mkdir -p "$out"
echo "nvcc $release ($nvcc), ${#units[@]} units, $jobs at a time, objects and logs in $out/"
export nvcc out
compile() { # $1: unit; writes $out/<name>.log and prints its result line
  local name t0 status
  name=$(echo "${1#kernels/}" | tr / _)
  name=${name%.cu}
  t0=$(date +%s)
  if "$nvcc" -c -o "$out/$name.o" "$@" > "$out/$name.log" 2>&1; then status=PASS; else status=FAIL; fi
  printf '%s %-28s %4d s\n' "$status" "${1#kernels/}" $(( $(date +%s) - t0 ))
}
export -f compile
printf '%s\n' "${units[@]}" |
  xargs -P "$jobs" -I{} bash -c 'compile "$@"' _ {} "${targets[@]}" "${flags[@]}" | tee "$out/results.txt"

passed=$(grep -c '^PASS' "$out/results.txt" || true)
failed=$(grep -c '^FAIL' "$out/results.txt" || true)
for unit in $(awk '$1 == "FAIL" {print $2}' "$out/results.txt"); do
  name=$(echo "$unit" | tr / _)
  echo "== $unit"
  grep -m 8 -E 'error|fatal' "$out/${name%.cu}.log" || head -n 8 "$out/${name%.cu}.log"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
