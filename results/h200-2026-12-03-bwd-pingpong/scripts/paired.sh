#!/usr/bin/env bash
# The d256 paired backward streamed by TMA too (full mbarriers, the STAGE_FREE barrier releasing a stage),
# and the dq_accum change, on one build: the backward suite by default, with CANDLE_FA2_BWD_NO_TMA=1 and on
# mma.sync (CANDLE_FA2_NO_WGMMA=1, where dq_atomics uses dq_accum); the ragged suite; memcheck and
# racecheck of both sanitizer tests (d256 among them); then forward + backward bf16 d256 (and d128),
# default against cp.async alternated twice, torch SDPA beside; last, every GPU suite (run.sh test).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/logs"; L=$out/logs
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bash .gpu/run.sh test --list > /dev/null 2>&1
b=/tmp/candle-fa2-bin/bin
pack() { tar -C "$out" -czf "$out/logs.tgz" logs; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$L/gpu.txt"
suite() {  # name, env...
  local name=$1; shift
  env "$@" timeout 150 $b/gpu_backward > "$L/tests-$name.log" 2>&1; echo "gpu_backward $name rc=$?" >> "$L/tests-$name.log"
  pack
}
suite default
suite no-tma CANDLE_FA2_BWD_NO_TMA=1
suite mma CANDLE_FA2_NO_WGMMA=1
timeout 90 $b/gpu_ragged > "$L/ragged.log" 2>&1; echo "gpu_ragged rc=$?" >> "$L/ragged.log"
pack
san=$(ls /usr/local/cuda*/bin/compute-sanitizer | head -1)
sanitize() {  # tool, name, env...
  local tool=$1 name=$2; shift 2
  env "$@" timeout 150 $san --tool $tool --error-exitcode 9 $b/gpu_backward grad_sanitizer_shapes --test-threads=1 \
    > "$L/$tool-$name.log" 2>&1; echo "$tool $name rc=$?" >> "$L/$tool-$name.log"
  gzip -f "$L/$tool-$name.log" && zcat "$L/$tool-$name.log.gz" | tail -n 3 > "$L/$tool-$name.tail"
  pack
}
sanitize racecheck default
sanitize memcheck default
sanitize memcheck mma CANDLE_FA2_NO_WGMMA=1
args="--modes fwd_bwd --dtypes bf16 --hdims 128,256 --seqlens 512,1024,2048,4096,8192,16384"
for rep in 1 2; do
  timeout 60 $b/gpu_attention $args --out "$L/bench-default.jsonl" >> "$L/bench.log" 2>&1
  CANDLE_FA2_BWD_NO_TMA=1 timeout 60 $b/gpu_attention $args --out "$L/bench-cpasync.jsonl" >> "$L/bench.log" 2>&1
  pack
done
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/bench_torch_sdpa.py $args --out "$L/torch.jsonl" >> "$L/bench.log" 2>&1
pack
timeout 300 bash .gpu/run.sh test > "$L/suites.log" 2>&1; echo "run.sh test rc=$?" >> "$L/suites.log"
tail -n 40 "$L/suites.log" > "$L/suites.tail"; gzip -f "$L/suites.log"
pack
