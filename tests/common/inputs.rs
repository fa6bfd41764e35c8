//! Random inputs from a seed, and the shape of one attention problem.

use candle_core::{DType, Device, Result, Tensor};

/// SplitMix64 + Box-Muller: seeded normal samples, so a failure reproduces (candle's CPU randn is not seeded).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal_vec(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let (u1, u2) = (self.uniform(), self.uniform());
                (std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
            })
            .collect()
    }

    /// A (d0, d1, d2, d3) tensor of N(0, std²) samples in `dtype` on `dev`.
    pub fn tensor(
        &mut self,
        shape: (usize, usize, usize, usize),
        std: f64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        Tensor::from_vec(self.normal_vec(n, std), shape, &Device::Cpu)?.to_dtype(dtype)?.to_device(dev)
    }
}

/// One attention problem: q (b, sq, hq, d), k/v (b, sk, hkv, d).
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub batch: usize,
    pub seqlen_q: usize,
    pub seqlen_k: usize,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
}

impl Case {
    pub fn new(
        batch: usize,
        seqlen_q: usize,
        seqlen_k: usize,
        heads_q: usize,
        heads_kv: usize,
        head_dim: usize,
    ) -> Self {
        Self { batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim }
    }

    /// Fresh q, k, v. With `transposed`, each is a (b, s, h, d) view of a contiguous (b, h, s, d) tensor,
    /// as models that keep heads before the sequence produce.
    pub fn inputs(
        &self,
        rng: &mut Rng,
        dtype: DType,
        dev: &Device,
        transposed: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let make = |rng: &mut Rng, s: usize, h: usize| -> Result<Tensor> {
            if transposed {
                rng.tensor((self.batch, h, s, self.head_dim), 1.0, dtype, dev)?.transpose(1, 2)
            } else {
                rng.tensor((self.batch, s, h, self.head_dim), 1.0, dtype, dev)
            }
        };
        let q = make(rng, self.seqlen_q, self.heads_q)?;
        let k = make(rng, self.seqlen_k, self.heads_kv)?;
        let v = make(rng, self.seqlen_k, self.heads_kv)?;
        Ok((q, k, v))
    }
}
