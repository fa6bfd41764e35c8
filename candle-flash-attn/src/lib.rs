//! `candle-flash-attn` 0.11.1's functions, same names and signatures, running candle-fa2's FlashAttention-2.
//!
//! For crates that call `candle_flash_attn` themselves (candle-transformers' models with their `flash-attn`
//! feature): a `[patch.crates-io]` entry puts this crate in place of the original, so their
//! `use_flash_attn` paths run on candle-fa2 without a change to their code:
//!
//! ```toml
//! [dependencies]
//! candle-transformers = { version = "0.11.1", features = ["flash-attn"] }
//!
//! [patch.crates-io]
//! candle-flash-attn = { path = "path/to/candle-fa2/candle-flash-attn" }
//! ```
//!
//! Differences from the original: the op also runs on CPU tensors (f32, f16, bf16) and handles GQA/MQA in
//! place; on CUDA it also takes f32 (rounded to bf16 inside, so with a bf16 call's accuracy) and head dims
//! that are not multiples of 8 (zero-padded inside, at the cost of a copy); `flash_attn_varlen_paged_windowed` takes any page size (not only multiples of 32) but refuses
//! `mm_prefix_ranges`; the `FlashAttn` / `FlashAttnVarLen` op structs are not provided (no
//! candle-transformers model uses them).

pub use candle_fa2::compat::*;
