//! The SmolLM2 configuration as candle-transformers' Llama takes it, for the binary (src/main.rs) and its
//! test (tests/flash_matches_naive.rs).

pub mod config;
