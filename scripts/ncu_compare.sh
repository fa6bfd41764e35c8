#!/usr/bin/env bash
# Nsight Compute on one forward launch of ours and one of torch's flash backend, same shape, on the GPU host:
#   bash scripts/ncu_compare.sh [HDIM] [SEQLEN] [CAUSAL yes|no]    (after scripts/gpu_pack.sh)
set -uo pipefail
hdim=${1:-128}; seqlen=${2:-4096}; causal=${3:-no}
repo=$(cd "$(dirname "$0")/.." && pwd)
bash "$repo/.gpu/run.sh" bench --help >/dev/null 2>&1  # unpacks the binaries
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
sections="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis"
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
echo "===== candle-fa2"
"$ncu" --clock-control none -k regex:flash_fwd --launch-skip 5 --launch-count 1 $sections \
  /tmp/candle-fa2-bin/bin/gpu_attention --hdims "$hdim" --seqlens "$seqlen" --causal "$causal" 2>&1 | grep -vE "^\{|^==PROF=="
echo "===== torch flash"
is_causal=$([ "$causal" = yes ] && echo True || echo False)
"$ncu" --clock-control none -k regex:flash_fwd --launch-skip 3 --launch-count 1 $sections python3 -c "
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend
b, h = 16384 // $seqlen, 2048 // $hdim
q, k, v = (torch.randn(b, h, $seqlen, $hdim, device='cuda', dtype=torch.bfloat16) for _ in range(3))
with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
    for _ in range(6): torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=$is_causal)
torch.cuda.synchronize()" 2>&1 | grep -vE "^==PROF=="
