//! Autoregressive generation with a KV cache: one prefill call over the prompt, then one decode call per
//! token (seqlen_q = 1), each timed separately; temperature and nucleus (top-p) sampling.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, IndexOp, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::gpt::{Gpt, GptCache};

pub struct Sampler {
    temperature: f64,
    top_p: f64,
    rng: StdRng,
}

impl Sampler {
    /// `temperature` 0 is greedy (argmax); `top_p` in (0, 1] keeps the most likely tokens whose probabilities
    /// add up to it.
    pub fn new(temperature: f64, top_p: f64, seed: u64) -> Result<Self> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            bail!("--temperature must be a finite number >= 0, got {temperature}")
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            bail!("--top-p must be in (0, 1], got {top_p}")
        }
        Ok(Self { temperature, top_p, rng: StdRng::seed_from_u64(seed) })
    }

    /// The next token from one row of logits (vocab_size,).
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        let logits = logits.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let Some(argmax) = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])) else {
            bail!("no logits to sample from")
        };
        if self.temperature == 0.0 {
            return Ok(argmax as u32);
        }
        let max = logits[argmax];
        let mut probs: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l - max) as f64 / self.temperature).exp() as f32))
            .collect();
        probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        let total: f32 = probs.iter().map(|p| p.1).sum();
        let mut kept_mass = 0.0;
        let kept = probs
            .iter()
            .position(|p| {
                kept_mass += p.1;
                kept_mass >= self.top_p as f32 * total
            })
            .map_or(probs.len(), |last| last + 1);
        let mut target = self.rng.random::<f32>() * kept_mass;
        for &(token, p) in &probs[..kept] {
            if target < p {
                return Ok(token);
            }
            target -= p;
        }
        Ok(probs[kept - 1].0) // rounding left `target` just past the last kept token
    }
}

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
    let mut tokens = Vec::with_capacity(max_tokens);
    let (mut prefill_secs, mut decode_secs) = (0.0, 0.0);
    let mut input = prompt.to_vec();
    while tokens.len() < max_tokens {
        let t0 = Instant::now();
        let hidden = model.forward(&Tensor::new(input.as_slice(), dev)?.unsqueeze(0)?, Some(&mut cache))?;
        let last = hidden.i((0, input.len() - 1))?.unsqueeze(0)?;
        let token = sampler.sample(&model.logits(&last)?.squeeze(0)?)?;
        *(if tokens.is_empty() { &mut prefill_secs } else { &mut decode_secs }) += t0.elapsed().as_secs_f64();
        tokens.push(token);
        on_token(token)?;
        if Some(token) == stop {
            break;
        }
        input = vec![token];
    }
    Ok(Generation { tokens, prefill_secs, decode_secs })
}
