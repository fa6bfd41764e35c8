//! End-to-end SmolLM2-135M timings, this crate's attention against candle's softmax-matmul attention in one
//! run: the prefill of a context of N tokens, then decode tokens/s with those N tokens in the KV cache.
//!
//!   cargo run --release --example llama_bench                          CPU, f32, the real SmolLM2 weights
//!   cargo run --release --features cuda --example llama_bench -- --random-weights     GPU 0, bf16
//!
//! `--random-weights` uses a seeded random initialisation with SmolLM2-135M's configuration instead of the
//! GGUF (for machines without the file: the timings are the same, the generated tokens are meaningless).
//!
//! Decode at long contexts and batches, a Llama-3-8B-shaped model (random weights drawn on the device):
//!
//!   cargo run --release --features cuda --example llama_bench -- --shape llama3-8b --fill-cache \
//!       --contexts 8192,32768 --batch 16
//!
//! `--fill-cache` fills the KV cache with random keys and values instead of running the prefill (which the
//! softmax-matmul attention cannot run at these sizes), then times decode.
//! The context is made of seeded random token ids; decode feeds back the greedy token. Contexts may exceed the
//! model's trained 8192 positions: the rotary tables extend, which changes nothing for timing.

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_fa2::AttnImpl;
use candle_fa2_examples::{
    device, fetch,
    gguf::{Gguf, LlamaConfig},
    llama::Llama,
    random_weights,
};
use clap::Parser;
use rand::{rngs::StdRng, Rng, SeedableRng};

#[derive(Parser)]
#[command(about = "SmolLM2-135M prefill and decode timings, flash against naive attention")]
struct Args {
    /// Context lengths (tokens in the cache when decoding starts).
    #[arg(long, value_delimiter = ',', default_values_t = [512, 2048, 8192])]
    contexts: Vec<usize>,
    /// Decode steps timed at each context.
    #[arg(long, default_value_t = 32)]
    decode_tokens: usize,
    /// Attention implementations to time, in this order.
    #[arg(long, value_delimiter = ',', default_values_t = [AttnImpl::Flash, AttnImpl::Naive])]
    attn: Vec<AttnImpl>,
    /// f32, f16 or bf16 [default: f32 on the CPU, bf16 on CUDA].
    #[arg(long, value_parser = device::parse_dtype)]
    dtype: Option<DType>,
    #[arg(long)]
    cpu: bool,
    /// A local SmolLM2 GGUF file instead of the cached download.
    #[arg(long, conflicts_with = "random_weights")]
    model: Option<PathBuf>,
    /// Seeded random weights with SmolLM2-135M's configuration instead of the GGUF.
    #[arg(long)]
    random_weights: bool,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// smollm2-135m, or llama3-8b (random weights only, drawn on the device: unseeded).
    #[arg(long, default_value = "smollm2-135m")]
    shape: String,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Fill the KV cache with random keys/values of each context length instead of timing a prefill.
    #[arg(long)]
    fill_cache: bool,
}

/// Llama-3-8B's shape: 32 layers, 32 query / 8 KV heads of head_dim 128, hidden 4096.
fn llama3_8b() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 128_256,
        hidden_size: 4096,
        intermediate_size: 14_336,
        num_hidden_layers: 32,
        num_attention_heads: 32,
        num_key_value_heads: 8,
        rope_theta: 500_000.0,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 131_072,
        tie_word_embeddings: false,
    }
}

/// Wall time, and on the CPU also the process's CPU time (all threads): other jobs on a shared machine
/// stretch the first but hardly the second.
#[derive(Clone, Copy)]
struct Span {
    wall_s: f64,
    cpu_s: Option<f64>,
}

struct Stopwatch {
    wall: Instant,
    cpu_s: Option<f64>,
}

impl Stopwatch {
    fn start(device: &Device) -> candle_core::Result<Self> {
        device.synchronize()?;
        Ok(Self { wall: Instant::now(), cpu_s: process_cpu_s() })
    }

    fn stop(self, device: &Device) -> candle_core::Result<Span> {
        device.synchronize()?;
        let wall_s = self.wall.elapsed().as_secs_f64();
        // On a GPU the host's CPU time measures launches and waiting, not the model's work.
        let cpu_s = if device.is_cpu() { self.cpu_s.zip(process_cpu_s()).map(|(a, b)| b - a) } else { None };
        Ok(Span { wall_s, cpu_s })
    }
}

#[cfg(unix)]
fn process_cpu_s() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct it is given, and on success it is fully initialised.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return None;
    }
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

#[cfg(not(unix))]
fn process_cpu_s() -> Option<f64> {
    None
}

struct Timing {
    prefill: Span,
    decode: Span,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.contexts.is_empty() || args.contexts.contains(&0) || args.decode_tokens == 0 || args.batch == 0 {
        bail!(
            "--contexts must list positive lengths, --decode-tokens and --batch must be positive, got {:?}, {} \
             and {}",
            args.contexts,
            args.decode_tokens,
            args.batch
        )
    }
    let device = device::pick_device(args.cpu);
    let dtype = args.dtype.unwrap_or(device::default_dtype(&device));

    let (cfg, weights, source) = if args.shape == "llama3-8b" {
        let cfg = llama3_8b();
        let weights = random_weights::device_random_weights(&cfg, dtype, &device)?;
        (cfg, weights, "RANDOM WEIGHTS (drawn on the device) with Llama-3-8B's shape".to_string())
    } else if args.shape != "smollm2-135m" {
        bail!("unknown --shape '{}': expected smollm2-135m or llama3-8b", args.shape)
    } else if args.random_weights {
        let cfg = LlamaConfig::smollm2_135m();
        let weights = random_weights::random_weights(&cfg, args.seed, dtype, &device)?;
        (cfg, weights, format!("SEEDED RANDOM WEIGHTS (seed {}) with SmolLM2-135M's configuration", args.seed))
    } else {
        let path = fetch::smollm2_gguf(args.model.as_deref())?;
        let mut file = Gguf::open(&path)?;
        let cfg = file.config()?;
        (cfg.clone(), file.hf_weights(&cfg, dtype, &device)?, format!("SmolLM2-135M-Instruct from {}", path.display()))
    };
    let vb = candle_nn::VarBuilder::from_tensors(weights, dtype, &device);
    println!("# llama_bench: {source}");
    println!(
        "# {:?}, {dtype:?}, {} threads, batch {}, {} decode steps per context, {} layers, {} query / {} KV heads, head_dim {}{}",
        device.location(),
        candle_core::utils::get_num_threads(),
        args.batch,
        args.decode_tokens,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim(),
        if args.fill_cache { ", cache filled with random keys/values (no prefill timed)" } else { "" }
    );
    println!();
    println!("wall: elapsed seconds; cpu: this process's CPU seconds, all threads (CPU runs only); decode tokens/s");
    println!("counts the tokens of every sequence of the batch");
    println!();
    println!("| context | attn | prefill wall (s) | prefill cpu (s) | prefill tokens/s | decode tokens/s | decode cpu (ms/token) |");
    println!("|---:|:---|---:|---:|---:|---:|---:|");

    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut results: Vec<(usize, AttnImpl, Timing)> = Vec::new();
    for &context in &args.contexts {
        // Ids past the 17 control tokens, as text would give.
        let ids: Vec<u32> = (0..context * args.batch).map(|_| rng.random_range(17..cfg.vocab_size as u32)).collect();
        let ids = Tensor::from_vec(ids, (args.batch, context), &device)?;
        for &attn in &args.attn {
            let mut llama = Llama::load(vb.clone(), &cfg, attn, context + args.decode_tokens)?;
            // Kernel loading, allocator growth and cuBLAS handles are paid before the clock starts.
            llama.forward(&ids.narrow(1, 0, context.min(16))?)?;
            llama.clear_cache();
            let timing = if args.fill_cache {
                time_decode_after_fill(&mut llama, &ids, args.decode_tokens, &device)
            } else {
                time_one(&mut llama, &ids, args.decode_tokens, &device)
            };
            match timing {
                Ok(t) => {
                    let per_token_ms = t.decode.cpu_s.map(|c| c * 1e3 / args.decode_tokens as f64);
                    let prefill_tokens_s = (args.batch * context) as f64 / t.prefill.wall_s;
                    println!(
                        "| {context} | {attn} | {} | {} | {} | {:.1} | {} |",
                        if args.fill_cache { "-".to_string() } else { format!("{:.3}", t.prefill.wall_s) },
                        optional(t.prefill.cpu_s, 3),
                        if args.fill_cache { "-".to_string() } else { format!("{prefill_tokens_s:.0}") },
                        (args.batch * args.decode_tokens) as f64 / t.decode.wall_s,
                        optional(per_token_ms, 1)
                    );
                    results.push((context, attn, t));
                }
                // A path that runs out of memory at a long context is a result, not the end of the run.
                Err(e) => println!("| {context} | {attn} | failed: {e} | | | | |"),
            }
        }
    }
    if let [first, second] = args.attn[..] {
        println!();
        println!("How many times faster {first} is than {second}, on wall time (and on CPU time):");
        println!();
        println!("| context | prefill | decode |");
        println!("|---:|---:|---:|");
        for &context in &args.contexts {
            let find = |attn| results.iter().find(|r| r.0 == context && r.1 == attn).map(|r| &r.2);
            if let (Some(a), Some(b)) = (find(first), find(second)) {
                let prefill = if args.fill_cache { "-".to_string() } else { speedup(a.prefill, b.prefill) };
                println!("| {context} | {prefill} | {} |", speedup(a.decode, b.decode));
            }
        }
    }
    Ok(())
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.decimals$}"))
}

/// `slow / fast` on wall time, with the CPU-time ratio in parentheses when there is one.
fn speedup(fast: Span, slow: Span) -> String {
    let wall = format!("{:.2}x", slow.wall_s / fast.wall_s);
    match fast.cpu_s.zip(slow.cpu_s) {
        Some((f, s)) => format!("{wall} ({:.2}x)", s / f),
        None => wall,
    }
}

fn time_one(llama: &mut Llama, ids: &Tensor, decode_tokens: usize, device: &Device) -> Result<Timing> {
    let clock = Stopwatch::start(device)?;
    let logits = llama.forward(ids)?;
    let prefill = clock.stop(device)?;

    let next = logits.argmax(D::Minus1)?.unsqueeze(1)?;
    Ok(Timing { prefill, decode: time_decode(llama, next, decode_tokens, device)? })
}

/// Greedy decode steps from `next` (batch, 1), each token fed back.
fn time_decode(llama: &mut Llama, mut next: Tensor, decode_tokens: usize, device: &Device) -> Result<Span> {
    let clock = Stopwatch::start(device)?;
    for _ in 0..decode_tokens {
        next = llama.forward(&next)?.argmax(D::Minus1)?.unsqueeze(1)?;
    }
    Ok(clock.stop(device)?)
}

/// Decode after a cache filled with `ids.dim(1)` random positions per sequence (no prefill; its span is 0).
fn time_decode_after_fill(llama: &mut Llama, ids: &Tensor, decode_tokens: usize, device: &Device) -> Result<Timing> {
    let (batch, context) = ids.dims2()?;
    llama.fill_cache_random(batch, context - 1)?;
    let logits = llama.forward(&ids.narrow(1, context - 1, 1)?)?;
    let next = logits.argmax(D::Minus1)?.unsqueeze(1)?;
    let prefill = Span { wall_s: 0.0, cpu_s: None };
    Ok(Timing { prefill, decode: time_decode(llama, next, decode_tokens, device)? })
}
