//! FlashAttention-2 for [candle](https://github.com/huggingface/candle).
//!
//! One entry point, [`flash_attn`], computes exact softmax attention without materialising the
//! `seqlen_q x seqlen_k` score matrix: on CUDA with our kernels (feature `cuda`), on CPU with the same
//! tiled algorithm in Rust. Options (causal, sliding window, softcap, ALiBi, scale) live in [`AttnOptions`].
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_fa2::{flash_attn, AttnOptions};
//!
//! # fn main() -> candle_core::Result<()> {
//! let dev = Device::Cpu;
//! // (batch, seqlen, heads, head_dim); 8 query heads share 2 KV heads (GQA).
//! let q = Tensor::randn(0f32, 1.0, (1, 128, 8, 64), &dev)?;
//! let k = Tensor::randn(0f32, 1.0, (1, 128, 2, 64), &dev)?;
//! let v = Tensor::randn(0f32, 1.0, (1, 128, 2, 64), &dev)?;
//! let out = flash_attn(&q, &k, &v, &AttnOptions::causal())?;
//! assert_eq!(out.dims(), &[1, 128, 8, 64]);
//! # Ok(()) }
//! ```
//!
//! Modules: [`compat`] mirrors `candle-flash-attn`'s functions; [`reference`] is the f64 oracle the tests
//! use; [`naive`] is candle's softmax-matmul attention (what the benchmarks and examples compare against).

mod attn_impl;
pub mod compat;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
pub mod naive;
mod op;
mod options;
pub mod reference;
mod validate;

use std::sync::Arc;

use candle_core::{op::BackpropOp, DType, Result, Storage, Tensor};

pub use attn_impl::AttnImpl;
pub use options::AttnOptions;
pub use validate::AttnDims;

/// Exact attention `softmax(q kᵀ · scale + bias, masked) v`.
///
/// - `q`: (batch, seqlen_q, heads_q, head_dim); `k`, `v`: (batch, seqlen_k, heads_kv, head_dim), with
///   `heads_q` a multiple of `heads_kv` (GQA and MQA read K/V in place, no copies).
/// - Returns (batch, seqlen_q, heads_q, head_dim) in q's dtype (f32, f16 or bf16).
/// - Any strides work on CPU; on CUDA a layout the kernels cannot read in place (head_dim not contiguous,
///   strides not 16-byte aligned) is copied first.
/// - Differentiable on CPU and CUDA: `backward()` through the result gives gradients for q, k and v
///   (FlashAttention-2's backward, from the LSE this call kept; see [`flash_attn_backward`]).
/// - Empty inputs: `batch`, `seqlen_q` or `heads_q` of 0 gives an empty output; `seqlen_k` of 0 gives zeros
///   (no key is visible). `head_dim` of 0 is an error.
///
/// Every invalid input returns an `Error` naming the tensor and the value seen; see [`AttnOptions`] for the
/// exact semantics of each option.
pub fn flash_attn(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<Tensor> {
    Ok(flash_attn_with_lse(q, k, v, opts)?.0)
}

/// [`flash_attn`], also returning the natural-log log-sum-exp of each query row's logits,
/// (batch, heads_q, seqlen_q) in f32; `-inf` for a row that sees no key.
pub fn flash_attn_with_lse(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<(Tensor, Tensor)> {
    let spec = validate::validate(q, k, v, opts)?;
    let dims = spec.dims;
    if dims.batch == 0 || dims.seqlen_q == 0 || dims.heads_q == 0 {
        let out = Tensor::zeros(dims.out_shape(), q.dtype(), q.device())?;
        return Ok((out, Tensor::zeros(dims.lse_shape(), DType::F32, q.device())?));
    }
    if dims.seqlen_k == 0 {
        let out = Tensor::zeros(dims.out_shape(), q.dtype(), q.device())?;
        let lse = Tensor::full(f32::NEG_INFINITY, dims.lse_shape(), q.device())?;
        return Ok((out, lse));
    }
    let (q, k, v) = (kernel_readable(q)?, kernel_readable(k)?, kernel_readable(v)?);
    let lse_slot = op::LseSlot::default();
    let out = q.apply_op3(&k, &v, op::FlashAttnOp { spec, lse: Arc::clone(&lse_slot) })?;
    let lse = lse_slot.storage.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(lse): Option<Storage> = lse else {
        candle_core::bail!("flash_attn: the op did not produce its log-sum-exp")
    };
    let lse = Tensor::from_storage(lse, dims.lse_shape(), BackpropOp::none(), false);
    // The backward pass reads it from here (a fresh slot per call, so this set always succeeds).
    let _ = lse_slot.tensor.set(lse.clone());
    Ok((out, lse))
}

/// On CUDA, a layout the kernels cannot read in place (head_dim not contiguous, or strides not aligned to 16
/// bytes) is copied to a contiguous tensor first; the common layouts, including a (b, h, s, d) tensor
/// transposed to (b, s, h, d), are read in place. The CPU path reads any layout.
fn kernel_readable(t: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if t.device().is_cuda() && !cuda::kernel_can_read(t.layout()) {
        return t.contiguous();
    }
    Ok(t.clone())
}

/// The gradients of [`flash_attn`] for q, k and v, given the gradient `grad_out` of its output: what
/// `loss.backward()` runs through the op, for training loops and benchmarks that call it directly.
///
/// `out` and `lse` are what [`flash_attn_with_lse`] returned for the same `q`, `k`, `v` and `opts` (P is
/// recomputed from them tile by tile: nothing N x N is stored). `grad_out` has `out`'s shape and dtype.
/// Returns (dq, dk, dv) with the shapes and dtype of q, k and v. Deterministic on both backends (two calls
/// give bitwise equal gradients) unless `opts.dq_atomics` asks the CUDA backward for dQ by atomics.
pub fn flash_attn_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    lse: &Tensor,
    grad_out: &Tensor,
    opts: &AttnOptions,
) -> Result<(Tensor, Tensor, Tensor)> {
    let spec = validate::validate(q, k, v, opts)?;
    let dims = spec.dims;
    let out_shape: candle_core::Shape = dims.out_shape().into();
    for (name, t) in [("out", out), ("grad_out", grad_out)] {
        if t.shape() != &out_shape || t.dtype() != q.dtype() {
            candle_core::bail!(
                "flash_attn_backward: {name} must have q's shape {:?} and dtype {:?}, got {:?} {:?}",
                out_shape.dims(),
                q.dtype(),
                t.dims(),
                t.dtype()
            )
        }
        if !t.device().same_device(q.device()) {
            candle_core::bail!(
                "flash_attn_backward: {name} is on {:?} but q is on {:?}",
                t.device().location(),
                q.device().location()
            )
        }
    }
    let lse_shape: candle_core::Shape = dims.lse_shape().into();
    if lse.shape() != &lse_shape || lse.dtype() != DType::F32 || !lse.device().same_device(q.device()) {
        candle_core::bail!(
            "flash_attn_backward: lse must be f32 of shape {:?} on q's device, got {:?} {:?} on {:?}",
            lse_shape.dims(),
            lse.dims(),
            lse.dtype(),
            lse.device().location()
        )
    }
    if dims.batch * dims.seqlen_q * dims.heads_q * dims.seqlen_k == 0 {
        // No query sees a key: every gradient is zero.
        return Ok((q.zeros_like()?, k.zeros_like()?, v.zeros_like()?));
    }
    let (q, k, v) = (kernel_readable(q)?, kernel_readable(k)?, kernel_readable(v)?);
    op::backward(&spec, (&q, &k, &v), out, grad_out, lse)
}
