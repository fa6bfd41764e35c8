//! Varlen rows, paged K/V and the paged-cache write on the GPU (feature `cuda`; compiled in CI, run on the
//! device by scripts/gpu_run.sh): one launch per call, held to the f64 reference sequence by sequence, the
//! varlen backward against each sequence's dense backward, and device-side clamping of bad offsets, counts
//! and page numbers (the sanitizer test).
#![cfg(feature = "cuda")]

pub mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_fa2::{
    flash_attn, flash_attn_paged_with_lse, flash_attn_varlen, flash_attn_varlen_paged_with_lse,
    flash_attn_varlen_with_lse, reference, write_kv_pages, AttnOptions, PagedKv,
};
use common::cuda::{gpu, opts_on_cpu, poison_pool};
use common::forward::{check_kvcache, check_sequence};
use common::inputs::Rng;
use common::ragged::Ragged;
use common::tolerance::{rel_err, CUDA_VS_CPU_GRAD, SMOKE};

fn variants(dev: &Device, heads_q: usize) -> Result<Vec<AttnOptions>> {
    let slopes: Vec<f32> = (0..heads_q).map(|h| 0.5 / (h + 1) as f32).collect();
    Ok(vec![
        AttnOptions::causal(),
        AttnOptions::default(),
        AttnOptions::causal().with_window(Some(40), None),
        AttnOptions::default().with_window(Some(6), Some(3)).with_softcap(5.0),
        AttnOptions::causal().with_alibi_slopes(Tensor::new(slopes.as_slice(), dev)?),
    ])
}

/// Long and short sequences in one launch (0 and 1 rows, 0 keys, tile edges), every option, GQA and MQA,
/// several head dims, f16 and bf16; also batches whose longest sequence has <= 16 rows (the decode kernel).
#[test]
fn varlen_matches_reference() -> Result<()> {
    let dev = gpu();
    let long = ([0usize, 1, 17, 200, 5, 130, 64], [3usize, 1, 17, 300, 0, 130, 64]);
    let short = ([1usize, 0, 16, 3, 1], [700usize, 5, 16, 1, 0]);
    for (i, (d, hq, hkv)) in [(64, 8, 2), (128, 8, 1), (256, 4, 4), (96, 4, 2)].into_iter().enumerate() {
        let dtype = if i % 2 == 0 { DType::BF16 } else { DType::F16 };
        for (lens_q, lens_k) in [(&long.0[..], &long.1[..]), (&short.0[..], &short.1[..])] {
            let r = Ragged::new(&mut Rng::new(2000 + i as u64), lens_q, lens_k, (hq, hkv, d), 16, dtype, &dev)?;
            let (max_q, max_k) = (*lens_q.iter().max().unwrap(), *lens_k.iter().max().unwrap());
            for (j, opts) in variants(&dev, hq)?.iter().enumerate() {
                poison_pool(&dev, 1 << 22)?;
                let (out, lse) = flash_attn_varlen_with_lse(&r.q, &r.k, &r.v, &r.cu_q, &r.cu_k, max_q, max_k, opts)?;
                let what = format!("d {d} {dtype:?} max_q {max_q} variant {j}");
                let e = r.check(&out, &lse, &opts_on_cpu(opts)?, &what)?;
                eprintln!("{what}: {e:.2e}");
            }
        }
    }
    Ok(())
}

/// Paged K/V with shuffled pages at page sizes 1 to 256: varlen prefill against the cache (prefill kernel),
/// short varlen rows and fixed-length decode (decode kernel), forced split counts.
#[test]
fn paged_matches_reference() -> Result<()> {
    let dev = gpu();
    let (lens_q, lens_k) = ([0usize, 1, 40, 100, 7], [5usize, 1, 300, 100, 0]);
    for (i, page_size) in [1usize, 7, 16, 32, 64, 128, 256].into_iter().enumerate() {
        let dtype = if i % 2 == 0 { DType::BF16 } else { DType::F16 };
        let r = Ragged::new(&mut Rng::new(2100 + i as u64), &lens_q, &lens_k, (8, 2, 128), page_size, dtype, &dev)?;
        for (j, opts) in variants(&dev, 8)?.iter().enumerate() {
            poison_pool(&dev, 1 << 22)?;
            let what = format!("page {page_size} variant {j}");
            let (out, lse) = flash_attn_varlen_paged_with_lse(&r.q, &r.cu_q, 100, &r.paged(), &r.seqlens_k, opts)?;
            r.check(&out, &lse, &opts_on_cpu(opts)?, &what)?;
        }
        for (sq, splits) in [(1, None), (1, Some(1)), (1, Some(7)), (4, None)] {
            let q = Rng::new(2200).tensor((lens_k.len(), sq, 8, 128), 1.0, dtype, &dev)?;
            let opts = AttnOptions { num_splits: splits, ..AttnOptions::causal() };
            poison_pool(&dev, 1 << 22)?;
            let (out, lse) = flash_attn_paged_with_lse(&q, &r.paged(), &r.seqlens_k, &opts)?;
            for b in 0..lens_k.len() {
                let (_, k_b, v_b) = r.sequence(b)?;
                let what = format!("page {page_size} decode sq {sq} splits {splits:?} sequence {b}");
                let q_b = q.narrow(0, b, 1)?.to_device(&Device::Cpu)?;
                check_sequence(&out.narrow(0, b, 1)?, &lse.narrow(0, b, 1)?, &q_b, &k_b, &v_b, &opts, &what)?;
            }
        }
    }
    Ok(())
}

/// Gradients of the varlen op (one backward launch) against each sequence's dense call on the GPU, both
/// backward modes; two runs give the same gradients.
#[test]
fn varlen_backward_matches_each_sequence() -> Result<()> {
    for (i, (d, hq, hkv)) in [(64, 8, 2), (128, 4, 4), (256, 4, 1)].into_iter().enumerate() {
        varlen_backward_case((hq, hkv, d), DType::BF16, 2300 + i as u64)?;
    }
    Ok(())
}

/// [`varlen_backward_matches_each_sequence`] on one (heads_q, heads_kv, head_dim) and dtype.
fn varlen_backward_case((hq, hkv, d): (usize, usize, usize), dtype: DType, seed: u64) -> Result<()> {
    let dev = gpu();
    let (lens_q, lens_k) = ([0usize, 1, 70, 200, 5, 130], [3usize, 1, 70, 260, 0, 128]);
    let r = Ragged::new(&mut Rng::new(seed), &lens_q, &lens_k, (hq, hkv, d), 16, dtype, &dev)?;
    for dq_atomics in [false, true] {
        let opts = AttnOptions::causal().with_window(Some(90), None).with_dq_atomics(dq_atomics);
        let weights = Rng::new(7).tensor((1, r.q.dim(0)?, hq, d), 1.0, dtype, &dev)?.squeeze(0)?;
        let run = || -> Result<Vec<Tensor>> {
            let (q, k, v) = (Var::from_tensor(&r.q)?, Var::from_tensor(&r.k)?, Var::from_tensor(&r.v)?);
            let out = flash_attn_varlen(&q, &k, &v, &r.cu_q, &r.cu_k, 200, 260, &opts)?;
            let g = (out * &weights)?.to_dtype(DType::F32)?.sum_all()?.backward()?;
            Ok([&q, &k, &v].iter().map(|x| g.get(x).expect("a gradient").clone()).collect())
        };
        poison_pool(&dev, 1 << 22)?;
        let grads = run()?;
        if !dq_atomics {
            for (a, b) in grads.iter().zip(run()?) {
                assert_eq!(reference::max_abs_diff(a, &b)?, 0.0, "d {d} {dtype:?}: two runs differ");
            }
        }
        let (mut q0, mut k0) = (0, 0);
        for (b, (&lq, &lk)) in lens_q.iter().zip(&lens_k).enumerate() {
            let rows = [(q0, lq), (k0, lk), (k0, lk)];
            if lq > 0 && lk > 0 {
                let part = |t: &Tensor, (start, len): (usize, usize)| t.narrow(0, start, len)?.unsqueeze(0);
                let (q, k, v) = (
                    Var::from_tensor(&part(&r.q, rows[0])?)?,
                    Var::from_tensor(&part(&r.k, rows[1])?)?,
                    Var::from_tensor(&part(&r.v, rows[2])?)?,
                );
                let out = flash_attn(&q, &k, &v, &opts)?;
                let g = (out * part(&weights, rows[0])?)?.to_dtype(DType::F32)?.sum_all()?.backward()?;
                for (n, x) in [&q, &k, &v].into_iter().enumerate() {
                    let want = g.get(x).expect("a gradient");
                    let got = part(&grads[n], rows[n])?;
                    let diff = rel_err(&got, want)?;
                    assert!(
                        diff < CUDA_VS_CPU_GRAD,
                        "d {d} {dtype:?} atomics {dq_atomics} sequence {b} grad {n}: {diff:.3e}"
                    );
                }
            } else {
                for (n, &(start, len)) in rows.iter().enumerate().filter(|(_, r)| r.1 > 0) {
                    let part = grads[n].narrow(0, start, len)?.to_dtype(DType::F32)?;
                    let all_zero = part.flatten_all()?.to_vec1::<f32>()?.iter().all(|&x| x == 0.0);
                    assert!(all_zero, "d {d} {dtype:?} sequence {b}: grad {n} of an empty sequence");
                }
            }
            q0 += lq;
            k0 += lk;
        }
    }
    Ok(())
}

/// Varlen rows with head dims that are not multiples of 8, in f32 (q, k, v fitted inside the op:
/// src/kernel_fit.rs), prefill and decode-length batches, every option: rule 1, rule 5 for f32.
#[test]
fn varlen_odd_head_dims_and_f32() -> Result<()> {
    let dev = gpu();
    let long = ([0usize, 1, 17, 200, 5, 130, 64], [3usize, 1, 17, 300, 0, 130, 64]);
    let short = ([1usize, 0, 16, 3, 1], [700usize, 5, 16, 1, 0]);
    let cases = [
        (33, 8, 2, DType::BF16),
        (59, 4, 4, DType::F16),
        (111, 8, 1, DType::BF16),
        (59, 4, 2, DType::F32),
        (128, 8, 2, DType::F32),
        (512, 4, 2, DType::BF16),
        (301, 4, 1, DType::F16),
    ];
    for (i, (d, hq, hkv, dtype)) in cases.into_iter().enumerate() {
        for (lens_q, lens_k) in [(&long.0[..], &long.1[..]), (&short.0[..], &short.1[..])] {
            let r = Ragged::new(&mut Rng::new(2700 + i as u64), lens_q, lens_k, (hq, hkv, d), 16, dtype, &dev)?;
            let (max_q, max_k) = (*lens_q.iter().max().unwrap(), *lens_k.iter().max().unwrap());
            for (j, opts) in variants(&dev, hq)?.iter().enumerate() {
                poison_pool(&dev, 1 << 22)?;
                let (out, lse) = flash_attn_varlen_with_lse(&r.q, &r.k, &r.v, &r.cu_q, &r.cu_k, max_q, max_k, opts)?;
                let what = format!("d {d} {dtype:?} max_q {max_q} variant {j}");
                assert_eq!(out.dtype(), dtype, "{what}: output dtype");
                let e = r.check(&out, &lse, &opts_on_cpu(opts)?, &what)?;
                eprintln!("{what}: {e:.2e}");
            }
        }
    }
    Ok(())
}

/// Paged K/V of a head_dim off the multiples of 8, or in f32: every call copies and fits all the pages.
/// Varlen prefill against the cache and fixed-length decode, two page sizes, forced splits.
#[test]
fn paged_odd_head_dims_and_f32() -> Result<()> {
    let dev = gpu();
    let (lens_q, lens_k) = ([0usize, 1, 40, 100, 7], [5usize, 1, 300, 100, 0]);
    for (i, (d, dtype, page_size)) in
        [(59, DType::BF16, 16), (111, DType::F16, 7), (33, DType::F32, 16), (512, DType::BF16, 16)]
            .into_iter()
            .enumerate()
    {
        let r = Ragged::new(&mut Rng::new(2800 + i as u64), &lens_q, &lens_k, (8, 2, d), page_size, dtype, &dev)?;
        for (j, opts) in variants(&dev, 8)?.iter().enumerate() {
            poison_pool(&dev, 1 << 22)?;
            let what = format!("d {d} {dtype:?} page {page_size} variant {j}");
            let (out, lse) = flash_attn_varlen_paged_with_lse(&r.q, &r.cu_q, 100, &r.paged(), &r.seqlens_k, opts)?;
            r.check(&out, &lse, &opts_on_cpu(opts)?, &what)?;
        }
        for (sq, splits) in [(1, None), (1, Some(7)), (4, None)] {
            let q = Rng::new(2900).tensor((lens_k.len(), sq, 8, d), 1.0, dtype, &dev)?;
            let opts = AttnOptions { num_splits: splits, ..AttnOptions::causal() };
            poison_pool(&dev, 1 << 22)?;
            let (out, lse) = flash_attn_paged_with_lse(&q, &r.paged(), &r.seqlens_k, &opts)?;
            assert_eq!((out.dims(), out.dtype()), (q.dims(), dtype), "d {d} {dtype:?} decode sq {sq}");
            for b in 0..lens_k.len() {
                let (_, k_b, v_b) = r.sequence(b)?;
                let what = format!("d {d} {dtype:?} page {page_size} decode sq {sq} splits {splits:?} sequence {b}");
                let q_b = q.narrow(0, b, 1)?.to_device(&Device::Cpu)?;
                check_sequence(&out.narrow(0, b, 1)?, &lse.narrow(0, b, 1)?, &q_b, &k_b, &v_b, &opts, &what)?;
            }
        }
    }
    Ok(())
}

/// The varlen backward with head dims off the multiples of 8 and in f32: dq, dk, dv narrowed back (and
/// widened to f32) against each sequence's dense call, as [`varlen_backward_matches_each_sequence`].
#[test]
fn varlen_backward_odd_head_dims_and_f32() -> Result<()> {
    let cases = [
        ((8, 2, 59), DType::BF16),
        ((4, 4, 33), DType::F16),
        ((4, 1, 111), DType::BF16),
        ((4, 2, 59), DType::F32),
        ((4, 2, 512), DType::BF16),
    ];
    for (i, (shape, dtype)) in cases.into_iter().enumerate() {
        varlen_backward_case(shape, dtype, 3000 + i as u64)?;
    }
    Ok(())
}

/// The CUDA cache write agrees with the CPU one, slot -1 skipped, strided sources read in place; rows of
/// an odd head_dim in f16/bf16 (2-byte words) as well as 4-byte ones.
#[test]
fn write_kv_pages_matches_cpu() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(2400);
    for (dtype, d) in [(DType::BF16, 64), (DType::F32, 64), (DType::BF16, 33), (DType::F16, 59), (DType::F32, 33)] {
        let k_pages = rng.tensor((6, 16, 4, d), 1.0, dtype, &Device::Cpu)?;
        let v_pages = rng.tensor((6, 16, 4, d), 1.0, dtype, &Device::Cpu)?;
        let k_new = rng.tensor((1, 4, 9, d), 1.0, dtype, &Device::Cpu)?.squeeze(0)?.transpose(0, 1)?;
        let v_new = rng.tensor((1, 9, 4, d), 1.0, dtype, &Device::Cpu)?.squeeze(0)?;
        let slots = Tensor::new(&[5i64, 95, -1, 16, 17, 0, 40, 41, 80], &Device::Cpu)?;
        let (kg, vg) = (k_pages.to_device(&dev)?, v_pages.to_device(&dev)?);
        write_kv_pages(&k_new.to_device(&dev)?, &v_new.to_device(&dev)?, &kg, &vg, &slots.to_device(&dev)?)?;
        write_kv_pages(&k_new, &v_new, &k_pages, &v_pages, &slots)?;
        assert_eq!(reference::max_abs_diff(&kg, &k_pages)?, 0.0, "{dtype:?} d{d} k pages");
        assert_eq!(reference::max_abs_diff(&vg, &v_pages)?, 0.0, "{dtype:?} d{d} v pages");
    }
    Ok(())
}

/// Small shapes for compute-sanitizer: varlen forward and backward, paged prefill and decode, and the
/// values only the device sees out of range (offsets past the tensors, counts past the block table, page
/// numbers past the cache, slots past the cache): the kernels must clamp or skip them, never read or write
/// outside. Compared with the CPU op where the inputs are valid.
#[test]
fn ragged_sanitizer_shapes() -> Result<()> {
    let dev = gpu();
    let (lens_q, lens_k) = ([0usize, 3, 20, 1], [2usize, 3, 33, 0]);
    for d in [64, 128] {
        let cpu = Ragged::new(&mut Rng::new(2500), &lens_q, &lens_k, (4, 2, d), 8, DType::BF16, &Device::Cpu)?;
        let r = Ragged::new(&mut Rng::new(2500), &lens_q, &lens_k, (4, 2, d), 8, DType::BF16, &dev)?;
        let opts = AttnOptions::causal();
        let want = flash_attn_varlen(&cpu.q, &cpu.k, &cpu.v, &cpu.cu_q, &cpu.cu_k, 20, 33, &opts)?;
        let (q, k, v) = (Var::from_tensor(&r.q)?, Var::from_tensor(&r.k)?, Var::from_tensor(&r.v)?);
        let got = flash_attn_varlen(&q, &k, &v, &r.cu_q, &r.cu_k, 20, 33, &opts)?;
        assert!(reference::max_abs_diff(&got, &want)? < SMOKE, "d {d} varlen");
        got.to_dtype(DType::F32)?.sum_all()?.backward()?;
        let got = flash_attn_varlen_paged_with_lse(&r.q, &r.cu_q, 20, &r.paged(), &r.seqlens_k, &opts)?.0;
        assert!(reference::max_abs_diff(&got, &want)? < SMOKE, "d {d} paged prefill");
        let q1 = r.q.narrow(0, 0, 4)?.unsqueeze(1)?;
        let want1 = flash_attn_paged_with_lse(&q1.to_device(&Device::Cpu)?, &cpu.paged(), &cpu.seqlens_k, &opts)?.0;
        let got1 = flash_attn_paged_with_lse(&q1, &r.paged(), &r.seqlens_k, &opts)?.0;
        assert!(reference::max_abs_diff(&got1, &want1)? < SMOKE, "d {d} paged decode");

        // Out of range on the device: results are unspecified but finite, and nothing outside is touched.
        let u32s = |x: &[u32]| Tensor::new(x, &dev);
        let bad_cu = u32s(&[0, 3, 1000, 7, u32::MAX])?;
        flash_attn_varlen(&r.q, &r.k, &r.v, &bad_cu, &bad_cu, 20, 33, &opts)?;
        let bad_table = Tensor::full(1_000_000u32, r.block_table.dims(), &dev)?;
        let kv = PagedKv { k_pages: &r.k_pages, v_pages: &r.v_pages, block_table: &bad_table };
        let huge = u32s(&[u32::MAX, 5, 100_000, 1])?;
        flash_attn_varlen_paged_with_lse(&r.q, &r.cu_q, 20, &kv, &huge, &opts)?;
        flash_attn_paged_with_lse(&q1, &kv, &huge, &opts)?;
        flash_attn_paged_with_lse(&q1, &r.paged(), &huge, &opts)?;
        let slots = Tensor::new(&[0i64, 1 << 40, -5, 3], &dev)?;
        write_kv_pages(&r.k.narrow(0, 0, 4)?, &r.v.narrow(0, 0, 4)?, &r.k_pages, &r.v_pages, &slots)?;
        dev.synchronize()?;
    }
    Ok(())
}

/// `flash_attn_kvcache` with more than 16 query rows runs the prefill kernel with the per-sequence key
/// counts read on the device (the decode kernel below 17 rows).
#[test]
fn kvcache_long_chunk_on_the_prefill_kernel() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(2600);
    let lens = [0u32, 40, 333, 64, 1000];
    let k_cache = rng.tensor((5, 1024, 2, 128), 1.0, DType::BF16, &dev)?;
    let v_cache = rng.tensor((5, 1024, 2, 128), 1.0, DType::BF16, &dev)?;
    for sq in [17, 40] {
        let q = rng.tensor((5, sq, 8, 128), 1.0, DType::BF16, &dev)?;
        for opts in [AttnOptions::causal(), AttnOptions::default().with_window(Some(50), Some(5))] {
            poison_pool(&dev, 1 << 22)?;
            check_kvcache(&q, &k_cache, &v_cache, &lens, &opts, &format!("sq {sq}"))?;
        }
    }
    Ok(())
}
