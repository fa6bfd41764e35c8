#!/usr/bin/env python3
"""Reference numbers for candle-fa2: torch SDPA with the flash and cuDNN backends.

Runs the FlashAttention-2 paper's benchmark grid (tokens per batch fixed at
16k, hidden size fixed at 2048) so the output can be put side by side with the
crate's own bench (impl "candle-fa2") by scripts/compare.py.

Output is JSON lines, one per configuration:
  {"impl", "dtype", "hdim", "causal", "seqlen", "batch", "heads", "mode", "ms", "tflops"}
preceded by a header {"device", "torch", "date"}. Configurations a backend
rejects (or that run out of memory) produce the same keys minus ms/tflops plus
"error" instead of aborting the sweep.

Mode "decode" times instead the rows of DECODE_ROWS (32 query heads sharing 8
KV heads, enable_gqa) and reports GB/s of K and V read once:
  {"impl", "mode": "decode", "dtype", "hdim", "batch", "kvlen", "seqlen_q", "heads_q", "heads_kv", "ms", "GBps"}

Examples:
  python3 scripts/bench_torch_sdpa.py --modes fwd,fwd_bwd --dtypes bf16,fp16 --out torch.jsonl
  python3 scripts/bench_torch_sdpa.py --modes decode --dtypes bf16,fp16 --out torch.jsonl
  python3 scripts/bench_torch_sdpa.py --memory --out torch.jsonl
"""

import argparse
import datetime
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BACKENDS = {
    "flash": ("torch-flash", SDPBackend.FLASH_ATTENTION),
    "cudnn": ("torch-cudnn", SDPBackend.CUDNN_ATTENTION),
    # Not in the default list: the reference at head dims the two above reject (512).
    "efficient": ("torch-efficient", SDPBackend.EFFICIENT_ATTENTION),
}
# The paper keeps batch*seqlen and heads*hdim constant so every point does
# comparable total work; these are those constants.
TOKENS = 16384
HIDDEN = 2048


def emit(obj, out_file):
    """Print one JSON line and, if requested, append it to the output file.

    The file is flushed per line so a sweep killed by a time limit still
    leaves every finished measurement on disk.
    """
    line = json.dumps(obj)
    print(line, flush=True)
    if out_file is not None:
        out_file.write(line + "\n")
        out_file.flush()


def attn_flops(batch, heads, seqlen, hdim, causal, mode):
    """FLOP count by the FlashAttention paper's convention.

    Two matmuls (QK^T and PV) of 2*s*s*d each; causal skips half of them; the
    backward pass is counted as 2.5x the forward, so fwd+bwd is 3.5x.
    """
    flops = 4 * batch * heads * seqlen * seqlen * hdim
    if causal:
        flops //= 2
    if mode == "fwd_bwd":
        flops = flops * 7 // 2
    return flops


# How bench_ms evicts the inputs from L2 before each rep (--flush): "read" sums 256 MB; "write" zeroes it
# (triton's do_bench, and this script until 2026-11-30). Zeroing leaves the L2 full of dirty lines that the
# timed call then writes back to HBM, about 50 MB of writes charged to it: a fifth of the traffic of a
# 268 MB decode (BENCHMARKS.md, decode v4). Reading evicts the inputs as well and leaves clean lines.
# "none" times the calls back to back with no flush. The default is what benches/gpu_attention.rs does for
# the mode, so that both sides are timed alike: "read" for decode (memory-bound: a cold L2 is the point),
# "none" for fwd and fwd_bwd. There a compute-bound kernel runs at the board's power limit and the clocks
# that leaves; the flushes between calls let it cool: cuDNN's forward measured 4-14% faster with them
# than back to back on the H200 (results/h200-2026-12-02-ws-ncu/).
FLUSH = None


def bench_ms(fn, flush_mode, grad_to_none=(), warmup_ms=25.0, rep_ms=100.0, min_reps=20):
    """Median runtime of fn in ms, timed with CUDA events.

    Same scheme as triton.testing.do_bench (L2 flushed before each rep, time
    budget in ms) but with a floor on the repetition count: do_bench would
    take only a handful of samples for the slowest (16k, hdim 256, fwd_bwd)
    points, and we want a median over at least min_reps. flush_mode "none":
    loops of calls back to back instead (FLUSH).
    """
    # 256 MB is well above the H100's and H200's 50 MB L2: reading (or zeroing) it evicts our inputs and
    # every rep starts cold, like a real model step would (FLUSH). "none" neither allocates nor touches it,
    # the per-call estimate below included.
    cache = None if flush_mode == "none" else torch.zeros(256 * 1024 * 1024, dtype=torch.int8, device="cuda")

    def flush():
        if flush_mode == "read":
            cache.view(65536, -1).sum(1)
        elif flush_mode == "write":
            cache.zero_()

    def clear_grads():
        # Dropping grads (rather than zeroing) makes backward write fresh
        # tensors instead of accumulating, so no extra add kernel is timed.
        for t in grad_to_none:
            t.grad = None

    # Rough per-call estimate to size the warm-up and the timed loop.
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        clear_grads()
        flush()
        fn()
    end.record()
    torch.cuda.synchronize()
    estimate = max(start.elapsed_time(end) / 5, 1e-3)

    for _ in range(max(1, int(warmup_ms / estimate))):
        clear_grads()
        fn()

    n_reps = max(min_reps, int(rep_ms / estimate))
    if flush_mode == "none":
        # Back to back, as benches/gpu_attention.rs times our forward: the median of 15 loops of
        # n_reps / 5 calls, no flush between them, so both run at the clocks a sustained load leaves.
        loop = max(1, n_reps // 5)
        samples = []
        for _ in range(15):
            start.record()
            for _ in range(loop):
                clear_grads()
                fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / loop)
        return statistics.median(samples)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n_reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n_reps)]
    for i in range(n_reps):
        clear_grads()
        flush()  # outside the events: the flush itself is not timed
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def short_error(exc):
    """First line of an exception message; torch's can be pages long."""
    msg = str(exc).strip().splitlines()
    return (msg[0] if msg else type(exc).__name__)[:300]


def run_one(impl, backend, dtype_name, hdim, causal, seqlen, mode):
    """Time one configuration; returns the JSON record (with ms or error)."""
    batch = TOKENS // seqlen
    heads = HIDDEN // hdim
    rec = {
        "impl": impl, "dtype": dtype_name, "hdim": hdim, "causal": causal,
        "seqlen": seqlen, "batch": batch, "heads": heads, "mode": mode,
    }
    dtype = DTYPES[dtype_name]
    shape = (batch, heads, seqlen, hdim)
    need_grad = mode == "fwd_bwd"
    try:
        q, k, v = (torch.randn(shape, dtype=dtype, device="cuda", requires_grad=need_grad)
                   for _ in range(3))
        with sdpa_kernel([backend]):
            if mode == "fwd":
                def fn():
                    with torch.no_grad():
                        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                grads = ()
            else:
                # The output grad is made once, outside the timed region, so
                # only attention forward + backward is measured.
                with torch.no_grad():
                    g = torch.randn(shape, dtype=dtype, device="cuda")

                def fn():
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    out.backward(g)
                grads = (q, k, v)
            # sdpa_kernel only restricts dispatch at call time, so a rejected
            # configuration raises inside bench_ms's first call and lands in
            # the except below.
            ms = bench_ms(fn, FLUSH or "none", grad_to_none=grads)
        flops = attn_flops(batch, heads, seqlen, hdim, causal, mode)
        rec["ms"] = round(ms, 4)
        rec["tflops"] = round(flops / (ms * 1e-3) / 1e12, 1)
    except Exception as exc:  # noqa: BLE001 - any rejection is reported, never fatal
        rec["error"] = short_error(exc)
    return rec


# (batch, kv length, query rows, head_dim): the same list as DECODE_ROWS in benches/gpu_attention.rs.
DECODE_ROWS = [
    (1, 8192, 1, 128), (8, 8192, 1, 128), (32, 4096, 1, 128), (1, 65536, 1, 128), (16, 32768, 1, 128),
    (64, 2048, 1, 128), (8, 8192, 4, 128), (16, 32768, 4, 128),
    (1, 65536, 1, 64), (8, 8192, 1, 64), (16, 32768, 1, 64),
    (1, 65536, 1, 256), (8, 8192, 1, 256), (16, 32768, 1, 256),
    (1, 32768, 1, 512), (8, 8192, 1, 512), (16, 16384, 1, 512),
]
DECODE_HEADS = (32, 8)


def run_decode(impl, backend, dtype_name, batch, kvlen, seqlen_q, hdim):
    """One decode row: new query rows against a KV cache, GQA through enable_gqa.

    torch's is_causal aligns the mask top-left, so it is off here: with one
    query row that is the same attention as bottom-right causal; with a few
    rows it reads the same K/V (the measure here) with a few more keys visible.
    """
    heads_q, heads_kv = DECODE_HEADS
    rec = {"impl": impl, "mode": "decode", "dtype": dtype_name, "hdim": hdim, "batch": batch,
           "kvlen": kvlen, "seqlen_q": seqlen_q, "heads_q": heads_q, "heads_kv": heads_kv}
    dtype = DTYPES[dtype_name]
    try:
        q = torch.randn(batch, heads_q, seqlen_q, hdim, dtype=dtype, device="cuda")
        k, v = (torch.randn(batch, heads_kv, kvlen, hdim, dtype=dtype, device="cuda") for _ in range(2))
        kv_bytes = 2 * k.numel() * k.element_size()
        gqa = backend != SDPBackend.EFFICIENT_ATTENTION
        if not gqa:
            # The efficient backend takes no enable_gqa: K/V expanded to every query head, as a torch user
            # would (outside the timed call; it then reads heads_q / heads_kv times the bytes counted).
            k, v = (x.repeat_interleave(heads_q // heads_kv, dim=1) for x in (k, v))
            rec["kv_expanded"] = True
        with sdpa_kernel([backend]):
            def fn():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
            ms = bench_ms(fn, FLUSH or "read")
        rec["ms"] = round(ms, 4)
        rec["GBps"] = round(kv_bytes / (ms * 1e-3) / 1e9, 1)
    except Exception as exc:  # noqa: BLE001
        rec["error"] = short_error(exc)
    return rec


def naive_attention(q, k, v):
    """softmax(q k^T * scale + causal mask) v, materialising the N x N scores.

    In-place ops where possible so the naive path is charged only for the
    memory it inherently needs (scores + probabilities + mask), not for
    avoidable temporaries.
    """
    s = q.shape[-2]
    scores = q @ k.transpose(-2, -1)
    scores.mul_(1.0 / math.sqrt(q.shape[-1]))
    mask = torch.ones(s, s, dtype=torch.bool, device=q.device).triu_(1)
    scores.masked_fill_(mask, float("-inf"))
    del mask
    probs = torch.softmax(scores, dim=-1)
    del scores
    return probs @ v


def measure_memory(out_file):
    """Peak extra memory of one causal forward: flash backend vs naive.

    This is the paper's "memory is linear in seqlen" claim: the flash kernel
    needs only O(N) beyond its inputs, the naive path needs O(N^2) scores.
    """
    hdim, heads, batch = 128, HIDDEN // 128, 1
    dtype = torch.bfloat16
    elem = torch.tensor([], dtype=dtype).element_size()
    for seqlen in (32768, 65536):
        shape = (batch, heads, seqlen, hdim)
        for impl in ("torch-flash", "naive"):
            rec = {"impl": impl, "mode": "memory", "seqlen": seqlen}
            if impl == "naive":
                # What the N x N score matrix alone costs; reported even on
                # success so the two numbers can be compared directly.
                rec["scores_bytes"] = batch * heads * seqlen * seqlen * elem
            q = k = v = out = None
            try:
                q, k, v = (torch.randn(shape, dtype=dtype, device="cuda") for _ in range(3))
                torch.cuda.synchronize()
                # Inputs are allocated before the reset, so the delta is what
                # the attention itself (incl. its output) allocates.
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                with torch.no_grad():
                    if impl == "torch-flash":
                        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    else:
                        out = naive_attention(q, k, v)
                torch.cuda.synchronize()
                rec["peak_bytes"] = torch.cuda.max_memory_allocated() - base
            except torch.OutOfMemoryError:
                rec["error"] = "oom"
            except Exception as exc:  # noqa: BLE001
                rec["error"] = short_error(exc)
            finally:
                del q, k, v, out
                torch.cuda.empty_cache()
            emit(rec, out_file)


def int_list(text):
    return [int(x) for x in text.split(",") if x]


def str_list(choices):
    def parse(text):
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {sorted(choices)}")
        return items
    return parse


def decode_rows(text):
    """`--decode-rows`: BATCHxKVLENxSEQLEN_QxHDIM, comma-separated."""
    rows = []
    for row in text.split(","):
        dims = row.strip().split("x")
        if len(dims) != 4 or not all(d.isdigit() and int(d) > 0 for d in dims):
            raise argparse.ArgumentTypeError(f"decode row {row!r}: want BATCHxKVLENxSEQLEN_QxHDIM")
        rows.append(tuple(int(d) for d in dims))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", type=str_list({"fwd", "fwd_bwd", "decode"}), default=["fwd"],
                    help="comma list of fwd,fwd_bwd,decode (default fwd)")
    ap.add_argument("--dtypes", type=str_list(set(DTYPES)), default=["bf16"],
                    help="comma list of bf16,fp16 (default bf16)")
    ap.add_argument("--hdims", type=int_list, default=[64, 128, 256])
    ap.add_argument("--seqlens", type=int_list, default=[512, 1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--backends", type=str_list(set(BACKENDS)), default=["flash", "cudnn"])
    ap.add_argument("--decode-rows", type=decode_rows, default=None,
                    help="decode: these rows instead of DECODE_ROWS, BATCHxKVLENxSEQLEN_QxHDIM comma-separated "
                         "(as benches/gpu_attention.rs --decode-rows)")
    ap.add_argument("--out", help="append JSON lines to this file (also printed to stdout)")
    ap.add_argument("--flush", choices=["read", "write", "none"], default=None,
                    help="how the L2 is emptied before each timed call (see FLUSH; default: none "
                         "for fwd and fwd_bwd, read for decode, as benches/gpu_attention.rs)")
    ap.add_argument("--memory", action="store_true",
                    help="instead of the timing grid, measure peak memory of one causal "
                         "forward at seqlen 32k/64k: flash backend vs naive attention")
    args = ap.parse_args()
    global FLUSH
    FLUSH = args.flush

    if not torch.cuda.is_available():
        sys.exit("bench_torch_sdpa.py needs a CUDA device")

    out_file = open(args.out, "a") if args.out else None
    try:
        emit({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "date": datetime.date.today().isoformat()}, out_file)
        if args.memory:
            measure_memory(out_file)
            return
        for mode in args.modes:
            if mode == "decode":
                for dtype_name in args.dtypes:
                    for row in args.decode_rows or DECODE_ROWS:
                        for name in args.backends:
                            impl, backend = BACKENDS[name]
                            emit(run_decode(impl, backend, dtype_name, *row), out_file)
                            torch.cuda.empty_cache()
                continue
            for dtype_name in args.dtypes:
                for hdim in args.hdims:
                    for causal in (False, True):
                        for seqlen in args.seqlens:
                            for name in args.backends:
                                impl, backend = BACKENDS[name]
                                emit(run_one(impl, backend, dtype_name, hdim, causal,
                                             seqlen, mode), out_file)
                                # run_one's tensors are unreferenced now; hand the
                                # cached blocks back so a failed (e.g. OOM) point
                                # cannot starve or fragment the following ones.
                                torch.cuda.empty_cache()
    finally:
        if out_file is not None:
            out_file.close()


if __name__ == "__main__":
    main()
