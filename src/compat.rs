//! Drop-in mirror of `candle-flash-attn`'s public functions, same names and signatures, so an existing
//! caller switches by changing one `use` line:
//!
//! ```
//! use candle_fa2::compat as candle_flash_attn; // was: use candle_flash_attn;
//! # use candle_core::{Device, Tensor};
//! # fn main() -> candle_core::Result<()> {
//! # let q = Tensor::randn(0f32, 1.0, (1, 16, 4, 32), &Device::Cpu)?;
//! let out = candle_flash_attn::flash_attn(&q, &q, &q, 32f32.powf(-0.5), true)?;
//! # Ok(()) }
//! ```
//!
//! Differences: these also run on CPU; on CUDA they accept f32 (run as bf16) and any head_dim up to 512
//! (not only multiples of 8; see [`crate::flash_attn`]), and paged K/V takes any page size. The varlen
//! functions run one launch on CUDA, as upstream, and are differentiable.

use candle_core::{bail, Result, Tensor};

use crate::validate::{self, KeyLengths, KeysLayout};
use crate::AttnOptions;

fn options(
    softmax_scale: f32,
    window_size_left: Option<usize>,
    window_size_right: Option<usize>,
    alibi_slopes: Option<&Tensor>,
    softcap: Option<f32>,
) -> AttnOptions {
    AttnOptions {
        softmax_scale: Some(softmax_scale),
        causal: false,
        window_left: window_size_left.map(|w| w as i64),
        window_right: window_size_right.map(|w| w as i64),
        softcap,
        alibi_slopes: alibi_slopes.cloned(),
        ..AttnOptions::default()
    }
}

fn causal_right(causal: bool) -> Option<usize> {
    causal.then_some(0)
}

/// `softmax(q kᵀ · softmax_scale) v`; q (batch, seqlen_q, heads_q, head_dim), k/v (batch, seqlen_k, heads_kv,
/// head_dim).
pub fn flash_attn(q: &Tensor, k: &Tensor, v: &Tensor, softmax_scale: f32, causal: bool) -> Result<Tensor> {
    crate::flash_attn(q, k, v, &options(softmax_scale, None, causal_right(causal), None, None))
}

/// Sliding window: `None` is unbounded; `(None, Some(0))` is causal.
pub fn flash_attn_windowed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    softmax_scale: f32,
    window_size_left: Option<usize>,
    window_size_right: Option<usize>,
) -> Result<Tensor> {
    crate::flash_attn(q, k, v, &options(softmax_scale, window_size_left, window_size_right, None, None))
}

/// ALiBi with one f32 slope per query head.
pub fn flash_attn_alibi(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    alibi_slopes: &Tensor,
    softmax_scale: f32,
    causal: bool,
) -> Result<Tensor> {
    crate::flash_attn(q, k, v, &options(softmax_scale, None, causal_right(causal), Some(alibi_slopes), None))
}

#[allow(clippy::too_many_arguments)]
pub fn flash_attn_alibi_windowed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    alibi_slopes: &Tensor,
    softmax_scale: f32,
    window_size_left: Option<usize>,
    window_size_right: Option<usize>,
) -> Result<Tensor> {
    let opts = options(softmax_scale, window_size_left, window_size_right, Some(alibi_slopes), None);
    crate::flash_attn(q, k, v, &opts)
}

#[allow(clippy::too_many_arguments)]
pub fn flash_attn_alibi_windowed_softcap(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    alibi_slopes: Option<&Tensor>,
    softmax_scale: f32,
    window_size_left: Option<usize>,
    window_size_right: Option<usize>,
    softcap: f32,
) -> Result<Tensor> {
    let opts = options(softmax_scale, window_size_left, window_size_right, alibi_slopes, Some(softcap));
    crate::flash_attn(q, k, v, &opts)
}

/// Variable-length batch: q (total_q, heads_q, head_dim), k/v (total_k, heads_kv, head_dim); `seqlens_q` and
/// `seqlens_k` are cumulative u32 offsets of `batch + 1` elements. Returns (total_q, heads_q, head_dim).
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_varlen(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seqlens_q: &Tensor,
    seqlens_k: &Tensor,
    max_seqlen_q: usize,
    max_seqlen_k: usize,
    softmax_scale: f32,
    causal: bool,
) -> Result<Tensor> {
    let opts = options(softmax_scale, None, causal_right(causal), None, None);
    varlen(q, k, v, seqlens_q, seqlens_k, (max_seqlen_q, max_seqlen_k), &opts)
}

#[allow(clippy::too_many_arguments)]
pub fn flash_attn_varlen_windowed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seqlens_q: &Tensor,
    seqlens_k: &Tensor,
    max_seqlen_q: usize,
    max_seqlen_k: usize,
    softmax_scale: f32,
    window_size_left: Option<usize>,
    window_size_right: Option<usize>,
) -> Result<Tensor> {
    let opts = options(softmax_scale, window_size_left, window_size_right, None, None);
    varlen(q, k, v, seqlens_q, seqlens_k, (max_seqlen_q, max_seqlen_k), &opts)
}

#[allow(clippy::too_many_arguments)]
pub fn flash_attn_varlen_alibi(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    alibi_slopes: &Tensor,
    seqlens_q: &Tensor,
    seqlens_k: &Tensor,
    max_seqlen_q: usize,
    max_seqlen_k: usize,
    softmax_scale: f32,
    causal: bool,
) -> Result<Tensor> {
    let opts = options(softmax_scale, None, causal_right(causal), Some(alibi_slopes), None);
    varlen(q, k, v, seqlens_q, seqlens_k, (max_seqlen_q, max_seqlen_k), &opts)
}

#[allow(clippy::too_many_arguments)]
pub fn flash_attn_varlen_alibi_windowed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    alibi_slopes: &Tensor,
    seqlens_q: &Tensor,
    seqlens_k: &Tensor,
    max_seqlen_q: usize,
    max_seqlen_k: usize,
    softmax_scale: f32,
    window_size_left: Option<usize>,
    window_size_right: Option<usize>,
) -> Result<Tensor> {
    let opts = options(softmax_scale, window_size_left, window_size_right, Some(alibi_slopes), None);
    varlen(q, k, v, seqlens_q, seqlens_k, (max_seqlen_q, max_seqlen_k), &opts)
}

#[allow(clippy::too_many_arguments)]
pub fn flash_attn_varlen_alibi_windowed_softcap(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    alibi_slopes: Option<&Tensor>,
    seqlens_q: &Tensor,
    seqlens_k: &Tensor,
    max_seqlen_q: usize,
    max_seqlen_k: usize,
    softmax_scale: f32,
    window_size_left: Option<usize>,
    window_size_right: Option<usize>,
    softcap: f32,
) -> Result<Tensor> {
    let opts = options(softmax_scale, window_size_left, window_size_right, alibi_slopes, Some(softcap));
    varlen(q, k, v, seqlens_q, seqlens_k, (max_seqlen_q, max_seqlen_k), &opts)
}

/// One launch on CUDA (no host read-back of the offsets); see [`crate::flash_attn_varlen`].
fn varlen(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seqlens_q: &Tensor,
    seqlens_k: &Tensor,
    (max_seqlen_q, max_seqlen_k): (usize, usize),
    opts: &AttnOptions,
) -> Result<Tensor> {
    crate::flash_attn_varlen(q, k, v, seqlens_q, seqlens_k, max_seqlen_q, max_seqlen_k, opts)
}

/// Varlen queries against a paged K/V cache, with candle-flash-attn 0.11's signature: q (total_q, heads_q,
/// head_dim); k, v (num_pages, page_block_size, heads_kv, head_dim); `seqlens_q` and `seqlens_k` cumulative
/// u32 offsets of `batch + 1` elements (for k only the differences, the key counts, are used); `block_table`
/// (batch, pages per sequence) u32. Page sizes are not limited to multiples of 32 here. `mm_prefix_ranges`
/// (multimodal prefixes that bypass the mask) is not supported: passing one is an error.
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_varlen_paged_windowed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seqlens_q: &Tensor,
    seqlens_k: &Tensor,
    block_table: &Tensor,
    mm_prefix_ranges: Option<&Tensor>,
    max_seqlen_q: usize,
    max_seqlen_k: usize,
    softmax_scale: f32,
    window_size_left: Option<usize>,
    window_size_right: Option<usize>,
    page_block_size: usize,
    softcap: Option<f32>,
) -> Result<Tensor> {
    if let Some(ranges) = mm_prefix_ranges {
        bail!(
            "flash_attn_varlen_paged_windowed: mm_prefix_ranges (shape {:?}) is not supported by candle-fa2; pass None",
            ranges.dims()
        )
    }
    if k.dims().get(1) != Some(&page_block_size) {
        bail!(
            "flash_attn_varlen_paged_windowed: page_block_size {page_block_size} does not match k's shape {:?}",
            k.dims()
        )
    }
    let opts = options(softmax_scale, window_size_left, window_size_right, None, softcap);
    let keys =
        KeysLayout::Paged { block_table, lengths: KeyLengths::Cumulative(seqlens_k), max_seqlen_k: Some(max_seqlen_k) };
    let spec = validate::validate_ragged(q, k, v, Some((seqlens_q, max_seqlen_q)), keys, &opts)?;
    Ok(crate::ragged::run_ragged(q, k, v, spec, &opts)?.0)
}
