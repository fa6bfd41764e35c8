#!/usr/bin/env bash
# The shipped build (persistent decode blocks: the fewest that take as many rounds): `run.sh decode` (the
# decode suite at three configurations, ours / the prefill kernel / torch flash, cuDNN, efficient in bf16
# and fp16, the forward suite, memcheck and racecheck at both shared-memory budgets), then the ragged suite
# (paged decode runs the persistent blocks too).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out/decode-mode"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
s=$(date +%s)
timeout 480 bash .gpu/run.sh decode "$out/decode-mode" > "$out/summary.txt" 2>&1; echo "decode mode rc=$? $(( $(date +%s) - s )) s" >> "$out/summary.txt"
timeout 90 /tmp/candle-fa2-bin/bin/gpu_ragged > "$out/ragged.log" 2>&1; echo "gpu_ragged rc=$? $(( $(date +%s) - s )) s" >> "$out/summary.txt"
tail -n 3 "$out/ragged.log" >> "$out/summary.txt"; cat "$out/summary.txt"
