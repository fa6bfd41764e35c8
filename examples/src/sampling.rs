//! Next-token choice from logits: greedy at temperature 0, else nucleus (top-p) sampling from a seeded RNG,
//! so a run is reproducible from its `--seed`; optionally with a repetition penalty, which small models need
//! to stay out of loops.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

pub struct Sampler {
    rng: StdRng,
    temperature: f64,
    top_p: f64,
    repeat_penalty: f32,
    repeat_last_n: usize,
}

impl Sampler {
    /// `repeat_penalty` (1 is none) divides the positive logits and multiplies the negative ones of the tokens
    /// among the last `repeat_last_n` of the history passed to [`Sampler::sample`].
    pub fn new(seed: u64, temperature: f64, top_p: f64, repeat_penalty: f32, repeat_last_n: usize) -> Result<Self> {
        if !temperature.is_finite() || temperature < 0.0 {
            bail!("--temperature must be a finite number >= 0 (0 is greedy), got {temperature}")
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            bail!("--top-p must be in (0, 1], got {top_p}")
        }
        if !repeat_penalty.is_finite() || repeat_penalty < 1.0 {
            bail!("--repeat-penalty must be a finite number >= 1 (1 is none), got {repeat_penalty}")
        }
        Ok(Self { rng: StdRng::seed_from_u64(seed), temperature, top_p, repeat_penalty, repeat_last_n })
    }

    /// `logits`: one row of vocabulary scores, any float dtype; `history`: the tokens so far (prompt and
    /// answer), for the repetition penalty.
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> Result<u32> {
        let mut logits: Vec<f32> = logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        if logits.is_empty() {
            bail!("cannot sample from empty logits")
        }
        if self.repeat_penalty != 1.0 {
            let mut recent = history[history.len().saturating_sub(self.repeat_last_n)..].to_vec();
            recent.sort_unstable();
            recent.dedup();
            for id in recent {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l >= 0.0 { *l / self.repeat_penalty } else { *l * self.repeat_penalty };
                }
            }
        }
        if self.temperature == 0.0 {
            return Ok(argmax(&logits));
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, (((l - max) as f64) / self.temperature).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        // The smallest set of most likely tokens whose mass reaches top_p (at least one token).
        let mut kept_mass = 0.0;
        let mut kept = 0;
        for &(_, p) in &probs {
            kept_mass += p;
            kept += 1;
            if kept_mass >= self.top_p * total {
                break;
            }
        }
        let mut target = self.rng.random::<f64>() * kept_mass;
        for &(id, p) in &probs[..kept] {
            if target < p {
                return Ok(id);
            }
            target -= p;
        }
        Ok(probs[kept - 1].0)
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}
