//! The FlashAttention-2 backward pass on the CPU: P is recomputed from Q, K and the forward's LSE tile by
//! tile, so nothing N x N is stored. Two passes, each writing only what it owns, so no atomics and a
//! deterministic result: dK and dV parallel over key blocks (each loops over the query tiles that see
//! it, for every query head sharing the KV head), then dQ parallel over query tiles.
//!
//! With `z` the logit of a score `s = q·k` (scale, softcap, ALiBi as in the forward), `P = exp(z - lse)`,
//! `D_i = dO_i · O_i`, the gradients are `dV = Pᵀ dO`, `dP = dO Vᵀ`, `dZ = P ∘ (dP - D)`,
//! `dS = dZ ∘ dz/ds`, `dQ = dS K`, `dK = dSᵀ Q`.

use rayon::prelude::*;

use super::exp2::exp2;
use super::forward::logits_base2;
use super::matmul::{matmul, View};
use crate::validate::{AttnDims, AttnSpec};

const BLOCK_M: usize = 64;
const BLOCK_N: usize = 128;

/// Contiguous f32 planes in, as the forward: q, o, d_o (batch, heads_q, seqlen_q, dim); k, v (batch,
/// heads_kv, seqlen_k, dim); lse (batch, heads_q, seqlen_q). Returns dq, dk, dv in the same layouts.
pub struct Planes<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub o: &'a [f32],
    pub d_o: &'a [f32],
    pub lse: &'a [f32],
}

pub fn backward(spec: &AttnSpec, alibi_slopes: Option<&[f32]>, t: &Planes) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let AttnDims { seqlen_q: sq, seqlen_k: sk, heads_q, heads_kv, head_dim: d, .. } = spec.dims;
    let group = spec.dims.group_size();
    // D_i = dO_i · O_i, one per query row.
    let delta: Vec<f32> = t.d_o.par_chunks(d).zip(t.o.par_chunks(d)).map(|(a, b)| dot(a, b)).collect();
    let ctx = Ctx { spec, alibi_slopes, t, delta: &delta };

    let mut dk = vec![0f32; t.k.len()];
    let mut dv = vec![0f32; t.v.len()];
    dk.par_chunks_mut(sk * d).zip(dv.par_chunks_mut(sk * d)).enumerate().for_each(|(kv_plane, (dk_p, dv_p))| {
        let (b, hk) = (kv_plane / heads_kv, kv_plane % heads_kv);
        dk_p.par_chunks_mut(BLOCK_N * d).zip(dv_p.par_chunks_mut(BLOCK_N * d)).enumerate().for_each(
            |(blk, (dk_b, dv_b))| {
                let keys = blk * BLOCK_N..(blk * BLOCK_N + BLOCK_N).min(sk);
                let mut scratch = Scratch::new();
                for h in hk * group..(hk + 1) * group {
                    let plane = b * heads_q + h;
                    for r0 in (0..sq).step_by(BLOCK_M) {
                        let rows = r0..(r0 + BLOCK_M).min(sq);
                        let seen = spec.band.key_range(rows.clone(), sk);
                        if seen.end <= keys.start || seen.start >= keys.end {
                            continue;
                        }
                        let tile = ctx.tile(plane, kv_plane, rows.clone(), keys.clone(), &mut scratch);
                        let (m, n) = (rows.len(), keys.len());
                        let d_o = &t.d_o[(plane * sq + rows.start) * d..];
                        let q = &t.q[(plane * sq + rows.start) * d..];
                        matmul((n, d, m), dv_b, d, true, View::transposed(tile.p, BLOCK_N), View::rows(d_o, d));
                        matmul((n, d, m), dk_b, d, true, View::transposed(tile.ds, BLOCK_N), View::rows(q, d));
                    }
                }
            },
        );
    });

    let mut dq = vec![0f32; t.q.len()];
    dq.par_chunks_mut(sq * d).enumerate().for_each(|(plane, dq_p)| {
        let (b, h) = (plane / heads_q, plane % heads_q);
        let kv_plane = b * heads_kv + h / group;
        dq_p.par_chunks_mut(BLOCK_M * d).enumerate().for_each(|(tile_idx, dq_t)| {
            let rows = tile_idx * BLOCK_M..(tile_idx * BLOCK_M + BLOCK_M).min(sq);
            let seen = spec.band.key_range(rows.clone(), sk);
            let mut scratch = Scratch::new();
            for k0 in (seen.start..seen.end).step_by(BLOCK_N) {
                let keys = k0..(k0 + BLOCK_N).min(seen.end);
                let tile = ctx.tile(plane, kv_plane, rows.clone(), keys.clone(), &mut scratch);
                let k = &t.k[(kv_plane * sk + keys.start) * d..];
                matmul((rows.len(), d, keys.len()), dq_t, d, true, View::rows(tile.ds, BLOCK_N), View::rows(k, d));
            }
        });
    });
    (dq, dk, dv)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

struct Ctx<'a> {
    spec: &'a AttnSpec,
    alibi_slopes: Option<&'a [f32]>,
    t: &'a Planes<'a>,
    delta: &'a [f32],
}

/// Per-thread tile buffers, BLOCK_M x BLOCK_N with row stride BLOCK_N: P (dP while it is being built) and
/// dS (the raw scores while it is being built).
struct Scratch {
    p: Vec<f32>,
    ds: Vec<f32>,
}

impl Scratch {
    fn new() -> Self {
        Self { p: vec![0f32; BLOCK_M * BLOCK_N], ds: vec![0f32; BLOCK_M * BLOCK_N] }
    }
}

struct Tile<'s> {
    p: &'s [f32],
    ds: &'s [f32],
}

impl Ctx<'_> {
    /// P and dS (the gradient with respect to the raw score q·k) of one (query rows x keys) tile.
    fn tile<'s>(
        &self,
        plane: usize,
        kv_plane: usize,
        rows: std::ops::Range<usize>,
        keys: std::ops::Range<usize>,
        scratch: &'s mut Scratch,
    ) -> Tile<'s> {
        let spec = self.spec;
        let (sq, sk, d) = (spec.dims.seqlen_q, spec.dims.seqlen_k, spec.dims.head_dim);
        let (m, n) = (rows.len(), keys.len());
        let q = &self.t.q[(plane * sq + rows.start) * d..];
        let d_o = &self.t.d_o[(plane * sq + rows.start) * d..];
        let k = &self.t.k[(kv_plane * sk + keys.start) * d..];
        let v = &self.t.v[(kv_plane * sk + keys.start) * d..];
        let Scratch { p, ds } = scratch;
        // Raw scores into ds (kept for the softcap derivative), dP = dO Vᵀ into p for now.
        matmul((m, n, d), ds, BLOCK_N, false, View::rows(q, d), View::transposed(k, d));
        matmul((m, n, d), p, BLOCK_N, false, View::rows(d_o, d), View::transposed(v, d));
        let slope = self.alibi_slopes.map(|s| s[plane % spec.dims.heads_q]);
        let masked = !spec.band.covers(rows.clone(), keys.clone());
        let mut logits = [0f32; BLOCK_N];
        for r in 0..m {
            let row = rows.start + r;
            let lse = self.t.lse[plane * sq + row];
            let delta = self.delta[plane * sq + row];
            let (p_row, ds_row) = (&mut p[r * BLOCK_N..][..n], &mut ds[r * BLOCK_N..][..n]);
            let logits = &mut logits[..n];
            logits.copy_from_slice(ds_row);
            logits_base2(spec, &spec.band, slope, logits, row, keys.start, masked);
            let lse2 = lse * std::f32::consts::LOG2_E;
            for j in 0..n {
                let prob = if lse == f32::NEG_INFINITY { 0.0 } else { exp2(logits[j] - lse2) };
                // dz/ds: the scale, times 1 - tanh² through a softcap.
                let dz_ds = match spec.softcap {
                    Some(cap) => {
                        let t = (ds_row[j] * spec.softmax_scale / cap).tanh();
                        spec.softmax_scale * (1.0 - t * t)
                    }
                    None => spec.softmax_scale,
                };
                ds_row[j] = prob * (p_row[j] - delta) * dz_ds;
                p_row[j] = prob;
            }
        }
        Tile { p: &scratch.p[..], ds: &scratch.ds[..] }
    }
}
