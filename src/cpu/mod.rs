//! The CPU path of the op: FlashAttention-2's tiling and online softmax in Rust, parallel with rayon; a
//! decode path for short queries against a KV cache, read in place.

mod backward;
mod decode;
mod exp2;
mod forward;
mod lanes;
mod layout;
mod matmul;
mod online_softmax;

use candle_core::backend::BackendStorage;
use candle_core::op::BackpropOp;
use candle_core::{bail, CpuStorage, DType, Device, Layout, Result, Storage, Tensor};

pub use decode::Pages;
use decode::{Cache, CacheElem, RowLayout};

use crate::validate::{runs_decode, AttnSpec};

/// Runs the forward pass on CPU storages; returns the output (batch, seqlen_q, heads_q, head_dim) in q's
/// dtype and the LSE (batch, heads_q, seqlen_q) in f32. Short queries take the decode path.
pub fn forward(
    spec: &AttnSpec,
    (q, q_l): (&CpuStorage, &Layout),
    (k, k_l): (&CpuStorage, &Layout),
    (v, v_l): (&CpuStorage, &Layout),
) -> Result<(CpuStorage, CpuStorage)> {
    if takes_decode(spec, k_l, v_l) {
        let lengths = vec![spec.dims.seqlen_k; spec.dims.batch];
        return decode_storages(spec, (q, q_l), (k, k_l), (v, v_l), &lengths, None);
    }
    let alibi_slopes = spec.alibi_slopes.as_ref().map(|s| s.to_vec1::<f32>()).transpose()?;
    let q = layout::gather_bhsd(q, q_l)?;
    let k = layout::gather_bhsd(k, k_l)?;
    let v = layout::gather_bhsd(v, v_l)?;
    let (out, lse) = forward::forward(spec, alibi_slopes.as_deref(), &q, &k, &v);
    let out = layout::scatter_bshd(&out, spec.dims.out_shape(), spec.dtype)?;
    Ok((out, CpuStorage::F32(lse)))
}

/// The decode path for the KV-cache and paged calls (inference only): q (batch, seqlen_q, heads_q,
/// head_dim) against k and v read in place, sequence `b` over its first `lengths[b]` keys (rows of batch
/// entry `b`, or of its pages), which the caller has checked against the cache. Returns the output and LSE,
/// or `None` where the path does not apply (more than 16 query rows, K/V rows not contiguous,
/// `CANDLE_FA2_NO_DECODE` set): the caller then attends sequence by sequence.
pub fn decode_cache(
    spec: &AttnSpec,
    q: &Tensor,
    (k, v): (&Tensor, &Tensor),
    lengths: &[usize],
    pages: Option<Pages>,
) -> Result<Option<(Tensor, Tensor)>> {
    if !takes_decode(spec, k.layout(), v.layout()) {
        return Ok(None);
    }
    let ((q_s, q_l), (k_s, k_l), (v_s, v_l)) = (q.storage_and_layout(), k.storage_and_layout(), v.storage_and_layout());
    let (Storage::Cpu(q_s), Storage::Cpu(k_s), Storage::Cpu(v_s)) = (&*q_s, &*k_s, &*v_s) else {
        bail!("flash_attn: the CPU decode path was given tensors on another device")
    };
    let (out, lse) = decode_storages(spec, (q_s, q_l), (k_s, k_l), (v_s, v_l), lengths, pages)?;
    let wrap = |s: CpuStorage, shape: candle_core::Shape| {
        Tensor::from_storage(Storage::Cpu(s), shape, BackpropOp::none(), false)
    };
    Ok(Some((wrap(out, spec.out_shape()), wrap(lse, spec.lse_shape()))))
}

/// Whether a call runs the decode path: short queries (`runs_decode`), and K/V rows whose head_dim
/// elements are contiguous, as the path reads them.
fn takes_decode(spec: &AttnSpec, k_l: &Layout, v_l: &Layout) -> bool {
    let rows_contiguous = |l: &Layout| l.dims()[3] <= 1 || l.stride()[3] == 1;
    runs_decode(spec) && rows_contiguous(k_l) && rows_contiguous(v_l)
}

/// The decode path on CPU storages: the output (batch, seqlen_q, heads_q, head_dim) in q's dtype and the
/// LSE (batch, heads_q, seqlen_q) in f32.
fn decode_storages(
    spec: &AttnSpec,
    (q, q_l): (&CpuStorage, &Layout),
    k: (&CpuStorage, &Layout),
    v: (&CpuStorage, &Layout),
    lengths: &[usize],
    pages: Option<Pages>,
) -> Result<(CpuStorage, CpuStorage)> {
    let alibi_slopes = spec.alibi_slopes.as_ref().map(|s| s.to_vec1::<f32>()).transpose()?;
    let q = layout::gather_bhsd(q, q_l)?;
    let call = DecodeCall { spec, alibi_slopes: alibi_slopes.as_deref(), q: &q, lengths, pages };
    let (out, lse) = call.run(k, v)?;
    let out = layout::scatter_bshd(&out, spec.dims.out_shape(), spec.dtype)?;
    Ok((out, CpuStorage::F32(lse)))
}

/// A decode call: the query planes (batch, heads_q, seqlen_q, head_dim) in f32, and where the keys are.
struct DecodeCall<'a> {
    spec: &'a AttnSpec,
    alibi_slopes: Option<&'a [f32]>,
    q: &'a [f32],
    lengths: &'a [usize],
    pages: Option<Pages<'a>>,
}

impl DecodeCall<'_> {
    fn run(self, (k, k_l): (&CpuStorage, &Layout), (v, v_l): (&CpuStorage, &Layout)) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok(match (k, v) {
            (CpuStorage::F32(k), CpuStorage::F32(v)) => self.on((k, k_l), (v, v_l)),
            (CpuStorage::F16(k), CpuStorage::F16(v)) => self.on((k, k_l), (v, v_l)),
            (CpuStorage::BF16(k), CpuStorage::BF16(v)) => self.on((k, k_l), (v, v_l)),
            (k, v) => bail!("flash_attn: unsupported k / v dtypes {:?} / {:?} on cpu", k.dtype(), v.dtype()),
        })
    }

    fn on<T: CacheElem>(self, (k, k_l): (&[T], &Layout), (v, v_l): (&[T], &Layout)) -> (Vec<f32>, Vec<f32>) {
        let rows = |l: &Layout| {
            let s = l.stride();
            RowLayout { start: l.start_offset(), outer_stride: s[0], row_stride: s[1], head_stride: s[2] }
        };
        let cache = Cache { k, v, k_rows: rows(k_l), v_rows: rows(v_l), lengths: self.lengths, pages: self.pages };
        decode::decode(self.spec, self.alibi_slopes, self.q, &cache)
    }
}

/// Gradients of the op for q, k, v (each in its input's dtype and shape), from the forward's output and
/// LSE: FlashAttention-2's backward (src/cpu/backward.rs), computed in f32.
pub fn backward(
    spec: &AttnSpec,
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    out: &Tensor,
    grad_out: &Tensor,
    lse: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    // (batch, seq, heads, dim) -> contiguous f32 (batch, heads, seq, dim) planes.
    let planes = |t: &Tensor| -> Result<Vec<f32>> {
        t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.transpose(1, 2)?.contiguous()?.flatten_all()?.to_vec1()
    };
    let slopes = spec.alibi_slopes.as_ref().map(|s| s.to_vec1::<f32>()).transpose()?;
    let (qp, kp, vp, op, dop) = (planes(q)?, planes(k)?, planes(v)?, planes(out)?, planes(grad_out)?);
    let lse = lse.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let t = backward::Planes { q: &qp, k: &kp, v: &vp, o: &op, d_o: &dop, lse: &lse };
    let (dq, dk, dv) = backward::backward(spec, slopes.as_deref(), &t);
    let to_input = |grad: Vec<f32>, like: &Tensor| -> Result<Tensor> {
        let (b, s, h, d) = like.dims4()?;
        Tensor::from_vec(grad, (b, h, s, d), &Device::Cpu)?.transpose(1, 2)?.contiguous()?.to_dtype(like.dtype())
    };
    Ok((to_input(dq, q)?, to_input(dk, k)?, to_input(dv, v)?))
}
