//! The main job: FlashAttention on random GQA inputs, checked against the f64 reference and timed
//! against candle's softmax-matmul attention. CPU by default; `--cuda` (feature `cuda`) runs on GPU 0.
//!
//!   cargo run --release --example demo -- [--seqlen 2048] [--heads 8] [--kv-heads 2] [--head-dim 64]
//!       [--causal] [--dtype f32|f16|bf16] [--cuda]

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_fa2::{flash_attn, naive, reference, AttnOptions};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 2048)]
    seqlen: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 8)]
    heads: usize,
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    #[arg(long, default_value_t = 64)]
    head_dim: usize,
    #[arg(long)]
    causal: bool,
    /// f32, f16 or bf16 (the CUDA kernels take f16 and bf16).
    #[arg(long, default_value = "f32")]
    dtype: String,
    #[arg(long)]
    cuda: bool,
}

/// The result and the fastest of three timed runs, after a warm-up.
fn timed(dev: &Device, f: impl Fn() -> candle_core::Result<Tensor>) -> Result<(Tensor, f64)> {
    let mut out = f()?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        dev.synchronize()?;
        let t0 = Instant::now();
        out = f()?;
        dev.synchronize()?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok((out, best))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dev = if args.cuda { Device::new_cuda(0)? } else { Device::Cpu };
    let dtype = match args.dtype.as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => anyhow::bail!("--dtype must be f32, f16 or bf16, got {other}"),
    };
    let (b, s, d) = (args.batch, args.seqlen, args.head_dim);
    let q = Tensor::randn(0f32, 1.0, (b, s, args.heads, d), &dev)?.to_dtype(dtype)?;
    let k = Tensor::randn(0f32, 1.0, (b, s, args.kv_heads, d), &dev)?.to_dtype(dtype)?;
    let v = Tensor::randn(0f32, 1.0, (b, s, args.kv_heads, d), &dev)?.to_dtype(dtype)?;
    let opts = AttnOptions::default().with_causal(args.causal);
    println!("q {:?}, k/v {:?}, {dtype:?}, causal {}, on {:?}", q.dims(), k.dims(), args.causal, dev.location());

    let (out, t_flash) = timed(&dev, || flash_attn(&q, &k, &v, &opts))?;
    let (_, t_naive) = timed(&dev, || naive::attention(&q, &k, &v, &opts))?;
    let flops = 4.0 * (b * args.heads * s * s * d) as f64 / if args.causal { 2.0 } else { 1.0 };
    println!("flash_attn: {:8.2} ms  {:7.1} GFLOP/s", t_flash * 1e3, flops / t_flash / 1e9);
    println!("naive     : {:8.2} ms  {:7.1} GFLOP/s", t_naive * 1e3, flops / t_naive / 1e9);
    println!("speed-up  : {:.2}x", t_naive / t_flash);

    // The f64 reference is O(n²) per head on one core: check the first batch row and head group only.
    let rows = s.min(512);
    let group = args.heads / args.kv_heads;
    let part = |t: &Tensor, h: usize| -> candle_core::Result<Tensor> { t.narrow(0, 0, 1)?.narrow(2, 0, h) };
    let (q1, k1, v1) = (part(&q, group)?.narrow(1, s - rows, rows)?, part(&k, 1)?, part(&v, 1)?);
    let (want, _) = reference::attention(&q1, &k1, &v1, &opts)?;
    let got = part(&out, group)?.narrow(1, s - rows, rows)?;
    println!(
        "max |flash - f64 reference| over the last {rows} queries of head group 0: {:.2e}",
        reference::max_abs_diff(&got, &want)?
    );
    Ok(())
}
