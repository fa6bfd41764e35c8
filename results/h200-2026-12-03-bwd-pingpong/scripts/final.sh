#!/usr/bin/env bash
# The README's forward + backward table on this build: bf16 and fp16, d64/d128/d256, 512-16k, causal and
# not, ours twice around torch SDPA (flash, cuDNN) in one call; then the default against
# CANDLE_FA2_BWD_NO_TMA=1 (the cp.async kernel before) at bf16 once more.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L/gpu.txt"
args="--modes fwd_bwd --dtypes bf16,fp16 --hdims 64,128,256 --seqlens 512,1024,2048,4096,8192,16384"
timeout 120 $b/gpu_attention $args --out "$L/ours.jsonl" >> "$L/bench.log" 2>&1; echo "ours 1 rc=$?" >> "$L/bench.log"
pack
PYTHONUNBUFFERED=1 timeout 240 python3 scripts/bench_torch_sdpa.py $args --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
echo "torch rc=$?" >> "$L/bench.log"
pack
timeout 120 $b/gpu_attention $args --out "$L/ours.jsonl" >> "$L/bench.log" 2>&1; echo "ours 2 rc=$?" >> "$L/bench.log"
pack
ab="--modes fwd_bwd --dtypes bf16 --hdims 64,128 --seqlens 512,1024,2048,4096,8192,16384"
for rep in 1 2; do
  timeout 60 $b/gpu_attention $ab --out "$L/bench-default.jsonl" >> "$L/bench.log" 2>&1
  CANDLE_FA2_BWD_NO_TMA=1 timeout 60 $b/gpu_attention $ab --out "$L/bench-cpasync.jsonl" >> "$L/bench.log" 2>&1
  pack
done
