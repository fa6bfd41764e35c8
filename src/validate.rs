//! Validation, done once in Rust with named dimensions: the CPU path and the kernels trust an [`AttnSpec`].

use candle_core::{bail, DType, Result, Tensor};

use crate::AttnOptions;

/// The sizes of one attention call. q: (batch, seqlen_q, heads_q, head_dim); k, v: (batch, seqlen_k,
/// heads_kv, head_dim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnDims {
    pub batch: usize,
    pub seqlen_q: usize,
    pub seqlen_k: usize,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
}

impl AttnDims {
    /// Query heads that share one KV head (1: MHA, heads_q: MQA).
    pub fn group_size(&self) -> usize {
        self.heads_q / self.heads_kv
    }

    pub fn out_shape(&self) -> (usize, usize, usize, usize) {
        (self.batch, self.seqlen_q, self.heads_q, self.head_dim)
    }

    pub fn lse_shape(&self) -> (usize, usize, usize) {
        (self.batch, self.heads_q, self.seqlen_q)
    }
}

/// Which keys each query row sees: `j - (i + offset)` in `[-left, right]`, `offset = seqlen_k - seqlen_q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    pub offset: i64,
    pub left: Option<i64>,
    pub right: Option<i64>,
}

impl Band {
    pub fn is_visible(&self, row: usize, key: usize) -> bool {
        let d = key as i64 - row as i64 - self.offset;
        self.left.is_none_or(|l| d >= -l) && self.right.is_none_or(|r| d <= r)
    }

    /// Keys seen by at least one of `rows`, clipped to `[0, seqlen_k)`; empty when none is.
    pub fn key_range(&self, rows: std::ops::Range<usize>, seqlen_k: usize) -> std::ops::Range<usize> {
        if rows.is_empty() {
            return 0..0;
        }
        let clip = |x: i64| x.clamp(0, seqlen_k as i64) as usize;
        let lo = self.left.map_or(0, |l| clip(rows.start as i64 + self.offset - l));
        let hi = self.right.map_or(seqlen_k, |r| clip(rows.end as i64 - 1 + self.offset + r + 1));
        lo..hi.max(lo)
    }

    /// Whether every (row, key) pair of the block is visible, so the block needs no masking.
    pub fn covers(&self, rows: std::ops::Range<usize>, keys: std::ops::Range<usize>) -> bool {
        if rows.is_empty() || keys.is_empty() {
            return true;
        }
        // The extreme distances of the block are at its corners.
        let d_min = keys.start as i64 - (rows.end as i64 - 1) - self.offset;
        let d_max = keys.end as i64 - 1 - rows.start as i64 - self.offset;
        self.left.is_none_or(|l| d_min >= -l) && self.right.is_none_or(|r| d_max <= r)
    }
}

/// A checked attention call: what the CPU path and the CUDA launcher read.
#[derive(Debug, Clone)]
pub struct AttnSpec {
    pub dims: AttnDims,
    pub dtype: DType,
    pub softmax_scale: f32,
    pub softcap: Option<f32>,
    pub band: Band,
    pub alibi_slopes: Option<Tensor>,
    /// Read by the CUDA backward only.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub dq_atomics: bool,
    /// Split count forced on the CUDA decode path (1..=[`MAX_SPLITS`]); `None`: the heuristic's.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub num_splits: Option<usize>,
    /// [`crate::flash_attn_kvcache`]: (batch,) u32 key counts on q's device, checked by
    /// [`validate_seqlens_k`]; `dims.seqlen_k` is then the cache's capacity.
    pub seqlens_k: Option<Tensor>,
}

/// The most key ranges the split-KV decode may cut a sequence into (kernels/flash_decode_kernel.cuh).
pub const MAX_SPLITS: usize = 128;

/// Two `Device::new_cuda(0)` calls give two distinct devices at one location, whose tensors cannot be
/// mixed: say so rather than print two equal locations.
fn device_mismatch(name: &str, dev: &candle_core::Device, q_dev: &candle_core::Device) -> candle_core::Error {
    let (loc, q_loc) = (dev.location(), q_dev.location());
    if loc == q_loc {
        candle_core::Error::Msg(format!(
            "flash_attn: {name} and q are on two different device instances of {loc:?} (each \
             Device::new_cuda call makes a new one: create the device once and share it)"
        ))
    } else {
        candle_core::Error::Msg(format!("flash_attn: {name} is on {loc:?} but q is on {q_loc:?}"))
    }
}

fn dims4(t: &Tensor, name: &str, layout: &str) -> Result<(usize, usize, usize, usize)> {
    match t.dims() {
        &[a, b, c, d] => Ok((a, b, c, d)),
        dims => bail!("flash_attn: {name} must have rank 4 {layout}, got shape {dims:?}"),
    }
}

/// Checks q, k, v and the options; every failure names the tensor or option and the value seen.
pub fn validate(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<AttnSpec> {
    let (batch, seqlen_q, heads_q, head_dim) = dims4(q, "q", "(batch, seqlen_q, heads_q, head_dim)")?;
    let (kb, seqlen_k, heads_kv, kd) = dims4(k, "k", "(batch, seqlen_k, heads_kv, head_dim)")?;
    let (vb, vs, vh, vd) = dims4(v, "v", "(batch, seqlen_k, heads_kv, head_dim)")?;

    let dtype = q.dtype();
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        bail!("flash_attn: q has dtype {dtype:?}, supported dtypes are f32, f16 and bf16")
    }
    for (name, t) in [("k", k), ("v", v)] {
        if t.dtype() != dtype {
            bail!("flash_attn: {name} has dtype {:?} but q has {dtype:?}", t.dtype())
        }
    }
    for (name, t) in [("k", k), ("v", v)] {
        if !t.device().same_device(q.device()) {
            return Err(device_mismatch(name, t.device(), q.device()));
        }
    }
    if kb != batch || vb != batch {
        bail!("flash_attn: batch differs: q has {batch}, k has {kb}, v has {vb}")
    }
    if kd != head_dim || vd != head_dim {
        bail!("flash_attn: head_dim differs: q has {head_dim}, k has {kd}, v has {vd}")
    }
    if vs != seqlen_k {
        bail!("flash_attn: seqlen_k differs between k ({seqlen_k}) and v ({vs})")
    }
    if vh != heads_kv {
        bail!("flash_attn: heads_kv differs between k ({heads_kv}) and v ({vh})")
    }
    if head_dim == 0 {
        bail!("flash_attn: head_dim is 0 (q shape {:?})", q.dims())
    }
    if heads_kv == 0 && heads_q > 0 {
        bail!("flash_attn: k and v have 0 heads but q has {heads_q}")
    }
    if heads_kv > 0 && heads_q % heads_kv != 0 {
        bail!("flash_attn: heads_q ({heads_q}) must be a multiple of heads_kv ({heads_kv})")
    }

    let softmax_scale = opts.softmax_scale.unwrap_or(1.0 / (head_dim as f32).sqrt());
    if !softmax_scale.is_finite() {
        bail!("flash_attn: softmax_scale must be finite, got {softmax_scale}")
    }
    if let Some(cap) = opts.softcap {
        if !(cap > 0.0 && cap.is_finite()) {
            bail!("flash_attn: softcap must be positive and finite, got {cap}")
        }
    }

    let band = Band {
        offset: seqlen_k as i64 - seqlen_q as i64,
        left: opts.window_left,
        right: opts.effective_window_right(),
    };
    if let (Some(l), Some(r)) = (band.left, band.right) {
        if l + r < 0 {
            bail!(
                "flash_attn: the window (left {l}, right {r}{}) excludes every key",
                if opts.causal { ", causal" } else { "" }
            )
        }
    }
    if seqlen_q > 0 && seqlen_k > 0 && band.key_range(0..seqlen_q, seqlen_k).is_empty() {
        bail!(
            "flash_attn: the window (left {:?}, right {:?}) leaves no key visible to any query \
             (seqlen_q {seqlen_q}, seqlen_k {seqlen_k})",
            band.left,
            band.right
        )
    }

    if let Some(slopes) = &opts.alibi_slopes {
        if slopes.dims() != [heads_q] {
            bail!("flash_attn: alibi_slopes must have shape ({heads_q},) (one per query head), got {:?}", slopes.dims())
        }
        if slopes.dtype() != DType::F32 {
            bail!("flash_attn: alibi_slopes must be f32, got {:?}", slopes.dtype())
        }
        if !slopes.device().same_device(q.device()) {
            return Err(device_mismatch("alibi_slopes", slopes.device(), q.device()));
        }
    }

    if let Some(n) = opts.num_splits {
        if !(1..=MAX_SPLITS).contains(&n) {
            bail!("flash_attn: num_splits must be between 1 and {MAX_SPLITS}, got {n}")
        }
    }

    Ok(AttnSpec {
        dims: AttnDims { batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim },
        dtype,
        softmax_scale,
        softcap: opts.softcap,
        band,
        alibi_slopes: opts.alibi_slopes.clone(),
        dq_atomics: opts.dq_atomics,
        num_splits: opts.num_splits,
        seqlens_k: None,
    })
}

/// Checks the per-sequence key counts of [`crate::flash_attn_kvcache`]: a u32 vector of length `batch` on q's
/// device. On the CPU each value is also held to the cache's capacity; on a GPU that would need a read-back,
/// so the kernel clamps instead (it never reads past the cache).
pub fn validate_seqlens_k(seqlens_k: &Tensor, q: &Tensor, dims: &AttnDims) -> Result<Option<Vec<u32>>> {
    if seqlens_k.dims() != [dims.batch] {
        bail!(
            "flash_attn_kvcache: seqlens_k must have shape ({},) (one per sequence), got {:?}",
            dims.batch,
            seqlens_k.dims()
        )
    }
    if seqlens_k.dtype() != DType::U32 {
        bail!("flash_attn_kvcache: seqlens_k must be u32, got {:?}", seqlens_k.dtype())
    }
    if !seqlens_k.device().same_device(q.device()) {
        return Err(device_mismatch("seqlens_k", seqlens_k.device(), q.device()));
    }
    if !seqlens_k.device().is_cpu() {
        return Ok(None);
    }
    let lens = seqlens_k.to_vec1::<u32>()?;
    if let Some((b, &len)) = lens.iter().enumerate().find(|(_, &l)| l as usize > dims.seqlen_k) {
        bail!(
            "flash_attn_kvcache: seqlens_k[{b}] = {len} exceeds the cache's capacity {} (k_cache dim 1)",
            dims.seqlen_k
        )
    }
    Ok(Some(lens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_range_matches_is_visible() {
        for (sq, sk) in [(5, 9), (9, 5), (7, 7), (1, 13)] {
            for left in [None, Some(0), Some(2), Some(-1)] {
                for right in [None, Some(0), Some(3), Some(-1)] {
                    if let (Some(l), Some(r)) = (left, right) {
                        if l + r < 0 {
                            continue; // an empty band: `validate` rejects it
                        }
                    }
                    let band = Band { offset: sk as i64 - sq as i64, left, right };
                    for r0 in 0..sq {
                        for r1 in r0 + 1..=sq {
                            let range = band.key_range(r0..r1, sk);
                            for j in 0..sk {
                                let any = (r0..r1).any(|i| band.is_visible(i, j));
                                assert_eq!(any, range.contains(&j), "{band:?} rows {r0}..{r1} key {j}");
                            }
                            let all = (r0..r1).all(|i| range.clone().all(|j| band.is_visible(i, j)));
                            assert_eq!(all, band.covers(r0..r1, range.clone()), "{band:?} {r0}..{r1}");
                        }
                    }
                }
            }
        }
    }
}
