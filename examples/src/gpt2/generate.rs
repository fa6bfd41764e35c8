//! Autoregressive generation with a KV cache: one prefill call over the prompt, then one decode call per
//! token (seqlen_q = 1), each timed separately; sampling by [`crate::sampling::Sampler`].

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, IndexOp, Tensor};

use crate::{
    gpt::{Gpt, GptCache},
    sampling::Sampler,
};

pub struct Generation {
    pub tokens: Vec<u32>,
    /// The prompt's forward pass and the first token's sampling.
    pub prefill_secs: f64,
    /// Every later token: one forward pass with seqlen_q = 1 and the sampling.
    pub decode_secs: f64,
}

/// Generates up to `max_tokens` after `prompt`, stopping early after `stop`; `on_token` sees each token as
/// it comes (for streaming).
pub fn generate(
    model: &Gpt,
    prompt: &[u32],
    max_tokens: usize,
    stop: Option<u32>,
    sampler: &mut Sampler,
    dev: &Device,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Generation> {
    let positions = model.config().n_positions;
    if prompt.is_empty() || prompt.len() + max_tokens > positions {
        bail!("{} prompt tokens + {max_tokens} new ones: need 1 to {positions} in all", prompt.len())
    }
    let mut cache = GptCache::new(model.config(), prompt.len() + max_tokens);
    // The prompt, then each new token: what the sampler's repetition penalty looks back on.
    let mut history = prompt.to_vec();
    let (mut prefill_secs, mut decode_secs) = (0.0, 0.0);
    let mut input = prompt.to_vec();
    while history.len() - prompt.len() < max_tokens {
        let t0 = Instant::now();
        let hidden = model.forward(&Tensor::new(input.as_slice(), dev)?.unsqueeze(0)?, Some(&mut cache))?;
        let last = hidden.i((0, input.len() - 1))?.unsqueeze(0)?;
        let token = sampler.sample(&model.logits(&last)?.squeeze(0)?, &history)?;
        let first = history.len() == prompt.len();
        *(if first { &mut prefill_secs } else { &mut decode_secs }) += t0.elapsed().as_secs_f64();
        history.push(token);
        on_token(token)?;
        if Some(token) == stop {
            break;
        }
        input = vec![token];
    }
    Ok(Generation { tokens: history.split_off(prompt.len()), prefill_secs, decode_secs })
}
