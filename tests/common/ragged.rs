//! Ragged batches for the varlen and paged entry points, and their check sequence by sequence.

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::AttnOptions;

use super::forward::check_sequence;
use super::inputs::Rng;

/// A ragged batch: sequences of their own query and key lengths, packed (varlen) and paged, plus each
/// sequence's dense (1, len, heads, head_dim) tensors for the reference.
pub struct Ragged {
    pub lens_q: Vec<usize>,
    pub lens_k: Vec<usize>,
    /// (total_q, heads_q, head_dim) and (total_k, heads_kv, head_dim).
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    /// (batch + 1,) u32 offsets.
    pub cu_q: Tensor,
    pub cu_k: Tensor,
    /// (num_pages, page_size, heads_kv, head_dim): every sequence's keys in pages of a shuffled order, with
    /// spare pages between them; block_table (batch, pages) u32 whose unused entries name no page.
    pub k_pages: Tensor,
    pub v_pages: Tensor,
    pub block_table: Tensor,
    /// (batch,) u32 key counts.
    pub seqlens_k: Tensor,
}

impl Ragged {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rng: &mut Rng,
        lens_q: &[usize],
        lens_k: &[usize],
        (heads_q, heads_kv, head_dim): (usize, usize, usize),
        page_size: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let (total_q, total_k): (usize, usize) = (lens_q.iter().sum(), lens_k.iter().sum());
        let q = rng.tensor((1, total_q, heads_q, head_dim), 1.0, dtype, dev)?.squeeze(0)?;
        let k = rng.tensor((1, total_k, heads_kv, head_dim), 1.0, dtype, dev)?.squeeze(0)?;
        let v = rng.tensor((1, total_k, heads_kv, head_dim), 1.0, dtype, dev)?.squeeze(0)?;
        let offsets = |lens: &[usize]| -> Vec<u32> {
            std::iter::once(0)
                .chain(lens.iter().scan(0, |acc, &l| {
                    *acc += l;
                    Some(*acc as u32)
                }))
                .collect()
        };
        let cu_q = Tensor::new(offsets(lens_q).as_slice(), dev)?;
        let cu_k = Tensor::new(offsets(lens_k).as_slice(), dev)?;
        // Pages: sequence b's page p is physical page perm[n] for a running n; a spare page follows each
        // sequence, filled with noise, so a wrong lookup reads the wrong values rather than zeros.
        let pages_of: Vec<usize> = lens_k.iter().map(|&l| l.div_ceil(page_size)).collect();
        let num_pages = pages_of.iter().map(|n| n + 1).sum::<usize>();
        let mut perm: Vec<usize> = (0..num_pages).collect();
        for i in (1..num_pages).rev() {
            let j = (rng.normal_vec(1, 1.0)[0].abs() * 1e6) as usize % (i + 1);
            perm.swap(i, j);
        }
        let max_pages = pages_of.iter().copied().max().unwrap_or(0) + 1;
        let mut table = vec![u32::MAX; lens_k.len() * max_pages];
        let (mut k_host, mut v_host) = (
            rng.tensor((num_pages, page_size, heads_kv, head_dim), 1.0, dtype, &Device::Cpu)?,
            rng.tensor((num_pages, page_size, heads_kv, head_dim), 1.0, dtype, &Device::Cpu)?,
        );
        let (mut next, mut start) = (0, 0);
        for (b, &len) in lens_k.iter().enumerate() {
            for p in 0..pages_of[b] {
                let page = perm[next];
                next += 1;
                table[b * max_pages + p] = page as u32;
                let rows = (len - p * page_size).min(page_size);
                let src = |t: &Tensor| -> Result<Tensor> {
                    t.to_device(&Device::Cpu)?.narrow(0, start + p * page_size, rows)?.unsqueeze(0)
                };
                k_host = k_host.slice_assign(&[page..page + 1, 0..rows, 0..heads_kv, 0..head_dim], &src(&k)?)?;
                v_host = v_host.slice_assign(&[page..page + 1, 0..rows, 0..heads_kv, 0..head_dim], &src(&v)?)?;
            }
            next += 1; // the spare page
            start += len;
        }
        let lens_k_u32: Vec<u32> = lens_k.iter().map(|&l| l as u32).collect();
        Ok(Self {
            lens_q: lens_q.to_vec(),
            lens_k: lens_k.to_vec(),
            q,
            k,
            v,
            cu_q,
            cu_k,
            k_pages: k_host.to_device(dev)?,
            v_pages: v_host.to_device(dev)?,
            block_table: Tensor::from_vec(table, (lens_k.len(), max_pages), dev)?,
            seqlens_k: Tensor::new(lens_k_u32.as_slice(), dev)?,
        })
    }

    pub fn paged(&self) -> candle_fa2::PagedKv<'_> {
        candle_fa2::PagedKv { k_pages: &self.k_pages, v_pages: &self.v_pages, block_table: &self.block_table }
    }

    /// Sequence b's q, k, v as (1, len, heads, head_dim) tensors on the CPU.
    pub fn sequence(&self, b: usize) -> Result<(Tensor, Tensor, Tensor)> {
        let (q0, k0): (usize, usize) = (self.lens_q[..b].iter().sum(), self.lens_k[..b].iter().sum());
        let part =
            |t: &Tensor, start: usize, len: usize| t.to_device(&Device::Cpu)?.narrow(0, start, len)?.unsqueeze(0);
        Ok((part(&self.q, q0, self.lens_q[b])?, part(&self.k, k0, self.lens_k[b])?, part(&self.v, k0, self.lens_k[b])?))
    }

    /// A varlen result, out (total_q, heads_q, head_dim) and LSE (heads_q, total_q), held to the reference
    /// sequence by sequence. Returns the largest error.
    #[track_caller]
    pub fn check(&self, out: &Tensor, lse: &Tensor, opts: &AttnOptions, what: &str) -> Result<f64> {
        assert_eq!(out.dims(), self.q.dims(), "{what}: output shape");
        assert_eq!(lse.dims(), [self.q.dim(1)?, self.q.dim(0)?], "{what}: lse shape");
        let mut worst = 0f64;
        let mut q0 = 0;
        for b in 0..self.lens_q.len() {
            let (q_b, k_b, v_b) = self.sequence(b)?;
            let lq = self.lens_q[b];
            let (got, got_lse) = (out.narrow(0, q0, lq)?.unsqueeze(0)?, lse.narrow(1, q0, lq)?.unsqueeze(0)?);
            let what = format!("{what} sequence {b} ({lq} queries, {} keys)", self.lens_k[b]);
            worst = worst.max(check_sequence(&got, &got_lse, &q_b, &k_b, &v_b, opts, &what)?);
            q0 += lq;
        }
        Ok(worst)
    }
}
