#!/usr/bin/env bash
# Runs the binaries packed by scripts/gpu_pack.sh on a GPU host (driver + CUDA 13 runtime libraries).
#
#   bash .gpu/run.sh test [FILTER]     the test binaries (GPU suites, unit tests, tests/cuda/wgmma_layout.cu)
#   bash .gpu/run.sh sanitize          compute-sanitizer memcheck and racecheck on the small-shape test
#   bash .gpu/run.sh bench [ARGS]      benches/gpu_attention.rs with ARGS
#   bash .gpu/run.sh e2e OUTDIR        the packed examples (GPU_EXAMPLES="llama_bench train_gpt gpt2" gpu_pack.sh)
#   bash .gpu/run.sh variants OUTDIR [ARGS]  every variant built by scripts/gpu_variants.sh, bench ARGS each
#   bash .gpu/run.sh fwd OUTDIR [ARGS] forward tests on both Hopper paths (wgmma, mma.sync), sanitizer, bench
#                                      ARGS of both paths and of torch SDPA, comparison
#   bash .gpu/run.sh bwd OUTDIR [ARGS] the same for the backward (forward + backward TFLOP/s)
#   bash .gpu/run.sh onepass OUTDIR [ARGS]  the one-pass Hopper backward (CANDLE_FA2_BWD_ONE_PASS=1): a smoke
#                                      test, backward and ragged suites, forward + backward beside the two
#                                      passes and torch SDPA, sanitizer
#   bash .gpu/run.sh decode OUTDIR     the decode suite, its sanitizer run, the decode bench (ours, the prefill
#                                      kernel on the same rows, torch SDPA), the table and plot
#   bash .gpu/run.sh serving OUTDIR    the varlen/paged suite, every other suite, the sanitizer on all small shapes
#   bash .gpu/run.sh serving-bench OUTDIR  varlen vs dense prefill, paged vs contiguous decode, fwd/decode vs torch
#   bash .gpu/run.sh all OUTDIR        tests, sanitizer, our bench and torch SDPA's (forward and forward +
#                                      backward, bf16 and fp16, every head dim; the mma.sync path beside at
#                                      the forward and at forward + backward d64/d128), then the comparison
#   bash .gpu/run.sh jit OUTDIR        wall time of the forward suite's small shapes with an empty JIT cache,
#                                      then with the one that run filled (either pack)
#   bash .gpu/run.sh ptx OUTDIR        a PTX-only pack (CANDLE_FA2_PTX_ONLY=1 gpu_pack.sh, what Blackwell GPUs
#                                      run, JIT-compiled here): jit, then every suite, also with 99 KB of smem
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bins=${FA2_BIN_DIR:-/tmp/candle-fa2-bin}
if [ -f "$here/bins.tar.xz" ] && { [ ! -d "$bins/bin" ] || [ "$here/bins.tar.xz" -nt "$bins/bin" ]; }; then
  rm -rf "$bins" && mkdir -p "$bins" && xz -dc "$here/bins.tar.xz" | tar -C "$bins" -xf -
fi
# Standard places of the CUDA runtime libraries and of the driver's libcuda.
for d in /usr/local/cuda/lib64 /usr/local/cuda-13.0/targets/x86_64-linux/lib /usr/local/cuda/targets/x86_64-linux/lib \
         /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
export LD_LIBRARY_PATH
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)

run_tests() {
  local status=0
  for t in "$bins"/bin/*; do
    case $(basename "$t") in gpu_attention) continue ;; gpu_* | candle_fa2 | wgmma_layout) ;; *) continue ;; esac
    echo "== $(basename "$t")"
    "$t" "$@" || status=1
  done
  return $status
}

# sanitize [SUITE:FILTER ...]: memcheck and racecheck on each suite's small-shape test (default: all three);
# every failure counts; SANITIZE_LIMIT=SECONDS limits each run (default: none). Under memcheck the Hopper
# forward's persistent blocks are capped at 2, so that the small shapes hand tiles over within a block;
# racecheck keeps the default walk (one tile per block on these shapes): with 2 blocks it ran past 90 s
# without a report on 2026-12-02 (BENCHMARKS.md, "Persistent forward"; 11 s with the default walk).
sanitize() {
  local status=0 suites=("$@")
  [ $# -eq 0 ] && suites=(gpu_forward:sanitizer_shapes gpu_backward:grad_sanitizer_shapes gpu_decode:decode_sanitizer_shapes)
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool"
    for s in "${suites[@]}"; do
      local blocks=${CANDLE_FA2_FWD_BLOCKS:-}
      [ "$tool" = memcheck ] && blocks=${blocks:-2}
      CANDLE_FA2_FWD_BLOCKS=$blocks \
        timeout "${SANITIZE_LIMIT:-0}" "$sanitizer" --tool "$tool" --error-exitcode 9 "$bins/bin/${s%%:*}" "${s#*:}" \
        --test-threads=1 || status=1
    done
  done
  return $status
}

# The forward and backward suites on the mma.sync kernels with the shared memory of a GPU that gives a block
# 99 KB (sm_86/89/120): the tiles that fall back there (run_fwd.cuh, run_bwd.cuh) run on this GPU.
small_smem_tests() {
  local status=0
  for t in gpu_forward gpu_backward; do
    echo "== $t (CANDLE_FA2_MAX_SMEM=101376, mma.sync)"
    CANDLE_FA2_MAX_SMEM=101376 CANDLE_FA2_NO_WGMMA=1 "$bins/bin/$t" || status=1
  done
  return $status
}

# The forward suite with one persistent block walking every tile of a Hopper forward call
# (kernels/sm90/tile_schedule.cuh), and its test of several tiles per block with persistent blocks forced.
one_block_forward() {
  echo "== gpu_forward (CANDLE_FA2_FWD_BLOCKS=1)"
  CANDLE_FA2_FWD_BLOCKS=1 "$bins/bin/gpu_forward" || return 1
  echo "== gpu_forward persistent (CANDLE_FA2_WS_PERSISTENT=1)"
  CANDLE_FA2_WS_PERSISTENT=1 "$bins/bin/gpu_forward" persistent
}

# The bench on the mma.sync kernels (what an A100 runs) on a Hopper GPU, its lines tagged candle-fa2-mma.
bench_mma() {
  CANDLE_FA2_NO_WGMMA=1 "$bins/bin/gpu_attention" "$@" | sed 's/"impl": "candle-fa2"/"impl": "candle-fa2-mma"/'
}

# The first-use cost of JIT-compiled PTX: the forward suite's small shapes in a fresh process with an empty JIT
# cache (CUDA_CACHE_PATH=OUTDIR/jit-cache), then again with the cache that run filled; the difference is the JIT
# time of the kernels the run loads, candle's own (PTX in every build) and ours (PTX-only packs). Run on both
# packs to tell the two apart. Leaves CUDA_CACHE_PATH exported, filled.
jit_times() {
  local out=$1 run t0 status=0
  # A cache larger than the driver's default (1 GiB; 256 MiB on older drivers), so the first run's kernels stay.
  export CUDA_CACHE_PATH=$out/jit-cache CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-4294967296}
  rm -rf "$CUDA_CACHE_PATH" && mkdir -p "$CUDA_CACHE_PATH"
  echo "kernels: $(cat "$here/KERNELS" 2>/dev/null || echo unknown)" | tee "$out/jit.txt"
  for run in empty filled; do
    t0=$(date +%s%N)
    "$bins/bin/gpu_forward" sanitizer_shapes --test-threads=1 > "$out/jit-$run.log" 2>&1 || status=1
    echo "gpu_forward sanitizer_shapes, $run JIT cache: $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$out/jit.txt"
  done
  du -sh "$CUDA_CACHE_PATH" | tee -a "$out/jit.txt"
  return $status
}

case "${1:-all}" in
  test) shift; run_tests "$@" ;;
  sanitize) sanitize ;;
  bench) shift; "$bins/bin/gpu_attention" "$@" ;;
  e2e)
    # The examples packed with GPU_EXAMPLES: SmolLM2-135M prefill/decode (seeded random weights: the GGUF does
    # not travel), a short training run comparing the attentions, GPT-2 generation.
    out=${2:?OUTDIR}; mkdir -p "$out"; status=0
    [ -x "$bins/bin/llama_bench" ] && { "$bins/bin/llama_bench" --random-weights 2>&1 | tee "$out/llama_bench.txt" || status=1; }
    [ -x "$bins/bin/train_gpt" ] && { "$bins/bin/train_gpt" --compare --log-every 25 2>&1 | tee "$out/train_gpt.txt" || status=1; }
    # head_dim 64: the Hopper (wgmma) backward; the default model's head_dim 32 runs on mma.sync.
    [ -x "$bins/bin/train_gpt" ] && { "$bins/bin/train_gpt" --compare --log-every 25 --hidden 256 2>&1 |
      tee "$out/train_gpt-d64.txt" || status=1; }
    [ -x "$bins/bin/gpt2" ] && for attn in flash naive; do
      "$bins/bin/gpt2" --attn "$attn" --temperature 0 --max-tokens 32 2>&1 | tee -a "$out/gpt2.txt" || status=1
    done
    exit $status
    ;;
  variants)
    out=${2:?OUTDIR}; shift 2; mkdir -p "$out"
    rm -rf /tmp/candle-fa2-variants && mkdir -p /tmp/candle-fa2-variants
    xz -dc "$here/variants.tar.xz" | tar -C /tmp/candle-fa2-variants -xf -
    for exe in /tmp/candle-fa2-variants/variants/*; do
      case $exe in *.flags) continue ;; esac
      name=$(basename "$exe")
      echo "== $name: $(cat "$exe.flags")"
      "$exe" "$@" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"$name/" >> "$out/variants.jsonl"
    done
    ;;
  fwd | bwd)
    # One direction, for kernel work: its tests on both Hopper paths (wgmma, and mma.sync as an A100 runs
    # it), the sanitizer, then bf16 TFLOP/s of both paths and torch SDPA's in one run (bwd: forward +
    # backward, head_dim 64 and 128 unless ARGS say otherwise).
    mode=$1; out=${2:-/tmp/candle-fa2-out}; mkdir -p "$out"; shift 2 2>/dev/null || shift
    if [ "$mode" = fwd ]; then suite=gpu_forward; filter=sanitizer_shapes; bench=()
    else suite=gpu_backward; filter=grad_sanitizer_shapes; bench=(--modes fwd_bwd --hdims 64,128); fi
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
    { "$bins/bin/wgmma_layout" && "$bins/bin/$suite" && CANDLE_FA2_NO_WGMMA=1 "$bins/bin/$suite" &&
      { [ "$mode" = bwd ] || one_block_forward; }; } \
      2>&1 | tee "$out/tests.log"; tests=${PIPESTATUS[0]}
    sanitize "$suite:$filter" 2>&1 | tail -n 20 | tee "$out/sanitizer.log"; san=${PIPESTATUS[0]}
    "$bins/bin/gpu_attention" "${bench[@]}" "$@" --out "$out/bench.jsonl" >/dev/null
    bench_mma "${bench[@]}" "$@" >> "$out/bench.jsonl"
    PYTHONUNBUFFERED=1 python3 "$repo/scripts/bench_torch_sdpa.py" "${bench[@]}" "$@" --out "$out/bench.jsonl" >/dev/null
    python3 "$repo/scripts/compare.py" "$out/bench.jsonl" --markdown "$out/compare.md" --svg "$out/fwd.svg"
    python3 "$repo/scripts/compare.py" "$out/bench.jsonl" --ours candle-fa2-mma --markdown "$out/compare-mma.md" \
      >/dev/null
    echo "tests: exit $tests, sanitizer: exit $san"
    ;;
  onepass)
    # The one-pass Hopper backward (kernels/sm90/flash_bwd_sm90_onepass.cuh: dq_atomics at d128 with
    # CANDLE_FA2_BWD_ONE_PASS=1). A smoke test first: a hang (mbarrier or named-barrier deadlock) ends the
    # call there. Then the backward suite and the ragged one (whose calls take the
    # two-pass fallback: the kernel needs the TMA maps of dense batches), forward + backward bf16 d128 of the
    # two passes and of the one-pass kernel (--dq-atomics) alternated twice, torch SDPA once (compare.md: two
    # passes; compare-onepass.md: one pass; each the second timing), memcheck and racecheck of the small
    # shapes.
    # Every step has its own time limit and writes its log under OUTDIR as it goes.
    out=${2:-/tmp/candle-fa2-out}; mkdir -p "$out"; shift 2 2>/dev/null || shift
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
    export CANDLE_FA2_BWD_ONE_PASS=1
    timeout 60 "$bins/bin/gpu_backward" grad_sanitizer_shapes_stages_reused > "$out/smoke.log" 2>&1; smoke=$?
    tail -n 3 "$out/smoke.log"
    [ $smoke = 124 ] && { echo "smoke test hung: exit 124"; exit 1; }
    { timeout 100 "$bins/bin/gpu_backward" && timeout 90 "$bins/bin/gpu_ragged"; } > "$out/tests.log" 2>&1; tests=$?
    grep -E "^test result|FAILED|panicked" "$out/tests.log" | head -n 10
    bench=(--modes fwd_bwd --dtypes bf16 --hdims 128 "$@")
    for rep in 1 2; do
      timeout 60 "$bins/bin/gpu_attention" "${bench[@]}" --out "$out/bench.jsonl" >/dev/null
      timeout 60 "$bins/bin/gpu_attention" "${bench[@]}" --dq-atomics --out "$out/bench.jsonl" >/dev/null
    done
    PYTHONUNBUFFERED=1 timeout 120 python3 "$repo/scripts/bench_torch_sdpa.py" "${bench[@]}" --out "$out/bench.jsonl" >/dev/null
    python3 "$repo/scripts/compare.py" "$out/bench.jsonl" --markdown "$out/compare.md" >/dev/null
    python3 "$repo/scripts/compare.py" "$out/bench.jsonl" --ours candle-fa2-dq-atomics --markdown "$out/compare-onepass.md"
    SANITIZE_LIMIT=90 sanitize gpu_backward:grad_sanitizer_shapes_stages_reused gpu_backward:grad_sanitizer_shapes \
      > "$out/sanitizer.log" 2>&1; san=$?
    tail -n 12 "$out/sanitizer.log"
    echo "smoke: exit $smoke, tests: exit $tests, sanitizer: exit $san"
    ;;
  decode)
    # The split-KV decode: its suite, GB/s of ours, of the prefill kernel on the same rows
    # (CANDLE_FA2_NO_DECODE) and of torch SDPA's flash, cuDNN and efficient backends in one run, then the forward
    # suite (its short-query cases run the decode kernel too) and the sanitizer on the decode's small shapes.
    # Every step has its own time limit and writes its log under OUTDIR as it goes.
    out=${2:-/tmp/candle-fa2-out}; mkdir -p "$out"; shift 2 2>/dev/null || shift
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
    # Three times: the configurations of this GPU, the same with persistent blocks capped at 3 (so that the
    # small cases run several items per block), and those of GPUs with 99 KB of shared memory per block.
    { timeout 240 "$bins/bin/gpu_decode" && CANDLE_FA2_DECODE_BLOCKS=3 timeout 240 "$bins/bin/gpu_decode" &&
      CANDLE_FA2_MAX_SMEM=101376 timeout 240 "$bins/bin/gpu_decode"; } > "$out/tests.log" 2>&1; tests=$?
    tail -n 5 "$out/tests.log"
    timeout 120 "$bins/bin/gpu_attention" --modes decode --dtypes bf16,fp16 "$@" --out "$out/bench.jsonl" >/dev/null
    CANDLE_FA2_NO_DECODE=1 timeout 60 "$bins/bin/gpu_attention" --modes decode "$@" |
      sed 's/"impl": "candle-fa2"/"impl": "candle-fa2-prefill-kernel"/' >> "$out/bench.jsonl"
    # The efficient backend: the only torch one that takes the d512 rows.
    PYTHONUNBUFFERED=1 timeout 200 python3 "$repo/scripts/bench_torch_sdpa.py" --modes decode --dtypes bf16,fp16 \
      --backends flash,cudnn,efficient --out "$out/bench.jsonl" >/dev/null
    python3 "$repo/scripts/decode_table.py" "$out/bench.jsonl" --markdown "$out/decode.md" --svg "$out/decode.svg"
    timeout 200 "$bins/bin/gpu_forward" >> "$out/tests.log" 2>&1; fwd=$?
    san=0
    for smem in "" 101376; do
      for tool in memcheck racecheck; do
        CANDLE_FA2_MAX_SMEM=$smem CANDLE_FA2_DECODE_BLOCKS=2 timeout 150 "$sanitizer" --tool "$tool" --error-exitcode 9 \
          "$bins/bin/gpu_decode" decode_sanitizer_shapes --test-threads=1 2>&1 | tail -n 8 >> "$out/sanitizer.log"
        [ "${PIPESTATUS[0]}" = 0 ] || san=1
      done
    done
    cat "$out/sanitizer.log"
    echo "decode tests: exit $tests, forward tests: exit $fwd, sanitizer: exit $san"
    ;;
  serving)
    # Varlen, paged K/V and the cache write: their suite (twice, the second time with the shared-memory
    # budget of 99 KB GPUs), every other suite (the kernels share the sequence view), the sanitizer on the
    # small shapes of every suite. Each step has its own time limit and writes its log under OUTDIR.
    out=${2:-/tmp/candle-fa2-out}; mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
    { timeout 300 "$bins/bin/gpu_ragged" && CANDLE_FA2_MAX_SMEM=101376 timeout 200 "$bins/bin/gpu_ragged" paged; } \
      > "$out/ragged.log" 2>&1; ragged=$?
    tail -n 4 "$out/ragged.log"
    tests=0
    for t in gpu_forward gpu_backward gpu_decode candle_fa2; do
      echo "== $t" >> "$out/tests.log"
      timeout 300 "$bins/bin/$t" >> "$out/tests.log" 2>&1 || tests=1
    done
    CANDLE_FA2_NO_WGMMA=1 timeout 200 "$bins/bin/gpu_forward" >> "$out/tests.log" 2>&1 || tests=1
    grep -E "^test result|FAILED|panicked" "$out/tests.log" | head -n 20
    san=0
    # Persistent decode blocks capped at 2: the small shapes run several items per block.
    for s in gpu_ragged:ragged_sanitizer_shapes gpu_forward:sanitizer_shapes gpu_backward:grad_sanitizer_shapes \
             gpu_decode:decode_sanitizer_shapes; do
      for tool in memcheck racecheck; do
        CANDLE_FA2_DECODE_BLOCKS=2 timeout 200 "$sanitizer" --tool "$tool" --error-exitcode 9 "$bins/bin/${s%%:*}" "${s#*:}" --test-threads=1 2>&1 |
          tail -n 6 >> "$out/sanitizer.log"
        [ "${PIPESTATUS[0]}" = 0 ] || san=1
      done
    done
    tail -n 30 "$out/sanitizer.log"
    echo "ragged tests: exit $ragged, other suites: exit $tests, sanitizer: exit $san"
    ;;
  serving-bench)
    # Varlen against dense prefill, paged against contiguous decode (gpu_attention --modes serving), and the
    # forward and decode rows beside torch SDPA's in the same run (the kernels changed under them too).
    out=${2:-/tmp/candle-fa2-out}; mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
    timeout 240 "$bins/bin/gpu_attention" --modes serving --out "$out/serving.jsonl" > /dev/null 2> "$out/bench.err"
    timeout 150 "$bins/bin/gpu_attention" --modes fwd,decode --hdims 64,128 --seqlens 1024,4096,16384 \
      --out "$out/bench.jsonl" > /dev/null 2>> "$out/bench.err"
    PYTHONUNBUFFERED=1 timeout 150 python3 "$repo/scripts/bench_torch_sdpa.py" --modes fwd,decode --hdims 64,128 \
      --seqlens 1024,4096,16384 --out "$out/bench.jsonl" > /dev/null 2>> "$out/bench.err"
    python3 "$repo/scripts/compare.py" "$out/bench.jsonl" --markdown "$out/compare.md" > /dev/null 2>> "$out/bench.err"
    python3 "$repo/scripts/decode_table.py" "$out/bench.jsonl" --markdown "$out/decode.md" 2>> "$out/bench.err"
    cat "$out/serving.jsonl"; tail -n 5 "$out/bench.err"
    ;;
  all)
    out=${2:-/tmp/candle-fa2-out}; mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
    # The forward and backward suites again on the mma.sync path, and on it with the 99 KB of shared memory
    # of sm_86/89/120 GPUs (the fallback tiles); run either way, failures of all count.
    { run_tests; a=$?; CANDLE_FA2_NO_WGMMA=1 "$bins/bin/gpu_forward"; b=$?; CANDLE_FA2_NO_WGMMA=1 "$bins/bin/gpu_backward"
      c=$?; small_smem_tests; d=$?; one_block_forward; exit $(( a | b | c | d | $? )); } 2>&1 |
      tee "$out/tests.log"; tests=${PIPESTATUS[0]}
    sanitize 2>&1 | tail -n 40 | tee "$out/sanitizer.log"; san=${PIPESTATUS[0]}
    "$bins/bin/gpu_attention" --dtypes bf16,fp16 --out "$out/bench.jsonl" >/dev/null
    # The mma.sync forward (what an A100 runs) on the same GPU, for the side-by-side table compare-mma.md.
    bench_mma --dtypes bf16,fp16 >> "$out/bench.jsonl"
    # Every head dim and dtype, d256 too: its backward runs on mma.sync (no wgmma kernel yet).
    "$bins/bin/gpu_attention" --modes fwd_bwd --dtypes bf16,fp16 --out "$out/bench.jsonl" >/dev/null
    bench_mma --modes fwd_bwd --hdims 64,128 >> "$out/bench.jsonl"
    "$bins/bin/gpu_attention" --memory --out "$out/bench.jsonl" >/dev/null
    PYTHONUNBUFFERED=1 python3 "$repo/scripts/bench_torch_sdpa.py" --dtypes bf16,fp16 --out "$out/bench.jsonl" >/dev/null
    PYTHONUNBUFFERED=1 python3 "$repo/scripts/bench_torch_sdpa.py" --modes fwd_bwd --dtypes bf16,fp16 \
      --out "$out/bench.jsonl" >/dev/null
    PYTHONUNBUFFERED=1 python3 "$repo/scripts/bench_torch_sdpa.py" --memory --out "$out/bench.jsonl" >/dev/null
    python3 "$repo/scripts/compare.py" "$out/bench.jsonl" --markdown "$out/compare.md" --svg "$out/fwd.svg"
    python3 "$repo/scripts/compare.py" "$out/bench.jsonl" --ours candle-fa2-mma --markdown "$out/compare-mma.md" \
      >/dev/null
    echo "tests: exit $tests, sanitizer: exit $san"
    ;;
  jit)
    out=${2:-/tmp/candle-fa2-out}; mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
    jit_times "$out"
    ;;
  ptx)
    # The path of GPUs without machine code of ours (sm_100, sm_120): the driver JIT-compiles the compute_80 PTX,
    # and the dispatch must never pick a wgmma kernel (there is none). Every suite, then the forward and backward
    # with the 99 KB of shared memory of sm_120 GPUs.
    out=${2:-/tmp/candle-fa2-out}; mkdir -p "$out"
    grep -q ptx-only "$here/KERNELS" 2>/dev/null ||
      { echo "ptx: this pack has machine code; build it with CANDLE_FA2_PTX_ONLY=1 scripts/gpu_pack.sh" >&2; exit 2; }
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
    jit_times "$out"; jit=$?
    { run_tests; a=$?; small_smem_tests; exit $(( a | $? )); } > "$out/tests.log" 2>&1; tests=$?
    grep -E "^== |^test result|FAILED|panicked" "$out/tests.log" | head -n 40
    echo "jit runs: exit $jit, tests: exit $tests"
    ;;
  *) sed -n '2,25p' "$0"; exit 2 ;;
esac
