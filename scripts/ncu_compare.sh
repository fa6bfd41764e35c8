#!/usr/bin/env bash
# Nsight Compute on our kernels and torch's flash backend, same shape, on the GPU host (after
# scripts/gpu_pack.sh):
#   bash scripts/ncu_compare.sh [HDIM] [SEQLEN] [CAUSAL yes|no] [MODE fwd|fwd_bwd]
# fwd: one forward launch of each. fwd_bwd: every backward launch of one step of each (ours: D, the
# KEYS(_DQ) pass, QUERIES or the dQ conversion; torch: dot(dO, O), the dQ/dK/dV kernel, the dQ conversion).
set -uo pipefail
hdim=${1:-128}; seqlen=${2:-4096}; causal=${3:-no}; mode=${4:-fwd}
repo=$(cd "$(dirname "$0")/.." && pwd)
bash "$repo/.gpu/run.sh" bench --help >/dev/null 2>&1  # unpacks the binaries
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
sections="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis"
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
if [ "$mode" = fwd ]; then
  ours=(-k regex:flash_fwd --launch-skip 5 --launch-count 1); theirs=(-k regex:flash_fwd --launch-skip 3 --launch-count 1)
else
  ours=(-k "regex:bwd" --launch-skip 12 --launch-count 3); theirs=(-k regex:flash_bwd --launch-skip 9 --launch-count 3)
fi
echo "===== candle-fa2"
"$ncu" --clock-control none "${ours[@]}" $sections /tmp/candle-fa2-bin/bin/gpu_attention --modes "$mode" \
  --hdims "$hdim" --seqlens "$seqlen" --causal "$causal" 2>&1 | grep -vE "^\{|^==PROF=="
echo "===== torch flash"
is_causal=$([ "$causal" = yes ] && echo True || echo False)
"$ncu" --clock-control none "${theirs[@]}" $sections python3 -c "
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend
b, h = 16384 // $seqlen, 2048 // $hdim
grad = '$mode' == 'fwd_bwd'
q, k, v = (torch.randn(b, h, $seqlen, $hdim, device='cuda', dtype=torch.bfloat16, requires_grad=grad) for _ in range(3))
with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
    for _ in range(6):
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=$is_causal)
        if grad: o.backward(torch.ones_like(o))
torch.cuda.synchronize()" 2>&1 | grep -vE "^==PROF=="
