//! The CUDA path of the op: checks what the kernels need beyond `validate`, fills the params struct and
//! launches kernels/ on candle's stream.

mod ffi;

use std::ffi::{c_void, CStr};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::{bail, DType, Layout, Result, Storage};
use half::{bf16, f16};

use crate::validate::AttnSpec;

/// The largest head_dim with a kernel instantiation (kernels/fwd_configs.cuh).
pub const MAX_HEAD_DIM: usize = 256;

/// Whether the kernels can read this layout in place: unit stride on head_dim, and every other stride and
/// the start offset a multiple of 8 elements (the 16-byte cp.async chunks must be aligned). The stride of a
/// dimension of size 1 is never used.
pub fn kernel_can_read(layout: &Layout) -> bool {
    let (dims, stride) = (layout.dims(), layout.stride());
    stride.last() == Some(&1)
        && dims.iter().zip(stride).rev().skip(1).all(|(&d, &s)| d <= 1 || s.is_multiple_of(8))
        && layout.start_offset().is_multiple_of(8)
}

pub fn forward(
    spec: &AttnSpec,
    q: (&CudaStorage, &Layout),
    k: (&CudaStorage, &Layout),
    v: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, CudaStorage)> {
    match spec.dtype {
        DType::F16 => launch::<f16>(spec, q, k, v),
        DType::BF16 => launch::<bf16>(spec, q, k, v),
        dtype => bail!(
            "flash_attn: the CUDA kernels take f16 and bf16, got {dtype:?}; convert q, k and v with \
             .to_dtype(DType::BF16) (or F16), or run f32 on the CPU"
        ),
    }
}

fn strides(name: &str, layout: &Layout) -> Result<(i64, i64, i64)> {
    if !kernel_can_read(layout) {
        bail!(
            "flash_attn: {name} has strides {:?} and offset {}: the CUDA kernels need head_dim contiguous and \
             other strides aligned to 8 elements (call .contiguous() first)",
            layout.stride(),
            layout.start_offset()
        )
    }
    let s = layout.stride();
    Ok((s[0] as i64, s[1] as i64, s[2] as i64))
}

fn to_i32(name: &str, x: usize) -> Result<i32> {
    i32::try_from(x).or_else(|_| bail!("flash_attn: {name} = {x} exceeds the CUDA kernels' 32-bit range"))
}

fn launch<T: CudaDType + candle_core::cuda_backend::cudarc::driver::DeviceRepr>(
    spec: &AttnSpec,
    (q, q_l): (&CudaStorage, &Layout),
    (k, k_l): (&CudaStorage, &Layout),
    (v, v_l): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, CudaStorage)> {
    let dims = spec.dims;
    if !dims.head_dim.is_multiple_of(8) || dims.head_dim > MAX_HEAD_DIM {
        bail!("flash_attn: head_dim {} on CUDA must be a multiple of 8 and at most {MAX_HEAD_DIM}", dims.head_dim)
    }
    let (qb, qr, qh) = strides("q", q_l)?;
    let (kb, kr, kh) = strides("k", k_l)?;
    let (vb, vr, vh) = strides("v", v_l)?;
    let dev = q.device().clone();
    let stream = dev.cuda_stream();

    let q = q.as_cuda_slice::<T>()?.slice(q_l.start_offset()..);
    let k = k.as_cuda_slice::<T>()?.slice(k_l.start_offset()..);
    let v = v.as_cuda_slice::<T>()?.slice(v_l.start_offset()..);
    let (b, sq, hq, d) = dims.out_shape();
    // SAFETY: the kernel writes every element of both buffers (tested with poisoned buffers on the GPU).
    let mut out = unsafe { dev.alloc::<T>(b * sq * hq * d)? };
    let mut lse = unsafe { dev.alloc::<f32>(b * hq * sq)? };

    let slopes_storage = spec.alibi_slopes.as_ref().map(|s| s.storage_and_layout());
    let slopes = match &slopes_storage {
        None => None,
        Some((storage, layout)) => match &**storage {
            Storage::Cuda(s) if layout.is_contiguous() => {
                Some(s.as_cuda_slice::<f32>()?.slice(layout.start_offset()..))
            }
            _ => bail!("flash_attn: alibi_slopes must be a contiguous CUDA tensor on q's device"),
        },
    };

    // Unbounded window sides become a distance no key reaches, so the kernel has one mask formula.
    let unbounded = (dims.seqlen_q + dims.seqlen_k + 1) as i64;
    let side = |w: Option<i64>| w.map_or(unbounded, |w| w.clamp(-unbounded, unbounded)) as i32;
    let transform_logits = spec.softcap.is_some() || spec.alibi_slopes.is_some() || spec.softmax_scale <= 0.0;

    let (q_ptr, _q_guard) = q.device_ptr(&stream);
    let (k_ptr, _k_guard) = k.device_ptr(&stream);
    let (v_ptr, _v_guard) = v.device_ptr(&stream);
    let (o_ptr, _o_guard) = out.device_ptr_mut(&stream);
    let (lse_ptr, _lse_guard) = lse.device_ptr_mut(&stream);
    let slopes_ptr = slopes.as_ref().map(|s| s.device_ptr(&stream));
    let params = ffi::FlashFwdParams {
        q: q_ptr as *const c_void,
        k: k_ptr as *const c_void,
        v: v_ptr as *const c_void,
        o: o_ptr as *mut c_void,
        lse: lse_ptr as *mut f32,
        alibi_slopes: slopes_ptr.as_ref().map_or(std::ptr::null(), |(p, _)| *p as *const f32),
        q_batch_stride: qb,
        q_row_stride: qr,
        q_head_stride: qh,
        k_batch_stride: kb,
        k_row_stride: kr,
        k_head_stride: kh,
        v_batch_stride: vb,
        v_row_stride: vr,
        v_head_stride: vh,
        o_batch_stride: (sq * hq * d) as i64,
        o_row_stride: (hq * d) as i64,
        o_head_stride: d as i64,
        batch: to_i32("batch", b)?,
        seqlen_q: to_i32("seqlen_q", sq)?,
        seqlen_k: to_i32("seqlen_k", dims.seqlen_k)?,
        heads_q: to_i32("heads_q", hq)?,
        heads_kv: to_i32("heads_kv", dims.heads_kv)?,
        head_dim: d as i32,
        group_size: dims.group_size() as i32,
        window_left: side(spec.band.left),
        window_right: side(spec.band.right),
        softmax_scale: spec.softmax_scale,
        scale_log2: spec.softmax_scale * std::f32::consts::LOG2_E,
        softcap: spec.softcap.unwrap_or(0.0),
        transform_logits: transform_logits as i32,
        is_bf16: (spec.dtype == DType::BF16) as i32,
    };
    // The runtime API launches into the current context: make it candle's.
    stream.context().bind_to_thread().map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
    // SAFETY: every pointer in `params` is a live device allocation of the size its dims and strides
    // describe (checked by `validate` and above); the guards keep them alive until the launch is queued.
    let code = unsafe { ffi::candle_fa2_fwd(&params, stream.cu_stream() as *mut c_void) };
    if code != 0 {
        // SAFETY: cudaGetErrorString returns a static NUL-terminated string for any code.
        let msg = unsafe { CStr::from_ptr(ffi::candle_fa2_error_string(code)) }.to_string_lossy();
        bail!("flash_attn: CUDA kernel launch failed: {msg} (error {code})")
    }
    drop((_q_guard, _k_guard, _v_guard, _o_guard, _lse_guard, slopes_ptr));
    Ok((T::wrap_cuda_slice(out, dev.clone()), f32::wrap_cuda_slice(lse, dev)))
}
