#!/usr/bin/env python3
"""Decode GB/s side by side: ours, the prefill kernel on the same rows, torch SDPA flash and cuDNN.

Reads the JSON lines of `gpu_attention --modes decode` and `bench_torch_sdpa.py --modes decode` (one
file or several) and writes a markdown table (GB/s of K and V read once, our share of the copy
bandwidth, ours / the faster torch backend) and, with --svg, a grouped bar chart of one dtype.

  python3 scripts/decode_table.py bench.jsonl --markdown decode.md --svg decode.svg [--copy-gbps 4210]
"""

import argparse
import json
import sys

# torch-efficient: only where the other two reject the head dim (512), with --backends efficient.
IMPLS = ["candle-fa2", "candle-fa2-prefill-kernel", "torch-flash", "torch-cudnn", "torch-efficient"]
COLORS = {"candle-fa2": "#d62728", "candle-fa2-prefill-kernel": "#ff9896", "torch-flash": "#1f77b4",
          "torch-cudnn": "#2ca02c", "torch-efficient": "#9467bd"}


def load(paths):
    perf = {}  # (dtype, hdim, seqlen_q, batch, kvlen) -> impl -> GB/s
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                rec = json.loads(line)
                if rec.get("mode") != "decode" or "GBps" not in rec:
                    continue
                key = (rec["dtype"], rec["hdim"], rec["seqlen_q"], rec["batch"], rec["kvlen"])
                perf.setdefault(key, {})[rec["impl"]] = rec["GBps"]
    return perf


def label(key):
    dtype, hdim, sq, batch, kvlen = key
    kv = f"{kvlen // 1024}k" if kvlen % 1024 == 0 else str(kvlen)
    return f"{batch} x {kv}, d{hdim}" + (f", {sq} rows" if sq > 1 else "")


def markdown(perf, copy_gbps):
    head = ["dtype", "batch x kv, head_dim, query rows"] + IMPLS + ["ours / copy", "ours / best torch"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(perf):
        row = perf[key]
        cells = [key[0], label(key)] + [f"{row[i]:.0f}" if i in row else "-" for i in IMPLS]
        ours = row.get("candle-fa2")
        best = max([row[i] for i in ("torch-flash", "torch-cudnn", "torch-efficient") if i in row], default=None)
        cells.append(f"{ours / copy_gbps:.0%}" if ours else "-")
        cells.append(f"{ours / best:.2f}" if ours and best else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def svg(perf, dtype, copy_gbps):
    keys = [k for k in sorted(perf) if k[0] == dtype]
    impls = [i for i in IMPLS if any(i in perf[k] for k in keys)]
    group_w, bar_w, left, top, height = 24 + 14 * len(impls), 14, 60, 40, 260
    width = left + group_w * len(keys) + 80
    ymax = max([copy_gbps] + [v for k in keys for v in perf[k].values()]) * 1.05
    y = lambda v: top + height - v / ymax * height  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + height + 150}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="20" font-size="14">Decode, {dtype}: GB/s of K and V read (32 query heads, '
           '8 KV heads)</text>']
    for v in range(0, int(ymax), 1000):
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v}</text>')
    out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(copy_gbps):.1f}" y2="{y(copy_gbps):.1f}" '
               'stroke="#000" stroke-dasharray="4,3"/>')
    out.append(f'<text x="{width - 12}" y="{y(copy_gbps) - 4:.1f}" text-anchor="end">copy {copy_gbps:.0f}</text>')
    for g, key in enumerate(keys):
        x0 = left + g * group_w + 12
        for b, impl in enumerate(impls):
            v = perf[key].get(impl)
            if v is None:
                continue
            out.append(f'<rect x="{x0 + b * bar_w}" y="{y(v):.1f}" width="{bar_w - 2}" '
                       f'height="{top + height - y(v):.1f}" fill="{COLORS[impl]}"><title>{impl} {v:.0f}</title></rect>')
        cx = x0 + len(impls) * bar_w / 2
        out.append(f'<text transform="translate({cx:.0f},{top + height + 10}) rotate(45)">{label(key)}</text>')
    for b, impl in enumerate(impls):
        lx = left + b * 190
        out.append(f'<rect x="{lx}" y="{top + height + 125}" width="10" height="10" fill="{COLORS[impl]}"/>')
        out.append(f'<text x="{lx + 14}" y="{top + height + 134}">{impl}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--markdown", metavar="FILE")
    ap.add_argument("--svg", metavar="FILE")
    ap.add_argument("--svg-dtype", default="bf16")
    ap.add_argument("--copy-gbps", type=float, default=4210.0,
                    help="device copy bandwidth (default: the H200's, ../shared/GPU_HOST.md)")
    args = ap.parse_args()
    perf = load(args.files)
    if not perf:
        sys.exit("no decode lines found")
    table = markdown(perf, args.copy_gbps)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(svg(perf, args.svg_dtype, args.copy_gbps))


if __name__ == "__main__":
    main()
