//! The command line and the set-up shared by the SmolLM2 chat examples (ours and candle-transformers'):
//! device and dtype, the model file, the tokenizer, the prompt in the chat template, the sampler.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::{DType, Device};

use crate::{
    device,
    gguf::{Gguf, LlamaConfig},
    sampling::Sampler,
    tokenizer::{ChatTokenizer, DEFAULT_SYSTEM_PROMPT},
};

#[derive(clap::Args)]
pub struct ChatArgs {
    /// The user's message.
    #[arg(long, default_value = "What is the capital of France?")]
    pub prompt: String,
    /// The system turn of the chat template.
    #[arg(long, default_value = DEFAULT_SYSTEM_PROMPT)]
    pub system: String,
    /// Stop after this many answer tokens (or earlier, at the end of the answer).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 picks the most likely token every step (greedy, deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling: sample among the most likely tokens that hold this much probability.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Penalise the tokens of the last --repeat-last-n by this factor (1 is none).
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// f32, f16 or bf16: the dtype the weights are dequantized to and the model runs in [default: f32 on
    /// the CPU, bf16 on CUDA].
    #[arg(long, value_parser = device::parse_dtype)]
    pub dtype: Option<DType>,
    /// Run on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    /// A local SmolLM2 GGUF file instead of the cached download.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

pub struct Chat {
    pub device: Device,
    pub dtype: DType,
    pub path: PathBuf,
    pub gguf: Gguf,
    pub cfg: LlamaConfig,
    pub tokenizer: ChatTokenizer,
    /// The user's turn in the chat template, ending where the answer starts.
    pub prompt: Vec<u32>,
    pub sampler: Sampler,
}

impl ChatArgs {
    /// Checks the arguments, obtains the model file and reads its configuration and tokenizer (not yet the
    /// weights, which go to `Chat::gguf.hf_weights` in the dtype and on the device chosen here).
    pub fn prepare(&self) -> Result<Chat> {
        if self.max_tokens == 0 {
            bail!("--max-tokens must be at least 1")
        }
        let sampler = Sampler::new(self.seed, self.temperature, self.top_p, self.repeat_penalty, self.repeat_last_n)?;
        let device = device::pick_device(self.cpu);
        let dtype = self.dtype.unwrap_or(device::default_dtype(&device));
        let path = crate::fetch::smollm2_gguf(self.model.as_deref())?;
        let gguf = Gguf::open(&path)?;
        let cfg = gguf.config()?;
        let tokenizer = ChatTokenizer::from_gguf(&gguf)?;
        let prompt = tokenizer.chat_prompt(&self.system, &self.prompt)?;
        if prompt.len() + self.max_tokens > cfg.max_position_embeddings {
            bail!(
                "the prompt ({} tokens) plus --max-tokens {} exceed the model's context of {} tokens",
                prompt.len(),
                self.max_tokens,
                cfg.max_position_embeddings
            )
        }
        Ok(Chat { device, dtype, path, gguf, cfg, tokenizer, prompt, sampler })
    }
}
