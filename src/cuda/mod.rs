//! The CUDA path of the op: checks what the kernels need beyond `validate`, fills the params structs and
//! launches kernels/ (forward, backward) on candle's stream.

mod ffi;

use std::ffi::{c_void, CStr};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, DevicePtr, DevicePtrMut, DeviceRepr, ValidAsZeroBits};
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{bail, DType, Layout, Result, Storage, Tensor};
use half::{bf16, f16};

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::CudaStream;

use crate::kernel_fit::KERNEL_HEAD_DIM_MULTIPLE;
use crate::validate::{AttnSpec, MAX_HEAD_DIM, MAX_SPLITS};

/// Whether the kernels can read this layout in place: unit stride on head_dim, and every other stride and
/// the start offset a multiple of 8 elements (the 16-byte cp.async chunks must be aligned). The stride of a
/// dimension of size 1 is never used.
pub fn kernel_can_read(layout: &Layout) -> bool {
    strides_aligned(layout, 8)
}

/// Unit stride on the last dimension; every other stride used, and the start offset, a multiple of
/// `elements`.
fn strides_aligned(layout: &Layout, elements: usize) -> bool {
    let (dims, stride) = (layout.dims(), layout.stride());
    stride.last() == Some(&1)
        && dims.iter().zip(stride).rev().skip(1).all(|(&d, &s)| d <= 1 || s.is_multiple_of(elements))
        && layout.start_offset().is_multiple_of(elements)
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
        // f32 calls reach here as bf16 (src/kernel_fit.rs).
        dtype => bail!("flash_attn: the CUDA kernels take f16 and bf16, got {dtype:?}"),
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
    // (batch, row, head); a varlen operand (total, heads, head_dim) has no batch dimension.
    Ok(match *layout.stride() {
        [row, head, _] => (0, row as i64, head as i64),
        [batch, row, head, _] => (batch as i64, row as i64, head as i64),
        ref s => bail!("flash_attn: {name} has rank {}, the kernels read rank 3 or 4", s.len()),
    })
}

fn to_i32(name: &str, x: usize) -> Result<i32> {
    i32::try_from(x).or_else(|_| bail!("flash_attn: {name} = {x} exceeds the CUDA kernels' 32-bit range"))
}

/// Device pointer (at the layout's start offset) and (batch, row, head) strides of one kernel operand.
struct Operand {
    ptr: u64,
    strides: (i64, i64, i64),
}

/// Device pointers of the u32 vectors that describe ragged batches (0: absent).
#[derive(Default)]
struct RaggedPtrs {
    cu_seqlens_q: u64,
    cu_seqlens_k: u64,
    seqused_k: u64,
    block_table: u64,
}

/// The u32 vectors of `spec` (offsets, counts, block table) on the device, and their pointers while the
/// returned guards live.
fn with_ragged_ptrs<R>(
    spec: &AttnSpec,
    stream: &Arc<CudaStream>,
    f: impl FnOnce(RaggedPtrs) -> Result<R>,
) -> Result<R> {
    let ragged = spec.ragged.as_ref();
    let tensors = [
        ("cu_seqlens_q", ragged.and_then(|r| r.cu_seqlens_q.as_ref())),
        ("cu_seqlens_k", ragged.and_then(|r| r.cu_seqlens_k.as_ref())),
        ("seqlens_k", spec.seqlens_k.as_ref()),
        ("block_table", spec.paged().map(|p| &p.block_table)),
    ];
    let guards: Vec<_> = tensors.iter().map(|(_, t)| t.map(|t| t.storage_and_layout())).collect();
    let mut views = Vec::with_capacity(4);
    for ((name, _), guard) in tensors.iter().zip(&guards) {
        views.push(match guard.as_ref().map(|(s, l)| (&**s, *l)) {
            Some((Storage::Cuda(s), l)) if l.is_contiguous() => {
                Some(s.as_cuda_slice::<u32>()?.slice(l.start_offset()..))
            }
            Some(_) => bail!("flash_attn: {name} must be a contiguous u32 tensor on q's device"),
            None => None,
        });
    }
    let ptrs: Vec<_> = views.iter().map(|v| v.as_ref().map(|v| v.device_ptr(stream))).collect();
    let ptr = |i: usize| ptrs[i].as_ref().map_or(0, |(p, _)| *p);
    f(RaggedPtrs { cu_seqlens_q: ptr(0), cu_seqlens_k: ptr(1), seqused_k: ptr(2), block_table: ptr(3) })
}

/// The forward params of one call: every size and option from `spec`, the operands' pointers and strides.
fn fwd_params(
    spec: &AttnSpec,
    [q, k, v, o]: [&Operand; 4],
    lse: u64,
    alibi_slopes: Option<u64>,
    ragged: &RaggedPtrs,
) -> Result<ffi::FlashFwdParams> {
    let dims = spec.dims;
    let (total_q, total_k) = spec.ragged.as_ref().map_or((0, 0), |r| (r.total_q, r.total_k));
    let varlen_q = ragged.cu_seqlens_q != 0;
    let paged = spec.paged();
    let block_table_stride = paged.map_or(0, |p| p.block_table.dim(1).unwrap_or(0));
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
        cu_seqlens_q: ragged.cu_seqlens_q as *const u32,
        cu_seqlens_k: ragged.cu_seqlens_k as *const u32,
        seqused_k: ragged.seqused_k as *const u32,
        block_table: ragged.block_table as *const u32,
        block_table_stride: block_table_stride as i64,
        lse_head_stride: if varlen_q { total_q } else { dims.seqlen_q } as i64,
        total_q: to_i32("total_q", total_q)?,
        total_k: to_i32("total_k", total_k)?,
        page_size: to_i32("page_size", paged.map_or(0, |p| p.page_size))?,
        num_pages: to_i32("num_pages", paged.map_or(0, |p| p.num_pages))?,
    })
}

/// (batch, row, head) strides of a contiguous (batch, seq, heads, head_dim) buffer.
fn packed_strides(seq: usize, heads: usize, head_dim: usize) -> (i64, i64, i64) {
    ((seq * heads * head_dim) as i64, (heads * head_dim) as i64, head_dim as i64)
}

/// What `validate` and the fit (src/kernel_fit.rs) already ensure, held again where the kernels start to
/// trust it; and whether this build has the head_dim's kernels.
fn check_head_dim(spec: &AttnSpec) -> Result<()> {
    let d = spec.dims.head_dim;
    if !d.is_multiple_of(KERNEL_HEAD_DIM_MULTIPLE) || d > MAX_HEAD_DIM {
        bail!("flash_attn: head_dim {d} on CUDA must be a multiple of 8 and at most {MAX_HEAD_DIM}")
    }
    // SAFETY: a pure function of its argument; touches no device.
    if unsafe { ffi::candle_fa2_has_head_dim(d as i32) } == 0 {
        let built = option_env!("CANDLE_FA2_HDIMS_BUILT").unwrap_or("all");
        bail!(
            "flash_attn: head_dim {d} is not in this build of the CUDA kernels, built with CANDLE_FA2_HDIMS={built}: \
             rebuild without CANDLE_FA2_HDIMS, or name the head_dim there"
        )
    }
    Ok(())
}

/// The device views (from each layout's start) and (batch, row, head) strides of kernel operands, and the
/// device of the first; `what` and `names` name them in errors.
#[allow(clippy::type_complexity)]
fn operand_views<'a, T: CudaDType, G: std::ops::Deref<Target = Storage>>(
    what: &str,
    names: &[&str],
    guards: &'a [(G, &Layout)],
) -> Result<(Vec<CudaView<'a, T>>, Vec<(i64, i64, i64)>, candle_core::CudaDevice)> {
    let mut views = Vec::with_capacity(guards.len());
    let mut operand_strides = Vec::with_capacity(guards.len());
    let mut dev = None;
    for (name, (storage, layout)) in names.iter().zip(guards) {
        let Storage::Cuda(s) = &**storage else { bail!("{what}: {name} is not on a CUDA device") };
        dev.get_or_insert_with(|| s.device().clone());
        views.push(s.as_cuda_slice::<T>()?.slice(layout.start_offset()..));
        operand_strides.push(strides(name, layout)?);
    }
    let Some(dev) = dev else { bail!("{what}: no operands") };
    Ok((views, operand_strides, dev))
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
    check_head_dim(spec)?;
    let (qs, ks, vs) = (strides("q", q_l)?, strides("k", k_l)?, strides("v", v_l)?);
    let dev = q.device().clone();
    let stream = dev.cuda_stream();

    let q = q.as_cuda_slice::<T>()?.slice(q_l.start_offset()..);
    let k = k.as_cuda_slice::<T>()?.slice(k_l.start_offset()..);
    let v = v.as_cuda_slice::<T>()?.slice(v_l.start_offset()..);
    if let Some(paged) = spec.paged() {
        // The kernels address a key by its slot (page x page_size + row): pages must follow each other.
        for (name, s) in [("k_pages", ks), ("v_pages", vs)] {
            if s.0 != paged.page_size as i64 * s.1 && paged.num_pages > 1 {
                bail!(
                    "flash_attn: {name} must hold its pages back to back (page stride {} = page_size {} x row stride \
                     {}), got page stride {}",
                    paged.page_size as i64 * s.1,
                    paged.page_size,
                    s.1,
                    s.0
                )
            }
            // The copies form a row's offset as a 32 x 32 -> 64-bit product (kernels/common/tile_loader.cuh).
            if s.1 > i32::MAX as i64 {
                bail!("flash_attn: {name} has a row stride of {} elements, more than the kernels take (2^31 - 1)", s.1)
            }
        }
    }
    let (out_len, lse_len) = (spec.out_shape().elem_count(), spec.lse_shape().elem_count());
    // SAFETY: the kernels write every element of both buffers (tested with poisoned buffers on the GPU);
    // with varlen rows, rows that no sequence owns (offsets are not checkable on the host) get zeros and
    // -inf from kernels/varlen_fill.cu.
    let (mut out, mut lse) = unsafe { (dev.alloc::<T>(out_len)?, dev.alloc::<f32>(lse_len)?) };
    let slopes_guard = spec.alibi_slopes.as_ref().map(|s| s.storage_and_layout());
    let slopes = slopes_guard.as_ref().map(|(s, l)| f32_view("alibi_slopes", s, l)).transpose()?;

    let (q_ptr, _q_guard) = q.device_ptr(&stream);
    let (k_ptr, _k_guard) = k.device_ptr(&stream);
    let (v_ptr, _v_guard) = v.device_ptr(&stream);
    let (o_ptr, _o_guard) = out.device_ptr_mut(&stream);
    let (lse_ptr, _lse_guard) = lse.device_ptr_mut(&stream);
    let slopes_ptr = slopes.as_ref().map(|s| s.device_ptr(&stream));
    let operand = |ptr, strides| Operand { ptr, strides };
    let (_, sq, hq, d) = spec.dims.out_shape();
    with_ragged_ptrs(spec, &stream, |ragged| {
        let params = fwd_params(
            spec,
            [&operand(q_ptr, qs), &operand(k_ptr, ks), &operand(v_ptr, vs), &operand(o_ptr, packed_strides(sq, hq, d))],
            lse_ptr,
            slopes_ptr.as_ref().map(|(p, _)| *p),
            &ragged,
        )?;
        // The runtime API launches into the current context: make it candle's.
        stream.context().bind_to_thread().map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        if crate::validate::runs_decode(spec) {
            launch_decode(spec, params, &dev, &stream)
        } else {
            // SAFETY: every pointer in `params` is a live device allocation of the size its dims and strides
            // describe (checked by `validate` and above; device-side offsets and page numbers are clamped by
            // the kernels); the guards keep them alive until the launch is queued.
            check_launch(unsafe { ffi::candle_fa2_fwd(&params, stream.cu_stream() as *mut c_void) }, "forward kernel")
        }
    })?;
    drop((_q_guard, _k_guard, _v_guard, _o_guard, _lse_guard, slopes_ptr));
    Ok((T::wrap_cuda_slice(out, dev.clone()), f32::wrap_cuda_slice(lse, dev)))
}

/// V^T's key count in the e4m3 forward: seqlen_k rounded up to whole 16-key groups, the groups its keys are
/// permuted in (kernels/sm90/fwd_fp8.cuh).
const FP8_KEY_GROUP: usize = 16;

/// `t x scale` converted to `dtype` on the device, one of the two e4m3 and the other f32, f16 or bf16
/// (kernels/fp8_convert.cu: candle 0.11's own CUDA casts to and from F8E4M3 fail to find their kernels).
pub fn fp8_convert(t: &Tensor, dtype: DType, scale: f32) -> Result<Tensor> {
    fn code(dtype: DType) -> Result<i32> {
        Ok(match dtype {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
            DType::F8E4M3 => 3,
            other => bail!("fp8 conversion: {other:?} is neither e4m3 nor f32, f16 or bf16"),
        })
    }
    fn device_ptr<T: CudaDType + DeviceRepr>(s: &CudaStorage, offset: usize, stream: &Arc<CudaStream>) -> Result<u64> {
        // The view's guard only records the read for cudarc's cross-stream events; candle uses one stream.
        Ok(s.as_cuda_slice::<T>()?.slice(offset..).device_ptr(stream).0)
    }
    fn alloc<T: CudaDType + DeviceRepr>(dev: &candle_core::CudaDevice, n: usize) -> Result<(CudaStorage, u64)> {
        // SAFETY: the conversion writes all n elements before anything reads them.
        let mut out = unsafe { dev.alloc::<T>(n)? };
        let ptr = out.device_ptr_mut(&dev.cuda_stream()).0;
        Ok((T::wrap_cuda_slice(out, dev.clone()), ptr))
    }
    let (src_code, dst_code) = (code(t.dtype())?, code(dtype)?);
    // The kernel reads any layout of up to 4 dimensions (candle's own copy of an e4m3 tensor fails on CUDA
    // as its casts do); more dimensions are merged where they are contiguous.
    let (sizes, strides) = match strided_dims(t.layout()) {
        Some(s) => s,
        None => {
            bail!("fp8 conversion: a layout of {} dimensions that cannot be merged into 4, {:?}", t.rank(), t.stride())
        }
    };
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(s) = &*storage else { bail!("fp8 conversion: the tensor is not on a CUDA device") };
    let dev = s.device().clone();
    let stream = dev.cuda_stream();
    let offset = layout.start_offset();
    let src = match t.dtype() {
        DType::F32 => device_ptr::<f32>(s, offset, &stream)?,
        DType::F16 => device_ptr::<f16>(s, offset, &stream)?,
        DType::BF16 => device_ptr::<bf16>(s, offset, &stream)?,
        _ => device_ptr::<float8::F8E4M3>(s, offset, &stream)?,
    };
    let n = t.elem_count();
    let (out, dst) = match dtype {
        DType::F32 => alloc::<f32>(&dev, n)?,
        DType::F16 => alloc::<f16>(&dev, n)?,
        DType::BF16 => alloc::<bf16>(&dev, n)?,
        _ => alloc::<float8::F8E4M3>(&dev, n)?,
    };
    stream.context().bind_to_thread().map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
    // SAFETY: src holds the elements its sizes and strides reach (the tensor's own layout), dst n fresh
    // ones, of the named types; both stay alive until the launch is queued on candle's stream.
    let code = unsafe {
        ffi::candle_fa2_fp8_convert(
            src as *const c_void,
            src_code,
            sizes.as_ptr(),
            strides.as_ptr(),
            dst as *mut c_void,
            dst_code,
            n as i64,
            scale,
            stream.cu_stream() as *mut c_void,
        )
    };
    check_launch(code, "fp8 conversion")?;
    drop(storage);
    Ok(Tensor::from_storage(Storage::Cuda(out), t.shape().clone(), BackpropOp::none(), false))
}

/// Sizes and strides (elements, outermost first) of `layout` as 4 dimensions: leading ones of size 1 added,
/// neighbours merged where one steps over the other exactly; `None` when more than 4 remain.
fn strided_dims(layout: &Layout) -> Option<([i64; 4], [i64; 4])> {
    let mut dims: Vec<(usize, usize)> = layout.dims().iter().copied().zip(layout.stride().iter().copied()).collect();
    dims.retain(|&(d, _)| d != 1);
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(dims.len());
    for (d, s) in dims {
        match merged.last_mut() {
            Some(outer) if outer.1 == d * s => *outer = (outer.0 * d, s),
            _ => merged.push((d, s)),
        }
    }
    if merged.len() > 4 {
        return None;
    }
    let (mut sizes, mut strides) = ([1i64; 4], [0i64; 4]);
    let pad = 4 - merged.len();
    for (i, (d, s)) in merged.into_iter().enumerate() {
        sizes[pad + i] = d as i64;
        strides[pad + i] = s as i64;
    }
    Some((sizes, strides))
}

/// Whether the FP8 kernel runs on `dev` at `head_dim` (sm_90a, a multiple of 16 from 80 to 256, built:
/// kernels/flash_api.cu decides, and says why not at 64 and below).
pub fn fp8_available(dev: &candle_core::CudaDevice, head_dim: usize) -> bool {
    let Ok(head_dim) = i32::try_from(head_dim) else { return false };
    // The query reads the current device: make it candle's.
    if dev.cuda_stream().context().bind_to_thread().is_err() {
        return false;
    }
    // SAFETY: reads the current device's properties; launches nothing.
    unsafe { ffi::candle_fa2_fp8_available(head_dim) == 1 }
}

/// The e4m3 forward on the device's FP8 kernel (sm_90a, head_dim a multiple of 16 up to 256, TMA-readable
/// layouts): the bf16 output and the LSE, or `None` where the kernel does not run (the caller widens).
/// `spec.softmax_scale` already holds q's and k's per-tensor descale factors; `heads`, where given, the
/// per-head ones on top (contiguous f32 on q's device).
pub fn fp8_forward(
    spec: &AttnSpec,
    [q, k, v]: [&Tensor; 3],
    v_descale: f32,
    heads: Option<&crate::fp8::HeadScales>,
) -> Result<Option<(Tensor, Tensor)>> {
    let d = spec.dims.head_dim;
    // TMA reads the e4m3 rows: strides and offset in multiples of 16 bytes.
    if ![q, k, v].iter().all(|t| strides_aligned(t.layout(), 16)) {
        return Ok(None);
    }
    let guards = [q, k, v].map(|t| t.storage_and_layout());
    let (views, operand_strides, dev) =
        operand_views::<float8::F8E4M3, _>("flash_attn_fp8", &["q", "k", "v"], &guards)?;
    if !fp8_available(&dev, d) {
        return Ok(None);
    }
    let stream = dev.cuda_stream();
    let dims = spec.dims;
    let v_keys = dims.seqlen_k.next_multiple_of(FP8_KEY_GROUP);
    let (out_len, lse_len) = (spec.out_shape().elem_count(), spec.lse_shape().elem_count());
    // SAFETY: the kernel writes every element of the output and the LSE, the first kernel every byte of V^T.
    let (mut out, mut lse, mut v_t) = unsafe {
        (
            dev.alloc::<bf16>(out_len)?,
            dev.alloc::<f32>(lse_len)?,
            dev.alloc::<u8>(dims.batch * dims.heads_kv * d * v_keys)?,
        )
    };
    let slopes_guard = spec.alibi_slopes.as_ref().map(|s| s.storage_and_layout());
    let slopes = slopes_guard.as_ref().map(|(s, l)| f32_view("alibi_slopes", s, l)).transpose()?;
    let ptrs: Vec<_> = views.iter().map(|s| s.device_ptr(&stream)).collect();
    let (o_ptr, _o_guard) = out.device_ptr_mut(&stream);
    let (lse_ptr, _lse_guard) = lse.device_ptr_mut(&stream);
    let (v_t_ptr, _v_t_guard) = v_t.device_ptr_mut(&stream);
    let slopes_ptr = slopes.as_ref().map(|s| s.device_ptr(&stream));
    let head_guards = heads.map(|h| [&h.qk, &h.v].map(|t| t.storage_and_layout()));
    let head_views = match &head_guards {
        Some([(qk, qk_l), (v, v_l)]) => Some([f32_view("descale (q, k)", qk, qk_l)?, f32_view("descale.v", v, v_l)?]),
        None => None,
    };
    let head_ptrs = head_views.as_ref().map(|vs| vs.each_ref().map(|s| s.device_ptr(&stream)));
    let ops: Vec<Operand> =
        ptrs.iter().zip(&operand_strides).map(|((p, _), &s)| Operand { ptr: *p, strides: s }).collect();
    let (_, sq, hq, _) = dims.out_shape();
    let o = Operand { ptr: o_ptr, strides: packed_strides(sq, hq, d) };
    let fwd = fwd_params(
        spec,
        [&ops[0], &ops[1], &ops[2], &o],
        lse_ptr,
        slopes_ptr.as_ref().map(|(p, _)| *p),
        &RaggedPtrs::default(),
    )?;
    let params = ffi::FlashFp8Params {
        fwd,
        v_transposed: v_t_ptr as *mut c_void,
        v_descale,
        v_keys: to_i32("seqlen_k", v_keys)?,
        qk_descale_heads: head_ptrs.as_ref().map_or(std::ptr::null(), |p| p[0].0 as *const f32),
        v_descale_heads: head_ptrs.as_ref().map_or(std::ptr::null(), |p| p[1].0 as *const f32),
    };
    stream.context().bind_to_thread().map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
    // SAFETY: every pointer is a live allocation of the described size (validate, the checks above), kept
    // alive by the guards until the launches are queued on candle's stream.
    check_launch(unsafe { ffi::candle_fa2_fwd_fp8(&params, stream.cu_stream() as *mut c_void) }, "FP8 forward")?;
    drop((ptrs, _o_guard, _lse_guard, _v_t_guard, slopes_ptr, head_ptrs));
    // V^T is read by the attention kernel on the same stream: the allocation outlives it (cudarc frees on
    // the stream, after the work queued before).
    drop(v_t);
    let wrap = |storage, shape: candle_core::Shape| {
        Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false)
    };
    Ok(Some((
        wrap(bf16::wrap_cuda_slice(out, dev.clone()), spec.out_shape()),
        wrap(f32::wrap_cuda_slice(lse, dev), spec.lse_shape()),
    )))
}

/// The split-KV decode: picks the split count (the caller's, or the heuristic's for this GPU), allocates the
/// splits' f32 scratch and launches the decode and combine kernels on candle's stream.
fn launch_decode(
    spec: &AttnSpec,
    fwd: ffi::FlashFwdParams,
    dev: &candle_core::CudaDevice,
    stream: &Arc<CudaStream>,
) -> Result<()> {
    let num_splits = match spec.num_splits {
        Some(n) => n,
        // SAFETY: reads the sizes in `fwd` and queries the current device; launches nothing.
        None => unsafe { ffi::candle_fa2_decode_num_splits(&fwd) }.clamp(1, MAX_SPLITS as i32) as usize,
    };
    let rows = spec.lse_shape().elem_count();
    // The splits' scratch, only with several splits (one split writes O and the LSE directly). SAFETY: each
    // split's block writes every row of its part (zeros and -inf where it saw no key) before the combine
    // kernel reads it.
    let mut scratch = if num_splits > 1 {
        Some(unsafe {
            (dev.alloc::<f32>(num_splits * rows * spec.dims.head_dim)?, dev.alloc::<f32>(num_splits * rows)?)
        })
    } else {
        None
    };
    let scratch_ptrs = scratch.as_mut().map(|(o, lse)| (o.device_ptr_mut(stream), lse.device_ptr_mut(stream)));
    let params = ffi::FlashDecodeParams {
        fwd,
        o_partial: scratch_ptrs.as_ref().map_or(std::ptr::null_mut(), |((p, _), _)| *p as *mut f32),
        lse_partial: scratch_ptrs.as_ref().map_or(std::ptr::null_mut(), |(_, (p, _))| *p as *mut f32),
        num_splits: num_splits as i32,
        reserved: 0,
    };
    // SAFETY: as for the forward; the scratch holds num_splits x rows entries.
    check_launch(unsafe { ffi::candle_fa2_decode(&params, stream.cu_stream() as *mut c_void) }, "decode kernel")?;
    drop(scratch_ptrs);
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

fn backward_as<T: CudaDType + DeviceRepr + ValidAsZeroBits>(
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
    let (views, operand_strides, dev) = operand_views::<T, _>("flash_attn backward", &NAMES, &guards)?;
    let lse = lse.contiguous()?;
    let lse_guard = lse.storage_and_layout();
    let lse_view = f32_view("the forward's LSE", &lse_guard.0, lse_guard.1)?;
    let stream = dev.cuda_stream();

    if spec.paged().is_some() || spec.seqlens_k.is_some() {
        bail!("flash_attn backward: paged K/V and per-sequence key counts are inference only")
    }
    let dims = spec.dims;
    let (_, sq, hq, d) = dims.out_shape();
    let (sk, hkv) = (dims.seqlen_k, dims.heads_kv);
    let q_shape = tensors[0].shape().clone();
    let k_shape = tensors[1].shape().clone();
    let lse_len = spec.lse_shape().elem_count();
    // SAFETY: the kernels write every element of these buffers (tested with poisoned buffers on the GPU);
    // with varlen rows, as in the forward, offsets that miss rows leave zeros.
    let alloc = |n: usize| -> Result<_> {
        if spec.ragged.is_some() {
            Ok(dev.alloc_zeros::<T>(n)?)
        } else {
            Ok(unsafe { dev.alloc::<T>(n)? })
        }
    };
    let mut dq = alloc(q_shape.elem_count())?;
    let mut dk = alloc(k_shape.elem_count())?;
    let mut dv = alloc(k_shape.elem_count())?;
    let mut delta = unsafe { dev.alloc::<f32>(lse_len)? };
    let slopes_guard = spec.alibi_slopes.as_ref().map(|s| s.storage_and_layout());
    let slopes = slopes_guard.as_ref().map(|(s, l)| f32_view("alibi_slopes", s, l)).transpose()?;

    let ptrs: Vec<_> = views.iter().map(|s| s.device_ptr(&stream)).collect();
    let (lse_ptr, _lse_guard) = lse_view.device_ptr(&stream);
    let (dq_ptr, _dq_guard) = dq.device_ptr_mut(&stream);
    let (dk_ptr, _dk_guard) = dk.device_ptr_mut(&stream);
    let (dv_ptr, _dv_guard) = dv.device_ptr_mut(&stream);
    let (delta_ptr, _delta_guard) = delta.device_ptr_mut(&stream);
    let slopes_ptr = slopes.as_ref().map(|s| s.device_ptr(&stream));
    let ops: Vec<Operand> =
        ptrs.iter().zip(&operand_strides).map(|((p, _), &s)| Operand { ptr: *p, strides: s }).collect();
    // Packed gradients: (batch, seq, heads, d) or, varlen, (total, heads, d) with the same row strides.
    let (dq_s, dkv_s) = (packed_strides(sq, hq, d), packed_strides(sk, hkv, d));
    with_ragged_ptrs(spec, &stream, |ragged| {
        let fwd = fwd_params(
            spec,
            [&ops[0], &ops[1], &ops[2], &ops[3]],
            lse_ptr,
            slopes_ptr.as_ref().map(|(p, _)| *p),
            &ragged,
        )?;
        let mut params = ffi::FlashBwdParams {
            fwd,
            d_o: ops[4].ptr as *const c_void,
            dq: dq_ptr as *mut c_void,
            dk: dk_ptr as *mut c_void,
            dv: dv_ptr as *mut c_void,
            delta: delta_ptr as *mut f32,
            dq_accum: std::ptr::null_mut(),
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
        // dQ in f32, zeroed by the launcher before the atomics or bulk reductions add into it: only where the
        // call runs with dq_atomics on the mma.sync kernels or the Hopper one-pass kernel (the deterministic
        // Hopper passes compute dQ without it), of the size the kernels ask for.
        // SAFETY: reads the params only.
        let dq_accum_elems = unsafe { ffi::candle_fa2_bwd_dq_accum_elems(&params) };
        let mut dq_accum =
            if dq_accum_elems > 0 { Some(unsafe { dev.alloc::<f32>(dq_accum_elems as usize)? }) } else { None };
        let dq_accum_view = dq_accum.as_mut().map(|a| a.device_ptr_mut(&stream));
        if let Some((ptr, _)) = &dq_accum_view {
            params.dq_accum = *ptr as *mut f32;
        }
        // SAFETY: as in `launch`: every pointer is a live allocation of the described size, kept alive by
        // the guards until the launches are queued on candle's stream.
        check_launch(unsafe { ffi::candle_fa2_bwd(&params, stream.cu_stream() as *mut c_void) }, "backward kernel")
    })?;
    drop((ptrs, _lse_guard, _dq_guard, _dk_guard, _dv_guard, _delta_guard, slopes_ptr));
    let wrap = |slice, shape: candle_core::Shape| {
        Tensor::from_storage(Storage::Cuda(T::wrap_cuda_slice(slice, dev.clone())), shape, BackpropOp::none(), false)
    };
    Ok((wrap(dq, q_shape), wrap(dk, k_shape.clone()), wrap(dv, k_shape)))
}

/// [`crate::write_kv_pages`] on CUDA: one launch copying each token's rows into its slot (kernels/cache_write.cu).
pub fn write_pages(
    (pages, pl): (&mut CudaStorage, &Layout),
    (new, nl): (&CudaStorage, &Layout),
    (slots, sl): (&CudaStorage, &Layout),
) -> Result<()> {
    match pages.dtype() {
        DType::F16 => write_pages_as::<f16>((pages, pl), (new, nl), (slots, sl)),
        DType::BF16 => write_pages_as::<bf16>((pages, pl), (new, nl), (slots, sl)),
        DType::F32 => write_pages_as::<f32>((pages, pl), (new, nl), (slots, sl)),
        dtype => bail!("write_kv_pages: pages of dtype {dtype:?} are not supported on CUDA (f16, bf16, f32)"),
    }
}

fn write_pages_as<T: CudaDType + DeviceRepr>(
    (pages, pl): (&mut CudaStorage, &Layout),
    (new, nl): (&CudaStorage, &Layout),
    (slots, sl): (&CudaStorage, &Layout),
) -> Result<()> {
    let elem = std::mem::size_of::<T>();
    let (ps, ns) = (pl.stride(), nl.stride());
    let (num_pages, page_size, heads, head_dim) = (pl.dims()[0], pl.dims()[1], pl.dims()[2], pl.dims()[3]);
    // The kernel copies 4-byte words where rows, strides and offsets allow, else 2-byte ones: every dtype
    // here is at least 2 bytes, so only the head_dim must be contiguous.
    if ps[3] != 1 || ns[2] != 1 {
        bail!(
            "write_kv_pages: the CUDA copy needs head_dim contiguous; pages have strides {ps:?}, new rows {ns:?} \
             (call .contiguous() first)"
        )
    }
    let Some((s0, _)) = sl.contiguous_offsets() else { bail!("write_kv_pages: slot_mapping must be contiguous") };
    let dev = pages.device().clone();
    let stream = dev.cuda_stream();
    let src = new.as_cuda_slice::<T>()?.slice(nl.start_offset()..);
    let slot_view = slots.as_cuda_slice::<i64>()?.slice(s0..);
    let dst = pages.as_cuda_slice_mut::<T>()?;
    let mut dst = dst.slice_mut(pl.start_offset()..);
    let (src_ptr, _src_guard) = src.device_ptr(&stream);
    let (slots_ptr, _slots_guard) = slot_view.device_ptr(&stream);
    let (dst_ptr, _dst_guard) = dst.device_ptr_mut(&stream);
    let bytes = |s: usize| (s * elem) as i64;
    let params = ffi::CacheWriteParams {
        src: src_ptr as *const c_void,
        cache: dst_ptr as *mut c_void,
        slots: slots_ptr as *const i64,
        src_row_stride: bytes(ns[0]),
        src_head_stride: bytes(ns[1]),
        cache_page_stride: bytes(ps[0]),
        cache_row_stride: bytes(ps[1]),
        cache_head_stride: bytes(ps[2]),
        tokens: to_i32("tokens", nl.dims()[0])?,
        heads: to_i32("heads", heads)?,
        row_bytes: to_i32("head_dim", head_dim * elem)?,
        page_size: to_i32("page_size", page_size)?,
        num_pages: to_i32("num_pages", num_pages)?,
        reserved: 0,
    };
    stream.context().bind_to_thread().map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
    // SAFETY: the pointers are live allocations of the described layouts; slots outside the cache are skipped
    // by the kernel.
    check_launch(unsafe { ffi::candle_fa2_write_cache(&params, stream.cu_stream() as *mut c_void) }, "cache write")
}

#[cfg(test)]
mod tests {
    use candle_core::{Layout, Shape};

    /// The e4m3 conversion's layouts: a contiguous tensor is one dimension, a transposed one keeps its two
    /// steps, size-1 dimensions vanish, five unmergeable dimensions are refused.
    #[test]
    fn strided_dims_merge_what_is_contiguous() {
        let contiguous = Layout::contiguous(Shape::from((2, 3, 4, 5, 6)));
        assert_eq!(super::strided_dims(&contiguous), Some(([1, 1, 1, 720], [0, 0, 0, 1])));
        let t = Layout::contiguous(Shape::from((4, 3))).transpose(0, 1).unwrap();
        assert_eq!(super::strided_dims(&t), Some(([1, 1, 3, 4], [0, 0, 1, 3])));
        let bshd = Layout::contiguous(Shape::from((2, 1, 5, 7, 8))).transpose(2, 3).unwrap();
        assert_eq!(super::strided_dims(&bshd), Some(([2, 7, 5, 8], [280, 8, 56, 1])));
        let five = Layout::new(Shape::from((2, 2, 2, 2, 2)), vec![100, 1, 10, 1000, 3], 0);
        assert_eq!(super::strided_dims(&five), None);
    }
}
