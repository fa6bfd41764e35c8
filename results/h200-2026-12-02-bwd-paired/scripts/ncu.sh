#!/usr/bin/env bash
# Nsight Compute of the two d256 backward passes (paired kernels) at 8k, bf16, not causal: each pass's time,
# tensor pipe, memory and warp stall breakdown; what bounds the kernel (issue 12's ncu evidence).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:/usr/local/nvidia/lib64:$LD_LIBRARY_PATH
sections="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis"
for causal in no yes; do
  timeout 200 "$ncu" --clock-control none -k regex:'flash_bwd|bwd_delta|flash_fwd' --launch-skip 8 --launch-count 4 \
    $sections $b/gpu_attention --modes fwd_bwd --dtypes bf16 --hdims 256 --seqlens 8192 --causal $causal 2>&1 \
    | grep -vE "^\{|^==PROF==" > "$out/ncu-d256-8k-causal-$causal.txt"
done
