//! Varlen rows, paged K/V and the paged-cache write on the CPU, against the f64 reference run sequence by
//! sequence; the varlen backward against each sequence's dense backward; their errors.

pub mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_fa2::{
    compat, flash_attn_paged_with_lse, flash_attn_varlen_paged_with_lse, flash_attn_varlen_with_lse, write_kv_pages,
    AttnOptions, PagedKv,
};
use common::errors::expect_err;
use common::forward::check_sequence;
use common::inputs::Rng;
use common::ragged::Ragged;
use common::tolerance::F32_REORDERED;

const LENS_Q: [usize; 6] = [0, 1, 17, 64, 5, 33];
const LENS_K: [usize; 6] = [3, 1, 17, 80, 0, 40];

fn variants(dev: &Device) -> Result<Vec<AttnOptions>> {
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.1, 0.05], dev)?;
    Ok(vec![
        AttnOptions::causal(),
        AttnOptions::default(),
        AttnOptions::causal().with_window(Some(10), None),
        AttnOptions::default().with_window(Some(6), Some(3)),
        AttnOptions::causal().with_alibi_slopes(slopes).with_softcap(3.0),
    ])
}

/// Sequences of 0 and 1 rows, 0 keys, a tile and more, GQA, every option: each sequence as its own call.
#[test]
fn varlen_matches_each_sequence() -> Result<()> {
    let dev = Device::Cpu;
    let r = Ragged::new(&mut Rng::new(70), &LENS_Q, &LENS_K, (4, 2, 32), 16, DType::F32, &dev)?;
    for (j, opts) in variants(&dev)?.iter().enumerate() {
        let (out, lse) = flash_attn_varlen_with_lse(&r.q, &r.k, &r.v, &r.cu_q, &r.cu_k, 64, 80, opts)?;
        r.check(&out, &lse, opts, &format!("variant {j}"))?;
    }
    // MQA in bf16.
    let r = Ragged::new(&mut Rng::new(71), &LENS_Q, &LENS_K, (4, 1, 64), 16, DType::BF16, &dev)?;
    let (out, lse) = flash_attn_varlen_with_lse(&r.q, &r.k, &r.v, &r.cu_q, &r.cu_k, 64, 80, &AttnOptions::causal())?;
    r.check(&out, &lse, &AttnOptions::causal(), "bf16 mqa")?;
    Ok(())
}

/// Gradients through the varlen op equal those of each sequence's dense call.
#[test]
fn varlen_backward_matches_each_sequence() -> Result<()> {
    let dev = Device::Cpu;
    let r = Ragged::new(&mut Rng::new(72), &LENS_Q, &LENS_K, (4, 2, 32), 16, DType::F32, &dev)?;
    let opts = AttnOptions::causal().with_window(Some(20), None);
    let (q, k, v) = (Var::from_tensor(&r.q)?, Var::from_tensor(&r.k)?, Var::from_tensor(&r.v)?);
    let out = candle_fa2::flash_attn_varlen(&q, &k, &v, &r.cu_q, &r.cu_k, 64, 80, &opts)?;
    let weights = Tensor::randn(0f32, 1.0, out.shape(), &dev)?;
    let grads = (&out * &weights)?.sum_all()?.backward()?;
    let (dq, dk, dv) = (grads.get(&q).unwrap(), grads.get(&k).unwrap(), grads.get(&v).unwrap());
    let (mut q0, mut k0) = (0, 0);
    for b in 0..LENS_Q.len() {
        let (lq, lk) = (LENS_Q[b], LENS_K[b]);
        let (q_b, k_b, v_b) = r.sequence(b)?;
        let (q_b, k_b, v_b) = (Var::from_tensor(&q_b)?, Var::from_tensor(&k_b)?, Var::from_tensor(&v_b)?);
        if lq > 0 && lk > 0 {
            let out_b = candle_fa2::flash_attn(&q_b, &k_b, &v_b, &opts)?;
            let w_b = weights.narrow(0, q0, lq)?.unsqueeze(0)?;
            let g = (&out_b * &w_b)?.sum_all()?.backward()?;
            for (name, got, want) in [
                ("dq", dq.narrow(0, q0, lq)?, g.get(&q_b).unwrap()),
                ("dk", dk.narrow(0, k0, lk)?, g.get(&k_b).unwrap()),
                ("dv", dv.narrow(0, k0, lk)?, g.get(&v_b).unwrap()),
            ] {
                let diff = candle_fa2::reference::max_abs_diff(&got.unsqueeze(0)?, want)?;
                assert!(diff < F32_REORDERED, "sequence {b}: {name} differs by {diff}");
            }
        } else {
            // No query or no key: nothing flows.
            for (name, t) in
                [("dq", dq.narrow(0, q0, lq)?), ("dk", dk.narrow(0, k0, lk)?), ("dv", dv.narrow(0, k0, lk)?)]
            {
                let m = t.abs()?.flatten_all()?.max(0).map_or(0.0, |x| x.to_scalar::<f32>().unwrap_or(0.0));
                assert_eq!(m, 0.0, "sequence {b}: {name} of an empty sequence");
            }
        }
        q0 += lq;
        k0 += lk;
    }
    Ok(())
}

/// Paged K/V (shuffled pages, spare pages between sequences, unused block-table entries naming no page) at
/// page sizes 1, 3 and 16: varlen queries (chunked prefill) and fixed-length queries (decode, appends).
#[test]
fn paged_matches_each_sequence() -> Result<()> {
    let dev = Device::Cpu;
    for page_size in [1, 3, 16] {
        let r = Ragged::new(&mut Rng::new(73), &LENS_Q, &LENS_K, (4, 2, 32), page_size, DType::F32, &dev)?;
        for (j, opts) in variants(&dev)?.iter().enumerate() {
            let what = format!("page {page_size} variant {j}");
            let (out, lse) = flash_attn_varlen_paged_with_lse(&r.q, &r.cu_q, 64, &r.paged(), &r.seqlens_k, opts)?;
            r.check(&out, &lse, opts, &what)?;
        }
        // Decode and a 3-row append: every sequence's newest rows against all its keys.
        for sq in [1, 3] {
            let q = Rng::new(74).tensor((LENS_K.len(), sq, 4, 32), 1.0, DType::F32, &dev)?;
            let opts = AttnOptions::causal();
            let (out, lse) = flash_attn_paged_with_lse(&q, &r.paged(), &r.seqlens_k, &opts)?;
            for b in 0..LENS_K.len() {
                let (_, k_b, v_b) = r.sequence(b)?;
                let what = format!("page {page_size} decode sq {sq} sequence {b}");
                let (got, got_lse) = (out.narrow(0, b, 1)?, lse.narrow(0, b, 1)?);
                check_sequence(&got, &got_lse, &q.narrow(0, b, 1)?, &k_b, &v_b, &opts, &what)?;
            }
        }
    }
    Ok(())
}

/// candle-flash-attn's paged entry point (cumulative key offsets) agrees with flash_attn_varlen_paged.
#[test]
fn compat_paged_matches() -> Result<()> {
    let dev = Device::Cpu;
    let r = Ragged::new(&mut Rng::new(75), &LENS_Q, &LENS_K, (4, 2, 32), 16, DType::F32, &dev)?;
    let scale = 0.2;
    let got = compat::flash_attn_varlen_paged_windowed(
        &r.q,
        &r.k_pages,
        &r.v_pages,
        &r.cu_q,
        &r.cu_k,
        &r.block_table,
        None,
        64,
        80,
        scale,
        None,
        Some(0),
        16,
        Some(5.0),
    )?;
    let opts = AttnOptions::causal().with_softmax_scale(scale).with_softcap(5.0);
    let (want, lse) = flash_attn_varlen_paged_with_lse(&r.q, &r.cu_q, 64, &r.paged(), &r.seqlens_k, &opts)?;
    assert_eq!(candle_fa2::reference::max_abs_diff(&got, &want)?, 0.0);
    r.check(&got, &lse, &opts, "compat")?;
    let varlen = compat::flash_attn_varlen_alibi_windowed_softcap(
        &r.q,
        &r.k,
        &r.v,
        None,
        &r.cu_q,
        &r.cu_k,
        64,
        80,
        scale,
        None,
        Some(0),
        5.0,
    )?;
    assert!(candle_fa2::reference::max_abs_diff(&varlen, &got.to_dtype(DType::F32)?)? < F32_REORDERED);
    Ok(())
}

/// Each token lands in its slot, padding slots (-1) are skipped, other slots keep their values; strided
/// (transposed) new rows are read in place.
#[test]
fn write_kv_pages_places_each_token() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(76);
    let (pages, page_size, heads, d) = (4, 3, 2, 8);
    let k_pages = rng.tensor((pages, page_size, heads, d), 1.0, DType::F32, &dev)?;
    let v_pages = rng.tensor((pages, page_size, heads, d), 1.0, DType::F32, &dev)?;
    let (k_before, v_before) = (k_pages.copy()?, v_pages.copy()?);
    let k_new = rng.tensor((1, heads, 5, d), 1.0, DType::F32, &dev)?.squeeze(0)?.transpose(0, 1)?; // (5, heads, d)
    let v_new = rng.tensor((1, 5, heads, d), 1.0, DType::F32, &dev)?.squeeze(0)?;
    let slots = [7i64, -1, 0, 11, 4];
    write_kv_pages(&k_new, &v_new, &k_pages, &v_pages, &Tensor::new(&slots, &dev)?)?;
    let flat = |t: &Tensor| t.reshape((pages * page_size, heads, d));
    let (k_after, v_after, k_before, v_before) = (flat(&k_pages)?, flat(&v_pages)?, flat(&k_before)?, flat(&v_before)?);
    for slot in 0..pages * page_size {
        let token = slots.iter().position(|&s| s == slot as i64);
        for (after, before, new) in [(&k_after, &k_before, &k_new), (&v_after, &v_before, &v_new)] {
            let want = match token {
                Some(t) => new.get(t)?,
                None => before.get(slot)?,
            };
            assert_eq!(candle_fa2::reference::max_abs_diff(&after.get(slot)?, &want)?, 0.0, "slot {slot}");
        }
    }
    Ok(())
}

/// Bad offsets, tables and counts are errors that name the tensor and the value (the CPU reads them on the
/// host; CUDA clamps instead).
#[test]
fn ragged_errors() -> Result<()> {
    let dev = Device::Cpu;
    let r = Ragged::new(&mut Rng::new(77), &[2, 3], &[4, 5], (2, 1, 16), 4, DType::F32, &dev)?;
    let o = AttnOptions::causal();
    let varlen = |cu_q: &Tensor, cu_k: &Tensor, max_q: usize| {
        flash_attn_varlen_with_lse(&r.q, &r.k, &r.v, cu_q, cu_k, max_q, 5, &o)
    };
    let u32s = |x: &[u32]| Tensor::new(x, &dev);
    expect_err(varlen(&u32s(&[0, 6, 5])?, &r.cu_k, 10), &["must not decrease"]);
    expect_err(varlen(&u32s(&[0, 2, 4])?, &r.cu_k, 3), &["end at 5"]);
    expect_err(varlen(&u32s(&[0, 5])?, &r.cu_k, 5), &["entries"]);
    expect_err(varlen(&r.cu_q, &r.cu_k, 2), &["more than the maximum 2"]);
    expect_err(varlen(&r.cu_q, &r.cu_k, 0), &["max_seqlen_q 0"]);
    expect_err(varlen(&r.cu_q.to_dtype(DType::I64)?, &r.cu_k, 3), &["must be u32"]);
    expect_err(varlen(&u32s(&[])?, &r.cu_k, 3), &["batch + 1"]);
    let q4 = r.q.unsqueeze(0)?;
    expect_err(flash_attn_varlen_with_lse(&q4, &r.k, &r.v, &r.cu_q, &r.cu_k, 3, 5, &o), &["rank 3"]);

    let paged = |table: &Tensor, counts: &Tensor| {
        let kv = PagedKv { k_pages: &r.k_pages, v_pages: &r.v_pages, block_table: table };
        flash_attn_varlen_paged_with_lse(&r.q, &r.cu_q, 3, &kv, counts, &o)
    };
    let table2 = |x: &[u32]| Tensor::from_vec(x.to_vec(), (2, x.len() / 2), &dev);
    let pages = r.k_pages.dim(0)?;
    expect_err(paged(&table2(&[0, 1, 2, pages as u32])?, &r.seqlens_k), &[&format!("names page {pages}")]);
    expect_err(paged(&u32s(&[0, 1])?, &r.seqlens_k), &["block_table must have shape"]);
    expect_err(paged(&r.block_table, &u32s(&[4, 99])?), &["more than its"]);
    expect_err(paged(&r.block_table, &u32s(&[4])?), &["seqlens_k must have shape"]);
    let kv = PagedKv { k_pages: &r.k_pages, v_pages: &r.k_pages.narrow(1, 0, 2)?, block_table: &r.block_table };
    expect_err(flash_attn_paged_with_lse(&r.q.unsqueeze(0)?, &kv, &r.seqlens_k, &o), &["paged v must have"]);

    let compat_call = |mm: Option<&Tensor>, page: usize| {
        compat::flash_attn_varlen_paged_windowed(
            &r.q,
            &r.k_pages,
            &r.v_pages,
            &r.cu_q,
            &r.cu_k,
            &r.block_table,
            mm,
            3,
            5,
            0.25,
            None,
            Some(0),
            page,
            None,
        )
    };
    let ranges = Tensor::zeros((2, 1, 2), DType::I64, &dev)?;
    expect_err(compat_call(Some(&ranges), 4), &["mm_prefix_ranges"]);
    expect_err(compat_call(None, 8), &["page_block_size 8"]);

    let slots = |x: &[i64]| Tensor::new(x, &dev);
    let (new_k, new_v) = (r.k.narrow(0, 0, 2)?, r.v.narrow(0, 0, 2)?);
    let write = |s: &Tensor| write_kv_pages(&new_k, &new_v, &r.k_pages, &r.v_pages, s);
    let capacity = pages * 4;
    expect_err(write(&slots(&[0, capacity as i64])?), &["past the cache"]);
    expect_err(write(&slots(&[0])?), &["k_new must be"]);
    expect_err(write(&u32s(&[0, 1])?), &["must be i64"]);
    Ok(())
}
