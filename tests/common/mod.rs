//! Shared by the CPU and GPU test suites: seeded random inputs and the tolerance rule.
#![allow(dead_code)]

use candle_core::{DType, Device, Result, Tensor, D};
use candle_fa2::{flash_attn_with_lse, naive, reference, AttnOptions};

/// SplitMix64 + Box-Muller: seeded normal samples, so a failure reproduces (candle's CPU randn is not seeded).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal_vec(&mut self, n: usize, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let (u1, u2) = (self.uniform(), self.uniform());
                (std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
            })
            .collect()
    }

    /// A (d0, d1, d2, d3) tensor of N(0, std²) samples in `dtype` on `dev`.
    pub fn tensor(
        &mut self,
        shape: (usize, usize, usize, usize),
        std: f64,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        Tensor::from_vec(self.normal_vec(n, std), shape, &Device::Cpu)?.to_dtype(dtype)?.to_device(dev)
    }
}

/// One attention problem: q (b, sq, hq, d), k/v (b, sk, hkv, d).
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub batch: usize,
    pub seqlen_q: usize,
    pub seqlen_k: usize,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
}

impl Case {
    pub fn new(
        batch: usize,
        seqlen_q: usize,
        seqlen_k: usize,
        heads_q: usize,
        heads_kv: usize,
        head_dim: usize,
    ) -> Self {
        Self { batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim }
    }

    /// Fresh q, k, v. With `transposed`, each is a (b, s, h, d) view of a contiguous (b, h, s, d) tensor,
    /// as models that keep heads before the sequence produce.
    pub fn inputs(
        &self,
        rng: &mut Rng,
        dtype: DType,
        dev: &Device,
        transposed: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let make = |rng: &mut Rng, s: usize, h: usize| -> Result<Tensor> {
            if transposed {
                rng.tensor((self.batch, h, s, self.head_dim), 1.0, dtype, dev)?.transpose(1, 2)
            } else {
                rng.tensor((self.batch, s, h, self.head_dim), 1.0, dtype, dev)
            }
        };
        let q = make(rng, self.seqlen_q, self.heads_q)?;
        let k = make(rng, self.seqlen_k, self.heads_kv)?;
        let v = make(rng, self.seqlen_k, self.heads_kv)?;
        Ok((q, k, v))
    }
}

/// The error floor added to twice the naive error: what rounding the output to `dtype` alone can cost.
pub fn floor(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 1e-3,
        _ => 4e-3, // bf16: 8 mantissa bits, outputs of magnitude up to ~1
    }
}

pub struct Errors {
    pub ours: f64,
    pub naive: f64,
    pub lse: f64,
}

/// The tolerance rule: the op's max error against the f64 reference is at most twice that of candle's
/// softmax-matmul attention in the same dtype, plus `floor(dtype)`; its LSE agrees with the reference's.
pub fn check(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions, what: &str) -> Result<Errors> {
    let (out, lse) = flash_attn_with_lse(q, k, v, opts)?;
    assert_eq!(out.dims(), q.dims(), "{what}: output shape");
    assert_eq!(out.dtype(), q.dtype(), "{what}: output dtype");
    let (want, want_lse) = reference::attention(q, k, v, opts)?;
    let out64 = out.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let values = out64.flatten_all()?.to_vec1::<f64>()?;
    assert!(values.iter().all(|x| x.is_finite()), "{what}: non-finite output");
    let ours = reference::max_abs_diff(&out64, &want)?;
    let naive_out = naive::attention(q, k, v, opts)?;
    let naive_err = reference::max_abs_diff(&naive_out, &want)?;
    let lse = lse.to_device(&Device::Cpu)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let want_lse = want_lse.flatten_all()?.to_vec1::<f64>()?;
    let mut lse_err = 0f64;
    for (i, (a, b)) in lse.iter().zip(&want_lse).enumerate() {
        if b.is_infinite() {
            assert_eq!(a, b, "{what}: lse[{i}]");
        } else {
            lse_err = lse_err.max((a - b).abs());
        }
    }
    // In f32 the baseline is itself held to the reference, so that a broken softmax-matmul path cannot
    // loosen the rule it sets. (In f16/bf16 its error is the point: with large scores it is large.)
    if q.dtype() == DType::F32 {
        assert!(naive_err <= 1e-3, "{what}: the softmax-matmul baseline is off by {naive_err:.3e}");
    }
    let bound = 2.0 * naive_err + floor(q.dtype());
    assert!(ours <= bound, "{what}: error {ours:.3e} > bound {bound:.3e} (naive {naive_err:.3e})");
    assert!(lse_err <= 1e-3, "{what}: lse error {lse_err:.3e}");
    Ok(Errors { ours, naive: naive_err, lse: lse_err })
}

/// softmax(q kᵀ · scale [softcap] [- alibi] [masked]) v with ops that all have a backward, in q's dtype.
pub fn differentiable_attention(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<Tensor> {
    let dev = q.device();
    let (b, sq, hq, d) = q.dims4()?;
    let (_, sk, hkv, _) = k.dims4()?;
    // (b, sk, hkv, d) -> (b, hq, sk, d): each KV head repeated for the query heads of its group.
    let repeat_kv = |t: &Tensor| -> Result<Tensor> {
        t.transpose(1, 2)?.unsqueeze(2)?.broadcast_as((b, hkv, hq / hkv, sk, d))?.reshape((b, hq, sk, d))
    };
    let q = q.transpose(1, 2)?.contiguous()?;
    let (k, v) = (repeat_kv(k)?, repeat_kv(v)?);
    let scale = opts.softmax_scale.unwrap_or(1.0 / (d as f32).sqrt()) as f64;
    let mut s = (q.matmul(&k.t()?)? * scale)?;
    if let Some(cap) = opts.softcap {
        s = ((s / cap as f64)?.tanh()? * cap as f64)?;
    }
    let offset = sk as i64 - sq as i64;
    let dist = |i: usize, j: usize| j as i64 - i as i64 - offset;
    if let Some(slopes) = &opts.alibi_slopes {
        let a: Vec<f32> = (0..sq).flat_map(|i| (0..sk).map(move |j| dist(i, j).abs() as f32)).collect();
        let a = Tensor::from_vec(a, (1, 1, sq, sk), dev)?.to_dtype(s.dtype())?;
        let slopes = slopes.to_dtype(s.dtype())?.reshape((1, hq, 1, 1))?;
        s = s.broadcast_sub(&a.broadcast_mul(&slopes)?)?;
    }
    let right = if opts.causal { Some(opts.window_right.map_or(0, |r| r.min(0))) } else { opts.window_right };
    let visible: Vec<u8> = (0..sq)
        .flat_map(|i| {
            (0..sk).map(move |j| {
                (opts.window_left.is_none_or(|l| dist(i, j) >= -l) && right.is_none_or(|r| dist(i, j) <= r)) as u8
            })
        })
        .collect();
    let visible = Tensor::from_vec(visible, (1, 1, sq, sk), dev)?.broadcast_as(s.shape())?;
    let neg_inf = Tensor::full(f32::NEG_INFINITY, s.shape(), dev)?.to_dtype(s.dtype())?;
    let p = candle_nn::ops::softmax(&visible.where_cond(&s, &neg_inf)?, D::Minus1)?;
    p.matmul(&v)?.transpose(1, 2)
}

/// One device for a whole GPU suite: tensors of two `Device::new_cuda(0)` instances cannot be mixed.
#[cfg(feature = "cuda")]
pub fn gpu() -> Device {
    static GPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Device::new_cuda(0).expect("a CUDA device")).clone()
}

/// The op on the GPU against the CPU op on the same (CPU) inputs, and two GPU runs against each other,
/// which must be bitwise equal. Returns the inputs on the GPU.
#[cfg(feature = "cuda")]
pub fn gpu_matches_cpu_and_repeats(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<[Tensor; 3]> {
    let dev = gpu();
    let on_cpu = candle_fa2::flash_attn(q, k, v, opts)?;
    let (qg, kg, vg) = (q.to_device(&dev)?, k.to_device(&dev)?, v.to_device(&dev)?);
    let first = candle_fa2::flash_attn(&qg, &kg, &vg, opts)?;
    let second = candle_fa2::flash_attn(&qg, &kg, &vg, opts)?;
    assert_eq!(reference::max_abs_diff(&first, &second)?, 0.0, "two runs differ");
    let diff = reference::max_abs_diff(&first, &on_cpu)?;
    // Both round an f32 result to bf16 (one ulp at |o| < 1 is 2^-8); P is rounded to bf16 on the GPU only.
    assert!(diff < 1.6e-2, "cpu vs cuda: {diff}");
    Ok([qg, kg, vg])
}

/// Leaves NaN-filled memory in the device's pool, so an output element a kernel forgets to write shows up
/// as NaN (the checks reject non-finite outputs).
pub fn poison_pool(dev: &Device, elems: usize) -> Result<()> {
    let poison = Tensor::full(f32::NAN, elems, dev)?;
    dev.synchronize()?;
    drop(poison);
    Ok(())
}

/// [`candle_fa2::flash_attn_kvcache_with_lse`] held to the reference sequence by sequence (each over its
/// own `lens[b]` keys) with the rule of [`check`]; a sequence without keys must give zeros and LSE -inf.
/// Returns the largest error seen.
pub fn check_kvcache(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    lens: &[u32],
    opts: &AttnOptions,
    what: &str,
) -> Result<f64> {
    let seqlens = Tensor::new(lens, q.device())?;
    let (out, lse) = candle_fa2::flash_attn_kvcache_with_lse(q, k_cache, v_cache, &seqlens, opts)?;
    assert_eq!(out.dims(), q.dims(), "{what}: output shape");
    let mut worst = 0f64;
    for (b, &len) in lens.iter().enumerate() {
        let what = format!("{what} sequence {b} ({len} keys)");
        let k_b = k_cache.narrow(0, b, 1)?.narrow(1, 0, len as usize)?;
        let v_b = v_cache.narrow(0, b, 1)?.narrow(1, 0, len as usize)?;
        let (got, got_lse) = (out.narrow(0, b, 1)?, lse.narrow(0, b, 1)?);
        worst = worst.max(check_sequence(&got, &got_lse, &q.narrow(0, b, 1)?, &k_b, &v_b, opts, &what)?);
    }
    Ok(worst)
}

/// One sequence's output (1, seqlen_q, heads_q, head_dim) and LSE (1, heads_q, seqlen_q) from a batched call,
/// held to the reference on its own q_b, k_b, v_b (batch 1) with the rule of [`check`]; a sequence without
/// keys must give zeros and LSE -inf. Returns the error.
pub fn check_sequence(
    got: &Tensor,
    got_lse: &Tensor,
    q_b: &Tensor,
    k_b: &Tensor,
    v_b: &Tensor,
    opts: &AttnOptions,
    what: &str,
) -> Result<f64> {
    let got = got.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let got_lse = got_lse.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let values = got.flatten_all()?.to_vec1::<f64>()?;
    if q_b.dim(1)? == 0 {
        assert!(values.is_empty(), "{what}: a sequence without queries has output");
        return Ok(0.0);
    }
    if k_b.dim(1)? == 0 {
        assert!(values.iter().all(|&x| x == 0.0), "{what}: rows without keys are not zero");
        assert!(got_lse.iter().all(|&x| x == f32::NEG_INFINITY), "{what}: lse of rows without keys");
        return Ok(0.0);
    }
    let (want, want_lse) = reference::attention(q_b, k_b, v_b, opts)?;
    assert!(values.iter().all(|x| x.is_finite()), "{what}: non-finite output");
    let ours = reference::max_abs_diff(&got, &want)?;
    let naive_err = reference::max_abs_diff(&naive::attention(q_b, k_b, v_b, opts)?, &want)?;
    let bound = 2.0 * naive_err + floor(q_b.dtype());
    assert!(ours <= bound, "{what}: error {ours:.3e} > bound {bound:.3e} (naive {naive_err:.3e})");
    for (i, (a, w)) in got_lse.iter().zip(want_lse.flatten_all()?.to_vec1::<f64>()?).enumerate() {
        if w.is_infinite() {
            assert_eq!(*a as f64, w, "{what}: lse[{i}]");
        } else {
            assert!((*a as f64 - w).abs() <= 1e-3, "{what}: lse[{i}] {a} vs {w}");
        }
    }
    Ok(ours)
}

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
