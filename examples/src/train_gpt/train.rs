//! One training run: a GPT from GPT-2's seeded initialisation, candle-nn's AdamW, and batches of random
//! windows of the token stream. Two runs with the same seed see the same weights and the same batches, so
//! their losses differ only by the arithmetic of their attention.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use candle_fa2::AttnImpl;
use candle_nn::{
    optim::{AdamW, Optimizer, ParamsAdamW},
    VarBuilder, VarMap,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::gpt::{Gpt, GptConfig, SeededInit};

pub struct TrainSettings {
    pub batch: usize,
    /// Tokens per training sequence, also the model's number of learned positions.
    pub seq_len: usize,
    pub learning_rate: f64,
    /// Seeds the weights and the batches.
    pub seed: u64,
}

pub struct StepResult {
    /// Mean cross-entropy of the batch, before the update.
    pub loss: f32,
    /// Forward, backward and optimiser update.
    pub secs: f64,
}

pub struct Trainer {
    model: Gpt,
    vars: VarMap,
    optimizer: AdamW,
    tokens: Vec<u32>,
    rng: StdRng,
    batch: usize,
    seq_len: usize,
    dev: Device,
}

impl Trainer {
    /// `cfg.n_positions` is overridden by `settings.seq_len`.
    pub fn new(
        cfg: GptConfig,
        tokens: Vec<u32>,
        attn: AttnImpl,
        settings: &TrainSettings,
        dev: &Device,
    ) -> Result<Self> {
        let (batch, seq_len) = (settings.batch, settings.seq_len);
        if batch == 0 || seq_len == 0 || tokens.len() <= seq_len {
            bail!("batch {batch} x seq_len {seq_len} over {} tokens: need both >= 1 and more tokens", tokens.len())
        }
        let cfg = GptConfig { n_positions: seq_len, ..cfg };
        let vars = VarMap::new();
        let vb = VarBuilder::from_backend(
            Box::new(SeededInit::new(settings.seed, Some(vars.clone()))),
            DType::F32,
            dev.clone(),
        );
        let model = Gpt::new(cfg, vb, attn)?;
        let params = ParamsAdamW { lr: settings.learning_rate, ..ParamsAdamW::default() };
        let optimizer = AdamW::new(vars.all_vars(), params)?;
        let rng = StdRng::seed_from_u64(settings.seed);
        Ok(Self { model, vars, optimizer, tokens, rng, batch, seq_len, dev: dev.clone() })
    }

    pub fn model(&self) -> &Gpt {
        &self.model
    }

    pub fn parameter_count(&self) -> usize {
        self.vars.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// One AdamW step on a fresh batch: inputs are windows of the token stream, targets the same windows
    /// shifted by one token.
    pub fn step(&mut self) -> Result<StepResult> {
        let t0 = Instant::now();
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for _ in 0..self.batch {
            let start = self.rng.random_range(0..self.tokens.len() - self.seq_len);
            inputs.extend_from_slice(&self.tokens[start..start + self.seq_len]);
            targets.extend_from_slice(&self.tokens[start + 1..start + self.seq_len + 1]);
        }
        let inputs = Tensor::from_vec(inputs, (self.batch, self.seq_len), &self.dev)?;
        let targets = Tensor::from_vec(targets, self.batch * self.seq_len, &self.dev)?;
        let logits = self.model.logits(&self.model.forward(&inputs, None)?)?;
        let loss = candle_nn::loss::cross_entropy(&logits.flatten_to(1)?, &targets)?;
        self.optimizer.backward_step(&loss)?;
        let loss = loss.to_scalar::<f32>()?;
        Ok(StepResult { loss, secs: t0.elapsed().as_secs_f64() })
    }
}
