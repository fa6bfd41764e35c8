//! A GPT-2 decoder (pre-LayerNorm blocks, learned positions, tanh-GELU MLP, lm_head tied to the token
//! embedding) with Hugging Face's GPT-2 tensor names and layouts, so the same code runs a real checkpoint
//! (the gpt2 example), a seeded random initialisation, and training (train_gpt).
//!
//! Attention goes through [`AttnImpl`] on (batch, seq, heads, head_dim) tensors, causal, without transposes.
//! With a [`GptCache`], a decode step calls it with seqlen_q = 1 against every cached key (the op's causal
//! mask is bottom-right aligned, so that one query sees them all), and the cache writes each step into a
//! preallocated buffer instead of concatenating the history.

use candle_core::{bail, DType, Device, IndexOp, Module, Result, Shape, Tensor, Var, D};
use candle_fa2::{AttnImpl, AttnOptions};
use candle_nn::{kv_cache::KvCache, var_builder::SimpleBackend, Init, Linear, VarBuilder, VarMap};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// GPT-2's LayerNorm epsilon (`layer_norm_epsilon` in its Hugging Face config).
const LAYER_NORM_EPS: f64 = 1e-5;
/// GPT-2's `initializer_range`.
const INIT_STD: f64 = 0.02;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptConfig {
    pub vocab_size: usize,
    /// Learned positions: the longest sequence the model can read.
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
}

impl GptConfig {
    fn check(&self) -> Result<()> {
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            bail!("hidden size {} is not a multiple of the {} heads", self.n_embd, self.n_head)
        }
        Ok(())
    }
}

/// Weights drawn on request, each from a generator seeded by (seed, tensor name), so the values do not depend
/// on the order the model asks for them. Honours `Init::Const` and `Init::Randn`, the two GPT-2 uses. With
/// `vars`, each weight becomes a candle `Var` recorded there, for an optimiser.
pub struct SeededInit {
    seed: u64,
    vars: Option<VarMap>,
}

impl SeededInit {
    /// `vars`: `None` gives plain tensors (inference), `Some` trainable `Var`s collected there.
    pub fn new(seed: u64, vars: Option<VarMap>) -> Self {
        Self { seed, vars }
    }

    fn sample(&self, shape: &Shape, name: &str, init: Init) -> Result<Tensor> {
        let n = shape.elem_count();
        let values = match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => {
                // FNV-1a of the name: a stable, order-independent stream per tensor.
                let name_hash =
                    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
                let mut rng = StdRng::seed_from_u64(self.seed ^ name_hash);
                let normal = Normal::new(mean as f32, stdev as f32).map_err(candle_core::Error::wrap)?;
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            }
            other => bail!("SeededInit: '{name}' asks for {other:?}; only Const and Randn are supported"),
        };
        Tensor::from_vec(values, shape, &Device::Cpu)
    }
}

impl SimpleBackend for SeededInit {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let Some(vars) = &self.vars else {
            return self.sample(&shape, name, init)?.to_dtype(dtype)?.to_device(dev);
        };
        let mut vars = vars.data().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                bail!("SeededInit: '{name}' exists with shape {:?}, asked for {shape:?}", var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        let var = Var::from_tensor(&self.sample(&shape, name, init)?.to_dtype(dtype)?.to_device(dev)?)?;
        vars.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        bail!("SeededInit draws '{name}' from its shape: ask with get_with_hints")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(size: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(size, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // candle's fused layer_norm records no backward, and would silently cut every gradient below it: when
        // autograd is recording, the same normalisation from differentiable ops (in f32, as candle's).
        if !x.track_op() && !self.weight.track_op() {
            return candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, LAYER_NORM_EPS as f32);
        }
        let x32 = x.to_dtype(DType::F32)?;
        let centred = x32.broadcast_sub(&x32.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + LAYER_NORM_EPS)?.sqrt()?)?.to_dtype(x.dtype())?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// GPT-2's `Conv1D`: a Linear layer whose weight is stored (in, out).
fn conv1d(in_dim: usize, out_dim: usize, init_std: f64, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints((in_dim, out_dim), "weight", Init::Randn { mean: 0.0, stdev: init_std })?;
    let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight.t()?, Some(bias)))
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
    n_head: usize,
}

impl Block {
    fn new(cfg: &GptConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.n_embd;
        // GPT-2 scales the init of the projections into the residual stream by 1/sqrt(2 * n_layer).
        let residual_std = INIT_STD / (2.0 * cfg.n_layer as f64).sqrt();
        Ok(Self {
            ln_1: LayerNorm::new(c, vb.pp("ln_1"))?,
            c_attn: conv1d(c, 3 * c, INIT_STD, vb.pp("attn.c_attn"))?,
            attn_proj: conv1d(c, c, residual_std, vb.pp("attn.c_proj"))?,
            ln_2: LayerNorm::new(c, vb.pp("ln_2"))?,
            c_fc: conv1d(c, 4 * c, INIT_STD, vb.pp("mlp.c_fc"))?,
            mlp_proj: conv1d(4 * c, c, residual_std, vb.pp("mlp.c_proj"))?,
            n_head: cfg.n_head,
        })
    }

    fn forward(&self, x: &Tensor, cache: Option<&mut KvCache>, attn: AttnImpl) -> Result<Tensor> {
        let x = (x + self.attention(&self.ln_1.forward(x)?, cache, attn)?)?;
        let mlp = self.mlp_proj.forward(&self.c_fc.forward(&self.ln_2.forward(&x)?)?.gelu()?)?;
        x + mlp
    }

    fn attention(&self, x: &Tensor, cache: Option<&mut KvCache>, attn: AttnImpl) -> Result<Tensor> {
        let (b, s, c) = x.dims3()?;
        let qkv = self.c_attn.forward(x)?.reshape((b, s, 3, self.n_head, c / self.n_head))?;
        // The CUDA kernels take f16/bf16: an f32 model (training keeps f32 weights) attends in bf16 there.
        let attn_dtype = if x.device().is_cuda() && x.dtype() == DType::F32 { DType::BF16 } else { x.dtype() };
        let part = |i: usize| qkv.i((.., .., i))?.to_dtype(attn_dtype);
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let (k, v) = match cache {
            Some(cache) => cache.append(&k.contiguous()?, &v.contiguous()?)?,
            None => (k, v),
        };
        let y = attn.run(&q, &k, &v, &AttnOptions::causal())?;
        self.attn_proj.forward(&y.to_dtype(x.dtype())?.reshape((b, s, c))?)
    }
}

/// One [`KvCache`] per layer, on the sequence axis of (batch, seq, heads_kv, head_dim).
pub struct GptCache {
    layers: Vec<KvCache>,
}

impl GptCache {
    /// `capacity`: the tokens to preallocate for; past it the cache grows by concatenation (a copy).
    pub fn new(cfg: &GptConfig, capacity: usize) -> Self {
        Self { layers: (0..cfg.n_layer).map(|_| KvCache::new(1, capacity)).collect() }
    }

    /// Tokens cached so far: the position of the next one.
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, KvCache::current_seq_len)
    }
}

pub struct Gpt {
    cfg: GptConfig,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Linear,
    attn: AttnImpl,
}

impl Gpt {
    /// `vb` names as in Hugging Face's GPT-2 checkpoints (`wte.weight`, `h.0.attn.c_attn.weight`, ...);
    /// a [`SeededInit`] behind it gives GPT-2's initialisation.
    pub fn new(cfg: GptConfig, vb: VarBuilder, attn: AttnImpl) -> Result<Self> {
        cfg.check()?;
        let embedding_init = Init::Randn { mean: 0.0, stdev: INIT_STD };
        let wte = vb.get_with_hints((cfg.vocab_size, cfg.n_embd), "wte.weight", embedding_init)?;
        let wpe = vb.get_with_hints((cfg.n_positions, cfg.n_embd), "wpe.weight", embedding_init)?;
        let blocks = (0..cfg.n_layer).map(|i| Block::new(&cfg, vb.pp(format!("h.{i}")))).collect::<Result<_>>()?;
        let ln_f = LayerNorm::new(cfg.n_embd, vb.pp("ln_f"))?;
        let lm_head = Linear::new(wte.clone(), None);
        Ok(Self { cfg, wte, wpe, blocks, ln_f, lm_head, attn })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// Hidden states after the final LayerNorm, (batch, seq, n_embd), for `tokens` (batch, seq) of u32 that
    /// continue what `cache` holds (positions start at its length; at 0 without a cache).
    pub fn forward(&self, tokens: &Tensor, cache: Option<&mut GptCache>) -> Result<Tensor> {
        let (b, s) = tokens.dims2()?;
        let start = cache.as_ref().map_or(0, |c| c.seq_len());
        if start + s > self.cfg.n_positions {
            bail!("{} tokens do not fit the model's {} learned positions", start + s, self.cfg.n_positions)
        }
        let embedded = self.wte.index_select(&tokens.flatten_all()?, 0)?.reshape((b, s, self.cfg.n_embd))?;
        let mut x = embedded.broadcast_add(&self.wpe.narrow(0, start, s)?)?;
        let mut layer_caches = cache.map(|c| c.layers.iter_mut());
        for block in &self.blocks {
            x = block.forward(&x, layer_caches.as_mut().and_then(Iterator::next), self.attn)?;
        }
        self.ln_f.forward(&x)
    }

    /// Next-token logits (batch, seq, vocab_size) from [`Gpt::forward`]'s hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }
}
