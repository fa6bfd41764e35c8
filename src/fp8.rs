//! [`flash_attn_fp8`]: the forward on e4m3 (FP8) inputs, with a bf16 output.

use candle_core::{bail, DType, Device, Result, Tensor};

use crate::options::AttnOptions;
use crate::validate;

/// Per-tensor descale factors of e4m3 inputs: the values attended are q times `q`, k times `k` and v times
/// `v` (the inverse of the scales the tensors were quantised with). Each must be finite and > 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fp8Descale {
    pub q: f32,
    pub k: f32,
    pub v: f32,
}

impl Default for Fp8Descale {
    /// No scaling: the e4m3 values are the values.
    fn default() -> Self {
        Self { q: 1.0, k: 1.0, v: 1.0 }
    }
}

/// Attention over e4m3 inputs: [`flash_attn`](crate::flash_attn) of `q * descale.q`, `k * descale.k`,
/// `v * descale.v`, returned in bf16 (batch, seqlen_q, heads_q, head_dim), with every option of
/// [`AttnOptions`] (causal, windows, softcap, ALiBi, GQA).
///
/// - q, k, v: `DType::F8E4M3`, shaped as for [`flash_attn`](crate::flash_attn).
/// - On an H100/H200 (sm_90a kernels), with head_dim a multiple of 16 from 80 to 256 and strides that are
///   multiples of 16 elements: FA3's FP8 kernel. Q Kᵀ and P V run in e4m3 on the tensor cores with f32
///   accumulation; P is rounded to e4m3 (3 mantissa bits) for its product, so the output carries more
///   error than the bf16 kernels' (tests/gpu_forward.rs bounds it against an e4m3 emulation of the
///   same steps). It writes V transposed into a scratch buffer first (one pass over V).
/// - Elsewhere (other GPUs, head_dim <= 64 or not a multiple of 16, other layouts, the CPU): e4m3 is widened
///   (bf16 on CUDA, f32 on the CPU; v times its descale) and runs on [`flash_attn`](crate::flash_attn), then
///   O is rounded to bf16. At head_dim <= 64 the FP8 kernel would run the d128 tiles half empty, slower than
///   the bf16 d64 kernel.
/// - [`quantize_fp8`] makes the inputs from f32 / f16 / bf16 tensors, on the CPU or the GPU.
/// - Forward only: the result records no gradient.
pub fn flash_attn_fp8(q: &Tensor, k: &Tensor, v: &Tensor, descale: &Fp8Descale, opts: &AttnOptions) -> Result<Tensor> {
    let spec = validate::validate_fp8(q, k, v, opts)?;
    for (name, x) in [("q", descale.q), ("k", descale.k), ("v", descale.v)] {
        if !(x.is_finite() && x > 0.0) {
            bail!("flash_attn_fp8: descale.{name} must be finite and > 0, got {x}")
        }
    }
    // The descales of q and k scale every logit: fold them into the softmax scale.
    let softmax_scale = spec.softmax_scale * descale.q * descale.k;
    if !softmax_scale.is_finite() {
        bail!("flash_attn_fp8: softmax_scale x descale.q x descale.k = {softmax_scale} is not finite")
    }
    let dims = spec.dims;
    if dims.batch * dims.seqlen_q * dims.heads_q == 0 || dims.seqlen_k == 0 {
        return Tensor::zeros(dims.out_shape(), DType::BF16, q.device());
    }
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() {
        let spec = validate::AttnSpec { softmax_scale, ..spec };
        if let Some((out, _lse)) = crate::cuda::fp8_forward(&spec, [q, k, v], descale.v)? {
            return Ok(out);
        }
    }
    // q and k widen exactly (their descales are in the scale); v takes its descale as it widens (exact
    // for a power of two, else one rounding to bf16 on CUDA, as the output's).
    let wide = if q.device().is_cpu() { DType::F32 } else { DType::BF16 };
    let opts = AttnOptions { softmax_scale: Some(softmax_scale), ..opts.clone() };
    let (q, k) = (dequantize_fp8(q, 1.0, wide)?, dequantize_fp8(k, 1.0, wide)?);
    let v = dequantize_fp8(v, descale.v, wide)?;
    crate::flash_attn(&q, &k, &v, &opts)?.detach().to_dtype(DType::BF16)
}

/// `t / descale` rounded to e4m3 (to nearest, saturated to its finite range ±448; NaN stays NaN), for
/// [`flash_attn_fp8`]'s inputs: `descale` is then the factor to pass in [`Fp8Descale`]. `t` is f32, f16
/// or bf16 on the CPU or a CUDA device; returns a contiguous F8E4M3 tensor of its shape. (On CUDA this is
/// the crate's own kernel: candle 0.11's `to_dtype` to or from F8E4M3 fails there, its casts' kernels not
/// found.)
pub fn quantize_fp8(t: &Tensor, descale: f32) -> Result<Tensor> {
    if !matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        bail!("quantize_fp8: the tensor has dtype {:?}, expected f32, f16 or bf16", t.dtype())
    }
    if !(descale.is_finite() && descale > 0.0) {
        bail!("quantize_fp8: descale must be finite and > 0, got {descale}")
    }
    #[cfg(feature = "cuda")]
    if t.device().is_cuda() {
        return crate::cuda::fp8_convert(t, DType::F8E4M3, 1.0 / descale);
    }
    let scaled = t.to_dtype(DType::F32)?.affine(1.0 / descale as f64, 0.0)?;
    // clamp keeps NaN (its comparisons are false) and saturates the rest.
    scaled.clamp(-E4M3_MAX, E4M3_MAX)?.to_dtype(DType::F8E4M3)
}

/// `t x descale` in `dtype` (f32, f16 or bf16) from an e4m3 tensor: the inverse of [`quantize_fp8`], exact
/// when `descale` is a power of two and `dtype` holds the result (bf16 and f32 hold every e4m3 value).
pub fn dequantize_fp8(t: &Tensor, descale: f32, dtype: DType) -> Result<Tensor> {
    if t.dtype() != DType::F8E4M3 {
        bail!("dequantize_fp8: the tensor has dtype {:?}, expected F8E4M3", t.dtype())
    }
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        bail!("dequantize_fp8: dtype {dtype:?} is not f32, f16 or bf16")
    }
    if !descale.is_finite() {
        bail!("dequantize_fp8: descale must be finite, got {descale}")
    }
    #[cfg(feature = "cuda")]
    if t.device().is_cuda() {
        return crate::cuda::fp8_convert(t, dtype, descale);
    }
    t.to_dtype(DType::F32)?.affine(descale as f64, 0.0)?.to_dtype(dtype)
}

/// The largest finite e4m3 value.
const E4M3_MAX: f32 = 448.0;

/// Whether [`flash_attn_fp8`] runs the FP8 kernel on `dev` at `head_dim` (an H100/H200 with the sm_90a
/// kernels built, head_dim a multiple of 16 from 80 to 256), rather than widening to bf16: where e4m3
/// inputs are also faster, not only smaller.
pub fn fp8_kernel_available(dev: &Device, head_dim: usize) -> bool {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = dev {
        return crate::cuda::fp8_available(cuda, head_dim);
    }
    let _ = (dev, head_dim);
    false
}
