//! The generation loop shared by the SmolLM2 examples: prefill the prompt, then sample, stream and decode one
//! token at a time until a stop token or the token budget, timing prefill and decode separately.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use anyhow::Result;
use candle_core::Tensor;

use crate::{sampling::Sampler, tokenizer::ChatTokenizer};

pub struct Stats {
    pub prompt_tokens: usize,
    /// The prompt's forward pass and the choice of the first token.
    pub prefill: Duration,
    /// Forward passes of one token each, with their sampling.
    pub decode_steps: usize,
    pub decode: Duration,
    /// The answer ended with a stop token (rather than at the token budget).
    pub stopped: bool,
}

impl Stats {
    /// Prints the prompt size and tokens/s of prefill and decode to stderr.
    pub fn report(&self) {
        let rate = |tokens: usize, time: Duration| tokens as f64 / time.as_secs_f64();
        eprintln!(
            "prefill: {} prompt tokens in {:.3} s ({:.1} tokens/s)",
            self.prompt_tokens,
            self.prefill.as_secs_f64(),
            rate(self.prompt_tokens, self.prefill)
        );
        if self.decode_steps > 0 {
            eprintln!(
                "decode : {} tokens in {:.3} s ({:.1} tokens/s), {}",
                self.decode_steps,
                self.decode.as_secs_f64(),
                rate(self.decode_steps, self.decode),
                if self.stopped { "until the end of the answer" } else { "stopped at --max-tokens" }
            );
        }
    }
}

/// Streams at most `max_tokens` answer tokens to `out`. `forward` runs the model on the ids that follow the
/// ones it has already seen (its KV cache) and returns the logits of the last one.
pub fn generate(
    tokenizer: &ChatTokenizer,
    prompt: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    out: &mut impl Write,
    mut forward: impl FnMut(&[u32]) -> candle_core::Result<Tensor>,
) -> Result<Stats> {
    let mut history = prompt.to_vec();
    let t_prefill = Instant::now();
    let mut next = sampler.sample(&forward(prompt)?, &history)?;
    let mut stats = Stats {
        prompt_tokens: prompt.len(),
        prefill: t_prefill.elapsed(),
        decode_steps: 0,
        decode: Duration::ZERO,
        stopped: false,
    };
    let mut stream = tokenizer.stream();
    let mut answer_tokens = 0;
    loop {
        if tokenizer.is_stop(next) {
            stats.stopped = true;
            break;
        }
        answer_tokens += 1;
        history.push(next);
        if let Some(text) = stream.step(next).map_err(anyhow::Error::msg)? {
            write!(out, "{text}")?;
            out.flush()?;
        }
        if answer_tokens >= max_tokens {
            break;
        }
        let t_step = Instant::now();
        next = sampler.sample(&forward(&[next])?, &history)?;
        stats.decode += t_step.elapsed();
        stats.decode_steps += 1;
    }
    writeln!(out)?;
    Ok(stats)
}
