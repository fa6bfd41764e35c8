//! Every bound the suites hold a result to, each stated once: what it compares, against what, and why that
//! bound. The oracles that compute the errors (forward.rs, grads.rs and the suites) call these; a suite does
//! not write a tolerance literal of its own.
//!
//! 1. The forward against the f64 reference: at most twice the error of candle's softmax-matmul attention in
//!    the same dtype, plus a floor; LSE within 1e-3.
//! 2. GPU gradients against f64 autograd: the same rule, relative to the largest reference gradient.
//! 3. CPU gradients against f64 autograd: a fixed fraction of the largest reference gradient per dtype.
//! 4. The CUDA op against the CPU op (the oracle where the reference is too slow or has no answer), bf16.
//! 5. f32 on CUDA, which runs as bf16: rules 1 and 2 in bf16 ([`computed_as`]).
//! 6. The e4m3 forward against the f64 reference on the dequantised inputs: at most twice the error of the
//!    reference with P rounded to e4m3, plus the bf16 floor.
//!
//! And one for two f32 computations of the same attention that differ only in the order of rounding.
//!
//! The assert functions here and the oracles that call them are `#[track_caller]`, so that a failure names
//! the suite's line rather than this file's.

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::reference;

// ---- Rule 1: the forward against the f64 reference -------------------------------------------------------

/// What rounding the output to `dtype` alone can cost: the floor added to twice the naive error, so that a
/// naive attention that happens to be exact does not demand an exact kernel.
pub fn floor(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 1e-3,
        _ => 4e-3, // bf16: 8 mantissa bits, outputs of magnitude up to ~1
    }
}

/// In f32 the softmax-matmul baseline is itself held to the reference, so that a broken baseline cannot
/// loosen the rule it sets. (In f16/bf16 its error is the point: with large scores it is large.)
pub const F32_BASELINE: f64 = 1e-3;

/// The op's log-sum-exp against the reference's, absolute. The LSE is an f32 output whatever the inputs'
/// dtype, and the reference runs on the same (rounded) inputs, so only f32 accumulation separates them:
/// 1e-3 is about a thousand f32 ulps at LSE ~ 10, and far below what a wrong scale, mask or softcap gives.
pub const LSE: f64 = 1e-3;

/// Rule 1: `ours`, the op's max |error| against the f64 reference, is at most twice `naive`, that of
/// candle's softmax-matmul attention in the same dtype on the same inputs, plus [`floor`]. Twice: the op
/// must be about as accurate as the attention a model would otherwise run, with room for roundings of its
/// own (on the GPU, P is rounded to the dtype as an MMA operand).
#[track_caller]
pub fn assert_forward(ours: f64, naive: f64, dtype: DType, what: &str) {
    if dtype == DType::F32 {
        assert!(naive <= F32_BASELINE, "{what}: the softmax-matmul baseline is off by {naive:.3e}");
    }
    let bound = 2.0 * naive + floor(dtype);
    assert!(ours <= bound, "{what}: error {ours:.3e} > bound {bound:.3e} (naive {naive:.3e})");
}

/// Rule 1 for the LSE: each entry within [`LSE`] of the reference's; where the reference is -inf (a row that
/// sees no key) the op's must be -inf too. Returns the largest error.
#[track_caller]
pub fn assert_lse(got: &[f64], want: &[f64], what: &str) -> f64 {
    let mut worst = 0f64;
    for (i, (a, w)) in got.iter().zip(want).enumerate() {
        if w.is_infinite() {
            assert_eq!(a, w, "{what}: lse[{i}]");
        } else {
            let err = (a - w).abs();
            assert!(err <= LSE, "{what}: lse[{i}] {a} vs {w}");
            worst = worst.max(err);
        }
    }
    worst
}

// ---- Rule 6: the e4m3 forward ------------------------------------------------------------------------------

/// Rule 6: `ours`, the e4m3 forward's max |error| against the f64 reference on the dequantised inputs, is at
/// most twice `emulated`, that of the reference with every unnormalised probability rounded to e4m3
/// (`reference::attention_rounding_p`: the one rounding the FP8 kernel adds to a bf16 kernel's), plus the
/// bf16 floor (the output is bf16). Twice, as rule 1: room for the kernel's running max (it rounds P against
/// the max so far, not the row's) and f32 sums.
#[track_caller]
pub fn assert_fp8_forward(ours: f64, emulated: f64, what: &str) {
    let bound = 2.0 * emulated + floor(DType::BF16);
    assert!(ours <= bound, "{what}: error {ours:.3e} > bound {bound:.3e} (e4m3 P emulated {emulated:.3e})");
}

// ---- Rule 2: GPU gradients against f64 autograd -----------------------------------------------------------

/// max |a - b| / max |b|: a gradient's error relative to the reference's largest magnitude, so that one bound
/// serves gradients of any scale. A gradient that is zero in exact arithmetic (dq and dk with one key: P is 1
/// whatever the score) is held to an absolute 1e-3 instead.
pub fn rel_err(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok(reference::max_abs_diff(a, b)? / max_abs(b)?.max(1e-3))
}

/// The floor of rule 2, a fraction of the largest gradient (the forward's is absolute). Larger than the
/// forward's: a gradient passes through more roundings to the dtype than the output does (P and dS as
/// MMA operands, then dq, dk and dv themselves).
pub fn grad_floor(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 2e-3,
        _ => 1e-2, // bf16: three fewer mantissa bits than f16
    }
}

/// Rule 2: the op's gradient error (`ours`, [`rel_err`] against candle autograd of an f64 attention) is at
/// most twice that of the same attention written with candle ops in the inputs' dtype (`naive`), plus
/// [`grad_floor`]: the forward's rule, for gradients.
#[track_caller]
pub fn assert_grad(ours: f64, naive: f64, dtype: DType, what: &str) {
    let bound = 2.0 * naive + grad_floor(dtype);
    assert!(ours <= bound, "{what}: error {ours:.3e} > {bound:.3e} (naive {naive:.3e})");
}

// ---- Rule 3: CPU gradients against f64 autograd -----------------------------------------------------------

/// The bound of rule 3 as a fraction of the largest reference gradient. The CPU backward computes in f32
/// whatever the dtype, so the error is the rounding of the inputs and gradients to `dtype`: f32 is held
/// near its own precision (1e-4: seqlen-long f32 sums), bf16 and f16 to a few ulps of their 8 and 11
/// mantissa bits.
pub fn cpu_grad_tol(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-4,
        DType::F16 => 3e-3,
        _ => 2e-2, // bf16
    }
}

/// Rule 3: max |got - want| <= [`cpu_grad_tol`] · max |want|, with no absolute floor (unlike [`rel_err`]):
/// the CPU cases have no gradient that is zero in exact arithmetic.
#[track_caller]
pub fn assert_cpu_grad(got: &Tensor, want: &Tensor, dtype: DType, what: &str) -> Result<()> {
    let err = reference::max_abs_diff(got, want)?;
    let scale = max_abs(want)?;
    assert!(err <= cpu_grad_tol(dtype) * scale, "{what}: error {err:.3e} vs max |grad| {scale:.3e}");
    Ok(())
}

// ---- Rule 4: the CUDA op against the CPU op, bf16 ---------------------------------------------------------

/// bf16 outputs of the CUDA op against the CPU op (or two CUDA paths: split and merged, kvcache and dense),
/// absolute, outputs of magnitude below 1. Both round an f32 result to bf16 (one ulp at |o| < 1 is 2^-8);
/// P is rounded to bf16 on the GPU only: four ulps.
pub const CUDA_VS_CPU: f64 = 1.6e-2;

/// bf16 gradients of the CUDA op against the CPU op's, or against the same op in another backward mode or
/// launch, as [`rel_err`]. Both round to bf16 at the end; the GPU also rounds P and dS to bf16 as MMA
/// operands, and the dq_atomics mode adds dQ in another order: five ulps.
pub const CUDA_VS_CPU_GRAD: f64 = 2e-2;

/// bf16 outputs on the small shapes run under compute-sanitizer, and rows-without-keys checks, absolute:
/// five ulps. These tests look for memory errors and exact zeros; the value checks only catch a path that
/// computes garbage, the accuracy tests above hold the same paths to the tight bounds.
pub const SMOKE: f64 = 2e-2;

// ---- Rule 5: f32 on CUDA, through bf16 --------------------------------------------------------------------

/// The dtype whose rules 1 and 2 hold the op's results for inputs of `dtype` computed on `device`: `dtype`
/// itself, except f32 on CUDA, which the op rounds to bf16 to run the bf16 kernels (src/kernel_fit.rs). Its
/// error is then a bf16 call's; an f32 bound (twice an f32 baseline's error, about 1e-6) would fail on the
/// rounding of the inputs alone. So rule 5: the baseline is computed on the inputs rounded to bf16, in bf16,
/// against the f64 reference on the caller's f32 inputs, and the bound is rule 1's (or 2's) for bf16. The
/// baseline pays the same input rounding as the op, so "twice the baseline plus the bf16 floor" still means
/// "as accurate as the attention a bf16 model would run". The LSE is held to the reference on the rounded
/// inputs: rounding q and k (2^-9 relative each) alone moves a logit by up to 2^-8 |q||k| · scale, 0.03 for
/// unit-normal inputs at head_dim 64, far more than [`LSE`]; what the kernels add to it is f32 accumulation,
/// which [`LSE`] bounds.
pub fn computed_as(dtype: DType, device: &Device) -> DType {
    if dtype == DType::F32 && device.is_cuda() {
        DType::BF16
    } else {
        dtype
    }
}

// ---- Two f32 computations of the same attention -----------------------------------------------------------

/// f32 results that differ only in the order of rounding (parts merged against the whole, a varlen call
/// against per-sequence calls, one entry point against another): a few f32 ulps, absolute.
pub const F32_REORDERED: f64 = 1e-5;

/// max |t| as f64, whatever t's dtype or device.
fn max_abs(t: &Tensor) -> Result<f64> {
    t.to_device(&Device::Cpu)?.to_dtype(DType::F64)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()
}
