//! Linear memory: attention at a length where candle's softmax-matmul path would need more memory for its
//! (seqlen x seqlen) scores than this machine has, while the op runs in a few megabytes beyond its inputs.
//!
//!   cargo run --release --example long_context -- [--seqlen 65536] [--heads 4] [--head-dim 64]

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use candle_fa2::{flash_attn, AttnOptions};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 65536)]
    seqlen: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 64)]
    head_dim: usize,
}

/// (peak resident set, total memory) in bytes, from /proc (Linux).
fn memory() -> (Option<u64>, Option<u64>) {
    let kb = |file: &str, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(file).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|x| x * 1024)
    };
    (kb("/proc/self/status", "VmHWM:"), kb("/proc/meminfo", "MemTotal:"))
}

fn gib(x: u64) -> f64 {
    x as f64 / (1u64 << 30) as f64
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (s, h, d) = (args.seqlen, args.heads, args.head_dim);
    let q = Tensor::randn(0f32, 1.0, (1, s, h, d), &Device::Cpu)?;
    let k = Tensor::randn(0f32, 1.0, (1, s, h, d), &Device::Cpu)?;
    let v = Tensor::randn(0f32, 1.0, (1, s, h, d), &Device::Cpu)?;
    let inputs = 3 * s * h * d * 4;
    // The softmax-matmul path holds the f32 scores and their softmax, (heads, s, s) each.
    let scores = (h * s * s * 4) as u64;
    let (_, total) = memory();
    println!("seqlen {s}, {h} heads, head_dim {d}, f32, causal");
    println!("softmax-matmul scores alone: {:.1} GiB (x2 with the softmax output)", gib(scores));
    if let Some(total) = total {
        println!("this machine's memory:       {:.1} GiB", gib(total));
    }
    let t0 = Instant::now();
    let out = flash_attn(&q, &k, &v, &AttnOptions::causal())?;
    let secs = t0.elapsed().as_secs_f64();
    let flops = 2.0 * (h * s * s * d) as f64;
    println!("flash_attn: {secs:.1} s ({:.1} GFLOP/s), output {:?}", flops / secs / 1e9, out.dims());
    let (peak, _) = memory();
    if let Some(peak) = peak {
        println!("peak resident memory: {:.2} GiB (inputs {:.2} GiB)", gib(peak), gib(inputs as u64));
    }
    Ok(())
}
