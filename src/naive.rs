//! candle's softmax-matmul attention: `softmax(q kᵀ · scale + mask) v` with candle ops, in the inputs' dtype
//! and on their device, materialising the (seqlen_q x seqlen_k) scores per head. This is what
//! candle-transformers' models do; the benchmarks measure the op against it, the examples switch to it
//! with `--attn naive`, and the tests use it as the same-precision baseline of the tolerance rule.

use candle_core::{DType, Result, Tensor, D};

use crate::AttnOptions;

/// Same contract as [`crate::flash_attn`] (shapes, GQA, options, zeros for rows that see no key).
///
/// Not for training: candle's fused `softmax_last_dim` records no backward, so gradients through this
/// function reach `v` but silently not `q` and `k`. Use [`attention_differentiable`] there.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<Tensor> {
    softmax_matmul(q, k, v, opts, candle_nn::ops::softmax_last_dim)
}

/// [`attention`] with the softmax built from candle ops that all have a backward pass
/// (`candle_nn::ops::softmax`), so autograd gives gradients for q, k and v: the softmax-matmul baseline
/// for training. Slower than [`attention`] (the softmax is five ops instead of one fused kernel).
pub fn attention_differentiable(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<Tensor> {
    softmax_matmul(q, k, v, opts, |scores| candle_nn::ops::softmax(scores, D::Minus1))
}

fn softmax_matmul(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &AttnOptions,
    softmax_last_dim: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let spec = crate::validate::validate(q, k, v, opts)?;
    let dims = spec.dims;
    let (b, sq, hq, d) = dims.out_shape();
    let (sk, group) = (dims.seqlen_k, dims.group_size());
    if b * sq * hq == 0 || sk == 0 {
        return Tensor::zeros((b, sq, hq, d), q.dtype(), q.device());
    }
    // (batch, heads, seq, dim); K/V repeated to the query heads, as candle-transformers' repeat_kv does.
    let q = q.transpose(1, 2)?.contiguous()?;
    let repeat_kv = |t: &Tensor| -> Result<Tensor> {
        let t = t.transpose(1, 2)?; // (b, hkv, sk, d)
        let t = t.unsqueeze(2)?.broadcast_as((b, dims.heads_kv, group, sk, d))?;
        t.reshape((b, hq, sk, d))
    };
    let (k, v) = (repeat_kv(k)?, repeat_kv(v)?);

    let mut scores = (q.matmul(&k.t()?)? * spec.softmax_scale as f64)?;
    if let Some(cap) = spec.softcap {
        scores = ((scores / cap as f64)?.tanh()? * cap as f64)?;
    }
    let band = spec.band;
    let dev = q.device();
    // j - i - offset for every (query i, key j), built on the device: a host loop over sq x sk per call
    // would dominate long prefills (seconds at 8k on an H100) and measure the baseline unfairly.
    let distance = || -> Result<Tensor> {
        let rows = Tensor::arange(0u32, sq as u32, dev)?.to_dtype(DType::F32)?.reshape((sq, 1))?;
        let cols = Tensor::arange(0u32, sk as u32, dev)?.to_dtype(DType::F32)?.reshape((1, sk))?;
        (cols.broadcast_sub(&rows)? - band.offset as f64)?.reshape((1, 1, sq, sk))
    };
    if let Some(slopes) = &spec.alibi_slopes {
        let bias = slopes.reshape((1, hq, 1, 1))?.broadcast_mul(&distance()?.abs()?)?.to_dtype(q.dtype())?;
        scores = scores.broadcast_sub(&bias)?;
    }
    let masked = band.left.is_some() || band.right.is_some();
    if masked {
        let dist = distance()?;
        let neg_inf = Tensor::new(f32::NEG_INFINITY, dev)?.to_dtype(q.dtype())?.broadcast_as(scores.shape())?;
        for visible in
            [band.left.map(|l| dist.ge(-l as f64)), band.right.map(|r| dist.le(r as f64))].into_iter().flatten()
        {
            scores = visible?.broadcast_as(scores.shape())?.where_cond(&scores, &neg_inf)?;
        }
    }
    let mut probs = softmax_last_dim(&scores)?;
    if masked && (0..sq).any(|i| band.key_range(i..i + 1, sk).is_empty()) {
        // softmax of an all -inf row is NaN; such rows are defined to give zeros.
        let has_key: Vec<u8> = (0..sq).map(|i| !band.key_range(i..i + 1, sk).is_empty() as u8).collect();
        let has_key = Tensor::from_vec(has_key, (1, 1, sq, 1), q.device())?.broadcast_as(probs.shape())?;
        probs = has_key.where_cond(&probs, &probs.zeros_like()?)?;
    }
    probs.matmul(&v.contiguous()?)?.transpose(1, 2)?.contiguous()
}
