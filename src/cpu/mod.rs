//! The CPU path of the op: FlashAttention-2's tiling and online softmax in Rust, parallel with rayon.

mod backward;
mod exp2;
mod forward;
mod lanes;
mod layout;
mod matmul;

use candle_core::{CpuStorage, DType, Device, Layout, Result, Tensor};

use crate::validate::AttnSpec;

/// Runs the forward pass on CPU storages; returns the output (batch, seqlen_q, heads_q, head_dim) in q's
/// dtype and the LSE (batch, heads_q, seqlen_q) in f32.
pub fn forward(
    spec: &AttnSpec,
    (q, q_l): (&CpuStorage, &Layout),
    (k, k_l): (&CpuStorage, &Layout),
    (v, v_l): (&CpuStorage, &Layout),
) -> Result<(CpuStorage, CpuStorage)> {
    let alibi_slopes = spec.alibi_slopes.as_ref().map(|s| s.to_vec1::<f32>()).transpose()?;
    let q = layout::gather_bhsd(q, q_l)?;
    let k = layout::gather_bhsd(k, k_l)?;
    let v = layout::gather_bhsd(v, v_l)?;
    let (out, lse) = forward::forward(spec, alibi_slopes.as_deref(), &q, &k, &v);
    let out = layout::scatter_bshd(&out, spec.dims.out_shape(), spec.dtype)?;
    Ok((out, CpuStorage::F32(lse)))
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
