//! A Llama-architecture GGUF file (llama.cpp's format) read into dense tensors with Hugging Face's names and
//! layout, so one set of weights serves our example model and candle-transformers' `models::llama` alike.
//!
//! Quantized tensors are dequantized on the CPU (f32), converted to the requested dtype and only then moved
//! to the device. GGUF stores the Q and K projections with the rows of each head permuted for llama.cpp's
//! interleaved rotary embedding; [`Gguf::hf_weights`] undoes that, so the usual half-split RoPE applies.

use std::{collections::HashMap, fs::File, io::BufReader, path::Path};

use anyhow::{bail, Context, Result};
use candle_core::{
    quantized::gguf_file::{Content, Value},
    DType, Device, Tensor,
};

/// The hyper-parameters a Llama needs, under Hugging Face's `config.json` names.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rope_theta: f32,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// SmolLM2-135M's configuration, for benchmarks that run without the weights file.
    pub fn smollm2_135m() -> Self {
        Self {
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            rope_theta: 100_000.0,
            // GGUF stores it as an f32.
            rms_norm_eps: f64::from(1e-5f32),
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
        }
    }
}

pub struct Gguf {
    content: Content,
    reader: BufReader<File>,
}

impl Gguf {
    /// Reads the metadata and the tensor index (not the tensors).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).with_context(|| format!("reading {} as GGUF", path.display()))?;
        Ok(Self { content, reader })
    }

    pub fn metadata(&self, key: &str) -> Result<&Value> {
        self.content.metadata.get(key).with_context(|| format!("the GGUF metadata has no {key}"))
    }

    pub fn string_array(&self, key: &str) -> Result<Vec<String>> {
        let values = self.metadata(key)?.to_vec().with_context(|| format!("GGUF {key}"))?;
        values.iter().map(|v| Ok(v.to_string().with_context(|| format!("GGUF {key}"))?.clone())).collect()
    }

    pub fn u32_value(&self, key: &str) -> Result<u32> {
        self.metadata(key)?.to_u32().with_context(|| format!("GGUF {key}"))
    }

    pub fn config(&self) -> Result<LlamaConfig> {
        let arch = self.metadata("general.architecture")?.to_string()?;
        if arch != "llama" {
            bail!("expected a llama GGUF, general.architecture is {arch:?}")
        }
        let get = |key: &str| -> Result<usize> { Ok(self.u32_value(&format!("llama.{key}"))? as usize) };
        let cfg = LlamaConfig {
            vocab_size: match self.content.metadata.get("llama.vocab_size") {
                Some(n) => n.to_u32()? as usize,
                None => self.metadata("tokenizer.ggml.tokens")?.to_vec()?.len(),
            },
            hidden_size: get("embedding_length")?,
            intermediate_size: get("feed_forward_length")?,
            num_hidden_layers: get("block_count")?,
            num_attention_heads: get("attention.head_count")?,
            num_key_value_heads: get("attention.head_count_kv")?,
            // llama.cpp's default when the key is absent.
            rope_theta: match self.content.metadata.get("llama.rope.freq_base") {
                Some(theta) => theta.to_f32()?,
                None => 10_000.0,
            },
            rms_norm_eps: self.metadata("llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            max_position_embeddings: get("context_length")?,
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
        };
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) || !cfg.hidden_size.is_multiple_of(heads) {
            bail!("GGUF heads {heads} / kv heads {kv_heads} / hidden {} are not a valid Llama", cfg.hidden_size)
        }
        if !cfg.head_dim().is_multiple_of(2) {
            bail!("GGUF head_dim {} is odd: rotary embeddings need pairs", cfg.head_dim())
        }
        Ok(cfg)
    }

    /// Every tensor, dense in `dtype` on `device`, keyed by its Hugging Face name, Q/K in Hugging Face's layout.
    pub fn hf_weights(&mut self, cfg: &LlamaConfig, dtype: DType, device: &Device) -> Result<HashMap<String, Tensor>> {
        let mut names: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        names.sort();
        let mut weights = HashMap::with_capacity(names.len());
        for name in names {
            let hf_name = hf_name(&name).with_context(|| format!("GGUF tensor {name} has no Llama counterpart"))?;
            let qtensor = self.content.tensor(&mut self.reader, &name, &Device::Cpu)?;
            let mut w = qtensor.dequantize(&Device::Cpu).with_context(|| format!("dequantizing {name}"))?;
            if name.ends_with("attn_q.weight") {
                w = unpermute_rope_rows(&w, cfg.num_attention_heads)?;
            } else if name.ends_with("attn_k.weight") {
                w = unpermute_rope_rows(&w, cfg.num_key_value_heads)?;
            }
            weights.insert(hf_name, w.to_dtype(dtype)?.to_device(device)?);
        }
        Ok(weights)
    }
}

fn hf_name(gguf_name: &str) -> Option<String> {
    let name = match gguf_name {
        "token_embd.weight" => "model.embed_tokens.weight".to_string(),
        "output_norm.weight" => "model.norm.weight".to_string(),
        "output.weight" => "lm_head.weight".to_string(),
        _ => {
            let rest = gguf_name.strip_prefix("blk.")?;
            let (layer, tensor) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let hf = match tensor {
                "attn_norm.weight" => "input_layernorm.weight",
                "ffn_norm.weight" => "post_attention_layernorm.weight",
                "attn_q.weight" => "self_attn.q_proj.weight",
                "attn_k.weight" => "self_attn.k_proj.weight",
                "attn_v.weight" => "self_attn.v_proj.weight",
                "attn_output.weight" => "self_attn.o_proj.weight",
                "ffn_gate.weight" => "mlp.gate_proj.weight",
                "ffn_up.weight" => "mlp.up_proj.weight",
                "ffn_down.weight" => "mlp.down_proj.weight",
                _ => return None,
            };
            format!("model.layers.{layer}.{hf}")
        }
    };
    Some(name)
}

/// llama.cpp's converter reorders each head's rows from (2, head_dim/2) to (head_dim/2, 2), so that rotating
/// adjacent pairs (its RoPE) equals rotating the two halves (Hugging Face's). This swaps them back.
fn unpermute_rope_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    if !rows.is_multiple_of(2 * heads) {
        bail!("a Q/K projection of {rows} rows cannot hold {heads} heads of an even head_dim")
    }
    let half = rows / heads / 2;
    Ok(w.reshape((heads, half, 2, cols))?.transpose(1, 2)?.reshape((rows, cols))?)
}
