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

/// Per-head descale factors of e4m3 inputs, f32 tensors on q's device or on the CPU: head h of sequence b
/// attends q times `q[b, h]` (shape (batch, heads_q), or (batch, heads_kv) for one factor per group of query
/// heads, as FlashAttention-3 takes them), k times `k[b, h / group]` and v times `v[b, h / group]` ((batch,
/// heads_kv) each). Each factor must be finite and > 0: checked where the tensors are on the CPU (they are
/// then copied to q's device), not where they already live on the GPU (that would read them back each call).
#[derive(Debug, Clone)]
pub struct Fp8HeadDescale {
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
}

/// The descales of one call as the paths take them: the product of q's and k's per query head, which
/// scales that head's logits, and v's per KV head, which scales its output; f32 on q's device.
pub(crate) struct HeadScales {
    /// (batch, heads_q)
    pub qk: Tensor,
    /// (batch, heads_kv)
    pub v: Tensor,
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
    let spec = validate::AttnSpec { softmax_scale, ..spec };
    fp8_forward(&spec, [q, k, v], descale.v, None, opts)
}

/// [`flash_attn_fp8`] with a descale factor per head ([`Fp8HeadDescale`]), as FlashAttention-3 takes them:
/// the same paths, the same output. On the widening path (other GPUs, the CPU) q takes its and k's factors
/// and v its own as they widen (exact for powers of two, else one rounding to bf16 on CUDA).
pub fn flash_attn_fp8_per_head(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    descale: &Fp8HeadDescale,
    opts: &AttnOptions,
) -> Result<Tensor> {
    let spec = validate::validate_fp8(q, k, v, opts)?;
    let scales = head_scales(descale, spec.dims, q.device())?;
    fp8_forward(&spec, [q, k, v], 1.0, Some(&scales), opts)
}

/// Checks the per-head descales' dtype, shape, device (and values, where on the CPU) and forms the
/// products of q's and k's per query head.
fn head_scales(descale: &Fp8HeadDescale, dims: validate::AttnDims, dev: &Device) -> Result<HeadScales> {
    let (b, hq, hkv) = (dims.batch, dims.heads_q, dims.heads_kv);
    let mut on_dev = Vec::with_capacity(3);
    for (name, t, shapes) in [
        ("q", &descale.q, vec![(b, hq), (b, hkv)]),
        ("k", &descale.k, vec![(b, hkv)]),
        ("v", &descale.v, vec![(b, hkv)]),
    ] {
        if t.dtype() != DType::F32 {
            bail!("flash_attn_fp8_per_head: descale.{name} has dtype {:?}, expected f32", t.dtype())
        }
        if !shapes.iter().any(|&(x, y)| t.dims() == [x, y]) {
            let want: Vec<String> = shapes.iter().map(|(x, y)| format!("({x}, {y})")).collect();
            bail!("flash_attn_fp8_per_head: descale.{name} has shape {:?}, expected {}", t.dims(), want.join(" or "))
        }
        let t = if t.device().is_cpu() {
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            if let Some(x) = values.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                bail!("flash_attn_fp8_per_head: descale.{name} must be finite and > 0, got {x}")
            }
            t.to_device(dev)?
        } else if t.device().same_device(dev) {
            t.clone()
        } else {
            bail!(
                "flash_attn_fp8_per_head: descale.{name} is on {:?} but q is on {:?}",
                t.device().location(),
                dev.location()
            )
        };
        on_dev.push(t);
    }
    // Query head h belongs to KV head h / group: a (batch, heads_kv) factor repeats over its group.
    let per_query_head = |t: &Tensor| -> Result<Tensor> {
        if t.dim(1)? == hq {
            return Ok(t.clone());
        }
        t.unsqueeze(2)?.broadcast_as((b, hkv, hq / hkv))?.reshape((b, hq))
    };
    let qk = (per_query_head(&on_dev[0])? * per_query_head(&on_dev[1])?)?.contiguous()?;
    Ok(HeadScales { qk, v: on_dev[2].contiguous()? })
}

/// Both entry points after validation: the FP8 kernel where it runs, else the widened inputs on
/// [`flash_attn`](crate::flash_attn). `spec.softmax_scale` holds the per-tensor descales of q and k;
/// `v_descale` v's per-tensor one; `heads`, where given, the per-head factors on top.
fn fp8_forward(
    spec: &validate::AttnSpec,
    [q, k, v]: [&Tensor; 3],
    v_descale: f32,
    heads: Option<&HeadScales>,
    opts: &AttnOptions,
) -> Result<Tensor> {
    let dims = spec.dims;
    if dims.batch * dims.seqlen_q * dims.heads_q == 0 || dims.seqlen_k == 0 {
        return Tensor::zeros(dims.out_shape(), DType::BF16, q.device());
    }
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() {
        if let Some((out, _lse)) = crate::cuda::fp8_forward(spec, [q, k, v], v_descale, heads)? {
            return Ok(out);
        }
    }
    // Per-tensor: q and k widen exactly (their descales are in the scale); v takes its descale as it widens
    // (exact for a power of two, else one rounding to bf16 on CUDA, as the output's). Per head: each of q,
    // k and v is multiplied by its heads' factors in f32 before it is narrowed.
    let wide = if q.device().is_cpu() { DType::F32 } else { DType::BF16 };
    let opts = AttnOptions { softmax_scale: Some(spec.softmax_scale), ..opts.clone() };
    let (q, k, v) = match heads {
        None => (dequantize_fp8(q, 1.0, wide)?, dequantize_fp8(k, 1.0, wide)?, dequantize_fp8(v, v_descale, wide)?),
        Some(h) => {
            let (b, hq, hkv) = (dims.batch, dims.heads_q, dims.heads_kv);
            // The logits' factor goes on q alone; v's on v.
            let scaled = |t: &Tensor, f: &Tensor, heads: usize| -> Result<Tensor> {
                let t = dequantize_fp8(t, 1.0, DType::F32)?;
                t.broadcast_mul(&f.reshape((b, 1, heads, 1))?)?.to_dtype(wide)
            };
            (scaled(q, &h.qk, hq)?, dequantize_fp8(k, 1.0, wide)?, scaled(v, &h.v, hkv)?)
        }
    };
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
