#!/usr/bin/env bash
# The paired d256 backward with transformed logits too: the backward suite (d256 with windows, softcap,
# ALiBi and transposed inputs against the f64 reference), memcheck and racecheck of the small shapes, then
# forward + backward at d256 bf16 and fp16 beside the mma.sync path and torch SDPA, and with softcap 30.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
timeout 150 $b/gpu_backward > "$out/tests.log" 2>&1; echo "gpu_backward rc=$?" >> "$out/tests.log"
args="--modes fwd_bwd --dtypes bf16,fp16 --hdims 256 --seqlens 512,2048,8192,16384"
timeout 90 $b/gpu_attention $args --out "$out/bench.jsonl" > "$out/bench.log" 2>&1
CANDLE_FA2_NO_WGMMA=1 timeout 90 $b/gpu_attention $args --out "$out/mma.jsonl" >> "$out/bench.log" 2>&1
for impl in wgmma mma; do
  [ $impl = mma ] && export CANDLE_FA2_NO_WGMMA=1
  timeout 40 $b/gpu_attention --modes fwd_bwd --dtypes bf16 --hdims 256 --seqlens 2048,8192 --softcap 30 \
    --out "$out/softcap-$impl.jsonl" >> "$out/bench.log" 2>&1
done
unset CANDLE_FA2_NO_WGMMA
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --out "$out/torch.jsonl" >> "$out/bench.log" 2>&1
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  timeout 170 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$out/$tool.log" 2>&1; echo "$tool rc=$?" >> "$out/$tool.log"
done
