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
//! Decode against a KV cache: [`flash_attn`] with `seqlen_q <= 16` runs a split-KV decode kernel on CUDA;
//! [`flash_attn_kvcache`] takes per-sequence key counts on the device; [`merge_attn_states`] merges results
//! over disjoint key sets.
//!
//! Serving: [`flash_attn_varlen`] packs sequences of different lengths in one launch (forward and
//! backward); [`flash_attn_paged`] and [`flash_attn_varlen_paged`] read K/V from a paged cache
//! ([`PagedKv`]), which [`write_kv_pages`] fills.
//!
//! FP8: [`flash_attn_fp8`] attends e4m3 inputs (FA3's FP8 kernel on an H100/H200) and returns bf16, with
//! per-tensor descale factors ([`flash_attn_fp8_per_head`]: per head); [`quantize_fp8`] makes them.
//!
//! Modules: [`compat`] mirrors `candle-flash-attn`'s functions; [`reference`] is the f64 oracle the tests
//! use; [`naive`] is candle's softmax-matmul attention (what the benchmarks and examples compare against).

mod attn_impl;
pub mod compat;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod fp8;
mod kernel_fit;
mod kv_pages;
pub mod naive;
mod op;
mod options;
mod ragged;
pub mod reference;
mod validate;

use std::sync::Arc;

use candle_core::{op::BackpropOp, DType, Result, Storage, Tensor};

pub use attn_impl::AttnImpl;
pub use fp8::{
    dequantize_fp8, flash_attn_fp8, flash_attn_fp8_per_head, fp8_kernel_available, quantize_fp8, Fp8Descale,
    Fp8HeadDescale,
};
pub use kv_pages::write_kv_pages;
pub use options::AttnOptions;
pub use ragged::{
    flash_attn_paged, flash_attn_paged_with_lse, flash_attn_varlen, flash_attn_varlen_paged,
    flash_attn_varlen_paged_with_lse, flash_attn_varlen_with_lse, PagedKv,
};
pub use validate::AttnDims;

/// Exact attention `softmax(q kᵀ · scale + bias, masked) v`.
///
/// - `q`: (batch, seqlen_q, heads_q, head_dim); `k`, `v`: (batch, seqlen_k, heads_kv, head_dim), with
///   `heads_q` a multiple of `heads_kv` (GQA and MQA read K/V in place, no copies).
/// - Returns (batch, seqlen_q, heads_q, head_dim) in q's dtype (f32, f16 or bf16).
/// - Any strides work on CPU; on CUDA a layout the kernels cannot read in place (head_dim not contiguous,
///   strides not 16-byte aligned) is copied first.
/// - CUDA: head_dim at most 512 (the CPU takes any). The kernels run f16 and bf16 with head dims that are
///   multiples of 8; other calls run on a copy of q, k and v fitted to them, and the results come back in
///   the caller's head_dim and dtype (gradients too):
///   - f32 is rounded to bf16 (bf16 keeps f32's range; f16 would overflow past 65504): q, k and v keep 8
///     significant bits, and the output is rounded to bf16 before it is widened back, so the errors are a
///     bf16 call's (about 3 significant digits), not an f32 one's. The kernels accumulate in f32; the LSE
///     is f32 as always.
///   - A head_dim that is not a multiple of 8 is padded with zero columns to the next one (exact: the
///     scale stays `1/sqrt(head_dim)` of the caller's head_dim, and zero columns change no `q · k`).
///
///   Both cost a copy of q, k and v per call (of the whole cache for the KV-cache and paged calls) and
///   one of the output; multiples of 8 in f16/bf16 copy nothing.
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
    if let Some(empty) = empty_result(q, &spec.dims)? {
        return Ok(empty);
    }
    run_op(q, k, v, spec)
}

/// The result of a call with nothing to compute: no output row (an empty output), or no key (zeros, LSE
/// `-inf`); `None` otherwise.
fn empty_result(q: &Tensor, dims: &AttnDims) -> Result<Option<(Tensor, Tensor)>> {
    if dims.batch == 0 || dims.seqlen_q == 0 || dims.heads_q == 0 {
        let out = Tensor::zeros(dims.out_shape(), q.dtype(), q.device())?;
        return Ok(Some((out, Tensor::zeros(dims.lse_shape(), DType::F32, q.device())?)));
    }
    if dims.seqlen_k == 0 {
        return Ok(Some(no_keys(q, dims)?));
    }
    Ok(None)
}

/// Rows that see no key: zeros and LSE `-inf`.
pub(crate) fn no_keys(q: &Tensor, dims: &AttnDims) -> Result<(Tensor, Tensor)> {
    let out = Tensor::zeros(dims.out_shape(), q.dtype(), q.device())?;
    Ok((out, Tensor::full(f32::NEG_INFINITY, dims.lse_shape(), q.device())?))
}

/// Runs the op on a checked, non-empty call; returns the output and the LSE (kept for the backward). A CUDA
/// call the kernels cannot take as it is (f32, a head_dim not a multiple of 8) runs on a fitted copy of
/// q, k and v (src/kernel_fit.rs).
pub(crate) fn run_op(q: &Tensor, k: &Tensor, v: &Tensor, spec: validate::AttnSpec) -> Result<(Tensor, Tensor)> {
    match kernel_fit::KernelFit::for_call(q.device(), &spec) {
        Some(fit) => fit.forward((q, k, v), &spec, &apply_op),
        None => apply_op(q, k, v, spec),
    }
}

/// The op itself on q, k, v as the backend takes them.
fn apply_op(q: &Tensor, k: &Tensor, v: &Tensor, spec: validate::AttnSpec) -> Result<(Tensor, Tensor)> {
    let lse_shape = spec.lse_shape();
    let (q, k, v) = (kernel_readable(q)?, kernel_readable(k)?, kernel_readable(v)?);
    let lse_slot = op::LseSlot::default();
    let out = q.apply_op3(&k, &v, op::FlashAttnOp { spec, lse: Arc::clone(&lse_slot) })?;
    let lse = lse_slot.storage.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(lse): Option<Storage> = lse else {
        candle_core::bail!("flash_attn: the op did not produce its log-sum-exp")
    };
    let lse = Tensor::from_storage(lse, lse_shape, BackpropOp::none(), false);
    // The backward pass reads it from here (a fresh slot per call, so this set always succeeds).
    let _ = lse_slot.tensor.set(lse.clone());
    Ok((out, lse))
}

/// Attention of new query rows against a KV cache whose sequences hold different numbers of keys: one
/// launch for the whole batch, with the counts read on the device (no host synchronisation).
///
/// - `q`: (batch, seqlen_q, heads_q, head_dim), the newest `seqlen_q` tokens of each sequence (one for
///   plain decode, a few for speculative decoding or a chunked append).
/// - `k_cache`, `v_cache`: (batch, capacity, heads_kv, head_dim); sequence `b` owns rows
///   `0..seqlens_k[b]`, the new tokens' keys and values already written at their end. Views narrowed from a
///   larger buffer (as `candle_nn::kv_cache::KvCache` hands out) are read in place.
/// - `seqlens_k`: (batch,) u32 on q's device. Each query row `i` sits at position `seqlens_k[b] - seqlen_q
///   + i`: `causal`, windows and ALiBi distances are measured from there (bottom-right per sequence). A row
///   that sees no key (a count of 0) gets zeros and LSE `-inf`.
/// - On the CPU a count above `capacity` is an error; on CUDA, where checking it would need a read-back,
///   the kernel clamps it to `capacity` and never reads outside the cache.
/// - On CUDA `seqlen_q <= 16` runs the split-KV decode kernel, longer chunks the prefill kernel, both with
///   the counts read on the device. Inference only: the result records no gradient.
/// - On CUDA, f32 or a head_dim that is not a multiple of 8 copies the whole cache (`capacity` rows) each
///   call, rounded to bf16 or zero-padded (see [`flash_attn`]): keep such a cache in bf16 and of a head_dim
///   that is a multiple of 8 where decode speed matters.
pub fn flash_attn_kvcache(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    seqlens_k: &Tensor,
    opts: &AttnOptions,
) -> Result<Tensor> {
    Ok(flash_attn_kvcache_with_lse(q, k_cache, v_cache, seqlens_k, opts)?.0)
}

/// [`flash_attn_kvcache`], also returning the LSE, (batch, heads_q, seqlen_q) f32, as
/// [`flash_attn_with_lse`] does (for [`merge_attn_states`]: a shared prefix attended separately, say).
pub fn flash_attn_kvcache_with_lse(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    seqlens_k: &Tensor,
    opts: &AttnOptions,
) -> Result<(Tensor, Tensor)> {
    let mut spec = validate::validate(q, k_cache, v_cache, opts)?;
    let lens = validate::validate_seqlens_k(seqlens_k, q, &spec.dims)?;
    if let Some(empty) = empty_result(q, &spec.dims)? {
        return Ok(empty);
    }
    let Some(lens) = lens else {
        spec.seqlens_k = Some(seqlens_k.contiguous()?);
        let (out, lse) = run_op(q, k_cache, v_cache, spec)?;
        return Ok((out.detach(), lse));
    };
    // CPU: the counts are already on the host. Short queries decode the whole batch in place; longer ones
    // run sequence by sequence over their own keys.
    let lengths: Vec<usize> = lens.iter().map(|&len| len as usize).collect();
    if let Some(result) = cpu::decode_cache(&spec, q, (k_cache, v_cache), &lengths, None)? {
        return Ok(result);
    }
    let mut outs = Vec::with_capacity(lens.len());
    let mut lses = Vec::with_capacity(lens.len());
    for (b, &len) in lens.iter().enumerate() {
        let len = len as usize;
        let (k_b, v_b) = (k_cache.narrow(0, b, 1)?.narrow(1, 0, len)?, v_cache.narrow(0, b, 1)?.narrow(1, 0, len)?);
        let (out, lse) = ragged::attend_one(&q.narrow(0, b, 1)?, &k_b, &v_b, &spec, opts)?;
        outs.push(out.detach());
        lses.push(lse.detach());
    }
    Ok((Tensor::cat(&outs, 0)?, Tensor::cat(&lses, 0)?))
}

/// Merges attention results computed over disjoint sets of keys into the attention over their union:
/// `LSE = log Σ exp(LSE_i)`, `O = Σ exp(LSE_i - LSE) O_i`. What split-KV, a shared prefix attended once
/// for many sequences (cascade attention) and context-parallel attention need.
///
/// Each part is an (out, lse) pair as [`flash_attn_with_lse`] returns them: out (batch, seqlen_q, heads,
/// head_dim) in any float dtype, lse (batch, heads, seqlen_q) f32, every part with the same shapes, dtype
/// and device. A part whose row saw no key (LSE `-inf`) adds nothing; a row no part saw gets zeros and
/// `-inf`. Computed in f32 with candle's ops (CPU and CUDA); returns out in the parts' dtype and the LSE.
pub fn merge_attn_states(parts: &[(Tensor, Tensor)]) -> Result<(Tensor, Tensor)> {
    let Some((out0, _)) = parts.first() else { candle_core::bail!("merge_attn_states: no parts to merge") };
    let (b, sq, h, _) = match out0.dims() {
        &[b, sq, h, d] => (b, sq, h, d),
        dims => candle_core::bail!(
            "merge_attn_states: out of part 0 must be (batch, seqlen_q, heads, head_dim), got {dims:?}"
        ),
    };
    for (i, (out, lse)) in parts.iter().enumerate() {
        if out.dims() != out0.dims() || out.dtype() != out0.dtype() {
            candle_core::bail!(
                "merge_attn_states: out of part {i} is {:?} {:?}, part 0's is {:?} {:?}",
                out.dims(),
                out.dtype(),
                out0.dims(),
                out0.dtype()
            )
        }
        if lse.dims() != [b, h, sq] || lse.dtype() != DType::F32 {
            candle_core::bail!(
                "merge_attn_states: lse of part {i} must be f32 of shape {:?}, got {:?} {:?}",
                (b, h, sq),
                lse.dims(),
                lse.dtype()
            )
        }
        for (name, t) in [("out", out), ("lse", lse)] {
            if !t.device().same_device(out0.device()) {
                candle_core::bail!(
                    "merge_attn_states: {name} of part {i} is on {:?}, part 0's out on {:?}",
                    t.device().location(),
                    out0.device().location()
                )
            }
        }
    }
    let lses = Tensor::stack(&parts.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(), 0)?; // (n, b, h, sq)
    let max = lses.max_keepdim(0)?;
    // Rows no part saw: subtract 0 instead of -inf (every weight is then exp(-inf) = 0, not NaN).
    let max = max.ne(f32::NEG_INFINITY)?.where_cond(&max, &max.zeros_like()?)?;
    let weights = lses.broadcast_sub(&max)?.exp()?;
    let sum = weights.sum_keepdim(0)?;
    let lse = (max + sum.log()?)?.squeeze(0)?;
    let seen = sum.gt(0f32)?;
    let inv = seen.where_cond(&sum.recip()?, &sum.zeros_like()?)?;
    let weights = weights.broadcast_mul(&inv)?; // (n, b, h, sq), each row's weights summing to 1 (or all 0)
    let mut out = Tensor::zeros(out0.dims(), DType::F32, out0.device())?;
    for (i, (o, _)) in parts.iter().enumerate() {
        let w = weights.get(i)?.transpose(1, 2)?.unsqueeze(3)?; // (b, sq, h, 1)
        out = (out + o.to_dtype(DType::F32)?.broadcast_mul(&w)?)?;
    }
    Ok((out.to_dtype(out0.dtype())?, lse))
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
