#!/usr/bin/env bash
# Issue 12's evidence for the backward: ncu of our two-pass Hopper backward as main runs it (tiles streamed
# by TMA, ping-pong turns; the KEYS and QUERIES passes) and of cuDNN's backward (torch 2.11 SDPA, every
# kernel of one forward + backward between cudaProfilerStart/Stop), bf16, 4 x 4096, 16 heads of d128, not
# causal; the same at d64 (32 heads). --clock-control none: the clocks the benches run at.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
sections="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis"
s=$(date +%s)
for d in 128 64; do
  timeout 120 $ncu --clock-control none -k regex:flash_bwd_sm90 --launch-skip 8 --launch-count 2 $sections \
    $b/gpu_attention --modes fwd_bwd --dtypes bf16 --hdims $d --seqlens 4096 --causal no > "$L/ncu-d$d-ours.txt" 2>&1
  echo "ours d$d rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
  timeout 150 $ncu --clock-control none --profile-from-start off $sections python3 -c "
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend
b, h = 4, 2048 // $d
q, k, v = (torch.randn(b, h, 4096, $d, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
do = torch.randn(b, h, 4096, $d, device='cuda', dtype=torch.bfloat16)
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for i in range(4):
        if i == 3: torch.cuda.cudart().cudaProfilerStart()
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        o.backward(do)
        torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()" > "$L/ncu-d$d-cudnn.txt" 2>&1
  echo "cudnn d$d rc=$? $(( $(date +%s) - s )) s" >> "$L/summary.txt"; pack
done
for f in "$L"/ncu-*.txt; do
  echo "== $(basename $f)"; grep -E "^  [a-z_].*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|DRAM Throughput|Issued Warp Per Scheduler|No Eligible|Registers Per Thread|Achieved Occupancy" "$f"
done > "$L/digest.txt"
pack; cat "$L/summary.txt"; head -c 6000 "$L/digest.txt"
