//! What candle-fa2's examples share, and what their tests (tests/) check: fetching SmolLM2 and reading its
//! GGUF, its tokenizer and chat template, sampling, the generation loops, the Llama and GPT models on
//! [`candle_fa2::AttnImpl`], the paged K/V cache and the continuous-batching scheduler, GPT-2's tokenizer
//! and checkpoints, and the training example's corpus and trainer. The examples themselves are in examples/.

pub mod chat;
pub mod device;
pub mod fetch;
pub mod generate;
pub mod gguf;
pub mod gpt;
pub mod gpt2;
pub mod llama;
pub mod paged;
pub mod random_weights;
pub mod sampling;
pub mod serve;
pub mod tokenizer;
pub mod train_gpt;
