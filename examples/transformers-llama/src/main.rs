//! SmolLM2-135M-Instruct through candle-transformers' `models::llama` with `use_flash_attn`: its calls to
//! `candle_flash_attn::flash_attn` land in candle-fa2 through the `[patch.crates-io]` entry of Cargo.toml.
//! The weights come from the same GGUF as examples/llama, converted to Hugging Face's layout (Q/K rows
//! un-permuted), which is what candle-transformers' Llama expects.
//!
//!   source <(scripts/install_cuda.sh --env)        # the flash-attn feature builds candle for CUDA
//!   cd examples/transformers-llama && cargo run --release -- --prompt "What is the capital of France?"
//!
//! On a machine without a GPU it runs on the CPU (the CUDA libraries are opened lazily; linking needs them
//! or `scripts/install_cuda.sh --link`'s stubs). `--attn naive` runs candle-transformers' own
//! softmax-matmul attention on the same weights.

use std::time::Instant;

use anyhow::Result;
use candle_core::Tensor;
use candle_fa2_examples::{chat, generate};
use candle_transformers::models::llama;
use clap::Parser;
use transformers_llama::config;

#[derive(Parser)]
#[command(about = "SmolLM2-135M-Instruct on candle-transformers' Llama, flash attention from candle-fa2")]
struct Args {
    #[command(flatten)]
    chat: chat::ChatArgs,
    /// flash: `use_flash_attn` (candle-fa2 through the patched candle-flash-attn); naive: candle-transformers'
    /// softmax-matmul attention.
    #[arg(long, default_value = "flash", value_parser = ["flash", "naive"])]
    attn: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let chat::Chat { device, dtype, path, gguf: mut file, cfg, tokenizer, prompt, mut sampler } =
        args.chat.prepare()?;
    let t_load = Instant::now();
    let config = config::llama_config(&cfg, args.attn == "flash");
    let weights = file.hf_weights(&cfg, dtype, &device)?;
    let model = llama::Llama::load(candle_nn::VarBuilder::from_tensors(weights, dtype, &device), &config)?;
    let mut cache = llama::Cache::new(true, dtype, &config, &device)?;
    eprintln!(
        "candle_transformers::models::llama, SmolLM2-135M-Instruct ({}) loaded in {:.1} s: {:?}, {dtype:?}, \
         use_flash_attn {}",
        path.display(),
        t_load.elapsed().as_secs_f64(),
        device.location(),
        config.use_flash_attn
    );

    let mut position = 0;
    let mut stdout = std::io::stdout();
    let stats = generate::generate(&tokenizer, &prompt, args.chat.max_tokens, &mut sampler, &mut stdout, |ids| {
        let logits = model.forward(&Tensor::new(ids, &device)?.unsqueeze(0)?, position, &mut cache)?;
        position += ids.len();
        Ok(logits)
    })?;
    stats.report();
    Ok(())
}
