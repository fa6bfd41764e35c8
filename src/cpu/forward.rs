//! The FlashAttention-2 forward pass on the CPU.
//!
//! One work item is a tile of `BLOCK_M` query rows of one (batch, head); items run in parallel with rayon.
//! Each item streams the keys it can see in blocks of `BLOCK_N`: `S = Q Kᵀ` (gemm), masking and an online
//! softmax in base 2 (running row max `m`, row sum `l`, the output rescaled only when `m` grows), then
//! `O += P V` (gemm). The output is divided by `l` once at the end and only the log-sum-exp is kept, so
//! extra memory is one `BLOCK_M x BLOCK_N` score tile per thread: linear in sequence length.

use rayon::prelude::*;

use super::matmul::{matmul, View};
use super::online_softmax::RowState;
use crate::validate::{AttnDims, AttnSpec, Band};

/// Query rows per work item: enough rows that each gemm amortises its setup, few enough that
/// (batch x heads x seqlen_q / BLOCK_M) items keep every core busy.
const BLOCK_M: usize = 64;
/// Keys per block: the score tile (BLOCK_M x BLOCK_N f32 = 64 KiB) stays in L2 between the two gemms.
const BLOCK_N: usize = 256;

/// Inputs as contiguous f32 planes: q (batch, heads_q, seqlen_q, dim), k and v (batch, heads_kv, seqlen_k,
/// dim). Returns the output in q's plane layout and the natural-log LSE (batch, heads_q, seqlen_q).
pub fn forward(spec: &AttnSpec, alibi_slopes: Option<&[f32]>, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let AttnDims { seqlen_q, seqlen_k, heads_q, head_dim, .. } = spec.dims;
    let mut out = vec![0f32; q.len()];
    let mut lse = vec![0f32; q.len() / head_dim];
    // Split by (batch, head) plane first, then by query tile: tiles never straddle two planes.
    out.par_chunks_mut(seqlen_q * head_dim).zip(lse.par_chunks_mut(seqlen_q)).enumerate().for_each(
        |(plane, (out_plane, lse_plane))| {
            let (b, h) = (plane / heads_q, plane % heads_q);
            let kv_plane = b * spec.dims.heads_kv + h / spec.dims.group_size();
            let q_plane = &q[plane * seqlen_q * head_dim..][..seqlen_q * head_dim];
            let k_plane = &k[kv_plane * seqlen_k * head_dim..][..seqlen_k * head_dim];
            let v_plane = &v[kv_plane * seqlen_k * head_dim..][..seqlen_k * head_dim];
            let slope = alibi_slopes.map(|s| s[h]);
            out_plane.par_chunks_mut(BLOCK_M * head_dim).zip(lse_plane.par_chunks_mut(BLOCK_M)).enumerate().for_each(
                |(tile, (o, lse))| {
                    let rows = tile * BLOCK_M..(tile * BLOCK_M + BLOCK_M).min(seqlen_q);
                    let q_tile = &q_plane[rows.start * head_dim..rows.end * head_dim];
                    let tile = QueryTile { spec, slope, rows, q: q_tile, k: k_plane, v: v_plane };
                    tile.run(o, lse);
                },
            );
        },
    );
    (out, lse)
}

struct QueryTile<'a> {
    spec: &'a AttnSpec,
    slope: Option<f32>,
    rows: std::ops::Range<usize>,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
}

impl QueryTile<'_> {
    fn run(&self, o: &mut [f32], lse: &mut [f32]) {
        let d = self.spec.dims.head_dim;
        let n_rows = self.rows.len();
        let band = self.spec.band;
        let keys = band.key_range(self.rows.clone(), self.spec.dims.seqlen_k);

        let mut rows = [RowState::EMPTY; BLOCK_M];
        let mut scores = vec![0f32; n_rows * BLOCK_N];
        o.fill(0.0);

        for kb in keys.clone().step_by(BLOCK_N) {
            let block = kb..(kb + BLOCK_N).min(keys.end);
            let n = block.len();
            // S = Q Kᵀ for this block (rows x n, row stride BLOCK_N).
            let k_blk = View::transposed(&self.k[kb * d..], d);
            matmul((n_rows, n, d), &mut scores, BLOCK_N, false, View::rows(self.q, d), k_blk);
            let masked = !band.covers(self.rows.clone(), block.clone());
            for (r, s_row) in scores.chunks_mut(BLOCK_N).enumerate() {
                let s_row = &mut s_row[..n];
                logits_base2(self.spec, &band, self.slope, s_row, self.rows.start + r, kb, masked);
                rows[r].absorb(s_row, &mut o[r * d..(r + 1) * d]);
            }
            // O += P V for this block.
            matmul((n_rows, d, n), o, d, true, View::rows(&scores, BLOCK_N), View::rows(&self.v[kb * d..], d));
        }

        for ((row, o_row), lse) in rows.iter().zip(o.chunks_mut(d)).zip(lse) {
            *lse = row.finish(o_row);
        }
    }
}

/// Turns raw dot products into base-2 logits in place: scale, softcap, ALiBi (distances from `band`'s
/// diagonal), and `-inf` where `masked` and `band` hides the key from `row`.
#[inline(always)]
pub(super) fn logits_base2(
    spec: &AttnSpec,
    band: &Band,
    slope: Option<f32>,
    s: &mut [f32],
    row: usize,
    key0: usize,
    masked: bool,
) {
    let log2e = std::f32::consts::LOG2_E;
    if spec.softcap.is_none() && slope.is_none() {
        let scale = spec.softmax_scale * log2e;
        s.iter_mut().for_each(|x| *x *= scale);
    } else {
        let diag = row as i64 + band.offset;
        for (j, x) in s.iter_mut().enumerate() {
            let mut logit = *x * spec.softmax_scale;
            if let Some(cap) = spec.softcap {
                logit = cap * (logit / cap).tanh();
            }
            if let Some(slope) = slope {
                logit -= slope * ((key0 + j) as i64 - diag).abs() as f32;
            }
            *x = logit * log2e;
        }
    }
    if masked {
        for (j, x) in s.iter_mut().enumerate() {
            if !band.is_visible(row, key0 + j) {
                *x = f32::NEG_INFINITY;
            }
        }
    }
}
