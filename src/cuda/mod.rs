//! The CUDA path of the op: checks what the kernels need beyond `validate`, fills the params structs and
//! launches kernels/ (forward, backward) on candle's stream.

mod ffi;

use std::ffi::{c_void, CStr};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, DevicePtr, DevicePtrMut, DeviceRepr};
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{bail, DType, Layout, Result, Storage, Tensor};
use half::{bf16, f16};

use crate::validate::{AttnSpec, MAX_SPLITS};

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

/// Device pointer (at the layout's start offset) and (batch, row, head) strides of one kernel operand.
struct Operand {
    ptr: u64,
    strides: (i64, i64, i64),
}

/// The forward params of one call: every size and option from `spec`, the operands' pointers and strides.
fn fwd_params(
    spec: &AttnSpec,
    [q, k, v, o]: [&Operand; 4],
    lse: u64,
    alibi_slopes: Option<u64>,
) -> Result<ffi::FlashFwdParams> {
    let dims = spec.dims;
    // Unbounded window sides become a distance no key reaches, so the kernels have one mask formula.
    let unbounded = (dims.seqlen_q + dims.seqlen_k + 1) as i64;
    let side = |w: Option<i64>| w.map_or(unbounded, |w| w.clamp(-unbounded, unbounded)) as i32;
    let transform_logits = spec.softcap.is_some() || spec.alibi_slopes.is_some() || spec.softmax_scale <= 0.0;
    Ok(ffi::FlashFwdParams {
        q: q.ptr as *const c_void,
        k: k.ptr as *const c_void,
        v: v.ptr as *const c_void,
        o: o.ptr as *mut c_void,
        lse: lse as *mut f32,
        alibi_slopes: alibi_slopes.map_or(std::ptr::null(), |p| p as *const f32),
        q_batch_stride: q.strides.0,
        q_row_stride: q.strides.1,
        q_head_stride: q.strides.2,
        k_batch_stride: k.strides.0,
        k_row_stride: k.strides.1,
        k_head_stride: k.strides.2,
        v_batch_stride: v.strides.0,
        v_row_stride: v.strides.1,
        v_head_stride: v.strides.2,
        o_batch_stride: o.strides.0,
        o_row_stride: o.strides.1,
        o_head_stride: o.strides.2,
        batch: to_i32("batch", dims.batch)?,
        seqlen_q: to_i32("seqlen_q", dims.seqlen_q)?,
        seqlen_k: to_i32("seqlen_k", dims.seqlen_k)?,
        heads_q: to_i32("heads_q", dims.heads_q)?,
        heads_kv: to_i32("heads_kv", dims.heads_kv)?,
        head_dim: dims.head_dim as i32,
        group_size: dims.group_size() as i32,
        window_left: side(spec.band.left),
        window_right: side(spec.band.right),
        softmax_scale: spec.softmax_scale,
        scale_log2: spec.softmax_scale * std::f32::consts::LOG2_E,
        softcap: spec.softcap.unwrap_or(0.0),
        transform_logits: transform_logits as i32,
        is_bf16: (spec.dtype == DType::BF16) as i32,
    })
}

/// (batch, row, head) strides of a contiguous (batch, seq, heads, head_dim) buffer.
fn packed_strides(seq: usize, heads: usize, head_dim: usize) -> (i64, i64, i64) {
    ((seq * heads * head_dim) as i64, (heads * head_dim) as i64, head_dim as i64)
}

fn check_head_dim(spec: &AttnSpec) -> Result<()> {
    let d = spec.dims.head_dim;
    if !d.is_multiple_of(8) || d > MAX_HEAD_DIM {
        bail!("flash_attn: head_dim {d} on CUDA must be a multiple of 8 and at most {MAX_HEAD_DIM}")
    }
    Ok(())
}

/// The device slice of a contiguous f32 tensor (the LSE, the ALiBi slopes).
fn f32_view<'a>(name: &str, storage: &'a Storage, layout: &Layout) -> Result<CudaView<'a, f32>> {
    match storage {
        Storage::Cuda(s) if layout.is_contiguous() => Ok(s.as_cuda_slice::<f32>()?.slice(layout.start_offset()..)),
        _ => bail!("flash_attn: {name} must be a contiguous CUDA tensor on q's device"),
    }
}

fn check_launch(code: i32, what: &str) -> Result<()> {
    if code != 0 {
        // SAFETY: cudaGetErrorString returns a static NUL-terminated string for any code.
        let msg = unsafe { CStr::from_ptr(ffi::candle_fa2_error_string(code)) }.to_string_lossy();
        bail!("flash_attn: CUDA {what} launch failed: {msg} (error {code})")
    }
    Ok(())
}

fn launch<T: CudaDType + DeviceRepr>(
    spec: &AttnSpec,
    (q, q_l): (&CudaStorage, &Layout),
    (k, k_l): (&CudaStorage, &Layout),
    (v, v_l): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, CudaStorage)> {
    let dims = spec.dims;
    check_head_dim(spec)?;
    let (qs, ks, vs) = (strides("q", q_l)?, strides("k", k_l)?, strides("v", v_l)?);
    let dev = q.device().clone();
    let stream = dev.cuda_stream();

    let q = q.as_cuda_slice::<T>()?.slice(q_l.start_offset()..);
    let k = k.as_cuda_slice::<T>()?.slice(k_l.start_offset()..);
    let v = v.as_cuda_slice::<T>()?.slice(v_l.start_offset()..);
    let (b, sq, hq, d) = dims.out_shape();
    // SAFETY: the kernel writes every element of both buffers (tested with poisoned buffers on the GPU).
    let mut out = unsafe { dev.alloc::<T>(b * sq * hq * d)? };
    let mut lse = unsafe { dev.alloc::<f32>(b * hq * sq)? };
    let slopes_guard = spec.alibi_slopes.as_ref().map(|s| s.storage_and_layout());
    let slopes = slopes_guard.as_ref().map(|(s, l)| f32_view("alibi_slopes", s, l)).transpose()?;

    let (q_ptr, _q_guard) = q.device_ptr(&stream);
    let (k_ptr, _k_guard) = k.device_ptr(&stream);
    let (v_ptr, _v_guard) = v.device_ptr(&stream);
    let (o_ptr, _o_guard) = out.device_ptr_mut(&stream);
    let (lse_ptr, _lse_guard) = lse.device_ptr_mut(&stream);
    let slopes_ptr = slopes.as_ref().map(|s| s.device_ptr(&stream));
    let operand = |ptr, strides| Operand { ptr, strides };
    let params = fwd_params(
        spec,
        [&operand(q_ptr, qs), &operand(k_ptr, ks), &operand(v_ptr, vs), &operand(o_ptr, packed_strides(sq, hq, d))],
        lse_ptr,
        slopes_ptr.as_ref().map(|(p, _)| *p),
    )?;
    // The runtime API launches into the current context: make it candle's.
    stream.context().bind_to_thread().map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
    if runs_decode(spec) {
        launch_decode(spec, params, &dev, &stream)?;
    } else {
        // SAFETY: every pointer in `params` is a live device allocation of the size its dims and strides
        // describe (checked by `validate` and above); the guards keep them alive until the launch is queued.
        check_launch(unsafe { ffi::candle_fa2_fwd(&params, stream.cu_stream() as *mut c_void) }, "forward kernel")?;
    }
    drop((_q_guard, _k_guard, _v_guard, _o_guard, _lse_guard, slopes_ptr));
    Ok((T::wrap_cuda_slice(out, dev.clone()), f32::wrap_cuda_slice(lse, dev)))
}

/// Query rows up to which the forward runs the split-KV decode kernel instead of the prefill one.
pub const DECODE_MAX_SEQLEN_Q: usize = 16;

/// Whether this call runs the split-KV decode kernel: always with per-sequence key counts, and for short
/// queries (decode, speculative decoding, small appends) unless `CANDLE_FA2_NO_DECODE` is set (any value;
/// for timing the prefill kernel on the same shapes).
fn runs_decode(spec: &AttnSpec) -> bool {
    static DISABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let disabled = *DISABLED.get_or_init(|| std::env::var_os("CANDLE_FA2_NO_DECODE").is_some());
    spec.seqlens_k.is_some() || (spec.dims.seqlen_q <= DECODE_MAX_SEQLEN_Q && !disabled)
}

/// The split-KV decode: picks the split count (the caller's, or the heuristic's for this GPU), allocates the
/// splits' f32 scratch and launches the decode and combine kernels on candle's stream.
fn launch_decode(
    spec: &AttnSpec,
    fwd: ffi::FlashFwdParams,
    dev: &candle_core::CudaDevice,
    stream: &std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaStream>,
) -> Result<()> {
    let seqlens_guard = spec.seqlens_k.as_ref().map(|t| t.storage_and_layout());
    let seqlens = match seqlens_guard.as_ref().map(|(s, l)| (&**s, *l)) {
        Some((Storage::Cuda(s), l)) if l.is_contiguous() => Some(s.as_cuda_slice::<u32>()?.slice(l.start_offset()..)),
        Some(_) => bail!("flash_attn_kvcache: seqlens_k must be a contiguous u32 tensor on q's device"),
        None => None,
    };
    let seqlens_ptr = seqlens.as_ref().map(|s| s.device_ptr(stream));
    let num_splits = match spec.num_splits {
        Some(n) => n,
        // SAFETY: reads the sizes in `fwd` and queries the current device; launches nothing.
        None => unsafe { ffi::candle_fa2_decode_num_splits(&fwd) }.clamp(1, MAX_SPLITS as i32) as usize,
    };
    let (b, sq, hq, d) = spec.dims.out_shape();
    // The splits' scratch, only with several splits (one split writes O and the LSE directly). SAFETY: each
    // split's block writes every row of its part (zeros and -inf where it saw no key) before the combine
    // kernel reads it.
    let mut scratch = if num_splits > 1 {
        let rows = num_splits * b * hq * sq;
        Some(unsafe { (dev.alloc::<f32>(rows * d)?, dev.alloc::<f32>(rows)?) })
    } else {
        None
    };
    let scratch_ptrs = scratch.as_mut().map(|(o, lse)| (o.device_ptr_mut(stream), lse.device_ptr_mut(stream)));
    let params = ffi::FlashDecodeParams {
        fwd,
        seqlens_k: seqlens_ptr.as_ref().map_or(std::ptr::null(), |(p, _)| *p as *const u32),
        o_partial: scratch_ptrs.as_ref().map_or(std::ptr::null_mut(), |((p, _), _)| *p as *mut f32),
        lse_partial: scratch_ptrs.as_ref().map_or(std::ptr::null_mut(), |(_, (p, _))| *p as *mut f32),
        num_splits: num_splits as i32,
        reserved: 0,
    };
    // SAFETY: as for the forward; the scratch holds num_splits x rows entries, the counts one per sequence.
    check_launch(unsafe { ffi::candle_fa2_decode(&params, stream.cu_stream() as *mut c_void) }, "decode kernel")?;
    drop((seqlens_ptr, scratch_ptrs));
    Ok(())
}

/// Gradients for q, k and v (each in its input's dtype, contiguous) from the forward's output and LSE, with
/// the backward kernels. `q`, `k`, `v` are the op's inputs (already readable in place); `grad_out` is
/// copied first if its layout is not.
pub fn backward(
    spec: &AttnSpec,
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    out: &Tensor,
    grad_out: &Tensor,
    lse: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    match spec.dtype {
        DType::F16 => backward_as::<f16>(spec, [q, k, v, out, grad_out], lse),
        DType::BF16 => backward_as::<bf16>(spec, [q, k, v, out, grad_out], lse),
        dtype => bail!("flash_attn backward: the CUDA kernels take f16 and bf16, got {dtype:?}"),
    }
}

fn backward_as<T: CudaDType + DeviceRepr>(
    spec: &AttnSpec,
    tensors: [&Tensor; 5],
    lse: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    check_head_dim(spec)?;
    const NAMES: [&str; 5] = ["q", "k", "v", "out", "grad_out"];
    let mut readable = Vec::with_capacity(5);
    for (name, t) in NAMES.iter().zip(tensors) {
        if t.dtype() != spec.dtype {
            bail!("flash_attn backward: {name} has dtype {:?}, expected {:?}", t.dtype(), spec.dtype)
        }
        readable.push(if kernel_can_read(t.layout()) { t.clone() } else { t.contiguous()? });
    }
    let guards: Vec<_> = readable.iter().map(|t| t.storage_and_layout()).collect();
    let mut views = Vec::with_capacity(5);
    let mut operand_strides = Vec::with_capacity(5);
    for (name, (storage, layout)) in NAMES.iter().zip(&guards) {
        let Storage::Cuda(s) = &**storage else { bail!("flash_attn backward: {name} is not on a CUDA device") };
        views.push(s.as_cuda_slice::<T>()?.slice(layout.start_offset()..));
        operand_strides.push(strides(name, layout)?);
    }
    let lse = lse.contiguous()?;
    let lse_guard = lse.storage_and_layout();
    let lse_view = f32_view("the forward's LSE", &lse_guard.0, lse_guard.1)?;
    let Storage::Cuda(first) = &*guards[0].0 else { bail!("flash_attn backward: q is not on a CUDA device") };
    let dev = first.device().clone();
    let stream = dev.cuda_stream();

    let dims = spec.dims;
    let (b, sq, hq, d) = dims.out_shape();
    let (sk, hkv) = (dims.seqlen_k, dims.heads_kv);
    // SAFETY: the kernels write every element of these buffers (tested with poisoned buffers on the GPU).
    let mut dq = unsafe { dev.alloc::<T>(b * sq * hq * d)? };
    let mut dk = unsafe { dev.alloc::<T>(b * sk * hkv * d)? };
    let mut dv = unsafe { dev.alloc::<T>(b * sk * hkv * d)? };
    let mut delta = unsafe { dev.alloc::<f32>(b * hq * sq)? };
    // Zeroed by the launcher before the atomics add into it; only the atomic mode uses it.
    let mut dq_accum = unsafe { dev.alloc::<f32>(if spec.dq_atomics { b * sq * hq * d } else { 1 })? };
    let slopes_guard = spec.alibi_slopes.as_ref().map(|s| s.storage_and_layout());
    let slopes = slopes_guard.as_ref().map(|(s, l)| f32_view("alibi_slopes", s, l)).transpose()?;

    let ptrs: Vec<_> = views.iter().map(|s| s.device_ptr(&stream)).collect();
    let (lse_ptr, _lse_guard) = lse_view.device_ptr(&stream);
    let (dq_ptr, _dq_guard) = dq.device_ptr_mut(&stream);
    let (dk_ptr, _dk_guard) = dk.device_ptr_mut(&stream);
    let (dv_ptr, _dv_guard) = dv.device_ptr_mut(&stream);
    let (delta_ptr, _delta_guard) = delta.device_ptr_mut(&stream);
    let (dq_accum_ptr, _dq_accum_guard) = dq_accum.device_ptr_mut(&stream);
    let slopes_ptr = slopes.as_ref().map(|s| s.device_ptr(&stream));
    let ops: Vec<Operand> =
        ptrs.iter().zip(&operand_strides).map(|((p, _), &s)| Operand { ptr: *p, strides: s }).collect();
    let (dq_s, dkv_s) = (packed_strides(sq, hq, d), packed_strides(sk, hkv, d));
    let params = ffi::FlashBwdParams {
        fwd: fwd_params(spec, [&ops[0], &ops[1], &ops[2], &ops[3]], lse_ptr, slopes_ptr.as_ref().map(|(p, _)| *p))?,
        d_o: ops[4].ptr as *const c_void,
        dq: dq_ptr as *mut c_void,
        dk: dk_ptr as *mut c_void,
        dv: dv_ptr as *mut c_void,
        delta: delta_ptr as *mut f32,
        dq_accum: if spec.dq_atomics { dq_accum_ptr as *mut f32 } else { std::ptr::null_mut() },
        do_batch_stride: ops[4].strides.0,
        do_row_stride: ops[4].strides.1,
        do_head_stride: ops[4].strides.2,
        dq_batch_stride: dq_s.0,
        dq_row_stride: dq_s.1,
        dq_head_stride: dq_s.2,
        dk_batch_stride: dkv_s.0,
        dk_row_stride: dkv_s.1,
        dk_head_stride: dkv_s.2,
        dv_batch_stride: dkv_s.0,
        dv_row_stride: dkv_s.1,
        dv_head_stride: dkv_s.2,
        dq_atomics: spec.dq_atomics as i32,
    };
    stream.context().bind_to_thread().map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
    // SAFETY: as in `launch`: every pointer is a live allocation of the described size, kept alive by the
    // guards until the launches are queued on candle's stream.
    check_launch(unsafe { ffi::candle_fa2_bwd(&params, stream.cu_stream() as *mut c_void) }, "backward kernel")?;
    drop((ptrs, _lse_guard, _dq_guard, _dk_guard, _dv_guard, _delta_guard, _dq_accum_guard, slopes_ptr));
    let wrap = |slice, shape: (usize, usize, usize, usize)| {
        Tensor::from_storage(Storage::Cuda(T::wrap_cuda_slice(slice, dev.clone())), shape, BackpropOp::none(), false)
    };
    Ok((wrap(dq, (b, sq, hq, d)), wrap(dk, (b, sk, hkv, d)), wrap(dv, (b, sk, hkv, d))))
}
