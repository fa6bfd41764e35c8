//! The forward oracle: the op's output and LSE against the f64 reference, with rule 1 of tolerance.rs, for
//! one call, for a batched call sequence by sequence, and for the kv-cache entry point.

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::{flash_attn_with_lse, naive, reference, AttnOptions};

use super::tolerance;

/// The errors [`check`] measured, for the suites to print next to each other.
pub struct Errors {
    pub ours: f64,
    pub naive: f64,
    pub lse: f64,
}

/// The op on q, k, v: its output has q's shape and dtype, and output and LSE pass rule 1 of tolerance.rs
/// against the f64 reference (rule 5 for f32 on CUDA).
#[track_caller]
pub fn check(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions, what: &str) -> Result<Errors> {
    let (out, lse) = flash_attn_with_lse(q, k, v, opts)?;
    assert_eq!(out.dims(), q.dims(), "{what}: output shape");
    assert_eq!(out.dtype(), q.dtype(), "{what}: output dtype");
    assert_eq!(lse.dtype(), DType::F32, "{what}: lse dtype");
    against_reference(&out, &lse, q, k, v, opts, what)
}

/// [`candle_fa2::flash_attn_kvcache_with_lse`] held to the reference sequence by sequence (each over its
/// own `lens[b]` keys) with the rule of [`check`]; a sequence without keys must give zeros and LSE -inf.
/// Returns the largest error seen.
#[track_caller]
pub fn check_kvcache(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    lens: &[u32],
    opts: &AttnOptions,
    what: &str,
) -> Result<f64> {
    let seqlens = Tensor::new(lens, q.device())?;
    let (out, lse) = candle_fa2::flash_attn_kvcache_with_lse(q, k_cache, v_cache, &seqlens, opts)?;
    assert_eq!(out.dims(), q.dims(), "{what}: output shape");
    let mut worst = 0f64;
    for (b, &len) in lens.iter().enumerate() {
        let what = format!("{what} sequence {b} ({len} keys)");
        let k_b = k_cache.narrow(0, b, 1)?.narrow(1, 0, len as usize)?;
        let v_b = v_cache.narrow(0, b, 1)?.narrow(1, 0, len as usize)?;
        let (got, got_lse) = (out.narrow(0, b, 1)?, lse.narrow(0, b, 1)?);
        worst = worst.max(check_sequence(&got, &got_lse, &q.narrow(0, b, 1)?, &k_b, &v_b, opts, &what)?);
    }
    Ok(worst)
}

/// One sequence's output (1, seqlen_q, heads_q, head_dim) and LSE (1, heads_q, seqlen_q) from a batched call,
/// held to the reference on its own q_b, k_b, v_b (batch 1) with the rule of [`check`]; a sequence without
/// keys must give zeros and LSE -inf. Returns the error.
#[track_caller]
pub fn check_sequence(
    got: &Tensor,
    got_lse: &Tensor,
    q_b: &Tensor,
    k_b: &Tensor,
    v_b: &Tensor,
    opts: &AttnOptions,
    what: &str,
) -> Result<f64> {
    assert_eq!(got_lse.dtype(), DType::F32, "{what}: lse dtype");
    if q_b.dim(1)? == 0 {
        assert_eq!(got.elem_count(), 0, "{what}: a sequence without queries has output");
        return Ok(0.0);
    }
    if k_b.dim(1)? == 0 {
        // The reference has no softmax over no keys; the op's answer is defined: zeros, LSE -inf.
        let values = to_f64s(got)?;
        assert!(values.iter().all(|&x| x == 0.0), "{what}: rows without keys are not zero");
        assert!(to_f64s(got_lse)?.iter().all(|&x| x == f64::NEG_INFINITY), "{what}: lse of rows without keys");
        return Ok(0.0);
    }
    Ok(against_reference(got, got_lse, q_b, k_b, v_b, opts, what)?.ours)
}

/// Rule 1 on a computed output and LSE: finite, and within the bounds of tolerance.rs of the f64 reference
/// on the same inputs; rule 5 where the op computed in another dtype than the inputs' (f32 on CUDA, read from
/// the device of `got`: the inputs given here may be copies on the CPU).
#[track_caller]
fn against_reference(
    got: &Tensor,
    got_lse: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &AttnOptions,
    what: &str,
) -> Result<Errors> {
    let computed = tolerance::computed_as(q.dtype(), got.device());
    let (want, want_lse) = reference::attention(q, k, v, opts)?;
    let got = got.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    assert!(to_f64s(&got)?.iter().all(|x| x.is_finite()), "{what}: non-finite output");
    let ours = reference::max_abs_diff(&got, &want)?;
    let (qc, kc, vc) = (q.to_dtype(computed)?, k.to_dtype(computed)?, v.to_dtype(computed)?);
    let naive = reference::max_abs_diff(&naive::attention(&qc, &kc, &vc, opts)?, &want)?;
    tolerance::assert_forward(ours, naive, computed, what);
    let want_lse = if computed == q.dtype() { want_lse } else { reference::attention(&qc, &kc, &vc, opts)?.1 };
    let lse = tolerance::assert_lse(&to_f64s(got_lse)?, &to_f64s(&want_lse)?, what);
    Ok(Errors { ours, naive, lse })
}

/// Every element of t, flattened, as f64 on the host.
fn to_f64s(t: &Tensor) -> Result<Vec<f64>> {
    t.to_device(&Device::Cpu)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
}
