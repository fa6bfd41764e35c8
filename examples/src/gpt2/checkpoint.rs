//! GPT-2 specifics: the 124M configuration, and Hugging Face checkpoints (`model.safetensors`).

use std::{collections::HashMap, path::Path};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use crate::gpt::GptConfig;

/// Every GPT-2 size has 64-dimensional heads, so a checkpoint's hidden size gives its head count.
const HEAD_DIM: usize = 64;

/// GPT-2 small, the "124M" model (openai-community/gpt2).
pub fn gpt2_124m() -> GptConfig {
    GptConfig { vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12 }
}

/// A checkpoint's tensors under the names `Gpt::new` reads: checkpoints saved from `GPT2LMHeadModel` prefix
/// them with `transformer.`; `lm_head.weight`, when present, is the tied token embedding and goes unused.
pub fn load(path: &Path) -> Result<HashMap<String, Tensor>> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading GPT-2 weights from {}", path.display()))?;
    Ok(tensors
        .into_iter()
        .map(|(name, t)| (name.strip_prefix("transformer.").unwrap_or(&name).to_string(), t))
        .collect())
}

/// The configuration of a GPT-2 checkpoint of any size, read from its tensor shapes.
pub fn config(tensors: &HashMap<String, Tensor>) -> Result<GptConfig> {
    let dims2 = |name: &str| match tensors.get(name) {
        Some(t) => Ok(t.dims2()?),
        None => bail!("the GPT-2 weights have no tensor '{name}'"),
    };
    let (vocab_size, n_embd) = dims2("wte.weight")?;
    let (n_positions, _) = dims2("wpe.weight")?;
    let n_layer = (0..).take_while(|i| tensors.contains_key(&format!("h.{i}.ln_1.weight"))).count();
    if !n_embd.is_multiple_of(HEAD_DIM) || n_layer == 0 {
        bail!("not a GPT-2 checkpoint: hidden size {n_embd} (GPT-2's is a multiple of 64), {n_layer} layers")
    }
    Ok(GptConfig { vocab_size, n_positions, n_embd, n_layer, n_head: n_embd / HEAD_DIM })
}
