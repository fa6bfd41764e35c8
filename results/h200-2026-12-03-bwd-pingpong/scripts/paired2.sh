#!/usr/bin/env bash
# Second d256 build: TMA streaming in the paired kernel's QUERIES pass only (its KEYS pass, which loads
# the LSE and D rows per step, back on cp.async): the backward suite, racecheck and memcheck of the
# sanitizer tests, then forward + backward bf16 d256, default against CANDLE_FA2_BWD_NO_TMA=1 alternated
# twice, torch SDPA beside.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
timeout 150 $b/gpu_backward > "$L/tests-default.log" 2>&1; echo "gpu_backward rc=$?" >> "$L/tests-default.log"
pack
args="--modes fwd_bwd --dtypes bf16 --hdims 256 --seqlens 512,1024,2048,4096,8192,16384"
for rep in 1 2; do
  timeout 60 $b/gpu_attention $args --out "$L/bench-default.jsonl" >> "$L/bench.log" 2>&1
  CANDLE_FA2_BWD_NO_TMA=1 timeout 60 $b/gpu_attention $args --out "$L/bench-cpasync.jsonl" >> "$L/bench.log" 2>&1
  pack
done
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
pack
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
for tool in racecheck memcheck; do
  timeout 150 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$L/$tool.log" 2>&1; echo "$tool rc=$?" >> "$L/$tool.log"
  gzip -f "$L/$tool.log" && zcat "$L/$tool.log.gz" | tail -n 3 > "$L/$tool.tail"
  pack
done
