//! e4m3 inputs for the FP8 forward, quantised with power-of-two scales (so the dequantised values the
//! reference reads are exact in f32), the forward against the reference, and the e4m3 rounding of rule 6.

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::{
    flash_attn_fp8, flash_attn_fp8_per_head, quantize_fp8, reference, AttnOptions, Fp8Descale, Fp8HeadDescale,
};

use super::inputs::{Case, Rng};

/// Descale factors of the inputs: q, k and v are N(0, 1) samples divided by these before rounding to e4m3.
pub const DESCALE: Fp8Descale = Fp8Descale { q: 0.25, k: 0.5, v: 0.125 };

/// Fresh e4m3 q, k, v on `dev` (quantised there by `quantize_fp8`); with `transposed`, (b, s, h, d) views
/// of contiguous (b, h, s, d) tensors.
pub fn inputs(case: &Case, rng: &mut Rng, dev: &Device, transposed: bool) -> Result<[Tensor; 3]> {
    let mut make = |s: usize, h: usize, descale: f32| -> Result<Tensor> {
        let shape = if transposed { (case.batch, h, s, case.head_dim) } else { (case.batch, s, h, case.head_dim) };
        let t = quantize_fp8(&rng.tensor(shape, 1.0, DType::BF16, dev)?, descale)?;
        if transposed {
            t.transpose(1, 2)
        } else {
            Ok(t)
        }
    };
    Ok([
        make(case.seqlen_q, case.heads_q, DESCALE.q)?,
        make(case.seqlen_k, case.heads_kv, DESCALE.k)?,
        make(case.seqlen_k, case.heads_kv, DESCALE.v)?,
    ])
}

/// x rounded to the nearest e4m3 value (ties to even; 3 mantissa bits, subnormals below 2^-6), for
/// 0 <= x <= 448: what the FP8 kernel does to P.
pub fn round_e4m3(x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let quantum = 2f64.powi(x.log2().floor().max(-6.0) as i32 - 3);
    (x / quantum).round_ties_even() * quantum
}

/// Errors of one FP8 forward.
pub struct Fp8Errors {
    /// max |error| of the op against the f64 reference on the dequantised inputs.
    pub ours: f64,
    /// The same for the reference with P rounded to e4m3 (rule 6's baseline).
    pub emulated: f64,
}

/// Per-head descales, powers of two that differ between heads and sequences: q's (batch, heads_q), or
/// (batch, heads_kv) with `q_per_group`; k's and v's (batch, heads_kv). On `dev`.
pub fn head_descales(case: &Case, q_per_group: bool, dev: &Device) -> Result<Fp8HeadDescale> {
    let factors = |heads: usize, lo: i32, span: usize| -> Result<Tensor> {
        let v: Vec<f32> = (0..case.batch * heads).map(|i| 2f32.powi(-lo - (i % span) as i32)).collect();
        Tensor::from_vec(v, (case.batch, heads), dev)
    };
    Ok(Fp8HeadDescale {
        q: factors(if q_per_group { case.heads_kv } else { case.heads_q }, 1, 3)?,
        k: factors(case.heads_kv, 0, 2)?,
        v: factors(case.heads_kv, 2, 3)?,
    })
}

/// Fresh e4m3 q, k, v on `dev`, each head's N(0, 1) samples divided by its factor of `descale` (exact:
/// powers of two) before rounding to e4m3.
pub fn inputs_per_head(case: &Case, rng: &mut Rng, dev: &Device, descale: &Fp8HeadDescale) -> Result<[Tensor; 3]> {
    let mut make = |s: usize, h: usize, f: &Tensor| -> Result<Tensor> {
        let x = rng.tensor((case.batch, s, h, case.head_dim), 1.0, DType::F32, dev)?;
        quantize_fp8(&x.broadcast_div(&per_head(f, h)?.to_device(dev)?)?, 1.0)
    };
    Ok([
        make(case.seqlen_q, case.heads_q, &descale.q)?,
        make(case.seqlen_k, case.heads_kv, &descale.k)?,
        make(case.seqlen_k, case.heads_kv, &descale.v)?,
    ])
}

/// A (batch, heads_kv or heads) factor as (batch, 1, heads, 1), repeated over each group of query heads.
fn per_head(f: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, h) = f.dims2()?;
    f.unsqueeze(2)?.broadcast_as((b, h, heads / h))?.reshape((b, 1, heads, 1))
}

/// `flash_attn_fp8` on e4m3 q, k, v with [`DESCALE`]: a finite bf16 output of q's shape, bitwise equal over
/// two calls; its error against the reference and the e4m3 emulation's.
#[track_caller]
pub fn check(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions, what: &str) -> Result<Fp8Errors> {
    let out = flash_attn_fp8(q, k, v, &DESCALE, opts)?;
    let again = flash_attn_fp8(q, k, v, &DESCALE, opts)?;
    let dequantized = |t: &Tensor, d: f32| t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.affine(d as f64, 0.0);
    let inputs = [dequantized(q, DESCALE.q)?, dequantized(k, DESCALE.k)?, dequantized(v, DESCALE.v)?];
    errors(&out, &again, q, &inputs, opts, what)
}

/// [`check`] for `flash_attn_fp8_per_head` with `descale`.
#[track_caller]
pub fn check_per_head(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    descale: &Fp8HeadDescale,
    opts: &AttnOptions,
    what: &str,
) -> Result<Fp8Errors> {
    let out = flash_attn_fp8_per_head(q, k, v, descale, opts)?;
    let again = flash_attn_fp8_per_head(q, k, v, descale, opts)?;
    let dequantized = |t: &Tensor, f: &Tensor| -> Result<Tensor> {
        let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        t.broadcast_mul(&per_head(&f.to_device(&Device::Cpu)?, t.dim(2)?)?)
    };
    let inputs = [dequantized(q, &descale.q)?, dequantized(k, &descale.k)?, dequantized(v, &descale.v)?];
    errors(&out, &again, q, &inputs, opts, what)
}

/// The checks and errors of one FP8 output (and its repetition) against the reference on the dequantised
/// inputs.
#[track_caller]
fn errors(
    out: &Tensor,
    again: &Tensor,
    q: &Tensor,
    [qd, kd, vd]: &[Tensor; 3],
    opts: &AttnOptions,
    what: &str,
) -> Result<Fp8Errors> {
    assert_eq!(out.dims(), q.dims(), "{what}: output shape");
    assert_eq!(out.dtype(), DType::BF16, "{what}: output dtype");
    assert_eq!(reference::max_abs_diff(out, again)?, 0.0, "{what}: two runs differ");
    let slopes = opts.alibi_slopes.as_ref().map(|s| s.to_device(&Device::Cpu)).transpose()?;
    let opts = AttnOptions { alibi_slopes: slopes, ..opts.clone() };
    let want = reference::attention(qd, kd, vd, &opts)?.0;
    let emulated = reference::attention_rounding_p(qd, kd, vd, &opts, round_e4m3)?.0;
    let out = out.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let finite = out.flatten_all()?.to_vec1::<f64>()?.iter().all(|x| x.is_finite());
    assert!(finite, "{what}: non-finite output");
    Ok(Fp8Errors { ours: reference::max_abs_diff(&out, &want)?, emulated: reference::max_abs_diff(&emulated, &want)? })
}
