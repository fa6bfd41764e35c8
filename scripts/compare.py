#!/usr/bin/env python3
"""Compare candle-fa2 attention throughput with torch SDPA (flash / cuDNN).

Standard library only, so it runs wherever the JSONL files end up.

Input: one or more JSONL files. Timing lines look like
  {"impl": "candle-fa2" | "torch-flash" | "torch-cudnn", "dtype", "hdim",
   "causal", "seqlen", "batch", "heads", "mode", "ms", "tflops"}
Also accepted, for the shared anchor files written by an older script:
"backend": "flash"/"cudnn" instead of "impl", dtype "bfloat16"/"float16",
mode "fwd+bwd"/"fwdbwd". Lines without "tflops" (headers, errors, decode and
memory lines) are left out of the throughput tables; "mode": "memory" lines get
their own small table. When the same configuration appears more than once,
the line read last wins, so later files override earlier ones.

Examples:
  python3 scripts/compare.py ours.jsonl torch.jsonl
  python3 scripts/compare.py ours.jsonl torch.jsonl --markdown cmp.md --svg fwd.svg
"""

import argparse
import json
import math
import sys
from xml.sax.saxutils import escape

OURS_DEFAULT = "candle-fa2"
FLASH = "torch-flash"
CUDNN = "torch-cudnn"

_BACKEND_TO_IMPL = {"flash": FLASH, "cudnn": CUDNN, "efficient": "torch-efficient",
                    "math": "torch-math"}
_DTYPE = {"bf16": "bf16", "bfloat16": "bf16", "torch.bfloat16": "bf16",
          "fp16": "fp16", "float16": "fp16", "half": "fp16", "torch.float16": "fp16",
          "fp32": "fp32", "float32": "fp32", "torch.float32": "fp32"}
_MODE = {"fwd": "fwd", "forward": "fwd",
         "fwd_bwd": "fwd_bwd", "fwd+bwd": "fwd_bwd", "fwdbwd": "fwd_bwd", "fwd-bwd": "fwd_bwd"}


def normalize(rec):
    """Map the spellings used by different writers onto one vocabulary."""
    impl = rec.get("impl")
    if impl is None and "backend" in rec:
        impl = _BACKEND_TO_IMPL.get(rec["backend"], "torch-" + str(rec["backend"]))
    rec["impl"] = impl
    if "dtype" in rec:
        rec["dtype"] = _DTYPE.get(str(rec["dtype"]).lower(), rec["dtype"])
    if "mode" in rec:
        rec["mode"] = _MODE.get(str(rec["mode"]).lower(), rec["mode"])
    if isinstance(rec.get("causal"), str):
        rec["causal"] = rec["causal"].lower() in ("true", "1", "yes")
    return rec


def load(paths):
    """Returns (throughput dict, memory records, device names seen).

    Throughput is keyed (mode, dtype, hdim, causal, seqlen, impl) -> tflops.
    """
    perf, memory, devices = {}, [], []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    print(f"warning: {path}:{lineno}: skipping bad JSON ({exc})", file=sys.stderr)
                    continue
                if not isinstance(rec, dict):
                    continue
                if "device" in rec and "impl" not in rec and "backend" not in rec:
                    devices.append(rec["device"])
                    continue
                rec = normalize(rec)
                if rec.get("mode") == "memory":
                    memory.append(rec)
                    continue
                if "tflops" not in rec or rec.get("impl") is None:
                    continue
                try:
                    key = (rec["mode"], rec["dtype"], int(rec["hdim"]), bool(rec["causal"]),
                           int(rec["seqlen"]), rec["impl"])
                except KeyError:
                    continue  # e.g. decode lines: no hdim/seqlen grid position
                perf[key] = float(rec["tflops"])
    return perf, memory, devices


def ordered(values, preferred):
    """Sort known values in the preferred order, unknown ones after, sorted."""
    values = set(values)
    head = [v for v in preferred if v in values]
    return head + sorted(values - set(head), key=str)


def fmt_tf(x):
    return "–" if x is None else f"{x:.0f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def flash_threshold(seqlen):
    """ours/flash below this is flagged.

    Short sequences are dominated by launch and tail effects where a few
    percent either way is noise-level, so they get slack.
    """
    return 0.9 if seqlen < 1024 else 1.0


def tables(perf, ours):
    """Markdown tables, one per (mode, dtype), as a list of lines."""
    lines = []
    groups = ordered({(k[0], k[1]) for k in perf}, [(m, d) for m in ("fwd", "fwd_bwd")
                                                      for d in ("bf16", "fp16")])
    for mode, dtype in groups:
        keys = [k for k in perf if k[0] == mode and k[1] == dtype]
        seqlens = sorted({k[4] for k in keys})
        rows = sorted({(k[2], k[3]) for k in keys})
        lines.append(f"### {mode}, {dtype}: TFLOP/s ours / torch-flash / cudnn "
                     f"(ours÷flash, ours÷cudnn)")
        lines.append("")
        lines.append("| hdim | causal | " + " | ".join(str(s) for s in seqlens) + " |")
        lines.append("|---:|:---:|" + "---:|" * len(seqlens))
        flagged = []
        for hdim, causal in rows:
            cells = []
            for s in seqlens:
                def get(impl):
                    return perf.get((mode, dtype, hdim, causal, s, impl))
                o, fl, cu = get(ours), get(FLASH), get(CUDNN)
                if o is None and fl is None and cu is None:
                    cells.append("")
                    continue
                cell = f"{fmt_tf(o)} / {fmt_tf(fl)} / {fmt_tf(cu)}"
                if o is not None:  # ratios are noise when there is nothing of ours
                    cell += f" ({fmt_ratio(o, fl)}, {fmt_ratio(o, cu)})"
                cells.append(cell)
                if o is not None and fl and o / fl < flash_threshold(s):
                    flagged.append(f"hdim={hdim} {'causal' if causal else 'non-causal'} "
                                   f"seqlen={s} ({o / fl:.2f})")
            lines.append(f"| {hdim} | {'yes' if causal else 'no'} | " + " | ".join(cells) + " |")
        lines.append("")
        if any(k[5] == ours for k in keys):
            lines.append("Below torch-flash (ours÷flash < 1.0, < 0.9 at seqlen 512): "
                         + (", ".join(flagged) if flagged else "none"))
        else:
            lines.append(f"(no {ours} lines for {mode}/{dtype})")
        lines.append("")
    return lines


def memory_table(memory):
    if not memory:
        return []
    lines = ["### memory: peak extra bytes of one causal forward (bf16, hdim 128, 16 heads)", "",
             "| impl | seqlen | peak | N×N scores would need |", "|---|---:|---:|---:|"]
    for rec in sorted(memory, key=lambda r: (r.get("seqlen", 0), str(r.get("impl")))):
        peak = (f"{rec['peak_bytes'] / 2**30:.2f} GiB" if "peak_bytes" in rec
                else str(rec.get("error", "?")))
        scores = f"{rec['scores_bytes'] / 2**30:.1f} GiB" if "scores_bytes" in rec else ""
        lines.append(f"| {rec.get('impl')} | {rec.get('seqlen')} | {peak} | {scores} |")
    lines.append("")
    return lines


# ---------------------------------------------------------------- SVG plot

SERIES = [(None, "#d62728"), (FLASH, "#1f77b4"), (CUDNN, "#2ca02c")]  # None -> ours


def nice_step(span, target_ticks=5):
    """A 1/2/5 x 10^k step giving about target_ticks ticks over span."""
    raw = span / target_ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def seqlen_label(s):
    return f"{s // 1024}k" if s >= 1024 and s % 1024 == 0 else str(s)


def svg_plot(perf, ours, dtype, title_suffix=""):
    """One panel per (hdim, causal) of forward TFLOP/s vs seqlen; returns SVG text.

    All panels share the y scale so heights are comparable across head dims.
    """
    keys = [k for k in perf if k[0] == "fwd" and k[1] == dtype]
    if not keys:
        raise ValueError(f"no fwd lines for dtype {dtype}")
    hdims = sorted({k[2] for k in keys})
    causals = sorted({k[3] for k in keys})
    seqlens = sorted({k[4] for k in keys})
    # The paper's x range, widened if the data goes beyond it.
    x_lo = math.log2(min([512] + seqlens))
    x_hi = math.log2(max([16384] + seqlens))
    y_step = nice_step(max(perf[k] for k in keys) * 1.05)
    y_hi = y_step * math.ceil(max(perf[k] for k in keys) * 1.05 / y_step)

    pw, ph = 260, 190          # panel plot-area size
    ml, mr, mt, mb = 55, 15, 30, 45  # per-panel margins (room for ticks/labels)
    cw, chh = ml + pw + mr, mt + ph + mb
    top = 60                   # title + legend band
    width, height = cw * len(hdims), top + chh * len(causals)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">'
           f'{escape(f"Attention forward, {dtype}{title_suffix}")}</text>']
    # Legend, centred in the band under the title.
    lx = width / 2 - 3 * 120 / 2
    for i, (impl, color) in enumerate(SERIES):
        x = lx + i * 120
        out.append(f'<line x1="{x}" y1="40" x2="{x + 24}" y2="40" stroke="{color}" '
                   f'stroke-width="2.5"/><circle cx="{x + 12}" cy="40" r="3" fill="{color}"/>')
        out.append(f'<text x="{x + 30}" y="44">{escape(impl or ours)}</text>')

    for row, causal in enumerate(causals):
        for col, hdim in enumerate(hdims):
            ox, oy = col * cw + ml, top + row * chh + mt  # plot-area origin (top-left)

            def px(s):
                return ox + (math.log2(s) - x_lo) / (x_hi - x_lo) * pw

            def py(t):
                return oy + ph - t / y_hi * ph

            out.append(f'<text x="{ox + pw / 2}" y="{oy - 10}" text-anchor="middle" '
                       f'font-size="12">hdim {hdim}, {"causal" if causal else "non-causal"}</text>')
            # Horizontal grid + y tick labels.
            t = 0.0
            while t <= y_hi + 1e-9:
                y = py(t)
                out.append(f'<line x1="{ox}" y1="{y:.1f}" x2="{ox + pw}" y2="{y:.1f}" '
                           f'stroke="#e0e0e0"/>')
                out.append(f'<text x="{ox - 5}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
                t += y_step
            # x ticks at every power of two in range.
            for e in range(math.ceil(x_lo), math.floor(x_hi) + 1):
                x = px(2 ** e)
                out.append(f'<line x1="{x:.1f}" y1="{oy + ph}" x2="{x:.1f}" y2="{oy + ph + 4}" '
                           f'stroke="black"/>')
                out.append(f'<text x="{x:.1f}" y="{oy + ph + 16}" text-anchor="middle">'
                           f'{seqlen_label(2 ** e)}</text>')
            out.append(f'<rect x="{ox}" y="{oy}" width="{pw}" height="{ph}" fill="none" '
                       f'stroke="black"/>')
            out.append(f'<text x="{ox + pw / 2}" y="{oy + ph + 32}" text-anchor="middle">'
                       f'seqlen</text>')
            out.append(f'<text x="{ox - 40}" y="{oy + ph / 2}" text-anchor="middle" '
                       f'transform="rotate(-90 {ox - 40} {oy + ph / 2})">TFLOP/s</text>')
            for impl, color in SERIES:
                impl = impl or ours
                pts = [(px(s), py(perf[k]))
                       for s in seqlens
                       for k in [("fwd", dtype, hdim, causal, s, impl)] if k in perf]
                if not pts:
                    continue
                if len(pts) > 1:
                    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
                    out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" '
                               f'stroke-width="2"/>')
                for x, y in pts:
                    out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="JSONL files (ours and torch, any order)")
    ap.add_argument("--ours", default=OURS_DEFAULT, help=f"impl name of our lines (default {OURS_DEFAULT})")
    ap.add_argument("--markdown", metavar="FILE", help="also write the tables to FILE")
    ap.add_argument("--svg", metavar="FILE",
                    help="write a forward TFLOP/s vs seqlen plot (first dtype found, "
                         "or --svg-dtype)")
    ap.add_argument("--svg-dtype", help="dtype to plot instead of the first one found")
    args = ap.parse_args()

    perf, memory, devices = load(args.files)
    lines = []
    if devices:
        lines += ["devices: " + ", ".join(dict.fromkeys(devices)), ""]
    lines += tables(perf, args.ours) + memory_table(memory)
    text = "\n".join(lines).rstrip() + "\n"
    sys.stdout.write(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)

    if args.svg:
        # "First dtype" = first in bf16, fp16 order among the forward lines,
        # so the choice does not depend on which file was listed first.
        fwd_dtypes = ordered({k[1] for k in perf if k[0] == "fwd"}, ["bf16", "fp16"])
        dtype = args.svg_dtype or (fwd_dtypes[0] if fwd_dtypes else None)
        if dtype is None:
            sys.exit("--svg: no forward lines to plot")
        suffix = f" — {devices[0]}" if devices else ""
        with open(args.svg, "w", encoding="utf-8") as f:
            f.write(svg_plot(perf, args.ours, dtype, suffix))
        print(f"wrote {args.svg} ({dtype})", file=sys.stderr)


if __name__ == "__main__":
    main()
