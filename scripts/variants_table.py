#!/usr/bin/env python3
"""Pivot the JSON lines of `run.sh variants` (and optionally torch's) into one table per (mode, dtype):
a row per (hdim, causal, seqlen), a column per impl, TFLOP/s.

  python3 scripts/variants_table.py OUT/variants.jsonl [OUT/torch.jsonl ...]
"""
import json
import sys
from collections import defaultdict


def main():
    cells, impls = defaultdict(dict), []
    for path in sys.argv[1:]:
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if "tflops" not in rec:
                    continue
                key = (rec["mode"], rec["dtype"], rec["hdim"], rec["causal"], rec["seqlen"])
                cells[key][rec["impl"]] = rec["tflops"]
                if rec["impl"] not in impls:
                    impls.append(rec["impl"])
    groups = sorted({k[:2] for k in cells})
    for mode, dtype in groups:
        print(f"\n{mode} {dtype}: TFLOP/s")
        print("hdim causal seqlen  " + "  ".join(f"{i:>14}" for i in impls))
        for key in sorted(k for k in cells if k[:2] == (mode, dtype)):
            row = cells[key]
            print(f"{key[2]:>4} {str(key[3]):>6} {key[4]:>6}  " +
                  "  ".join(f"{row.get(i, float('nan')):>14.1f}" for i in impls))


if __name__ == "__main__":
    main()
