#!/usr/bin/env bash
# The landed build (head dims 65-96 and 129-224 on the next Hopper kernel up, by default): the forward,
# backward and ragged suites; memcheck of the odd head dims' forward and backward tests; fp16 timings of
# those head dims, default against CANDLE_FA2_NO_SM90_PAD=1, torch SDPA beside.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$L/gpu.txt"
s=$(date +%s)
step() { echo "$1 rc=$2 $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack; }
timeout 200 $b/gpu_forward > "$L/tests.log" 2>&1; step "forward suite" $?
timeout 200 $b/gpu_backward >> "$L/tests.log" 2>&1; step "backward suite" $?
timeout 120 $b/gpu_ragged >> "$L/tests.log" 2>&1; step "ragged suite" $?
timeout 120 "$san" --tool memcheck --error-exitcode 9 $b/gpu_forward odd_head_dims --test-threads=1 > "$L/memcheck-fwd.log" 2>&1; step "memcheck odd_head_dims" $?
timeout 120 "$san" --tool memcheck --error-exitcode 9 $b/gpu_backward grad_odd_head_dims --test-threads=1 > "$L/memcheck-bwd.log" 2>&1; step "memcheck grad_odd_head_dims" $?
pad="--dtypes fp16 --hdims 80,96,160,192 --seqlens 1024,4096,16384"
for v in pad:X=1 mma:CANDLE_FA2_NO_SM90_PAD=1; do
  env ${v#*:} timeout 150 $b/gpu_attention --modes fwd,fwd_bwd $pad | sed "s/\"impl\": \"candle-fa2\"/\"impl\": \"${v%%:*}\"/" >> "$L/fp16.jsonl" 2>> "$L/bench.log"
  step "fp16 ${v%%:*}" $?
done
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py --modes fwd,fwd_bwd $pad --backends flash,cudnn --out "$L/fp16.jsonl" >> "$L/bench.log" 2>&1
step "torch fp16" $?
cat "$L/summary.txt"; grep -h "test result\|FAILED\|ERROR SUMMARY" "$L"/*.log
