//! Batches of sequences of different lengths (varlen rows) and paged K/V: the layouts an inference server
//! keeps. On CUDA one launch serves the whole batch, the offsets and block tables read on the device; on the
//! CPU they are read on the host, checked, and each sequence runs on its own.

use candle_core::{bail, DType, Device, Result, Tensor};

use crate::validate::{self, AttnSpec, Band, KeyLengths, KeysLayout, Paged};
use crate::{flash_attn_with_lse, no_keys, run_op, AttnDims, AttnOptions};

/// A paged K/V cache of one layer, as vLLM and FlashInfer keep it: fixed-size pages of keys and values
/// shared by every sequence, and a block table naming each sequence's pages in order.
///
/// - `k_pages`, `v_pages`: (num_pages, page_size, heads_kv, head_dim), q's dtype and device. Key `j` of
///   sequence `b` is row `j % page_size` of page `block_table[b][j / page_size]`. Any page size from 1 works.
/// - `block_table`: (batch, pages per sequence) u32; entries past a sequence's last page are not read.
///
/// On the CPU a page number outside the cache is an error; on CUDA, where checking would need a read-back,
/// such a page reads as zeros (never from outside the cache).
///
/// On CUDA, f32 pages or a head_dim that is not a multiple of 8 make every call copy all the pages, rounded
/// to bf16 or zero-padded (see [`crate::flash_attn`]): correct, but a serving cache should be f16/bf16 with
/// a head_dim that is a multiple of 8, which is read in place.
#[derive(Debug, Clone, Copy)]
pub struct PagedKv<'a> {
    pub k_pages: &'a Tensor,
    pub v_pages: &'a Tensor,
    pub block_table: &'a Tensor,
}

/// Attention over a batch of sequences of different lengths packed along one row dimension, in one launch:
/// what packed-sequence training and a server's prefill of several prompts run.
///
/// - `q`: (total_q, heads_q, head_dim); `k`, `v`: (total_k, heads_kv, head_dim).
/// - `cu_seqlens_q`, `cu_seqlens_k`: (batch + 1,) u32 on q's device, rising from 0 to total_q / total_k;
///   sequence `b` owns rows `cu[b]..cu[b + 1]`. Each sequence is its own attention call: `causal`, windows
///   and ALiBi distances are bottom-right aligned per sequence, as FlashAttention's varlen.
/// - `max_seqlen_q`, `max_seqlen_k`: the longest sequence's lengths (the CUDA grid's size). On the CPU the
///   offsets are checked (rising, ending at the totals, within the maxima); on CUDA they are not read back:
///   offsets are clamped to the tensors, rows past a maximum are not computed, and rows no sequence owns are
///   zeros.
/// - Returns (total_q, heads_q, head_dim) in q's dtype. Differentiable on CPU and CUDA (the backward runs
///   on the same offsets, one launch on CUDA).
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_varlen(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu_seqlens_q: &Tensor,
    cu_seqlens_k: &Tensor,
    max_seqlen_q: usize,
    max_seqlen_k: usize,
    opts: &AttnOptions,
) -> Result<Tensor> {
    Ok(flash_attn_varlen_with_lse(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, opts)?.0)
}

/// [`flash_attn_varlen`], also returning the LSE, (heads_q, total_q) f32 (FlashAttention's varlen layout).
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_varlen_with_lse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu_seqlens_q: &Tensor,
    cu_seqlens_k: &Tensor,
    max_seqlen_q: usize,
    max_seqlen_k: usize,
    opts: &AttnOptions,
) -> Result<(Tensor, Tensor)> {
    let keys = KeysLayout::Varlen { cu_seqlens_k, max_seqlen_k };
    let spec = validate::validate_ragged(q, k, v, Some((cu_seqlens_q, max_seqlen_q)), keys, opts)?;
    run_ragged(q, k, v, spec, opts)
}

/// Decode (or a short append) against a paged K/V cache: the newest `seqlen_q` tokens of each sequence,
/// whose keys and values are already in their pages, in one launch.
///
/// - `q`: (batch, seqlen_q, heads_q, head_dim); `kv`: the pages and block table ([`PagedKv`]).
/// - `seqlens_k`: (batch,) u32 on q's device, the keys of each sequence (including the new tokens'); query
///   row `i` sits at position `seqlens_k[b] - seqlen_q + i`. A count above the block table's capacity
///   (pages per sequence x page_size) is an error on the CPU and clamped on CUDA.
/// - Returns (batch, seqlen_q, heads_q, head_dim). Inference only (no gradient).
pub fn flash_attn_paged(q: &Tensor, kv: &PagedKv, seqlens_k: &Tensor, opts: &AttnOptions) -> Result<Tensor> {
    Ok(flash_attn_paged_with_lse(q, kv, seqlens_k, opts)?.0)
}

/// [`flash_attn_paged`], also returning the LSE, (batch, heads_q, seqlen_q) f32.
pub fn flash_attn_paged_with_lse(
    q: &Tensor,
    kv: &PagedKv,
    seqlens_k: &Tensor,
    opts: &AttnOptions,
) -> Result<(Tensor, Tensor)> {
    let keys =
        KeysLayout::Paged { block_table: kv.block_table, lengths: KeyLengths::Counts(seqlens_k), max_seqlen_k: None };
    let spec = validate::validate_ragged(q, kv.k_pages, kv.v_pages, None, keys, opts)?;
    run_ragged(q, kv.k_pages, kv.v_pages, spec, opts)
}

/// Varlen queries against a paged K/V cache in one launch: chunked prefill, prefix caching, and a server's
/// mixed batch of prompts and decodes. Sequence `b`'s queries are rows `cu_seqlens_q[b]..cu_seqlens_q[b + 1]`
/// of `q` (total_q, heads_q, head_dim), its keys the first `seqlens_k[b]` of its pages (the new tokens' own
/// keys already written, last); its queries sit at the last positions (bottom-right). Returns (total_q,
/// heads_q, head_dim). Checks as [`flash_attn_varlen`] and [`flash_attn_paged`]; inference only.
pub fn flash_attn_varlen_paged(
    q: &Tensor,
    cu_seqlens_q: &Tensor,
    max_seqlen_q: usize,
    kv: &PagedKv,
    seqlens_k: &Tensor,
    opts: &AttnOptions,
) -> Result<Tensor> {
    Ok(flash_attn_varlen_paged_with_lse(q, cu_seqlens_q, max_seqlen_q, kv, seqlens_k, opts)?.0)
}

/// [`flash_attn_varlen_paged`], also returning the LSE, (heads_q, total_q) f32.
pub fn flash_attn_varlen_paged_with_lse(
    q: &Tensor,
    cu_seqlens_q: &Tensor,
    max_seqlen_q: usize,
    kv: &PagedKv,
    seqlens_k: &Tensor,
    opts: &AttnOptions,
) -> Result<(Tensor, Tensor)> {
    let keys =
        KeysLayout::Paged { block_table: kv.block_table, lengths: KeyLengths::Counts(seqlens_k), max_seqlen_k: None };
    let spec = validate::validate_ragged(q, kv.k_pages, kv.v_pages, Some((cu_seqlens_q, max_seqlen_q)), keys, opts)?;
    run_ragged(q, kv.k_pages, kv.v_pages, spec, opts)
}

/// Runs a checked ragged call: one op on CUDA, one sequence at a time on the CPU.
pub(crate) fn run_ragged(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mut spec: AttnSpec,
    opts: &AttnOptions,
) -> Result<(Tensor, Tensor)> {
    if spec.out_shape().elem_count() == 0 {
        let out = Tensor::zeros(spec.out_shape(), q.dtype(), q.device())?;
        return Ok((out, Tensor::full(f32::NEG_INFINITY, spec.lse_shape(), q.device())?));
    }
    let inference_only = spec.paged().is_some();
    if q.device().is_cpu() {
        let (out, lse) = ragged_cpu(q, k, v, &spec, opts)?;
        return Ok(if inference_only { (out.detach(), lse.detach()) } else { (out, lse) });
    }
    // The kernels read these vectors as contiguous u32 arrays.
    if let Some(r) = spec.ragged.as_mut() {
        for t in [&mut r.cu_seqlens_q, &mut r.cu_seqlens_k].into_iter().flatten() {
            *t = t.contiguous()?;
        }
        if let Some(p) = r.paged.as_mut() {
            p.block_table = p.block_table.contiguous()?;
        }
    }
    if let Some(t) = spec.seqlens_k.as_mut() {
        *t = t.contiguous()?;
    }
    let (out, lse) = run_op(q, k, v, spec)?;
    Ok(if inference_only { (out.detach(), lse) } else { (out, lse) })
}

/// A (batch + 1,) offsets vector read on the host and checked: rising from 0 to `total`, no step above `max`.
fn host_offsets(name: &str, cu: &Tensor, total: usize, max: Option<usize>) -> Result<Vec<usize>> {
    let offsets: Vec<usize> = cu.to_vec1::<u32>()?.into_iter().map(|x| x as usize).collect();
    if offsets.first() != Some(&0) || offsets.last() != Some(&total) {
        bail!("flash_attn: {name} must start at 0 and end at {total} (the rows of its tensor), got {offsets:?}")
    }
    for (b, w) in offsets.windows(2).enumerate() {
        if w[1] < w[0] {
            bail!("flash_attn: {name} must not decrease, but {name}[{}] = {} < {name}[{b}] = {}", b + 1, w[1], w[0])
        }
        if let Some(max) = max.filter(|&m| w[1] - w[0] > m) {
            bail!("flash_attn: sequence {b} has {} rows in {name}, more than the maximum {max} given", w[1] - w[0])
        }
    }
    Ok(offsets)
}

/// The CPU path of a ragged call: offsets, counts and block tables read and checked on the host, then each
/// sequence attended on its own (gradients flow through the varlen case) and the results concatenated.
fn ragged_cpu(q: &Tensor, k: &Tensor, v: &Tensor, spec: &AttnSpec, opts: &AttnOptions) -> Result<(Tensor, Tensor)> {
    let Some(r) = spec.ragged.as_ref() else { bail!("flash_attn: a ragged call without its layout") };
    let dims = spec.dims;
    let q_rows = match &r.cu_seqlens_q {
        Some(cu) => Some(host_offsets("cu_seqlens_q", cu, r.total_q, Some(dims.seqlen_q))?),
        None => None,
    };
    let key_lengths: Vec<usize> = match (&spec.seqlens_k, &r.cu_seqlens_k) {
        (Some(counts), _) => counts.to_vec1::<u32>()?.into_iter().map(|x| x as usize).collect(),
        (None, Some(cu)) => {
            let (total, max) = if r.paged.is_some() { (None, None) } else { (Some(r.total_k), Some(dims.seqlen_k)) };
            // Paged: only the differences are read, so the offsets need not end at any total.
            let last = cu.to_vec1::<u32>()?.last().map_or(0, |&x| x as usize);
            let offsets = host_offsets("cu_seqlens_k", cu, total.unwrap_or(last), max)?;
            offsets.windows(2).map(|w| w[1].saturating_sub(w[0])).collect()
        }
        (None, None) => bail!("flash_attn: a ragged call without key lengths"),
    };
    let block_table = match &r.paged {
        Some(p) => Some(p.block_table.to_dtype(DType::U32)?.to_vec2::<u32>()?),
        None => None,
    };
    // Each sequence's pages, checked before any of them is read.
    let pages: Vec<&[u32]> = match (&block_table, &r.paged) {
        (Some(table), Some(paged)) => key_lengths
            .iter()
            .enumerate()
            .map(|(b, &len_k)| sequence_pages(b, len_k, table, paged))
            .collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    if let (Some(table), Some(paged)) = (&block_table, &r.paged) {
        // Short dense queries (decode) read the pages in place, the whole batch at once.
        if q_rows.is_none() {
            let pages = crate::cpu::Pages { block_table: table, page_size: paged.page_size };
            if let Some(result) = crate::cpu::decode_cache(spec, q, (k, v), &key_lengths, Some(pages))? {
                return Ok(result);
            }
        }
    }
    let mut parts = Vec::with_capacity(dims.batch);
    let mut key_start = 0;
    for (b, &len_k) in key_lengths.iter().enumerate() {
        let q_b = match &q_rows {
            Some(cu) => q.narrow(0, cu[b], cu[b + 1] - cu[b])?.unsqueeze(0)?,
            None => q.narrow(0, b, 1)?,
        };
        if let (Some(table), Some(paged)) = (&block_table, &r.paged) {
            // A sequence of a few query rows (a decode in a mixed batch) reads its pages in place.
            if let Some(part) = decode_sequence_in_place(spec, &q_b, (k, v), (b, len_k), table, paged)? {
                parts.push(part);
                continue;
            }
        }
        let (k_b, v_b) = if r.paged.is_some() {
            let index = Tensor::new(pages[b], &Device::Cpu)?;
            let gather = |t: &Tensor| -> Result<Tensor> {
                let (_, ps, h, d) = t.dims4()?;
                t.index_select(&index, 0)?.reshape((1, pages[b].len() * ps, h, d))?.narrow(1, 0, len_k)
            };
            (gather(k)?, gather(v)?)
        } else {
            let rows = |t: &Tensor| t.narrow(0, key_start, len_k)?.unsqueeze(0);
            (rows(k)?, rows(v)?)
        };
        key_start += len_k;
        parts.push(attend_one(&q_b, &k_b, &v_b, spec, opts)?);
    }
    let (outs, lses): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    if q_rows.is_some() {
        // (1, len, heads, d) -> (total, heads, d); LSE (1, heads, len) -> (heads, total).
        let outs: Vec<_> = outs.iter().map(|o| o.squeeze(0)).collect::<Result<_>>()?;
        let lses: Vec<_> = lses.iter().map(|l| l.squeeze(0)).collect::<Result<_>>()?;
        Ok((Tensor::cat(&outs, 0)?, Tensor::cat(&lses, 1)?))
    } else {
        Ok((Tensor::cat(&outs, 0)?, Tensor::cat(&lses, 0)?))
    }
}

/// Sequence `b` of a paged call on the CPU decode path, its block table row (already checked by
/// [`sequence_pages`]) read in place: q_b (1, len_q, heads_q, head_dim) against its first `len_k` keys.
/// `None` where that path does not take it (no query rows, more than 16, or a cache it cannot read in place).
fn decode_sequence_in_place(
    spec: &AttnSpec,
    q_b: &Tensor,
    (k, v): (&Tensor, &Tensor),
    (b, len_k): (usize, usize),
    table: &[Vec<u32>],
    paged: &Paged,
) -> Result<Option<(Tensor, Tensor)>> {
    let len_q = q_b.dim(1)?;
    if len_q == 0 {
        return Ok(None);
    }
    let one = AttnSpec { dims: AttnDims { batch: 1, seqlen_q: len_q, ..spec.dims }, ragged: None, ..spec.clone() };
    let pages = crate::cpu::Pages { block_table: std::slice::from_ref(&table[b]), page_size: paged.page_size };
    crate::cpu::decode_cache(&one, q_b, (k, v), &[len_k], Some(pages))
}

/// The pages holding sequence `b`'s `len_k` keys, checked: within its block table row and the cache.
fn sequence_pages<'t>(b: usize, len_k: usize, table: &'t [Vec<u32>], paged: &Paged) -> Result<&'t [u32]> {
    let capacity = table[b].len() * paged.page_size;
    if len_k > capacity {
        bail!("flash_attn: sequence {b} has {len_k} keys, more than its {capacity} (block_table columns x page_size)")
    }
    let pages = &table[b][..len_k.div_ceil(paged.page_size)];
    if let Some(&bad) = pages.iter().find(|&&p| p as usize >= paged.num_pages) {
        bail!("flash_attn: block_table[{b}] names page {bad}, but the cache has {} pages", paged.num_pages)
    }
    Ok(pages)
}

/// One sequence on the CPU: q (1, len_q, ..) against k, v (1, len_k, ..), bottom-right aligned; rows that
/// see no key (none at all, or a window past them) get zeros and LSE -inf rather than an error.
pub(crate) fn attend_one(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    spec: &AttnSpec,
    opts: &AttnOptions,
) -> Result<(Tensor, Tensor)> {
    let (len_q, len_k) = (q.dim(1)?, k.dim(1)?);
    let band = Band { offset: len_k as i64 - len_q as i64, ..spec.band };
    if len_q == 0 || band.key_range(0..len_q, len_k).is_empty() {
        return no_keys(q, &AttnDims { batch: 1, seqlen_q: len_q, seqlen_k: len_k, ..spec.dims });
    }
    flash_attn_with_lse(q, k, v, opts)
}
