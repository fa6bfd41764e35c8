//! GPT-2 text generation on our attention or candle's softmax-matmul attention (`--attn flash|naive`), with a
//! KV cache: prefill and decode timed separately.
//!
//!   cargo run --release --example gpt2 -- --prompt "The meaning of life is" [--weights model.safetensors]
//!       [--max-tokens 64] [--temperature 0.8] [--top-p 0.95] [--seed 42] [--dtype f32|f16|bf16] [--cpu]
//!       [--attn flash|naive]
//!
//! `--weights`: a Hugging Face GPT-2 `model.safetensors` (any size; the configuration comes from its shapes).
//! Without it the model is GPT-2 124M with a seeded random initialisation: the architecture, tokenizer,
//! cache and timings are real, the text is noise. Built with `--features cuda`, it runs on GPU 0 in bf16
//! unless `--cpu`.

use std::{io::Write, path::PathBuf};

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use candle_fa2::AttnImpl;
use candle_nn::VarBuilder;
use clap::Parser;

use candle_fa2_examples::{
    gpt::{Gpt, SeededInit},
    gpt2::{checkpoint, generate::generate, tokenizer::Gpt2Tokenizer},
    sampling::Sampler,
};

/// The random initialisation's seed: fixed, so `--seed` changes the sampling and not the model.
const INIT_SEED: u64 = 0;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "The meaning of life is")]
    prompt: String,
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// 0 samples greedily.
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    #[arg(long, default_value_t = 0.95)]
    top_p: f64,
    /// Seeds the sampling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// f32, f16 or bf16; default f32 on CPU, bf16 on CUDA.
    #[arg(long)]
    dtype: Option<DType>,
    /// Run on the CPU even when built with `--features cuda`.
    #[arg(long)]
    cpu: bool,
    #[arg(long, default_value_t = AttnImpl::Flash)]
    attn: AttnImpl,
    /// A Hugging Face GPT-2 `model.safetensors`; without it, seeded random weights.
    #[arg(long)]
    weights: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dev = if args.cpu { Device::Cpu } else { Device::cuda_if_available(0)? };
    let dtype = args.dtype.unwrap_or(if dev.is_cuda() { DType::BF16 } else { DType::F32 });
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        bail!("--dtype must be f32, f16 or bf16, got {dtype:?}")
    }
    if args.max_tokens == 0 {
        bail!("--max-tokens must be at least 1")
    }
    // 1: no repetition penalty (this example has no --repeat-penalty).
    let mut sampler = Sampler::new(args.seed, args.temperature, args.top_p, 1.0, 0)?;
    let tokenizer = Gpt2Tokenizer::new()?;

    let (model, weights) = match &args.weights {
        Some(path) => {
            let tensors = checkpoint::load(path)?;
            let cfg = checkpoint::config(&tensors)?;
            let model = Gpt::new(cfg, VarBuilder::from_tensors(tensors, dtype, &dev), args.attn)?;
            (model, format!("GPT-2 weights from {}", path.display()))
        }
        None => {
            let vb = VarBuilder::from_backend(Box::new(SeededInit::new(INIT_SEED, None)), dtype, dev.clone());
            let model = Gpt::new(checkpoint::gpt2_124m(), vb, args.attn)?;
            let label = format!(
                "RANDOM weights (GPT-2's initialisation, seed {INIT_SEED}), not a trained model: the text is \
                 noise; --weights model.safetensors loads GPT-2"
            );
            (model, label)
        }
    };
    let cfg = *model.config();
    if cfg.vocab_size != 50257 {
        bail!("the checkpoint has {} tokens; GPT-2's tokenizer has 50257", cfg.vocab_size)
    }
    println!("model   : GPT-2, {} layers, {} heads, hidden {}, {weights}", cfg.n_layer, cfg.n_head, cfg.n_embd);
    println!("run     : attention {}, {dtype:?} on {:?}", args.attn, dev.location());

    // GPT-2 starts documents after <|endoftext|>: with no prompt, that token alone.
    let mut prompt = tokenizer.encode(&args.prompt);
    if prompt.is_empty() {
        prompt.push(Gpt2Tokenizer::END_OF_TEXT);
    }
    println!("prompt  : {} tokens", prompt.len());
    println!("---");
    print!("{}", args.prompt);
    let mut stream = tokenizer.stream();
    let stop = Gpt2Tokenizer::END_OF_TEXT;
    let generation = generate(&model, &prompt, args.max_tokens, Some(stop), &mut sampler, &dev, |token| {
        if token != stop {
            print!("{}", stream.push(token)?);
            std::io::stdout().flush()?;
        }
        Ok(())
    })?;
    println!("{}", stream.finish());
    println!("---");

    let n = generation.tokens.len();
    let per_sec = |tokens: usize, secs: f64| if secs > 0.0 { tokens as f64 / secs } else { f64::NAN };
    println!(
        "prefill : {} tokens in {:.1} ms, {:.1} tokens/s (includes sampling the first new token)",
        prompt.len(),
        generation.prefill_secs * 1e3,
        per_sec(prompt.len(), generation.prefill_secs)
    );
    println!(
        "decode  : {} tokens in {:.1} ms, {:.1} tokens/s ({} attention, seqlen_q = 1 against the cache)",
        n - 1,
        generation.decode_secs * 1e3,
        per_sec(n - 1, generation.decode_secs),
        args.attn
    );
    if args.weights.is_none() {
        println!("note    : random weights, see the model line");
    }
    Ok(())
}
