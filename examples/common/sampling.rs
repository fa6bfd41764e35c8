//! Next-token choice from logits: greedy at temperature 0, else nucleus (top-p) sampling from a seeded RNG,
//! so a run is reproducible from its `--seed`.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

pub struct Sampler {
    rng: StdRng,
    temperature: f64,
    top_p: f64,
}

impl Sampler {
    pub fn new(seed: u64, temperature: f64, top_p: f64) -> Result<Self> {
        if !temperature.is_finite() || temperature < 0.0 {
            bail!("--temperature must be a finite number >= 0 (0 is greedy), got {temperature}")
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            bail!("--top-p must be in (0, 1], got {top_p}")
        }
        Ok(Self { rng: StdRng::seed_from_u64(seed), temperature, top_p })
    }

    /// `logits`: one row of vocabulary scores, any float dtype.
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        let logits: Vec<f32> = logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        if logits.is_empty() {
            bail!("cannot sample from empty logits")
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
