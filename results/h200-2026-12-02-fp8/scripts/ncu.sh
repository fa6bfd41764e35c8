#!/usr/bin/env bash
# Nsight Compute of the FP8 forward at 8k, not causal, d128 and d256, beside our bf16 forward at d128: the
# tensor pipe, issue slots, the XU (MUFU) pipe and warp stalls: what bounds d128 at 805 TFLOP/s.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:/usr/local/nvidia/lib64:$LD_LIBRARY_PATH
sections="--section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section InstructionStats"
metrics="--metrics sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed.avg.per_cycle_active,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__cycles_elapsed.avg.per_second"
for run in "fp8 128" "fp8 256" "bf16 128"; do
  set -- $run
  timeout 150 "$ncu" --clock-control none -k regex:'flash_fwd_sm90_ws' --launch-skip 5 --launch-count 1 \
    $sections $metrics $b/gpu_attention --modes fwd --dtypes $1 --hdims $2 --seqlens 8192 --causal no 2>&1 \
    | grep -vE "^\{|^==PROF==" > "$out/ncu-$1-d$2-8k.txt"
done
