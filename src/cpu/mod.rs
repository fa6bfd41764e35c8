//! The CPU path of the op: FlashAttention-2's tiling and online softmax in Rust, parallel with rayon.

mod exp2;
mod forward;
mod lanes;
mod layout;

use candle_core::{CpuStorage, Layout, Result};

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
