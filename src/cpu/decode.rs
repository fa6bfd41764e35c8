//! Decode on the CPU: a few query rows per sequence (one new token, a speculative draft, a short append)
//! against a long KV cache, where the work is reading K and V.
//!
//! The tiled forward (forward.rs) spends such a call outside its arithmetic: it copies the whole cache into
//! f32 planes, reads each KV head once per query head, and its one-row gemms pay their setup every block.
//! This path instead
//! - reads K and V where they are: any batch, row and head strides (a view narrowed from a preallocated
//!   cache) or pages through a block table, a block of keys at a time widened to f32 into a buffer that
//!   stays in L2 while the block's two products (gemm calls) read it;
//! - makes the query heads that share a KV head, with their query rows, the rows of one work item (GQA
//!   packing), so each K and V row is read once; where the KV heads of a key sit side by side in memory
//!   (the (batch, seq, heads, dim) layout), one item takes all of them and loads its blocks key by key, so
//!   that it reads the cache as one stream (a head's rows alone are a page apart at 8 heads of 128 f32, too
//!   far apart for the hardware prefetcher: about 3x slower when tried);
//! - splits the keys of each item over several work items when there are too few of them to keep every core
//!   busy; each keeps its part's output and LSE, merged by LSE at the end (flash-decoding).

use std::ops::Range;

use half::{bf16, f16};
use rayon::prelude::*;

use super::forward::logits_base2;
use super::matmul::{matmul, View};
use super::online_softmax::RowState;
use crate::validate::{AttnDims, AttnSpec, Band};

/// The f32 elements of an item's widened block of K or V rows (256 KiB, half of a Zen 3 core's L2).
const BLOCK_FLOATS: usize = 64 * 1024;
/// The fewest K rows (keys x KV heads of an item) the heuristic gives a split: smaller parts cost more to
/// merge than they gain.
const MIN_ROWS_PER_SPLIT: usize = 1024;

/// An element type of the cache, read as f32.
pub trait CacheElem: Copy + Send + Sync {
    /// Writes `src` as f32 into `dst` (of `src`'s length).
    fn widen(src: &[Self], dst: &mut [f32]);
}

impl CacheElem for f32 {
    #[inline(always)]
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

// f16 and bf16 are widened with integer and float operations that vectorise in the loop (half's own
// slice conversions call a function per eight elements for f16 and convert bf16 one element at a time).
impl CacheElem for f16 {
    #[inline(always)]
    fn widen(src: &[f16], dst: &mut [f32]) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = f16_to_f32(s.to_bits()));
    }
}

impl CacheElem for bf16 {
    #[inline(always)]
    fn widen(src: &[bf16], dst: &mut [f32]) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = f32::from_bits((s.to_bits() as u32) << 16));
    }
}

/// An f16's value, without branches: its exponent and mantissa bits moved to an f32's places read as a
/// number 2^112 too small (for normal and subnormal f16 alike, since f32 subnormals are kept), then scaled;
/// an all-ones exponent (inf, NaN) stays all ones.
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let magnitude = (h & 0x7fff) << 13;
    let finite = f32::from_bits(magnitude) * f32::from_bits((127 + 112) << 23);
    let value = if magnitude >= 0x7c00 << 13 { f32::from_bits(magnitude | 0x7f80_0000) } else { finite };
    f32::from_bits(value.to_bits() | (h & 0x8000) << 16)
}

/// Where a row of K or V starts in its storage: `start + outer * outer_stride + row * row_stride + head *
/// head_stride`, its head_dim elements contiguous. `outer` is the batch entry (dense) or the page.
#[derive(Debug, Clone, Copy)]
pub struct RowLayout {
    pub start: usize,
    pub outer_stride: usize,
    pub row_stride: usize,
    pub head_stride: usize,
}

/// Pages: key `j` of sequence `b` is row `j % page_size` of page `block_table[b][j / page_size]`.
pub struct Pages<'a> {
    pub block_table: &'a [Vec<u32>],
    pub page_size: usize,
}

/// The cache as the decode reads it. The caller has checked that every row it names lies inside `k` and `v`
/// (lengths within the capacity, pages within the cache); a row outside would panic on its slice bounds.
pub struct Cache<'a, T> {
    pub k: &'a [T],
    pub v: &'a [T],
    pub k_rows: RowLayout,
    pub v_rows: RowLayout,
    /// The keys of each sequence.
    pub lengths: &'a [usize],
    /// `None`: dense, key `j` of sequence `b` is row `j` of batch entry `b`.
    pub pages: Option<Pages<'a>>,
}

impl<T: CacheElem> Cache<'_, T> {
    /// (outer index, row) of key `j` of sequence `b`.
    fn locate(&self, b: usize, j: usize) -> (usize, usize) {
        match &self.pages {
            None => (b, j),
            Some(p) => (p.block_table[b][j / p.page_size] as usize, j % p.page_size),
        }
    }

    fn row<'s>(data: &'s [T], at: &RowLayout, (outer, row): (usize, usize), head: usize, d: usize) -> &'s [T] {
        &data[at.start + outer * at.outer_stride + row * at.row_stride + head * at.head_stride..][..d]
    }
}

/// The attention of q, f32 planes (batch, heads_q, seqlen_q, head_dim), against the cache, each sequence's
/// query rows at its last positions (bottom-right). Returns the output in q's plane layout and the natural-log
/// LSE (batch, heads_q, seqlen_q).
pub fn decode<T: CacheElem>(
    spec: &AttnSpec,
    alibi_slopes: Option<&[f32]>,
    q: &[f32],
    cache: &Cache<T>,
) -> (Vec<f32>, Vec<f32>) {
    let AttnDims { batch, seqlen_q, heads_kv, head_dim: d, .. } = spec.dims;
    let heads_interleaved = [cache.k_rows, cache.v_rows].iter().all(|l| l.head_stride < l.row_stride);
    let heads_per_item = if heads_interleaved { heads_kv } else { 1 };
    let items_per_seq = heads_kv / heads_per_item;
    // The rows of one item: its query heads' rows, contiguous in the planes.
    let rows = heads_per_item * spec.dims.group_size() * seqlen_q;
    let longest = cache.lengths.iter().copied().max().unwrap_or(0);
    let splits = spec.num_splits.unwrap_or_else(|| heuristic_splits(batch * items_per_seq, longest * heads_per_item));
    let group = |g: usize| {
        let first = (g % items_per_seq) * heads_per_item;
        let (b, kv_heads) = (g / items_per_seq, first..first + heads_per_item);
        Group { spec, alibi_slopes, cache, b, kv_heads, q: &q[g * rows * d..][..rows * d] }
    };

    let mut out = vec![0f32; q.len()];
    let mut lse = vec![0f32; q.len() / d];
    if splits == 1 {
        out.par_chunks_mut(rows * d).zip(lse.par_chunks_mut(rows)).enumerate().for_each(|(g, (o, lse))| {
            let group = group(g);
            group.attend(group.keys(0, 1), o, lse)
        });
        return (out, lse);
    }
    let mut part_out = vec![0f32; out.len() * splits];
    let mut part_lse = vec![0f32; lse.len() * splits];
    part_out.par_chunks_mut(rows * d).zip(part_lse.par_chunks_mut(rows)).enumerate().for_each(|(i, (o, lse))| {
        let group = group(i / splits);
        group.attend(group.keys(i % splits, splits), o, lse)
    });
    out.par_chunks_mut(rows * d).zip(lse.par_chunks_mut(rows)).enumerate().for_each(|(g, (o, lse))| {
        let parts =
            (&part_out[g * splits * rows * d..][..splits * rows * d], &part_lse[g * splits * rows..][..splits * rows]);
        merge_parts(parts, rows, d, o, lse)
    });
    (out, lse)
}

/// Splits per item so that every core gets at least two work items, none of fewer than
/// [`MIN_ROWS_PER_SPLIT`] of the `k_rows` K rows the longest sequence's item reads.
fn heuristic_splits(items: usize, k_rows: usize) -> usize {
    let wanted = (2 * rayon::current_num_threads()).div_ceil(items.max(1));
    wanted.min(k_rows / MIN_ROWS_PER_SPLIT).max(1)
}

/// One sequence's query rows of the heads that share the KV heads `kv_heads`.
struct Group<'a, T> {
    spec: &'a AttnSpec,
    alibi_slopes: Option<&'a [f32]>,
    cache: &'a Cache<'a, T>,
    b: usize,
    kv_heads: Range<usize>,
    /// (kv_heads x group_size x seqlen_q) rows of head_dim: row `r` is query head `kv_heads.start *
    /// group_size + r / seqlen_q`, query row `r % seqlen_q`.
    q: &'a [f32],
}

impl<T: CacheElem> Group<'_, T> {
    /// Which keys this sequence's rows see: `spec.band` aligned bottom-right to its own length.
    fn band(&self) -> Band {
        let len = self.cache.lengths[self.b] as i64;
        Band { offset: len - self.spec.dims.seqlen_q as i64, ..self.spec.band }
    }

    /// Split `split` of `splits` of the keys any row sees (empty where the split lies past them).
    fn keys(&self, split: usize, splits: usize) -> Range<usize> {
        let all = self.band().key_range(0..self.spec.dims.seqlen_q, self.cache.lengths[self.b]);
        let chunk = all.len().div_ceil(splits);
        let start = (all.start + split * chunk).min(all.end);
        start..(start + chunk).min(all.end)
    }

    /// Attention of the rows over `keys`: `o` (rows x head_dim) normalised over them, `lse` their LSE
    /// (zeros and -inf for rows that see none).
    fn attend(&self, keys: Range<usize>, o: &mut [f32], lse: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: this CPU has AVX2, the one feature the clone is compiled for.
            return unsafe { self.attend_avx2(keys, o, lse) };
        }
        self.attend_portable(keys, o, lse)
    }

    /// [`Self::attend`] compiled for AVX2: its own loops (widening, logits, softmax) vectorise over 8 lanes
    /// where the baseline x86-64 target has 4; the products are gemm's, which picks its kernels at run time
    /// itself (a build for the native CPU, `-C target-cpu=native`, gets this from the portable one).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn attend_avx2(&self, keys: Range<usize>, o: &mut [f32], lse: &mut [f32]) {
        self.attend_portable(keys, o, lse)
    }

    #[inline(always)]
    fn attend_portable(&self, keys: Range<usize>, o: &mut [f32], lse: &mut [f32]) {
        let (d, seqlen_q) = (self.spec.dims.head_dim, self.spec.dims.seqlen_q);
        let head_rows = self.spec.dims.group_size() * seqlen_q;
        let block_n = block_keys(self.kv_heads.len(), d);
        let band = self.band();
        let mut states = vec![RowState::EMPTY; lse.len()];
        let mut scores = vec![0f32; lse.len() * block_n];
        let mut block = vec![0f32; self.kv_heads.len() * block_n * d];
        o.fill(0.0);

        for kb in keys.clone().step_by(block_n) {
            let n = block_n.min(keys.end - kb);
            // S = Q Kᵀ, head by head.
            self.load_block((self.cache.k, &self.cache.k_rows), kb..kb + n, block_n, &mut block);
            let per_head = self.q.chunks(head_rows * d).zip(scores.chunks_mut(head_rows * block_n));
            for ((q, s), k) in per_head.zip(block.chunks(block_n * d)) {
                matmul((head_rows, n, d), s, block_n, false, View::rows(q, d), View::transposed(k, d));
            }
            let masked = !band.covers(0..seqlen_q, kb..kb + n);
            let first_head = self.kv_heads.start * self.spec.dims.group_size();
            for (r, (state, o)) in states.iter_mut().zip(o.chunks_mut(d)).enumerate() {
                let slope = self.alibi_slopes.map(|s| s[first_head + r / seqlen_q]);
                let s = &mut scores[r * block_n..][..n];
                logits_base2(self.spec, &band, slope, s, r % seqlen_q, kb, masked);
                state.absorb(s, o);
            }
            // O += P V, head by head.
            self.load_block((self.cache.v, &self.cache.v_rows), kb..kb + n, block_n, &mut block);
            let per_head = o.chunks_mut(head_rows * d).zip(scores.chunks(head_rows * block_n));
            for ((o, p), v) in per_head.zip(block.chunks(block_n * d)) {
                matmul((head_rows, d, n), o, d, true, View::rows(p, block_n), View::rows(v, d));
            }
        }
        for ((state, o), lse) in states.iter().zip(o.chunks_mut(d)).zip(lse) {
            *lse = state.finish(o);
        }
    }

    /// Rows `keys` of K or V for each of the item's KV heads, as f32 into `block` ([head][key][head_dim],
    /// `block_n` keys per head), read key by key: the item's heads of one key lie side by side in the
    /// cache, so the cache is read as one stream.
    #[inline(always)]
    fn load_block(&self, (data, at): (&[T], &RowLayout), keys: Range<usize>, block_n: usize, block: &mut [f32]) {
        let d = self.spec.dims.head_dim;
        for (j, key) in keys.enumerate() {
            let loc = self.cache.locate(self.b, key);
            for (i, h) in self.kv_heads.clone().enumerate() {
                T::widen(Cache::row(data, at, loc, h, d), &mut block[(i * block_n + j) * d..][..d]);
            }
        }
    }
}

/// Keys per block for an item of `heads` KV heads: its block of K (then V) rows in f32 takes at most
/// [`BLOCK_FLOATS`], so that it stays in L2 while each head's product reads it.
fn block_keys(heads: usize, head_dim: usize) -> usize {
    (BLOCK_FLOATS / (heads * head_dim).max(1)).clamp(16, 256)
}

/// Merges a group's parts, `splits` blocks of (rows x d) outputs and `rows` LSEs, each normalised over its own
/// keys, into the attention over all of them: `LSE = ln Σ exp(LSE_s)`, `O = Σ exp(LSE_s - LSE) O_s`.
fn merge_parts((part_out, part_lse): (&[f32], &[f32]), rows: usize, d: usize, o: &mut [f32], lse: &mut [f32]) {
    let splits = part_lse.len() / rows;
    for (r, (o, lse)) in o.chunks_mut(d).zip(lse).enumerate() {
        let lse_of = |s: usize| part_lse[s * rows + r];
        let max = (0..splits).map(lse_of).fold(f32::NEG_INFINITY, f32::max);
        o.fill(0.0);
        if max == f32::NEG_INFINITY {
            *lse = f32::NEG_INFINITY;
            continue;
        }
        let mut sum = 0f32;
        for s in 0..splits {
            let w = (lse_of(s) - max).exp();
            if w > 0.0 {
                sum += w;
                let part = &part_out[(s * rows + r) * d..][..d];
                o.iter_mut().zip(part).for_each(|(o, &x)| *o += w * x);
            }
        }
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|x| *x *= inv);
        *lse = max + sum.ln();
    }
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::CacheElem;

    #[test]
    fn widening_matches_half() {
        let bits: Vec<u16> = (0..=u16::MAX).collect();
        let mut buf = vec![0f32; bits.len()];
        let halves: Vec<f16> = bits.iter().map(|&b| f16::from_bits(b)).collect();
        f16::widen(&halves, &mut buf);
        for (x, got) in halves.iter().zip(&buf) {
            let want = x.to_f32();
            assert!(got.to_bits() == want.to_bits() || (want.is_nan() && got.is_nan()), "f16 {:#06x}", x.to_bits());
        }
        let brains: Vec<bf16> = bits.iter().map(|&b| bf16::from_bits(b)).collect();
        bf16::widen(&brains, &mut buf);
        for (x, got) in brains.iter().zip(&buf) {
            let want = x.to_f32();
            assert!(got.to_bits() == want.to_bits() || (want.is_nan() && got.is_nan()), "bf16 {:#06x}", x.to_bits());
        }
    }
}
