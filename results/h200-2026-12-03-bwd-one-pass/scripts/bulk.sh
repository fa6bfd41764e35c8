#!/usr/bin/env bash
# Third build: the one-pass kernel stages each step's dQ partial in shared memory and adds it to dq_accum
# by TMA bulk reductions (one per row) instead of per-thread f32 atomics, which the ncu of the second
# build showed bounding it (L2 57-69% busy). The backward and ragged suites, memcheck and racecheck of the
# small shapes; forward + backward at d64/d128 bf16, two-pass against dq_atomics alternated twice, torch
# SDPA beside; ncu of the one-pass kernels at 4k.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
timeout 150 $b/gpu_backward > "$L/tests.log" 2>&1; echo "gpu_backward rc=$?" >> "$L/tests.log"
timeout 90 $b/gpu_ragged > "$L/ragged.log" 2>&1; echo "gpu_ragged rc=$?" >> "$L/ragged.log"
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  timeout 150 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$L/$tool.log" 2>&1; echo "$tool rc=$?" >> "$L/$tool.log"
done
pack
args="--modes fwd_bwd --dtypes bf16 --hdims 64,128 --seqlens 512,1024,2048,4096,8192,16384"
for rep in 1 2; do
  timeout 100 $b/gpu_attention $args --out "$L/bench.jsonl" >> "$L/bench.log" 2>&1
  timeout 100 $b/gpu_attention $args --dq-atomics --out "$L/bench.jsonl" >> "$L/bench.log" 2>&1
done
pack
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py $args --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
pack
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
sections="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis"
for d in 128 64; do
  timeout 60 $ncu --clock-control none -k regex:flash_bwd_sm90 --launch-skip 4 --launch-count 1 $sections \
    $b/gpu_attention --modes fwd_bwd --dtypes bf16 --hdims $d --seqlens 4096 --causal no --dq-atomics \
    > "$L/ncu-d$d-one-pass.txt" 2>&1
done
pack
