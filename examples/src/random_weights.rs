//! Random weights in Llama's Hugging Face layout, for running the examples' Llama without a checkpoint: the
//! timings of a model do not depend on its weights (llama_bench, batch_generate on a host without the GGUF).

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::gguf::LlamaConfig;

/// Llama's weights under Hugging Face's names: matrices from `matrix` (rows, cols), unit norm scales.
pub fn llama_weights(
    cfg: &LlamaConfig,
    dtype: DType,
    device: &Device,
    mut matrix: impl FnMut((usize, usize)) -> Result<Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let (hidden, inter, head_dim) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
    let (q_out, kv_out) = (cfg.num_attention_heads * head_dim, cfg.num_key_value_heads * head_dim);
    let ones = || -> Result<Tensor> { Ok(Tensor::ones(hidden, dtype, device)?) };
    let mut weights = HashMap::new();
    weights.insert("model.embed_tokens.weight".to_string(), matrix((cfg.vocab_size, hidden))?);
    weights.insert("model.norm.weight".to_string(), ones()?);
    if !cfg.tie_word_embeddings {
        weights.insert("lm_head.weight".to_string(), matrix((cfg.vocab_size, hidden))?);
    }
    for i in 0..cfg.num_hidden_layers {
        let layer = |name: &str| format!("model.layers.{i}.{name}.weight");
        weights.insert(layer("input_layernorm"), ones()?);
        weights.insert(layer("post_attention_layernorm"), ones()?);
        for (name, shape) in [
            ("self_attn.q_proj", (q_out, hidden)),
            ("self_attn.k_proj", (kv_out, hidden)),
            ("self_attn.v_proj", (kv_out, hidden)),
            ("self_attn.o_proj", (hidden, q_out)),
            ("mlp.gate_proj", (inter, hidden)),
            ("mlp.up_proj", (inter, hidden)),
            ("mlp.down_proj", (hidden, inter)),
        ] {
            weights.insert(layer(name), matrix(shape)?);
        }
    }
    Ok(weights)
}

/// Normal with standard deviation 0.02 (Llama's initialisation scale), drawn by candle on `device`: unseeded,
/// but fast for billions of values, and timings do not depend on the values.
pub fn device_random_weights(cfg: &LlamaConfig, dtype: DType, device: &Device) -> Result<HashMap<String, Tensor>> {
    llama_weights(cfg, dtype, device, |shape| Ok(Tensor::randn(0f32, 0.02, shape, device)?.to_dtype(dtype)?))
}

/// Uniform in ±0.02·√3 (standard deviation 0.02), drawn on the CPU from `seed` (candle cannot seed its CPU
/// generator), so every device gets the same weights.
pub fn random_weights(cfg: &LlamaConfig, seed: u64, dtype: DType, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let bound = 0.02 * 3f32.sqrt();
    llama_weights(cfg, dtype, device, |(rows, cols)| {
        let values: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-bound..bound)).collect();
        Ok(Tensor::from_vec(values, (rows, cols), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?)
    })
}
