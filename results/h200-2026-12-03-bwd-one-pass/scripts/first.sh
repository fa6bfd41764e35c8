#!/usr/bin/env bash
# The one-pass Hopper backward (KEYS_DQ on wgmma, dq_atomics), first run: the backward and ragged suites
# (and the backward suite on mma.sync), then forward + backward at d64/d128 bf16, the two-pass default
# against dq_atomics alternated twice, torch SDPA beside in this one call; memcheck and racecheck of the
# small shapes last. Every step's log goes to $OUT as it runs, then one tarball.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L/gpu.txt"
timeout 150 $b/gpu_backward > "$L/tests.log" 2>&1; echo "gpu_backward rc=$?" >> "$L/tests.log"
timeout 90 $b/gpu_ragged > "$L/ragged.log" 2>&1; echo "gpu_ragged rc=$?" >> "$L/ragged.log"
CANDLE_FA2_NO_WGMMA=1 timeout 90 $b/gpu_backward grad_every_instantiation grad_dq_atomics > "$L/tests-mma.log" 2>&1
echo "gpu_backward mma rc=$?" >> "$L/tests-mma.log"
pack
args="--modes fwd_bwd --dtypes bf16 --hdims 64,128 --seqlens 512,1024,2048,4096,8192,16384"
for rep in 1 2; do
  timeout 100 $b/gpu_attention $args --out "$L/bench.jsonl" >> "$L/bench.log" 2>&1
  timeout 100 $b/gpu_attention $args --dq-atomics --out "$L/bench.jsonl" >> "$L/bench.log" 2>&1
done
pack
PYTHONUNBUFFERED=1 timeout 150 python3 scripts/bench_torch_sdpa.py $args --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
pack
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in memcheck racecheck; do
  timeout 150 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$L/$tool.log" 2>&1; echo "$tool rc=$?" >> "$L/$tool.log"
  pack
done
