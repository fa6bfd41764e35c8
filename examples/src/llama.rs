//! A Llama decoder (Hugging Face layout and names) whose attention is [`AttnImpl`]: this crate's op or
//! candle's softmax-matmul attention, on the same weights.
//!
//! Activations stay in (batch, seq, heads, head_dim), the op's layout, so nothing is transposed around the
//! attention. GQA is native: the op reads `num_key_value_heads` K/V heads for `num_attention_heads` query
//! heads (the naive path repeats them itself, as candle-transformers does). Each layer's K/V cache is one
//! preallocated (batch, max_seq_len, kv_heads, head_dim) buffer written in place; attention reads its filled
//! prefix as a strided view, so a decode step copies one position, not the history. Prefill runs the op with
//! seqlen_q = prompt length, decode with seqlen_q = 1; the causal mask is bottom-right aligned, so the new
//! queries see every cached key.
//!
//! [`Llama::forward_paged`] runs the same weights over a continuous batch instead (the batch_generate
//! example): many sequences' new tokens packed in one row dimension, K/V in a shared paged cache
//! ([`crate::paged`]), one varlen paged attention call per layer.

use candle_core::{bail, DType, Device, Module, Result, Tensor};
use candle_fa2::{AttnImpl, AttnOptions, PagedKv};
use candle_nn::{kv_cache::KvCache, rotary_emb::rope_thd, Embedding, Linear, RmsNorm, VarBuilder};

use crate::gguf::LlamaConfig;
use crate::paged::{PagedCache, PagedStep};

pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    /// Positions already in the KV cache.
    seq_len: usize,
    max_seq_len: usize,
}

impl Llama {
    /// `vb` holds the weights under Hugging Face's names (`model.layers.0.self_attn.q_proj.weight`, ...);
    /// `max_seq_len` sizes the rotary tables and the KV cache (prompt plus generated tokens).
    pub fn load(vb: VarBuilder, cfg: &LlamaConfig, attn: AttnImpl, max_seq_len: usize) -> Result<Self> {
        let model = vb.pp("model");
        let embed_tokens = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, model.pp("embed_tokens"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            candle_nn::linear_no_bias(cfg.hidden_size, cfg.vocab_size, vb.pp("lm_head"))?
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(model.pp(format!("layers.{i}")), cfg, attn, max_seq_len))
            .collect::<Result<_>>()?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: candle_nn::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, model.pp("norm"))?,
            lm_head,
            rope: Rope::new(cfg, max_seq_len, vb.dtype(), vb.device())?,
            seq_len: 0,
            max_seq_len,
        })
    }

    /// Runs `ids` (batch, seq) after the cached positions and returns the logits of the last one, (batch,
    /// vocab) in f32.
    pub fn forward(&mut self, ids: &Tensor) -> Result<Tensor> {
        let (_, seq) = ids.dims2()?;
        if seq == 0 {
            bail!("forward needs at least one token")
        }
        if self.seq_len + seq > self.max_seq_len {
            bail!(
                "{} cached + {seq} new tokens exceed the {} positions this model was loaded for",
                self.seq_len,
                self.max_seq_len
            )
        }
        let (cos, sin) = self.rope.at(self.seq_len, seq)?;
        let mut x = self.embed_tokens.forward(ids)?;
        for layer in &mut self.layers {
            x = layer.forward(&x, &cos, &sin)?;
        }
        self.seq_len += seq;
        // Only the last position predicts the next token: the vocabulary projection skips the others.
        let last = self.norm.forward(&x.narrow(1, seq - 1, 1)?)?;
        self.lm_head.forward(&last)?.squeeze(1)?.to_dtype(DType::F32)
    }

    /// Fills every layer's KV cache with `len` positions of random keys and values for `batch` sequences, as
    /// if a prompt of that length had been run: decode can then be timed at long contexts without a
    /// prefill (which candle's softmax-matmul attention could not run there).
    pub fn fill_cache_random(&mut self, batch: usize, len: usize) -> Result<()> {
        if self.seq_len + len > self.max_seq_len {
            bail!("{} cached + {len} positions exceed the {} this model was loaded for", self.seq_len, self.max_seq_len)
        }
        for layer in &mut self.layers {
            let attn = &mut layer.self_attn;
            let shape = (batch, len, attn.kv_heads, attn.head_dim);
            let dtype = attn.q_proj.weight().dtype();
            let device = attn.q_proj.weight().device().clone();
            let k = Tensor::randn(0f32, 1.0, shape, &device)?.to_dtype(dtype)?;
            let v = Tensor::randn(0f32, 1.0, shape, &device)?.to_dtype(dtype)?;
            attn.cache.append(&k, &v)?;
        }
        self.seq_len += len;
        Ok(())
    }

    /// One step of a continuous batch: each sequence's new tokens (a prompt, or the last sampled token)
    /// after the positions it has in `cache`, packed as `step` describes. Writes their K/V into their pages and
    /// returns the logits of each sequence's last token, (sequences, vocab) in f32.
    pub fn forward_paged(&self, step: &PagedStep, cache: &PagedCache) -> Result<Tensor> {
        let cos = self.rope.cos.index_select(&step.positions, 0)?;
        let sin = self.rope.sin.index_select(&step.positions, 0)?;
        let mut x = self.embed_tokens.forward(&step.ids)?.unsqueeze(0)?; // (1, tokens, hidden)
        for (layer, (k_pages, v_pages)) in self.layers.iter().zip(cache.k.iter().zip(&cache.v)) {
            let parts = (&layer.input_layernorm, &layer.post_attention_layernorm, &layer.mlp);
            x = residual(parts, &x, |h| layer.self_attn.forward_paged(h, &cos, &sin, step, k_pages, v_pages))?;
        }
        let last = x.squeeze(0)?.index_select(&step.last_rows, 0)?;
        self.lm_head.forward(&self.norm.forward(&last)?)?.to_dtype(DType::F32)
    }

    pub fn clear_cache(&mut self) {
        self.seq_len = 0;
        for layer in &mut self.layers {
            layer.self_attn.cache.reset();
        }
    }
}

/// cos / sin of every position's rotary angles, (max_seq_len, head_dim / 2), for Hugging Face's half-split
/// rotation (`rope_thd` works on the (batch, seq, heads, head_dim) layout directly).
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(cfg: &LlamaConfig, max_seq_len: usize, dtype: DType, device: &Device) -> Result<Self> {
        let half = cfg.head_dim() / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f32 / cfg.head_dim() as f32)).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, max_seq_len as u32, device)?.to_dtype(DType::F32)?;
        let angles = positions.reshape((max_seq_len, 1))?.broadcast_mul(&inv_freq)?;
        Ok(Self { cos: angles.cos()?.to_dtype(dtype)?, sin: angles.sin()?.to_dtype(dtype)? })
    }

    fn at(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.cos.narrow(0, start, len)?, self.sin.narrow(0, start, len)?))
    }
}

struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    cache: KvCache,
    attn: AttnImpl,
}

impl SelfAttention {
    fn load(vb: VarBuilder, cfg: &LlamaConfig, attn: AttnImpl, max_seq_len: usize) -> Result<Self> {
        let (hidden, head_dim) = (cfg.hidden_size, cfg.head_dim());
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let linear = |in_dim, out_dim, name| candle_nn::linear_no_bias(in_dim, out_dim, vb.pp(name));
        Ok(Self {
            q_proj: linear(hidden, heads * head_dim, "q_proj")?,
            k_proj: linear(hidden, kv_heads * head_dim, "k_proj")?,
            v_proj: linear(hidden, kv_heads * head_dim, "v_proj")?,
            o_proj: linear(heads * head_dim, hidden, "o_proj")?,
            heads,
            kv_heads,
            head_dim,
            // Sequence dimension 1 of (batch, seq, kv_heads, head_dim).
            cache: KvCache::new(1, max_seq_len),
            attn,
        })
    }

    /// q, k and v of `x` (batch, seq, hidden), rotated: (batch, seq, heads, head_dim).
    fn qkv(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, seq, _) = x.dims3()?;
        let q = self.q_proj.forward(x)?.reshape((b, seq, self.heads, self.head_dim))?;
        let k = self.k_proj.forward(x)?.reshape((b, seq, self.kv_heads, self.head_dim))?;
        let v = self.v_proj.forward(x)?.reshape((b, seq, self.kv_heads, self.head_dim))?;
        Ok((rope_thd(&q, cos, sin)?, rope_thd(&k, cos, sin)?, v))
    }

    fn forward(&mut self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (b, seq, _) = x.dims3()?;
        let (q, k, v) = self.qkv(x, cos, sin)?;
        // Views of the first seq_len positions of the preallocated buffers.
        let (k, v) = self.cache.append(&k, &v)?;
        let y = self.attn.run(&q, &k, &v, &AttnOptions::causal())?;
        self.o_proj.forward(&y.reshape((b, seq, self.heads * self.head_dim))?)
    }

    /// `x` (1, tokens, hidden): every sequence's new tokens packed. Their K/V go into their pages first, then
    /// each sequence's queries attend to all its keys (bottom-right causal) in one varlen paged call.
    fn forward_paged(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        step: &PagedStep,
        k_pages: &Tensor,
        v_pages: &Tensor,
    ) -> Result<Tensor> {
        let tokens = x.dim(1)?;
        let (q, k, v) = self.qkv(x, cos, sin)?;
        candle_fa2::write_kv_pages(&k.squeeze(0)?, &v.squeeze(0)?, k_pages, v_pages, &step.slots)?;
        let kv = PagedKv { k_pages, v_pages, block_table: &step.block_table };
        let causal = AttnOptions::causal();
        let y = candle_fa2::flash_attn_varlen_paged(
            &q.squeeze(0)?,
            &step.cu_seqlens_q,
            step.max_seqlen_q,
            &kv,
            &step.seqlens_k,
            &causal,
        )?;
        self.o_proj.forward(&y.reshape((1, tokens, self.heads * self.head_dim))?)
    }
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
        let (hidden, inter) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: candle_nn::linear_no_bias(hidden, inter, vb.pp("gate_proj"))?,
            up_proj: candle_nn::linear_no_bias(hidden, inter, vb.pp("up_proj"))?,
            down_proj: candle_nn::linear_no_bias(inter, hidden, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(x)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: SelfAttention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn load(vb: VarBuilder, cfg: &LlamaConfig, attn: AttnImpl, max_seq_len: usize) -> Result<Self> {
        let norm = |name| candle_nn::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp(name));
        Ok(Self {
            input_layernorm: norm("input_layernorm")?,
            self_attn: SelfAttention::load(vb.pp("self_attn"), cfg, attn, max_seq_len)?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            mlp: Mlp::load(vb.pp("mlp"), cfg)?,
        })
    }

    fn forward(&mut self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let Self { input_layernorm, self_attn, post_attention_layernorm, mlp } = self;
        residual((input_layernorm, post_attention_layernorm, mlp), x, |h| self_attn.forward(h, cos, sin))
    }
}

/// A decoder layer around the caller's attention: pre-norm residual attention, then the pre-norm MLP.
fn residual(
    (input_norm, post_norm, mlp): (&RmsNorm, &RmsNorm, &Mlp),
    x: &Tensor,
    attention: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let x = (x + attention(&input_norm.forward(x)?)?)?;
    &x + mlp.forward(&post_norm.forward(&x)?)?
}
