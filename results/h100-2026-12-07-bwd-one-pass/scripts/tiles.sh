#!/usr/bin/env bash
# The call of tiles/ (rows/ ran the first line alone, on the build of b3e4dfc): the onepass mode, then ncu of
# the one-pass kernel and of the two passes at 4k. OUT: the output folder.
set -u
bash .gpu/run.sh onepass "$OUT" 2>&1 | tee "$OUT/run.log"
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
S="--section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section InstructionStats"
B=/tmp/candle-fa2-bin/bin/gpu_attention
A="--modes fwd_bwd --dtypes bf16 --hdims 128 --seqlens 4096 --causal no"
CANDLE_FA2_BWD_ONE_PASS=1 timeout 100 "$ncu" --clock-control none -k regex:onepass --launch-skip 3 --launch-count 1 $S $B $A --dq-atomics > "$OUT/ncu-onepass.txt" 2>&1
timeout 100 "$ncu" --clock-control none -k regex:bwd --launch-skip 12 --launch-count 3 $S $B $A > "$OUT/ncu-twopass.txt" 2>&1
