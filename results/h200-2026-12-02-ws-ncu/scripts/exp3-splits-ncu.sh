#!/usr/bin/env bash
# Two probes in one call. (1) Decode at 64 x 2k and 32 x 4k, d128 (the rows still below cuDNN), with forced
# split counts 1-4 beside the heuristic's, twice. (2) Nsight Compute on the warp-specialised forward
# (issue 12's ncu evidence) beside cuDNN's kernel on the same shape: d128 at 4k causal and not, d64 at 4k.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
R="--modes decode --dtypes bf16 --decode-rows 64x2048x1x128,32x4096x1x128"
for rep in 1 2; do
  timeout 30 $b/gpu_attention $R >> "$out/splits.jsonl" 2>> "$out/summary.txt"
  for s in 1 2 3 4; do
    timeout 30 $b/gpu_attention $R --num-splits $s 2>> "$out/summary.txt" | sed "s/\"impl\": \"candle-fa2/\"impl\": \"s$s/" >> "$out/splits.jsonl"
  done
done
echo "splits done $(date +%s)" >> "$out/summary.txt"
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
sections="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis"
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:/usr/local/nvidia/lib64:$LD_LIBRARY_PATH
for shape in "128 no" "128 yes" "64 no"; do
  set -- $shape; hdim=$1; causal=$2; f="$out/ncu-d$hdim-causal-$causal.txt"
  echo "===== candle-fa2 (flash_fwd_sm90_ws_kernel) d$hdim 4k causal $causal" > "$f"
  timeout 120 "$ncu" --clock-control none -k regex:flash_fwd_sm90_ws --launch-skip 5 --launch-count 1 $sections \
    $b/gpu_attention --modes fwd --dtypes bf16 --hdims $hdim --seqlens 4096 --causal $causal 2>&1 | grep -vE "^\{|^==PROF==" >> "$f"
  echo "===== torch cuDNN d$hdim 4k causal $causal" >> "$f"
  is_causal=$([ "$causal" = yes ] && echo True || echo False)
  timeout 120 "$ncu" --clock-control none -k regex:'sdpa|fmha|fprop|cudnn' --launch-skip 3 --launch-count 1 $sections python3 -c "
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend
b, h = 16384 // 4096, 2048 // $hdim
q, k, v = (torch.randn(b, h, 4096, $hdim, device='cuda', dtype=torch.bfloat16) for _ in range(3))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(6):
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=$is_causal)
torch.cuda.synchronize()" 2>&1 | grep -vE "^==PROF==" >> "$f"
  echo "ncu d$hdim $causal $(date +%s)" >> "$out/summary.txt"
done
