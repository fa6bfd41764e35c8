//! GPU benchmark of the op, printing one JSON line per configuration in the format of
//! scripts/bench_torch_sdpa.py, so scripts/compare.py can put both side by side.
//!
//!   cargo bench --features cuda --bench gpu_attention -- [--modes fwd,fwd_bwd,decode,serving] [--dtypes bf16,fp16,fp8]
//!       [--hdims 64,128,256] [--seqlens 512,...,16384] [--causal both|yes|no] [--out FILE] [--memory]
//!       [--flush read|write]
//!
//! Setup of the FlashAttention papers: batch x seqlen = 16k tokens, hidden 2048 (heads = 2048 / hdim).
//! FLOPs = 4 * batch * heads * seqlen² * hdim, halved when causal; fwd_bwd counts 3.5 times that (the
//! backward as 2.5 forwards). fwd_bwd times `flash_attn_with_lse` then `flash_attn_backward` with a fixed
//! random output gradient, as the torch script times `out.backward(g)`. Time: median over repetitions of a
//! synchronised loop, after warm-up.
//!
//! `decode` runs the rows of [`DECODE_ROWS`] (32 query heads sharing 8 KV heads, bottom-right causal) and
//! reports GB/s of K and V read once, each call timed alone by CUDA events after the L2 cache is flushed, as
//! scripts/bench_torch_sdpa.py does: K/V of the small rows fit the H200's 50 MB L2, and back-to-back calls
//! would read them from there.
//!
//! `serving` (bf16, head_dim 128, 16 query heads; 32 sharing 8 KV heads for decode): varlen prefill of a
//! batch against the dense batch of the same sequences (TFLOP/s over each sequence's own causal FLOPs,
//! forward and forward + backward), and decode from a paged cache at page sizes 16 to 256 against the same
//! cache stored contiguously (`flash_attn_kvcache`), GB/s of K/V read as `decode`.

use std::io::Write;
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::{
    flash_attn, flash_attn_backward, flash_attn_fp8, flash_attn_kvcache, flash_attn_paged, flash_attn_varlen,
    flash_attn_with_lse, naive, quantize_fp8, AttnOptions, Fp8Descale, PagedKv,
};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// fwd, fwd_bwd, decode, comma-separated.
    #[arg(long, default_value = "fwd")]
    modes: String,
    #[arg(long, default_value = "bf16")]
    dtypes: String,
    #[arg(long, default_value = "64,128,256")]
    hdims: String,
    #[arg(long, default_value = "512,1024,2048,4096,8192,16384")]
    seqlens: String,
    /// yes, no or both
    #[arg(long, default_value = "both")]
    causal: String,
    /// Also append the JSON lines to this file.
    #[arg(long)]
    out: Option<String>,
    /// fwd_bwd: the backward with dQ by f32 atomics instead of a second pass; the lines are tagged
    /// "candle-fa2-dq-atomics" (scripts/compare.py --ours candle-fa2-dq-atomics).
    #[arg(long)]
    dq_atomics: bool,
    /// decode: K/V stored (batch, kvlen, heads_kv, hdim) rather than (batch, heads_kv, kvlen, hdim); the
    /// lines are tagged "candle-fa2-bshd".
    #[arg(long)]
    decode_bshd: bool,
    /// decode: force this split count (AttnOptions::num_splits) instead of the heuristic's.
    #[arg(long)]
    num_splits: Option<usize>,
    /// decode: these rows instead of [`DECODE_ROWS`], `BATCHxKVLENxSEQLEN_QxHDIM` comma-separated (e.g.
    /// `32x4096x1x128,33x4096x1x128`: how GB/s moves with the number of work items).
    #[arg(long)]
    decode_rows: Option<String>,
    /// fwd, fwd_bwd: logits capped at this softcap (the transformed-logit kernels); the lines are tagged
    /// "candle-fa2-softcap".
    #[arg(long)]
    softcap: Option<f32>,
    /// Peak device memory of the op and of the softmax-matmul path at 32k and 64k tokens instead.
    #[arg(long)]
    memory: bool,
    /// decode and serving: how the L2 is emptied before each timed call, `read` (sum 256 MB) or `write`
    /// (zero 256 MB, as triton's do_bench and this bench until decode v4; see [`Flush`]).
    #[arg(long, value_enum, default_value_t = Flush::Read)]
    flush: Flush,
    /// Ignored: cargo bench passes it.
    #[arg(long)]
    bench: bool,
}

fn list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.trim().parse().expect("a comma-separated list of numbers"))
        .collect()
}

fn emit(out: &mut Option<std::fs::File>, line: String) {
    println!("{line}");
    if let Some(f) = out {
        writeln!(f, "{line}").expect("writable --out file");
    }
}

/// Median seconds per call of `f`, timed in synchronised loops of about 20 ms.
fn time(dev: &Device, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    dev.synchronize()?;
    let t0 = Instant::now();
    f()?;
    dev.synchronize()?;
    let once = t0.elapsed().as_secs_f64();
    let iters = ((0.02 / once) as usize).clamp(1, 1000);
    let mut samples = Vec::new();
    for _ in 0..15 {
        dev.synchronize()?;
        let t0 = Instant::now();
        for _ in 0..iters {
            f()?;
        }
        dev.synchronize()?;
        samples.push(t0.elapsed().as_secs_f64() / iters as f64);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok(samples[samples.len() / 2])
}

/// Decode rows: (batch, kv length, query rows, head_dim); scripts/bench_torch_sdpa.py has the same list.
const DECODE_ROWS: [(usize, usize, usize, usize); 17] = [
    (1, 8192, 1, 128),
    (8, 8192, 1, 128),
    (32, 4096, 1, 128),
    (1, 65536, 1, 128),
    (16, 32768, 1, 128),
    (64, 2048, 1, 128),
    (8, 8192, 4, 128),
    (16, 32768, 4, 128),
    (1, 65536, 1, 64),
    (8, 8192, 1, 64),
    (16, 32768, 1, 64),
    (1, 65536, 1, 256),
    (8, 8192, 1, 256),
    (16, 32768, 1, 256),
    (1, 32768, 1, 512),
    (8, 8192, 1, 512),
    (16, 16384, 1, 512),
];
const DECODE_HEADS: (usize, usize) = (32, 8);

fn cuda_err(e: candle_core::cuda_backend::cudarc::driver::DriverError) -> candle_core::Error {
    candle_core::Error::Cuda(Box::new(e))
}

/// How [`time_cold`] evicts a call's inputs from L2. `Write` zeroes 256 MB (triton's do_bench, and this
/// bench until 2026-11-30); it leaves the L2 full of dirty lines that the timed call then writes back to
/// HBM, about 50 MB of writes charged to it, a fifth of the traffic of a 268 MB decode. `Read` sums 256 MB
/// instead: the inputs are evicted the same, the lines left behind are clean.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Flush {
    Write,
    Read,
}

static FLUSH: std::sync::OnceLock<Flush> = std::sync::OnceLock::new();

/// Median milliseconds of `f` on the GPU: each call between two CUDA events, after a 256 MB write or read
/// ([`Flush`]) that evicts its inputs from L2 (not timed).
fn time_cold(dev: &Device, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
    let stream = dev.as_cuda_device()?.cuda_stream();
    let big = match FLUSH.get().copied().unwrap_or(Flush::Read) {
        Flush::Read => Some(Tensor::zeros((65536, 1024), DType::F32, dev)?),
        Flush::Write => None,
    };
    let flush = |_: ()| match &big {
        Some(big) => big.sum(1),
        None => Tensor::zeros(64 << 20, DType::F32, dev),
    };
    for _ in 0..5 {
        f()?;
    }
    let mut samples = Vec::new();
    for _ in 0..30 {
        let scratch = flush(())?;
        let start = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(cuda_err)?;
        let out = f()?;
        let end = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(cuda_err)?;
        samples.push(start.elapsed_ms(&end).map_err(cuda_err)? as f64);
        drop((scratch, out));
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok(samples[samples.len() / 2])
}

/// `--decode-rows`: `BATCHxKVLENxSEQLEN_QxHDIM`, comma-separated.
fn parse_decode_rows(list: &str) -> Result<Vec<(usize, usize, usize, usize)>> {
    list.split(',')
        .map(|row| {
            let dims: Option<Vec<usize>> = row.split('x').map(|d| d.trim().parse().ok()).collect();
            match dims.as_deref() {
                Some(&[batch, kvlen, sq, hdim]) => Ok((batch, kvlen, sq, hdim)),
                _ => candle_core::bail!("--decode-rows: {row:?} is not BATCHxKVLENxSEQLEN_QxHDIM"),
            }
        })
        .collect()
}

fn decode(
    dev: &Device,
    dtypes: &str,
    (bshd, num_splits): (bool, Option<usize>),
    rows: &[(usize, usize, usize, usize)],
    impl_name: &str,
    out: &mut Option<std::fs::File>,
) -> Result<()> {
    let impl_name = if bshd { format!("{impl_name}-bshd") } else { impl_name.to_string() };
    let (heads_q, heads_kv) = DECODE_HEADS;
    for dtype_name in dtypes.split(',') {
        let dtype = parse_dtype(dtype_name);
        for &(batch, kvlen, sq, hdim) in rows {
            // K/V stored (batch, heads_kv, kvlen, hdim), as torch's and candle-transformers' caches are, and
            // read through the (batch, kvlen, heads_kv, hdim) view the op takes; --decode-bshd stores them
            // in that order instead (rows of all heads interleaved).
            let make = |s, h| -> Result<Tensor> {
                if bshd {
                    Tensor::randn(0f32, 1.0, (batch, s, h, hdim), dev)?.to_dtype(dtype)
                } else {
                    Tensor::randn(0f32, 1.0, (batch, h, s, hdim), dev)?.to_dtype(dtype)?.transpose(1, 2)
                }
            };
            let q = Tensor::randn(0f32, 1.0, (batch, sq, heads_q, hdim), dev)?.to_dtype(dtype)?;
            let (k, v) = (make(kvlen, heads_kv)?, make(kvlen, heads_kv)?);
            let mut opts = AttnOptions::causal();
            opts.num_splits = num_splits;
            let ms = time_cold(dev, || flash_attn(&q, &k, &v, &opts))?;
            let bytes = 2 * k.elem_count() * dtype.size_in_bytes();
            emit(
                out,
                format!(
                    r#"{{"impl": "{impl_name}", "mode": "decode", "dtype": "{dtype_name}", "hdim": {hdim}, "batch": {batch}, "kvlen": {kvlen}, "seqlen_q": {sq}, "heads_q": {heads_q}, "heads_kv": {heads_kv}, "ms": {ms:.4}, "GBps": {:.1}}}"#,
                    bytes as f64 / (ms * 1e-3) / 1e9
                ),
            );
        }
    }
    Ok(())
}

/// The `serving` rows: varlen prefill against a dense batch, paged decode against a contiguous cache.
fn serving(dev: &Device, out: &mut Option<std::fs::File>) -> Result<()> {
    let (dtype, hdim) = (DType::BF16, 128);
    let causal = AttnOptions::causal();
    // Prefill: 16 query heads (hidden 2048); the same sequences dense (equal lengths only) and varlen.
    let heads = 16;
    let batches: [(&str, Vec<usize>); 3] = [
        ("equal", vec![4096; 8]),
        ("equal", vec![1024; 32]),
        ("ragged", vec![8192, 256, 3000, 5000, 1024, 7000, 4096, 512, 3712]),
    ];
    for (kind, lens) in batches {
        let total: usize = lens.iter().sum();
        let flops: f64 = lens.iter().map(|&l| 4.0 * (heads * l * l * hdim) as f64 / 2.0).sum();
        let max = *lens.iter().max().unwrap();
        let cu: Vec<u32> = std::iter::once(0)
            .chain(lens.iter().scan(0u32, |a, &l| {
                *a += l as u32;
                Some(*a)
            }))
            .collect();
        let cu = Tensor::new(cu.as_slice(), dev)?;
        let make = || Tensor::randn(0f32, 1.0, (total, heads, hdim), dev)?.to_dtype(dtype);
        let (q, k, v) = (make()?, make()?, make()?);
        let emit_row = |out: &mut Option<std::fs::File>, name: &str, mode: &str, secs: f64| {
            let f = if mode == "fwd" { flops } else { 3.5 * flops };
            emit(
                out,
                format!(
                    r#"{{"impl": "{name}", "mode": "serving_{mode}", "batch_kind": "{kind}", "sequences": {}, "tokens": {total}, "hdim": {hdim}, "heads": {heads}, "ms": {:.4}, "tflops": {:.1}}}"#,
                    lens.len(),
                    secs * 1e3,
                    f / secs / 1e12
                ),
            )
        };
        // Forward + backward through autograd for both layouts (the output's gradient is ones), so both
        // carry the same overhead around the kernels.
        let vars = |q: &Tensor, k: &Tensor, v: &Tensor| -> Result<[candle_core::Var; 3]> {
            Ok([
                candle_core::Var::from_tensor(q)?,
                candle_core::Var::from_tensor(k)?,
                candle_core::Var::from_tensor(v)?,
            ])
        };
        let grad_of_q =
            |out: Tensor, q: &candle_core::Var| -> Result<Tensor> { Ok(out.backward()?.get(q).expect("dq").clone()) };
        emit_row(
            out,
            "candle-fa2-varlen",
            "fwd",
            time(dev, || flash_attn_varlen(&q, &k, &v, &cu, &cu, max, max, &causal))?,
        );
        let [qv, kv, vv] = vars(&q, &k, &v)?;
        let secs = time(dev, || grad_of_q(flash_attn_varlen(&qv, &kv, &vv, &cu, &cu, max, max, &causal)?, &qv))?;
        emit_row(out, "candle-fa2-varlen", "fwd_bwd", secs);
        if kind == "equal" {
            let b = lens.len();
            let dense = |t: &Tensor| t.reshape((b, max, heads, hdim));
            let (qd, kd, vd) = (dense(&q)?, dense(&k)?, dense(&v)?);
            emit_row(out, "candle-fa2-dense", "fwd", time(dev, || flash_attn(&qd, &kd, &vd, &causal))?);
            let [qv, kv, vv] = vars(&qd, &kd, &vd)?;
            let secs = time(dev, || grad_of_q(flash_attn(&qv, &kv, &vv, &causal)?, &qv))?;
            emit_row(out, "candle-fa2-dense", "fwd_bwd", secs);
        }
    }
    // Decode: the same keys in a contiguous (batch, kvlen, heads_kv, hdim) cache and in pages (a shuffled
    // page order, as a server's allocator leaves them).
    let (heads_q, heads_kv) = DECODE_HEADS;
    for (batch, kvlen) in [(16usize, 8192usize), (32, 4096), (1, 65536), (64, 2048)] {
        let q = Tensor::randn(0f32, 1.0, (batch, 1, heads_q, hdim), dev)?.to_dtype(dtype)?;
        let k = Tensor::randn(0f32, 1.0, (batch, kvlen, heads_kv, hdim), dev)?.to_dtype(dtype)?;
        let v = Tensor::randn(0f32, 1.0, (batch, kvlen, heads_kv, hdim), dev)?.to_dtype(dtype)?;
        let seqlens = Tensor::new(vec![kvlen as u32; batch].as_slice(), dev)?;
        let bytes = 2 * k.elem_count() * dtype.size_in_bytes();
        let emit_row = |out: &mut Option<std::fs::File>, name: &str, page: usize, ms: f64| {
            emit(
                out,
                format!(
                    r#"{{"impl": "{name}", "mode": "serving_decode", "page_size": {page}, "batch": {batch}, "kvlen": {kvlen}, "hdim": {hdim}, "heads_q": {heads_q}, "heads_kv": {heads_kv}, "ms": {ms:.4}, "GBps": {:.1}}}"#,
                    bytes as f64 / (ms * 1e-3) / 1e9
                ),
            )
        };
        let ms = time_cold(dev, || flash_attn_kvcache(&q, &k, &v, &seqlens, &causal))?;
        emit_row(out, "candle-fa2-contiguous", 0, ms);
        // (page size, scattered): pages in a shuffled order, as a server's allocator leaves them; the
        // in-order row (each sequence's pages back to back) separates the cost of the scatter from ours.
        for (page, scattered) in [(16usize, false), (16, true), (32, true), (64, true), (128, true), (256, true)] {
            let per_seq = kvlen / page;
            let pages = batch * per_seq;
            // Page i of sequence b is physical page perm(b * per_seq + i): a fixed odd stride scatters them.
            let stride = (pages / 2 + 1) | 1;
            let stride = if scattered && gcd(stride, pages) == 1 { stride } else { 1 };
            let table: Vec<u32> = (0..pages).map(|i| ((i * stride) % pages) as u32).collect();
            let block_table = Tensor::from_vec(table.clone(), (batch, per_seq), dev)?;
            // Physical page p holds logical page table^-1(p): scatter the contiguous cache's pages there.
            let mut inverse = vec![0u32; pages];
            for (logical, &p) in table.iter().enumerate() {
                inverse[p as usize] = logical as u32;
            }
            let inverse = Tensor::new(inverse.as_slice(), dev)?;
            let paged = |t: &Tensor| t.reshape((pages, page, heads_kv, hdim))?.index_select(&inverse, 0);
            let (k_pages, v_pages) = (paged(&k)?, paged(&v)?);
            let kv = PagedKv { k_pages: &k_pages, v_pages: &v_pages, block_table: &block_table };
            let ms = time_cold(dev, || flash_attn_paged(&q, &kv, &seqlens, &causal))?;
            emit_row(out, if scattered { "candle-fa2-paged" } else { "candle-fa2-paged-in-order" }, page, ms);
        }
    }
    Ok(())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn parse_dtype(name: &str) -> DType {
    match name {
        "bf16" => DType::BF16,
        "fp16" | "f16" => DType::F16,
        // flash_attn_fp8 on e4m3 inputs (mode fwd only); the lines say "fp8".
        "fp8" | "e4m3" => DType::F8E4M3,
        other => panic!("unknown dtype {other}"),
    }
}

fn free_bytes() -> Result<usize> {
    let (free, _total) = candle_core::cuda_backend::cudarc::driver::result::mem_get_info()
        .map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
    Ok(free)
}

fn memory(dev: &Device, out: &mut Option<std::fs::File>) -> Result<()> {
    let (hdim, heads) = (128, 16);
    for seqlen in [32768, 65536] {
        let make = || Tensor::randn(0f32, 1.0, (1, seqlen, heads, hdim), dev)?.to_dtype(DType::BF16);
        let (q, k, v) = (make()?, make()?, make()?);
        dev.synchronize()?;
        let before = free_bytes()?;
        let o = flash_attn(&q, &k, &v, &AttnOptions::causal())?;
        dev.synchronize()?;
        let used = before.saturating_sub(free_bytes()?);
        let expected = o.elem_count() * 2 + heads * seqlen * 4;
        emit(
            out,
            format!(
                r#"{{"impl": "candle-fa2", "mode": "memory", "seqlen": {seqlen}, "peak_bytes": {used}, "output_and_lse_bytes": {expected}}}"#
            ),
        );
        drop(o);
        let scores_bytes = heads * seqlen * seqlen * 2;
        let before = free_bytes()?;
        let line = match naive::attention(&q, &k, &v, &AttnOptions::causal()).and_then(|o| {
            dev.synchronize()?;
            Ok(o)
        }) {
            Ok(_) => format!(
                r#"{{"impl": "candle-naive", "mode": "memory", "seqlen": {seqlen}, "peak_bytes": {}, "scores_bytes": {scores_bytes}}}"#,
                before.saturating_sub(free_bytes()?)
            ),
            Err(e) => format!(
                r#"{{"impl": "candle-naive", "mode": "memory", "seqlen": {seqlen}, "error": "{}", "scores_bytes": {scores_bytes}}}"#,
                e.to_string().lines().next().unwrap_or("").replace('"', "'")
            ),
        };
        emit(out, line);
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    FLUSH.set(args.flush).ok();
    let dev = Device::new_cuda(0)?;
    let mut out = args
        .out
        .as_ref()
        .map(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).expect("--out file can be opened"));
    if args.memory {
        return memory(&dev, &mut out);
    }
    let causals: Vec<bool> = match args.causal.as_str() {
        "yes" => vec![true],
        "no" => vec![false],
        _ => vec![false, true],
    };
    let impl_name = match (args.dq_atomics, args.softcap) {
        (true, _) => "candle-fa2-dq-atomics",
        (false, Some(_)) => "candle-fa2-softcap",
        (false, None) => "candle-fa2",
    };
    for mode in args.modes.split(',') {
        let backward = match mode {
            "fwd" => false,
            "fwd_bwd" => true,
            "decode" => {
                let rows = match &args.decode_rows {
                    Some(list) => parse_decode_rows(list)?,
                    None => DECODE_ROWS.to_vec(),
                };
                decode(&dev, &args.dtypes, (args.decode_bshd, args.num_splits), &rows, impl_name, &mut out)?;
                continue;
            }
            "serving" => {
                serving(&dev, &mut out)?;
                continue;
            }
            other => panic!("unknown mode {other}: fwd, fwd_bwd, decode or serving"),
        };
        for dtype_name in args.dtypes.split(',') {
            let dtype = parse_dtype(dtype_name);
            for hdim in list(&args.hdims) {
                for &causal in &causals {
                    for seqlen in list(&args.seqlens) {
                        let (batch, heads) = (16384 / seqlen, 2048 / hdim);
                        let make = || {
                            let x = Tensor::randn(0f32, 1.0, (batch, seqlen, heads, hdim), &dev)?;
                            if dtype == DType::F8E4M3 {
                                quantize_fp8(&x, 1.0)
                            } else {
                                x.to_dtype(dtype)
                            }
                        };
                        let (q, k, v, grad_out) = (make()?, make()?, make()?, make()?);
                        let mut opts = AttnOptions::default().with_causal(causal).with_dq_atomics(args.dq_atomics);
                        opts.softcap = args.softcap;
                        let secs = if dtype == DType::F8E4M3 {
                            // e4m3 inputs, bf16 output (forward only): the FP8 kernel on an H100/H200.
                            assert!(!backward, "fp8 is forward only: --modes fwd");
                            time(&dev, || flash_attn_fp8(&q, &k, &v, &Fp8Descale::default(), &opts))?
                        } else if backward {
                            time(&dev, || {
                                let (out, lse) = flash_attn_with_lse(&q, &k, &v, &opts)?;
                                Ok(flash_attn_backward(&q, &k, &v, &out, &lse, &grad_out, &opts)?.0)
                            })?
                        } else {
                            time(&dev, || flash_attn(&q, &k, &v, &opts))?
                        };
                        let fwd_flops =
                            4.0 * (batch * heads * seqlen * seqlen * hdim) as f64 / if causal { 2.0 } else { 1.0 };
                        let flops = if backward { 3.5 * fwd_flops } else { fwd_flops };
                        emit(
                            &mut out,
                            format!(
                                r#"{{"impl": "{impl_name}", "dtype": "{dtype_name}", "hdim": {hdim}, "causal": {causal}, "seqlen": {seqlen}, "batch": {batch}, "heads": {heads}, "mode": "{mode}", "ms": {:.4}, "tflops": {:.1}}}"#,
                                secs * 1e3,
                                flops / secs / 1e12
                            ),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
