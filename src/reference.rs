//! The oracle: naive attention in f64 with an explicit mask, written straight from the definition in
//! [`AttnOptions`]. Tests, benchmarks and examples hold the op against it. Slow (O(n²) memory-free loops,
//! one thread); meant for checking, not for use.

use candle_core::{DType, Device, Result, Tensor, D};

use crate::AttnOptions;

/// Returns `(out, lse)` in f64 on the CPU: out (batch, seqlen_q, heads_q, head_dim), lse (batch, heads_q,
/// seqlen_q). Rows that see no key give zeros and an LSE of `-inf`. Inputs are validated like the op's.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<(Tensor, Tensor)> {
    attention_rounding_p(q, k, v, opts, |p| p)
}

/// [`attention`] with each unnormalised probability `exp(s - max)` passed through `round_p` before it
/// weights V (the row sum stays exact): what a kernel that rounds P to a narrow type for its P V product
/// computes (the FP8 forward rounds it to e4m3), up to the order of its sums and its running max.
pub fn attention_rounding_p(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &AttnOptions,
    round_p: impl Fn(f64) -> f64,
) -> Result<(Tensor, Tensor)> {
    let spec = crate::validate::validate(q, k, v, opts)?;
    let (b, sq, hq, d) = spec.dims.out_shape();
    let (sk, hkv) = (spec.dims.seqlen_k, spec.dims.heads_kv);
    let to_host = |t: &Tensor| -> Result<Vec<f64>> {
        t.to_device(&Device::Cpu)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
    };
    let (qv, kv, vv) = (to_host(q)?, to_host(k)?, to_host(v)?);
    let slopes = match &opts.alibi_slopes {
        Some(s) => Some(to_host(s)?),
        None => None,
    };
    let scale = spec.softmax_scale as f64;
    let offset = sk as i64 - sq as i64;
    let right = opts.effective_window_right();

    let mut out = vec![0f64; b * sq * hq * d];
    let mut lse = vec![f64::NEG_INFINITY; b * hq * sq];
    let mut logits = vec![0f64; sk];
    for bi in 0..b {
        for h in 0..hq {
            let hk = h / (hq / hkv);
            for i in 0..sq {
                let q_row = &qv[((bi * sq + i) * hq + h) * d..][..d];
                let mut max = f64::NEG_INFINITY;
                for (j, logit) in logits.iter_mut().enumerate() {
                    let dist = j as i64 - (i as i64 + offset);
                    let visible = opts.window_left.is_none_or(|l| dist >= -l) && right.is_none_or(|r| dist <= r);
                    if !visible {
                        *logit = f64::NEG_INFINITY;
                        continue;
                    }
                    let k_row = &kv[((bi * sk + j) * hkv + hk) * d..][..d];
                    let mut s = scale * q_row.iter().zip(k_row).map(|(a, b)| a * b).sum::<f64>();
                    if let Some(cap) = opts.softcap {
                        s = cap as f64 * (s / cap as f64).tanh();
                    }
                    if let Some(slopes) = &slopes {
                        s -= slopes[h] * dist.abs() as f64;
                    }
                    *logit = s;
                    max = max.max(s);
                }
                if max == f64::NEG_INFINITY {
                    continue; // no visible key: zeros and -inf
                }
                let sum: f64 = logits.iter().map(|s| (s - max).exp()).sum();
                lse[(bi * hq + h) * sq + i] = max + sum.ln();
                let o_row = &mut out[((bi * sq + i) * hq + h) * d..][..d];
                for (j, s) in logits.iter().enumerate() {
                    let p = round_p((s - max).exp()) / sum;
                    if p == 0.0 {
                        continue;
                    }
                    let v_row = &vv[((bi * sk + j) * hkv + hk) * d..][..d];
                    o_row.iter_mut().zip(v_row).for_each(|(o, v)| *o += p * v);
                }
            }
        }
    }
    Ok((Tensor::from_vec(out, (b, sq, hq, d), &Device::Cpu)?, Tensor::from_vec(lse, (b, hq, sq), &Device::Cpu)?))
}

/// The largest `|a - b|` over all elements, compared in f64 on the CPU.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    (a - b)?.abs()?.flatten_all()?.max(D::Minus1)?.to_scalar::<f64>()
}
