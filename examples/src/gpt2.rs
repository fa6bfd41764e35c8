//! The gpt2 example's parts: Hugging Face checkpoints, the tokenizer, and generation with a KV cache.

pub mod checkpoint;
pub mod generate;
pub mod tokenizer;
