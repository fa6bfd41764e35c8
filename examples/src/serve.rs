//! Serving a queue of prompts as one continuous batch (examples/batch_generate.rs, tests/llama.rs): the
//! scheduler admits a waiting request as soon as a running one finishes, and every step runs all running
//! sequences' new tokens through one forward on the paged cache.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use candle_core::Device;

use crate::llama::Llama;
use crate::paged::{PagedCache, PagedStep, StepSequence};
use crate::sampling::Sampler;

/// What the scheduler gives back for one request.
pub struct Finished {
    pub answer: Vec<u32>,
    /// From the start of the run to the request's last token (waiting in the queue included).
    pub latency: Duration,
    /// From the start of the run to its first answer token.
    pub first_token: Duration,
}

/// A request being served: its prompt and answer so far, its pages and cached length, its sampler.
struct Running {
    index: usize,
    tokens: Vec<u32>,
    prompt_len: usize,
    cached: usize,
    pages: Vec<u32>,
    sampler: Sampler,
    first_token: Option<Duration>,
}

/// Serves `prompts` (each already in the chat template) with at most `concurrency` sequences in the batch:
/// a waiting request joins as soon as a running one finishes, its prompt prefilled in the same step as the
/// others' decode. Each answer stops at a token `is_stop` accepts or at `max_tokens`; `sampler` makes each
/// request's sampler (the same settings as a single-prompt run). Returns the requests in their order.
pub fn serve(
    llama: &Llama,
    is_stop: &dyn Fn(u32) -> bool,
    prompts: &[Vec<u32>],
    (concurrency, max_tokens): (usize, usize),
    cache: &mut PagedCache,
    sampler: impl Fn() -> Result<Sampler>,
    device: &Device,
) -> Result<Vec<Finished>> {
    let start = Instant::now();
    let mut waiting = prompts.iter().enumerate().rev().collect::<Vec<_>>();
    let mut running: Vec<Running> = Vec::new();
    let mut done: Vec<Option<Finished>> = prompts.iter().map(|_| None).collect();
    while !waiting.is_empty() || !running.is_empty() {
        // Admit while there is room in the batch and pages for the prompt and its first answer token.
        while running.len() < concurrency {
            let Some(&(index, prompt)) = waiting.last() else { break };
            let mut pages = Vec::new();
            if !cache.reserve(&mut pages, prompt.len() + 1) {
                if running.is_empty() {
                    bail!("request {index}: its {} prompt tokens do not fit the cache", prompt.len())
                }
                break;
            }
            waiting.pop();
            let (tokens, prompt_len) = (prompt.clone(), prompt.len());
            running.push(Running {
                index,
                tokens,
                prompt_len,
                cached: 0,
                pages,
                sampler: sampler()?,
                first_token: None,
            });
        }
        for r in &mut running {
            if !cache.reserve(&mut r.pages, r.tokens.len()) {
                bail!("the cache is full (request {} at {} tokens): give it more pages", r.index, r.tokens.len())
            }
        }
        let seqs: Vec<StepSequence> = running
            .iter()
            .map(|r| StepSequence { new: &r.tokens[r.cached..], cached: r.cached, pages: &r.pages })
            .collect();
        let step = PagedStep::new(&seqs, cache.page_size, device)?;
        let logits = llama.forward_paged(&step, cache)?;
        let mut still = Vec::with_capacity(running.len());
        for (b, mut r) in running.into_iter().enumerate() {
            r.cached = r.tokens.len();
            let next = r.sampler.sample(&logits.get(b)?, &r.tokens)?;
            r.first_token.get_or_insert(start.elapsed());
            // As the single-prompt loop (`generate`): a stop token ends the answer unwritten;
            // otherwise the token joins it, and the budget may end it.
            let stopped = is_stop(next);
            if !stopped {
                r.tokens.push(next);
            }
            if stopped || r.tokens.len() - r.prompt_len >= max_tokens {
                let answer = r.tokens[r.prompt_len..].to_vec();
                let first_token = r.first_token.unwrap_or_default();
                done[r.index] = Some(Finished { answer, latency: start.elapsed(), first_token });
                cache.release(&mut r.pages);
            } else {
                still.push(r);
            }
        }
        running = still;
    }
    Ok(done.into_iter().map(|f| f.expect("every request finishes")).collect())
}
