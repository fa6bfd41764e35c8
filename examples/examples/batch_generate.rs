//! Continuous batching with SmolLM2-135M-Instruct on a paged K/V cache: a queue of prompts of different
//! lengths served with up to `--concurrency` sequences in one batch. Each step packs every running
//! sequence's new tokens (a whole prompt for a request that just joined, one token for the others) into one
//! forward pass with one varlen paged attention call per layer; a waiting request joins the moment another
//! finishes. Then the same workload one request at a time, for comparison.
//!
//!   cargo run --release --features cuda --example batch_generate -- --requests 64 --concurrency 32
//!   cargo run --release --example batch_generate -- --cpu --requests 8 --concurrency 4 --max-tokens 16
//!   cargo run --release --features cuda --example batch_generate -- --random-weights   (no model file)
//!
//! `--random-weights`: SmolLM2-135M's shape with random weights and random prompts of the questions'
//! lengths, every answer --max-tokens long (for timing on a host without the GGUF; the tokens mean nothing).
//!
//! Prints each answer's first words, aggregate decode tokens/s and per-request latency (from the start of the
//! run, queueing included) of both runs. Greedy answers equal the `llama` example's (tests/llama.rs).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use candle_core::DType;
use candle_fa2::AttnImpl;
use candle_fa2_examples::{chat, device, gguf, llama::Llama, paged, random_weights, sampling, serve};
use clap::Parser;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Questions of different lengths; request i asks question i % len.
const QUESTIONS: [&str; 12] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences why the sky is blue.",
    "List three uses of a paperclip.",
    "What is 12 times 11?",
    "Give me a short recipe for pancakes, with the ingredients first and then the steps, numbered.",
    "Who wrote Romeo and Juliet?",
    "Describe a cat to someone who has never seen one.",
    "Translate 'good morning' into Spanish and German.",
    "What are the three states of water? Answer briefly, then give one everyday example of each state.",
    "Name a planet with rings.",
    "Suggest a name for a friendly robot and explain your choice in one sentence.",
];

#[derive(Parser)]
#[command(about = "SmolLM2-135M-Instruct serving a queue of prompts by continuous batching on a paged cache")]
struct Args {
    #[command(flatten)]
    chat: chat::ChatArgs,
    /// Requests in the queue.
    #[arg(long, default_value_t = 64)]
    requests: usize,
    /// Sequences in the batch at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Tokens per cache page.
    #[arg(long, default_value_t = 16)]
    page_size: usize,
    /// Skip the one-at-a-time run.
    #[arg(long)]
    no_sequential: bool,
    /// Random weights and prompts with SmolLM2-135M's shape, no model file (timing only).
    #[arg(long)]
    random_weights: bool,
}

struct Run {
    wall: Duration,
    tokens: usize,
    latencies: Vec<Duration>,
    first_tokens: Vec<Duration>,
}

impl Run {
    fn report(&self, name: &str) {
        let mut lat = self.latencies.clone();
        lat.sort();
        let mut first = self.first_tokens.clone();
        first.sort();
        let pct = |v: &[Duration], p: usize| v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64();
        eprintln!(
            "{name}: {} answer tokens in {:.2} s: {:.1} tokens/s; latency p50 {:.2} s, p90 {:.2} s, max {:.2} s; \
             first token p50 {:.2} s",
            self.tokens,
            self.wall.as_secs_f64(),
            self.tokens as f64 / self.wall.as_secs_f64(),
            pct(&lat, 50),
            pct(&lat, 90),
            pct(&lat, 100),
            pct(&first, 50),
        );
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.requests == 0 || args.concurrency == 0 || args.page_size == 0 {
        bail!("--requests, --concurrency and --page-size must be at least 1")
    }
    let device = device::pick_device(args.chat.cpu);
    let dtype = args.chat.dtype.unwrap_or(device::default_dtype(&device));
    if device.is_cuda() && dtype == DType::F32 {
        bail!("the CUDA kernels take f16 or bf16, not --dtype f32")
    }
    let (cfg, weights, tokenizer, prompts) = if args.random_weights {
        let cfg = gguf::LlamaConfig::smollm2_135m();
        let weights = random_weights::device_random_weights(&cfg, dtype, &device)?;
        // Prompts of the chat-templated questions' lengths (about 35 to 60 tokens), random ids.
        let mut rng = StdRng::seed_from_u64(args.chat.seed);
        let prompts = (0..args.requests)
            .map(|i| (0..35 + 2 * (i % QUESTIONS.len())).map(|_| rng.random_range(3..cfg.vocab_size as u32)).collect())
            .collect::<Vec<Vec<u32>>>();
        (cfg, weights, None, prompts)
    } else {
        let chat::Chat { mut gguf, cfg, tokenizer, .. } = args.chat.prepare()?;
        let prompts = (0..args.requests)
            .map(|i| tokenizer.chat_prompt(&args.chat.system, QUESTIONS[i % QUESTIONS.len()]))
            .collect::<Result<Vec<_>>>()?;
        let weights = gguf.hf_weights(&cfg, dtype, &device)?;
        (cfg, weights, Some(tokenizer), prompts)
    };
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) + args.chat.max_tokens;
    let vb = candle_nn::VarBuilder::from_tensors(weights, dtype, &device);
    // No dense cache is used: forward_paged reads the rotary tables only.
    let llama = Llama::load(vb, &cfg, AttnImpl::Flash, longest)?;
    let is_stop = |id: u32| tokenizer.as_ref().is_some_and(|t| t.is_stop(id));
    // Pages for every running sequence at its longest.
    let pages = args.concurrency * longest.div_ceil(args.page_size);
    let c = &args.chat;
    let sampler = || sampling::Sampler::new(c.seed, c.temperature, c.top_p, c.repeat_penalty, c.repeat_last_n);
    eprintln!(
        "SmolLM2-135M-Instruct{} on {:?} {dtype:?}: {} requests, {} at once, {pages} pages of {} tokens",
        if args.random_weights { " (RANDOM WEIGHTS and prompts)" } else { "" },
        device.location(),
        args.requests,
        args.concurrency,
        args.page_size
    );

    let run = |concurrency: usize| -> Result<(Run, Vec<serve::Finished>)> {
        let heads = (cfg.num_key_value_heads, cfg.head_dim());
        let mut cache = paged::PagedCache::new(cfg.num_hidden_layers, (pages, args.page_size), heads, dtype, &device)?;
        let t = Instant::now();
        let done = serve::serve(&llama, &is_stop, &prompts, (concurrency, c.max_tokens), &mut cache, sampler, &device)?;
        device.synchronize()?;
        let run = Run {
            wall: t.elapsed(),
            tokens: done.iter().map(|f| f.answer.len()).sum(),
            latencies: done.iter().map(|f| f.latency).collect(),
            first_tokens: done.iter().map(|f| f.first_token).collect(),
        };
        Ok((run, done))
    };
    // A short warm-up (kernels loaded, memory pools filled) before anything is timed.
    serve::serve(
        &llama,
        &is_stop,
        &prompts[..1],
        (1, 2),
        &mut paged::PagedCache::new(
            cfg.num_hidden_layers,
            (longest.div_ceil(args.page_size), args.page_size),
            (cfg.num_key_value_heads, cfg.head_dim()),
            dtype,
            &device,
        )?,
        sampler,
        &device,
    )?;

    let (batched, done) = run(args.concurrency)?;
    for (i, f) in done.iter().enumerate().take(if tokenizer.is_some() { QUESTIONS.len() } else { 0 }) {
        let text = tokenizer.as_ref().map_or(Ok(String::new()), |t| t.decode(&f.answer))?;
        let words: Vec<&str> = text.split_whitespace().take(12).collect();
        println!("[{i:2}] {} -> {} ...", QUESTIONS[i % QUESTIONS.len()], words.join(" "));
    }
    batched.report(&format!("continuous batch ({} at once)", args.concurrency));
    if !args.no_sequential {
        let (single, single_done) = run(1)?;
        single.report("one at a time");
        let same = done.iter().zip(&single_done).filter(|(a, b)| a.answer == b.answer).count();
        eprintln!(
            "batched / one at a time: {:.2}x tokens/s; {same} of {} answers identical",
            (batched.tokens as f64 / batched.wall.as_secs_f64()) / (single.tokens as f64 / single.wall.as_secs_f64()),
            done.len()
        );
    }
    Ok(())
}
