//! Moving between candle's strided storage and the contiguous f32 (batch, heads, seq, head_dim) planes the
//! tiles read. The copies are linear in sequence length and let the tile loops assume unit strides.

use candle_core::{backend::BackendStorage, bail, CpuStorage, Layout, Result};
use half::{bf16, f16};
use rayon::prelude::*;

/// Reads a (batch, seq, heads, head_dim) tensor of any strides and offset into f32 (batch, heads, seq, dim).
pub fn gather_bhsd(storage: &CpuStorage, layout: &Layout) -> Result<Vec<f32>> {
    match storage {
        CpuStorage::F32(s) => Ok(gather(s, layout, |x| x)),
        CpuStorage::F16(s) => Ok(gather(s, layout, f16::to_f32)),
        CpuStorage::BF16(s) => Ok(gather(s, layout, bf16::to_f32)),
        other => bail!("flash_attn: unsupported dtype {:?} on cpu", other.dtype()),
    }
}

fn gather<T: Copy + Sync>(src: &[T], layout: &Layout, to_f32: impl Fn(T) -> f32 + Sync) -> Vec<f32> {
    let &[batch, seq, heads, dim] = layout.dims() else { unreachable!("validated rank 4") };
    let &[sb, ss, sh, sd] = layout.stride() else { unreachable!("validated rank 4") };
    let start = layout.start_offset();
    let mut dst = vec![0f32; batch * heads * seq * dim];
    dst.par_chunks_mut(seq * dim.max(1)).enumerate().for_each(|(bh, plane)| {
        let (b, h) = (bh / heads, bh % heads);
        for (s, row) in plane.chunks_mut(dim).enumerate() {
            let base = start + b * sb + s * ss + h * sh;
            if sd == 1 {
                for (d, x) in row.iter_mut().zip(&src[base..base + dim]) {
                    *d = to_f32(*x);
                }
            } else {
                for (i, d) in row.iter_mut().enumerate() {
                    *d = to_f32(src[base + i * sd]);
                }
            }
        }
    });
    dst
}

/// Writes f32 (batch, heads, seq, dim) planes out as a contiguous (batch, seq, heads, dim) tensor of `dtype`.
pub fn scatter_bshd(
    planes: &[f32],
    (batch, seq, heads, dim): (usize, usize, usize, usize),
    dtype: candle_core::DType,
) -> Result<CpuStorage> {
    use candle_core::DType;
    Ok(match dtype {
        DType::F32 => CpuStorage::F32(scatter(planes, (batch, seq, heads, dim), |x| x)),
        DType::F16 => CpuStorage::F16(scatter(planes, (batch, seq, heads, dim), f16::from_f32)),
        DType::BF16 => CpuStorage::BF16(scatter(planes, (batch, seq, heads, dim), bf16::from_f32)),
        other => bail!("flash_attn: unsupported dtype {other:?} on cpu"),
    })
}

fn scatter<T: Copy + Send + Default>(
    planes: &[f32],
    (batch, seq, heads, dim): (usize, usize, usize, usize),
    from_f32: impl Fn(f32) -> T + Sync,
) -> Vec<T> {
    let mut dst = vec![T::default(); batch * seq * heads * dim];
    dst.par_chunks_mut(heads * dim.max(1)).enumerate().for_each(|(bs, token)| {
        let (b, s) = (bs / seq.max(1), bs % seq.max(1));
        for (h, out) in token.chunks_mut(dim).enumerate() {
            let src = &planes[((b * heads + h) * seq + s) * dim..][..dim];
            for (o, x) in out.iter_mut().zip(src) {
                *o = from_f32(*x);
            }
        }
    });
    dst
}
