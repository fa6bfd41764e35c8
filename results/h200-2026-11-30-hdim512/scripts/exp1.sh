#!/usr/bin/env bash
# head_dim 512: every suite, the 99 KB budget on the d512 tests, sanitizer, bench beside torch.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
t0=$(date +%s)
for t in gpu_forward gpu_backward gpu_decode gpu_ragged candle_fa2; do
  echo "== $t" >> "$out/tests.log"
  timeout 200 $b/$t >> "$out/tests.log" 2>&1; echo "$t rc $? at $(( $(date +%s) - t0 ))s" >> "$out/summary.txt"
done
CANDLE_FA2_NO_WGMMA=1 timeout 120 $b/gpu_forward >> "$out/tests.log" 2>&1; echo "nowgmma fwd rc $? at $(( $(date +%s) - t0 ))s" >> "$out/summary.txt"
for f in every_instantiation sanitizer_shapes odd_head_dims; do
  CANDLE_FA2_MAX_SMEM=101376 timeout 100 $b/gpu_forward $f >> "$out/small.log" 2>&1; echo "99KB fwd $f rc $?" >> "$out/summary.txt"
done
for f in grad_every_instantiation grad_sanitizer_shapes; do
  CANDLE_FA2_MAX_SMEM=101376 timeout 150 $b/gpu_backward $f >> "$out/small.log" 2>&1; echo "99KB bwd $f rc $?" >> "$out/summary.txt"
done
echo "tests done at $(( $(date +%s) - t0 ))s" >> "$out/summary.txt"
timeout 100 $b/gpu_attention --modes fwd,fwd_bwd --dtypes bf16 --hdims 256,512 --seqlens 1024,4096,16384 --out "$out/bench.jsonl" > /dev/null 2> "$out/bench.err"
CANDLE_FA2_NO_WGMMA=1 timeout 60 $b/gpu_attention --modes fwd --dtypes bf16 --hdims 256 --seqlens 1024,4096,16384 > "$out/bench_mma256.txt" 2>> "$out/bench.err"
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py --modes fwd,fwd_bwd --dtypes bf16 --hdims 256,512 --seqlens 1024,4096,16384 --backends flash,cudnn,efficient --out "$out/bench.jsonl" > /dev/null 2>> "$out/bench.err"
echo "bench done at $(( $(date +%s) - t0 ))s" >> "$out/summary.txt"
for s in gpu_forward:sanitizer_shapes gpu_backward:grad_sanitizer_shapes; do
  for tool in memcheck racecheck; do
    timeout 150 "$san" --tool $tool --error-exitcode 9 $b/${s%%:*} ${s#*:} --test-threads=1 2>&1 | tail -n 5 >> "$out/sanitizer.log"
    echo "san $s $tool rc ${PIPESTATUS[0]} at $(( $(date +%s) - t0 ))s" >> "$out/summary.txt"
  done
done
cat "$out/summary.txt"; grep -E "^test result|FAILED|panicked" "$out/tests.log" "$out/small.log" | head -30
