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
    /// Dense: the tensors' sizes. With [`Ragged`] rows: `batch` sequences, `seqlen_q` / `seqlen_k` the
    /// longest (the kernels' grid), each sequence's own lengths on the device.
    pub dims: AttnDims,
    pub dtype: DType,
    pub softmax_scale: f32,
    pub softcap: Option<f32>,
    pub band: Band,
    pub alibi_slopes: Option<Tensor>,
    /// Read by the CUDA backward only.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub dq_atomics: bool,
    /// Split count forced on the decode paths (1..=[`MAX_SPLITS`]); `None`: the heuristic's.
    pub num_splits: Option<usize>,
    /// (batch,) u32 key counts on q's device (sequence b sees its first `seqlens_k[b]` keys), checked by
    /// [`validate_seqlens_k`]; `dims.seqlen_k` is then the cache's capacity.
    pub seqlens_k: Option<Tensor>,
    /// Variable-length rows and paged K/V; `None`: a dense batch.
    pub ragged: Option<Ragged>,
}

/// Sequences of different lengths packed along one row dimension, and K/V in pages: the layouts a server
/// uses. The kernels read the offsets and the block table on the device (kernels/common/seq_view.cuh).
#[derive(Debug, Clone)]
pub struct Ragged {
    /// (batch + 1,) u32 rising offsets: q and the output are (total_q, heads_q, head_dim), sequence b their
    /// rows `cu[b]..cu[b + 1]`; the LSE is (heads_q, total_q). `None`: q is (batch, seqlen_q, ..).
    pub cu_seqlens_q: Option<Tensor>,
    /// (batch + 1,) u32: k and v are (total_k, heads_kv, head_dim), sequence b their rows `cu[b]..cu[b + 1]`;
    /// with pages, only the lengths `cu[b + 1] - cu[b]` are read.
    pub cu_seqlens_k: Option<Tensor>,
    /// Paged K/V: (batch, pages per sequence) u32; k and v are (num_pages, page_size, heads_kv, head_dim).
    pub paged: Option<Paged>,
    pub total_q: usize,
    pub total_k: usize,
}

#[derive(Debug, Clone)]
pub struct Paged {
    pub block_table: Tensor,
    pub page_size: usize,
    pub num_pages: usize,
}

impl AttnSpec {
    /// The output's shape: q's (dense or varlen).
    pub fn out_shape(&self) -> candle_core::Shape {
        let d = self.dims;
        match self.ragged.as_ref().filter(|r| r.cu_seqlens_q.is_some()) {
            Some(r) => (r.total_q, d.heads_q, d.head_dim).into(),
            None => d.out_shape().into(),
        }
    }

    /// The LSE's shape: (batch, heads_q, seqlen_q), or (heads_q, total_q) with varlen rows.
    pub fn lse_shape(&self) -> candle_core::Shape {
        let d = self.dims;
        match self.ragged.as_ref().filter(|r| r.cu_seqlens_q.is_some()) {
            Some(r) => (d.heads_q, r.total_q).into(),
            None => d.lse_shape().into(),
        }
    }

    pub fn paged(&self) -> Option<&Paged> {
        self.ragged.as_ref().and_then(|r| r.paged.as_ref())
    }
}

/// The largest head_dim the CUDA kernels take (the last of `HEAD_DIMS` in scripts/gen_kernels.py); smaller
/// ones run on the next instantiation up, padded to a multiple of 8 first if they are not one
/// (src/kernel_fit.rs). The CPU takes any.
pub const MAX_HEAD_DIM: usize = 512;

/// The most key ranges the split-KV decode may cut a sequence into (kernels/sm80/flash_decode_kernel.cuh).
pub const MAX_SPLITS: usize = 128;

/// Query rows per sequence up to which the forward runs a decode path (CUDA's split-KV kernel, the CPU's
/// src/cpu/decode.rs) instead of the prefill one.
pub const DECODE_MAX_SEQLEN_Q: usize = 16;

/// Whether this call runs a decode path: short queries (decode, speculative decoding, small appends; the
/// longest sequence's with varlen rows) unless `CANDLE_FA2_NO_DECODE` is set (any value; for timing the
/// prefill path on the same shapes).
pub fn runs_decode(spec: &AttnSpec) -> bool {
    static DISABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let disabled = *DISABLED.get_or_init(|| std::env::var_os("CANDLE_FA2_NO_DECODE").is_some());
    spec.dims.seqlen_q <= DECODE_MAX_SEQLEN_Q && !disabled
}

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
    validate_dense(q, k, v, opts, check_dtypes_devices)
}

/// [`validate`] for [`crate::flash_attn_fp8`]: q, k and v in e4m3.
pub fn validate_fp8(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<AttnSpec> {
    validate_dense(q, k, v, opts, |q, k, v| {
        for (name, t) in [("q", q), ("k", k), ("v", v)] {
            if t.dtype() != DType::F8E4M3 {
                bail!("flash_attn_fp8: {name} has dtype {:?}, expected F8E4M3", t.dtype())
            }
        }
        check_devices(q, k, v)
    })
}

fn validate_dense(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &AttnOptions,
    check_dtypes_devices: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<()>,
) -> Result<AttnSpec> {
    let (batch, seqlen_q, heads_q, head_dim) = dims4(q, "q", "(batch, seqlen_q, heads_q, head_dim)")?;
    let (kb, seqlen_k, heads_kv, kd) = dims4(k, "k", "(batch, seqlen_k, heads_kv, head_dim)")?;
    let (vb, vs, vh, vd) = dims4(v, "v", "(batch, seqlen_k, heads_kv, head_dim)")?;
    check_dtypes_devices(q, k, v)?;
    if kb != batch || vb != batch {
        bail!("flash_attn: batch differs: q has {batch}, k has {kb}, v has {vb}")
    }
    if vs != seqlen_k {
        bail!("flash_attn: seqlen_k differs between k ({seqlen_k}) and v ({vs})")
    }
    check_heads(q, (heads_q, head_dim), (heads_kv, kd), (vh, vd))?;
    let dims = AttnDims { batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim };
    let spec = spec_with_options(q, dims, opts)?;
    let band = spec.band;
    if seqlen_q > 0 && seqlen_k > 0 && band.key_range(0..seqlen_q, seqlen_k).is_empty() {
        bail!(
            "flash_attn: the window (left {:?}, right {:?}) leaves no key visible to any query \
             (seqlen_q {seqlen_q}, seqlen_k {seqlen_k})",
            band.left,
            band.right
        )
    }
    Ok(spec)
}

fn check_dtypes_devices(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<()> {
    let dtype = q.dtype();
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        bail!("flash_attn: q has dtype {dtype:?}, supported dtypes are f32, f16 and bf16")
    }
    for (name, t) in [("k", k), ("v", v)] {
        if t.dtype() != dtype {
            bail!("flash_attn: {name} has dtype {:?} but q has {dtype:?}", t.dtype())
        }
    }
    check_devices(q, k, v)
}

fn check_devices(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<()> {
    for (name, t) in [("k", k), ("v", v)] {
        if !t.device().same_device(q.device()) {
            return Err(device_mismatch(name, t.device(), q.device()));
        }
    }
    Ok(())
}

/// Heads and head dims of q, k and v: (heads, head_dim) of each.
fn check_heads(
    q: &Tensor,
    (heads_q, head_dim): (usize, usize),
    (heads_kv, kd): (usize, usize),
    (vh, vd): (usize, usize),
) -> Result<()> {
    if kd != head_dim || vd != head_dim {
        bail!("flash_attn: head_dim differs: q has {head_dim}, k has {kd}, v has {vd}")
    }
    if vh != heads_kv {
        bail!("flash_attn: heads_kv differs between k ({heads_kv}) and v ({vh})")
    }
    if head_dim == 0 {
        bail!("flash_attn: head_dim is 0 (q shape {:?})", q.dims())
    }
    if head_dim > MAX_HEAD_DIM && q.device().is_cuda() {
        bail!(
            "flash_attn: q has head_dim {head_dim}, above the {MAX_HEAD_DIM} the CUDA kernels take (the CPU takes any)"
        )
    }
    if heads_kv == 0 && heads_q > 0 {
        bail!("flash_attn: k and v have 0 heads but q has {heads_q}")
    }
    if heads_kv > 0 && heads_q % heads_kv != 0 {
        bail!("flash_attn: heads_q ({heads_q}) must be a multiple of heads_kv ({heads_kv})")
    }
    Ok(())
}

/// The spec of checked sizes with the options checked and folded in.
fn spec_with_options(q: &Tensor, dims: AttnDims, opts: &AttnOptions) -> Result<AttnSpec> {
    let softmax_scale = opts.softmax_scale.unwrap_or(1.0 / (dims.head_dim as f32).sqrt());
    if !softmax_scale.is_finite() {
        bail!("flash_attn: softmax_scale must be finite, got {softmax_scale}")
    }
    if let Some(cap) = opts.softcap {
        if !(cap > 0.0 && cap.is_finite()) {
            bail!("flash_attn: softcap must be positive and finite, got {cap}")
        }
    }
    let band = Band {
        offset: dims.seqlen_k as i64 - dims.seqlen_q as i64,
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
    if let Some(slopes) = &opts.alibi_slopes {
        let heads_q = dims.heads_q;
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
        dims,
        dtype: q.dtype(),
        softmax_scale,
        softcap: opts.softcap,
        band,
        alibi_slopes: opts.alibi_slopes.clone(),
        dq_atomics: opts.dq_atomics,
        num_splits: opts.num_splits,
        seqlens_k: None,
        ragged: None,
    })
}

fn dims3(t: &Tensor, name: &str, layout: &str) -> Result<(usize, usize, usize)> {
    match t.dims() {
        &[a, b, c] => Ok((a, b, c)),
        dims => bail!("flash_attn: {name} must have rank 3 {layout}, got shape {dims:?}"),
    }
}

/// Where the keys of a [`validate_ragged`] call are.
pub enum KeysLayout<'a> {
    /// k, v: (total_k, heads_kv, head_dim), sequence b's keys at rows `cu[b]..cu[b + 1]`.
    Varlen { cu_seqlens_k: &'a Tensor, max_seqlen_k: usize },
    /// k, v: (num_pages, page_size, heads_kv, head_dim); sequence b's key j at row `j % page_size` of page
    /// `block_table[b][j / page_size]`; its key count from `seqlens_k` (counts) or `cu_seqlens_k`.
    Paged { block_table: &'a Tensor, lengths: KeyLengths<'a>, max_seqlen_k: Option<usize> },
}

/// The key counts of paged sequences.
#[derive(Clone, Copy)]
pub enum KeyLengths<'a> {
    /// (batch,) u32 counts.
    Counts(&'a Tensor),
    /// (batch + 1,) u32 cumulative offsets; only differences are used.
    Cumulative(&'a Tensor),
}

/// Checks a call of sequences of different lengths: q either (total_q, heads_q, head_dim) with
/// `cu_seqlens_q` or (batch, seqlen_q, heads_q, head_dim) without; keys as `keys` says. Shapes, dtypes and
/// devices are checked here; the values of device-side offsets and tables are clamped by the kernels, and
/// checked by the CPU path (src/ragged.rs).
pub fn validate_ragged(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_rows: Option<(&Tensor, usize)>,
    keys: KeysLayout,
    opts: &AttnOptions,
) -> Result<AttnSpec> {
    check_dtypes_devices(q, k, v)?;
    let (batch_q, seqlen_q, heads_q, head_dim, total_q) = match q_rows {
        Some((cu, max_seqlen_q)) => {
            let (total_q, h, d) = dims3(q, "q", "(total_q, heads_q, head_dim)")?;
            let batch = check_offsets("cu_seqlens_q", cu, q)?;
            (batch, max_seqlen_q, h, d, total_q)
        }
        None => {
            let (b, s, h, d) = dims4(q, "q", "(batch, seqlen_q, heads_q, head_dim)")?;
            (b, s, h, d, b * s)
        }
    };
    let (dims, ragged) = match keys {
        KeysLayout::Varlen { cu_seqlens_k, max_seqlen_k } => {
            let (total_k, heads_kv, kd) = dims3(k, "k", "(total_k, heads_kv, head_dim)")?;
            let (vt, vh, vd) = dims3(v, "v", "(total_k, heads_kv, head_dim)")?;
            if vt != total_k {
                bail!("flash_attn: total_k differs between k ({total_k}) and v ({vt})")
            }
            check_heads(q, (heads_q, head_dim), (heads_kv, kd), (vh, vd))?;
            let batch = check_offsets("cu_seqlens_k", cu_seqlens_k, q)?;
            if batch != batch_q {
                bail!("flash_attn: cu_seqlens_q has {} entries but cu_seqlens_k has {}", batch_q + 1, batch + 1)
            }
            let dims = AttnDims { batch, seqlen_q, seqlen_k: max_seqlen_k, heads_q, heads_kv, head_dim };
            let ragged = Ragged {
                cu_seqlens_q: q_rows.map(|(cu, _)| cu.clone()),
                cu_seqlens_k: Some(cu_seqlens_k.clone()),
                paged: None,
                total_q,
                total_k,
            };
            (dims, ragged)
        }
        KeysLayout::Paged { block_table, lengths, max_seqlen_k } => {
            let layout = "(num_pages, page_size, heads_kv, head_dim)";
            let (num_pages, page_size, heads_kv, kd) = dims4(k, "k (paged)", layout)?;
            if v.dims() != k.dims() {
                bail!("flash_attn: paged v must have k's shape {:?}, got {:?}", k.dims(), v.dims())
            }
            check_heads(q, (heads_q, head_dim), (heads_kv, kd), (heads_kv, kd))?;
            if page_size == 0 {
                bail!("flash_attn: the pages of k hold 0 keys (k shape {:?})", k.dims())
            }
            let pages_per_seq = match block_table.dims() {
                &[b, n] if b == batch_q => n,
                dims => bail!("flash_attn: block_table must have shape ({batch_q}, pages per sequence), got {dims:?}"),
            };
            check_u32("block_table", block_table, q)?;
            let capacity = pages_per_seq * page_size;
            let cu_seqlens_k = match lengths {
                KeyLengths::Counts(counts) => {
                    if counts.dims() != [batch_q] {
                        bail!(
                            "flash_attn: seqlens_k must have shape ({batch_q},) (one per sequence), got {:?}",
                            counts.dims()
                        )
                    }
                    check_u32("seqlens_k", counts, q)?;
                    None
                }
                KeyLengths::Cumulative(cu) => {
                    if check_offsets("cu_seqlens_k", cu, q)? != batch_q {
                        bail!(
                            "flash_attn: cu_seqlens_k must have {} entries (batch + 1), got {:?}",
                            batch_q + 1,
                            cu.dims()
                        )
                    }
                    Some(cu.clone())
                }
            };
            let seqlen_k = max_seqlen_k.map_or(capacity, |m| m.min(capacity));
            let dims = AttnDims { batch: batch_q, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim };
            let paged = Paged { block_table: block_table.clone(), page_size, num_pages };
            let ragged = Ragged {
                cu_seqlens_q: q_rows.map(|(cu, _)| cu.clone()),
                cu_seqlens_k,
                paged: Some(paged),
                total_q,
                total_k: num_pages * page_size,
            };
            (dims, ragged)
        }
    };
    if (ragged.total_q > 0 && dims.seqlen_q == 0)
        || (ragged.cu_seqlens_k.is_some() && ragged.paged.is_none() && ragged.total_k > 0 && dims.seqlen_k == 0)
    {
        bail!(
            "flash_attn: max_seqlen_q {} / max_seqlen_k {} must be the longest sequence's lengths, but q has {} rows and \
             k {}",
            dims.seqlen_q,
            dims.seqlen_k,
            ragged.total_q,
            ragged.total_k
        )
    }
    let mut spec = spec_with_options(q, dims, opts)?;
    if let KeysLayout::Paged { lengths: KeyLengths::Counts(counts), .. } = keys {
        spec.seqlens_k = Some(counts.clone());
    }
    spec.ragged = Some(ragged);
    Ok(spec)
}

fn check_u32(name: &str, t: &Tensor, q: &Tensor) -> Result<()> {
    if t.dtype() != DType::U32 {
        bail!("flash_attn: {name} must be u32, got {:?}", t.dtype())
    }
    if !t.device().same_device(q.device()) {
        return Err(device_mismatch(name, t.device(), q.device()));
    }
    Ok(())
}

/// A (batch + 1,) u32 offsets vector on q's device; returns batch.
fn check_offsets(name: &str, cu: &Tensor, q: &Tensor) -> Result<usize> {
    let n = match cu.dims() {
        &[n] if n >= 1 => n,
        dims => bail!("flash_attn: {name} must be a vector of batch + 1 offsets, got shape {dims:?}"),
    };
    check_u32(name, cu, q)?;
    Ok(n - 1)
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
