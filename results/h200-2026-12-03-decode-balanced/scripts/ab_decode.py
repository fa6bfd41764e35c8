"""GB/s of decode rows for A/B variants of one call: bench-NAME.jsonl files (gpu_attention --modes decode)
and torch.jsonl (scripts/bench_torch_sdpa.py --modes decode) in DIR. Usage: ab_decode.py DIR a,b
(ratios: each variant over the last; against the faster of torch flash and cuDNN)."""
import collections
import json
import sys

d, names = sys.argv[1], sys.argv[2].split(",")


def load(path):
    rows = collections.defaultdict(list)
    try:
        for line in open(path):
            j = json.loads(line)
            if j.get("mode") != "decode" or "GBps" not in j:
                continue
            key = (j["dtype"], j["hdim"], j["batch"], j["kvlen"], j["seqlen_q"])
            rows[(j["impl"],) + key].append(j["GBps"])
    except FileNotFoundError:
        pass
    return rows


def mean(v):
    return sum(v) / len(v) if v else float("nan")


ours = {n: load(f"{d}/bench-{n}.jsonl") for n in names}
torch = load(f"{d}/torch.jsonl")
keys = sorted({k[1:] for k in ours[names[0]]}, key=lambda k: (k[0], k[1], k[4], k[2] * k[3]))
print("dtype hd  batch x kv  sq | " + " | ".join(f"{n:>9}" for n in names) + " | "
      + " | ".join(f"{n}/{names[-1]}" for n in names[:-1]) + " | best torch | " + " | ".join(f"{n}/torch" for n in names))
for k in keys:
    vals = [mean(ours[n].get(("candle-fa2",) + k, [])) for n in names]
    runs = [ours[n].get(("candle-fa2",) + k, []) for n in names]
    best = max(mean(torch.get((f"torch-{b}",) + k, [])) for b in ("flash", "cudnn"))
    spread = " ".join("/".join(f"{x:.0f}" for x in r) for r in runs)
    print(f"{k[0]:5} {k[1]:3} {k[2]:3} x {k[3]:5} {k[4]:2} | " + " | ".join(f"{v:9.0f}" for v in vals) + " | "
          + " | ".join(f"{v / vals[-1]:6.3f}" for v in vals[:-1]) + f" | {best:10.0f} | "
          + " | ".join(f"{v / best:5.3f}" for v in vals) + f"   ({spread})")
