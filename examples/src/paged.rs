//! A paged K/V cache shared by every sequence of a continuous batch, and the step that packs each running
//! sequence's new tokens into one varlen forward ([`crate::llama::Llama::forward_paged`]).

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

/// Every layer's K/V pages, (num_pages, page_size, kv_heads, head_dim) each, and the free pages.
pub struct PagedCache {
    pub page_size: usize,
    pub k: Vec<Tensor>,
    pub v: Vec<Tensor>,
    free: Vec<u32>,
}

impl PagedCache {
    pub fn new(
        layers: usize,
        (num_pages, page_size): (usize, usize),
        (kv_heads, head_dim): (usize, usize),
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (num_pages, page_size, kv_heads, head_dim);
        let zeros = || Tensor::zeros(shape, dtype, device);
        Ok(Self {
            page_size,
            k: (0..layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?,
            v: (0..layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?,
            // Popped from the end: page 0 first.
            free: (0..num_pages as u32).rev().collect(),
        })
    }

    /// Grows `pages` until they hold `len` tokens; false (and `pages` unchanged) when the cache is too full.
    pub fn reserve(&mut self, pages: &mut Vec<u32>, len: usize) -> bool {
        let need = len.div_ceil(self.page_size).saturating_sub(pages.len());
        if need > self.free.len() {
            return false;
        }
        pages.extend(self.free.drain(self.free.len() - need..).rev());
        true
    }

    pub fn release(&mut self, pages: &mut Vec<u32>) {
        self.free.append(pages);
    }
}

/// One forward step of the batch: each sequence's new tokens after its `cached` ones, on the device.
pub struct PagedStep {
    /// (tokens,) u32: every sequence's new tokens, packed.
    pub ids: Tensor,
    /// (tokens,) u32: each token's position in its sequence (the rotary angle).
    pub positions: Tensor,
    /// (tokens,) i64: each token's cache slot, page * page_size + row.
    pub slots: Tensor,
    /// (sequences + 1,) u32 offsets of the sequences' tokens.
    pub cu_seqlens_q: Tensor,
    pub max_seqlen_q: usize,
    /// (sequences,) u32: keys after this step (cached + new).
    pub seqlens_k: Tensor,
    /// (sequences, most pages) u32, unused entries 0 (never read: beyond seqlens_k).
    pub block_table: Tensor,
    /// (sequences,) u32: the row of each sequence's last token.
    pub last_rows: Tensor,
}

/// A sequence of a step: its new tokens, how many it already has in the cache, its pages (enough for both).
pub struct StepSequence<'a> {
    pub new: &'a [u32],
    pub cached: usize,
    pub pages: &'a [u32],
}

impl PagedStep {
    pub fn new(seqs: &[StepSequence], page_size: usize, device: &Device) -> Result<Self> {
        let (mut ids, mut positions, mut slots, mut cu, mut lens, mut last) =
            (vec![], vec![], vec![], vec![0u32], vec![], vec![]);
        let width = seqs.iter().map(|s| s.pages.len()).max().unwrap_or(0);
        let mut table = vec![0u32; seqs.len() * width];
        for (b, s) in seqs.iter().enumerate() {
            if s.new.is_empty() || (s.cached + s.new.len()).div_ceil(page_size) > s.pages.len() {
                bail!(
                    "sequence {b}: {} new tokens after {} cached need more than its {} pages",
                    s.new.len(),
                    s.cached,
                    s.pages.len()
                )
            }
            for (i, &id) in s.new.iter().enumerate() {
                let pos = s.cached + i;
                ids.push(id);
                positions.push(pos as u32);
                slots.push(s.pages[pos / page_size] as i64 * page_size as i64 + (pos % page_size) as i64);
            }
            cu.push(ids.len() as u32);
            last.push(ids.len() as u32 - 1);
            lens.push((s.cached + s.new.len()) as u32);
            table[b * width..b * width + s.pages.len()].copy_from_slice(s.pages);
        }
        let max_seqlen_q = seqs.iter().map(|s| s.new.len()).max().unwrap_or(0);
        Ok(Self {
            ids: Tensor::new(ids.as_slice(), device)?,
            positions: Tensor::new(positions.as_slice(), device)?,
            slots: Tensor::new(slots.as_slice(), device)?,
            cu_seqlens_q: Tensor::new(cu.as_slice(), device)?,
            max_seqlen_q,
            seqlens_k: Tensor::new(lens.as_slice(), device)?,
            block_table: Tensor::from_vec(table, (seqs.len(), width), device)?,
            last_rows: Tensor::new(last.as_slice(), device)?,
        })
    }
}
