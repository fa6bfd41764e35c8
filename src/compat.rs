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
//! Differences: these also run on CPU and accept f32; the varlen functions run one op per sequence (the
//! cumulative lengths are read back to the host), and paged K/V is not provided.

use candle_core::{bail, DType, Result, Tensor};

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

fn cumulative(name: &str, t: &Tensor, total: usize) -> Result<Vec<usize>> {
    if t.rank() != 1 || t.dtype() != DType::U32 {
        bail!("flash_attn_varlen: {name} must be a 1-d u32 tensor, got {:?} {:?}", t.dtype(), t.dims())
    }
    let offsets: Vec<usize> = t.to_vec1::<u32>()?.into_iter().map(|x| x as usize).collect();
    if offsets.first() != Some(&0) || offsets.windows(2).any(|w| w[0] > w[1]) || offsets.last() != Some(&total) {
        bail!("flash_attn_varlen: {name} must rise from 0 to {total}, got {offsets:?}")
    }
    Ok(offsets)
}

fn varlen(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seqlens_q: &Tensor,
    seqlens_k: &Tensor,
    (max_seqlen_q, max_seqlen_k): (usize, usize),
    opts: &AttnOptions,
) -> Result<Tensor> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        if t.rank() != 3 {
            bail!("flash_attn_varlen: {name} must have rank 3 (total, heads, head_dim), got shape {:?}", t.dims())
        }
    }
    let cu_q = cumulative("seqlens_q", seqlens_q, q.dim(0)?)?;
    let cu_k = cumulative("seqlens_k", seqlens_k, k.dim(0)?)?;
    if cu_q.len() != cu_k.len() {
        bail!("flash_attn_varlen: seqlens_q has {} entries but seqlens_k has {}", cu_q.len(), cu_k.len())
    }
    let mut outs = Vec::with_capacity(cu_q.len() - 1);
    for (wq, wk) in cu_q.windows(2).zip(cu_k.windows(2)) {
        let (lq, lk) = (wq[1] - wq[0], wk[1] - wk[0]);
        if lq > max_seqlen_q || lk > max_seqlen_k {
            bail!("flash_attn_varlen: a sequence of lengths ({lq}, {lk}) exceeds max ({max_seqlen_q}, {max_seqlen_k})")
        }
        let part = |t: &Tensor, start: usize, len: usize| t.narrow(0, start, len)?.unsqueeze(0);
        let out = crate::flash_attn(&part(q, wq[0], lq)?, &part(k, wk[0], lk)?, &part(v, wk[0], lk)?, opts)?;
        outs.push(out.squeeze(0)?);
    }
    Tensor::cat(&outs, 0)
}
