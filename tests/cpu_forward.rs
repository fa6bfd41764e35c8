//! The op on CPU against the f64 reference, with the tolerance rule of `common::check`.

pub mod common;

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::{flash_attn, flash_attn_with_lse, AttnOptions};
use common::forward::check;
use common::inputs::{Case, Rng};

const CPU: Device = Device::Cpu;

fn run(case: Case, dtype: DType, opts: &AttnOptions, transposed: bool, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let (q, k, v) = case.inputs(&mut rng, dtype, &CPU, transposed)?;
    let e = check(&q, &k, &v, opts, &format!("{case:?} {dtype:?} {opts:?} transposed={transposed}"))?;
    eprintln!("{case:?} {dtype:?}: ours {:.2e} naive {:.2e} lse {:.2e}", e.ours, e.naive, e.lse);
    Ok(())
}

#[test]
fn seqlens_both_ways_and_odd() -> Result<()> {
    for (i, (sq, sk)) in
        [(1, 1), (7, 7), (113, 203), (203, 113), (1, 1000), (1000, 1000), (64, 256), (65, 257)].into_iter().enumerate()
    {
        for causal in [false, true] {
            let heads = if sq * sk > 100_000 { 1 } else { 2 };
            let opts = AttnOptions::default().with_causal(causal);
            run(Case::new(2, sq, sk, heads, heads, 64), DType::F32, &opts, false, i as u64)?;
        }
    }
    Ok(())
}

#[test]
fn head_dims() -> Result<()> {
    for (i, d) in [32, 40, 64, 80, 96, 128, 160, 192, 256].into_iter().enumerate() {
        run(Case::new(1, 77, 130, 2, 1, d), DType::F32, &AttnOptions::causal(), false, 100 + i as u64)?;
    }
    Ok(())
}

#[test]
fn gqa_and_mqa() -> Result<()> {
    for (i, heads_kv) in [8, 4, 2, 1].into_iter().enumerate() {
        run(Case::new(2, 33, 90, 8, heads_kv, 32), DType::F32, &AttnOptions::causal(), false, 200 + i as u64)?;
        run(Case::new(1, 90, 33, 8, heads_kv, 32), DType::F32, &AttnOptions::default(), false, 210 + i as u64)?;
    }
    Ok(())
}

#[test]
fn windows() -> Result<()> {
    let windows = [
        (Some(0), Some(0)),
        (Some(16), Some(0)),
        (Some(5), Some(9)),
        (None, Some(3)),
        (Some(40), None),
        (Some(7), Some(-2)),
    ];
    for (i, (left, right)) in windows.into_iter().enumerate() {
        for (sq, sk) in [(100, 100), (60, 150), (150, 60)] {
            for causal in [false, true] {
                let opts = AttnOptions::default().with_causal(causal).with_window(left, right);
                run(Case::new(1, sq, sk, 2, 1, 32), DType::F32, &opts, false, 300 + i as u64)?;
            }
        }
    }
    Ok(())
}

#[test]
fn softcap_and_alibi() -> Result<()> {
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.125, 0.0625], &CPU)?;
    let cases = [
        AttnOptions::default().with_softcap(5.0),
        AttnOptions::causal().with_softcap(30.0),
        AttnOptions::default().with_alibi_slopes(slopes.clone()),
        AttnOptions::causal().with_alibi_slopes(slopes.clone()).with_softcap(2.0),
        AttnOptions::default().with_alibi_slopes(slopes).with_window(Some(20), Some(4)),
    ];
    for (i, opts) in cases.iter().enumerate() {
        // A large scale makes the softcap matter.
        let opts = opts.clone().with_softmax_scale(0.6);
        run(Case::new(1, 70, 120, 4, 2, 64), DType::F32, &opts, false, 400 + i as u64)?;
        run(Case::new(1, 120, 70, 4, 2, 64), DType::F32, &opts, false, 410 + i as u64)?;
    }
    Ok(())
}

#[test]
fn half_precision() -> Result<()> {
    for dtype in [DType::F16, DType::BF16] {
        for (i, d) in [64, 80, 128].into_iter().enumerate() {
            run(Case::new(2, 129, 257, 4, 2, d), dtype, &AttnOptions::causal(), false, 500 + i as u64)?;
            run(Case::new(1, 300, 100, 2, 2, d), dtype, &AttnOptions::default(), false, 510 + i as u64)?;
        }
    }
    Ok(())
}

#[test]
fn strided_inputs() -> Result<()> {
    for (i, dtype) in [DType::F32, DType::BF16].into_iter().enumerate() {
        run(Case::new(2, 50, 70, 4, 2, 64), dtype, &AttnOptions::causal(), true, 600 + i as u64)?;
    }
    // A narrowed view: a non-zero start offset and gaps between rows.
    let mut rng = Rng::new(610);
    let big = rng.tensor((1, 40, 3, 96), 1.0, DType::F32, &CPU)?;
    let q = big.narrow(3, 16, 64)?.narrow(1, 3, 30)?;
    let k = big.narrow(3, 8, 64)?;
    let v = big.narrow(3, 32, 64)?;
    check(&q, &k, &v, &AttnOptions::causal(), "narrowed views")?;
    Ok(())
}

#[test]
fn long_sequence() -> Result<()> {
    run(Case::new(1, 1500, 1500, 1, 1, 64), DType::F32, &AttnOptions::causal(), false, 700)
}

#[test]
fn rows_without_keys_are_zero() -> Result<()> {
    // Causal with seqlen_q > seqlen_k: the first 6 query rows see no key.
    let mut rng = Rng::new(800);
    let (q, k, v) = Case::new(1, 10, 4, 1, 1, 32).inputs(&mut rng, DType::F32, &CPU, false)?;
    let (out, lse) = flash_attn_with_lse(&q, &k, &v, &AttnOptions::causal())?;
    let out = out.squeeze(0)?.squeeze(1)?.to_vec2::<f32>()?;
    let lse = lse.flatten_all()?.to_vec1::<f32>()?;
    for i in 0..6 {
        assert!(out[i].iter().all(|&x| x == 0.0), "row {i}: {:?}", out[i]);
        assert_eq!(lse[i], f32::NEG_INFINITY);
    }
    for i in 6..10 {
        assert!(out[i].iter().any(|&x| x != 0.0) && lse[i].is_finite(), "row {i}");
    }
    Ok(())
}

#[test]
fn extreme_scores_stay_finite() -> Result<()> {
    // Scores of magnitude ~1e4: exp overflows unless the running max is subtracted.
    let mut rng = Rng::new(900);
    let case = Case::new(1, 64, 300, 2, 2, 64);
    let q = rng.tensor((1, 64, 2, 64), 30.0, DType::F32, &CPU)?;
    let k = rng.tensor((1, 300, 2, 64), 30.0, DType::F32, &CPU)?;
    let v = rng.tensor((1, 300, 2, 64), 1.0, DType::F32, &CPU)?;
    check(&q, &k, &v, &AttnOptions::causal(), &format!("{case:?} large scores"))?;
    Ok(())
}

#[test]
fn empty_dimensions() -> Result<()> {
    let mut rng = Rng::new(1000);
    let (q, k, v) = Case::new(2, 0, 5, 2, 2, 32).inputs(&mut rng, DType::F32, &CPU, false)?;
    let (out, lse) = flash_attn_with_lse(&q, &k, &v, &AttnOptions::default())?;
    assert_eq!(out.dims(), &[2, 0, 2, 32]);
    assert_eq!(lse.dims(), &[2, 2, 0]);
    let (q, k, v) = Case::new(2, 3, 0, 2, 2, 32).inputs(&mut rng, DType::F32, &CPU, false)?;
    let (out, lse) = flash_attn_with_lse(&q, &k, &v, &AttnOptions::default())?;
    assert_eq!(out.dims(), &[2, 3, 2, 32]);
    assert!(out.flatten_all()?.to_vec1::<f32>()?.iter().all(|&x| x == 0.0));
    assert!(lse.flatten_all()?.to_vec1::<f32>()?.iter().all(|&x| x == f32::NEG_INFINITY));
    let (q, k, v) = Case::new(0, 3, 4, 2, 2, 32).inputs(&mut rng, DType::F32, &CPU, false)?;
    assert_eq!(flash_attn(&q, &k, &v, &AttnOptions::default())?.dims(), &[0, 3, 2, 32]);
    Ok(())
}

#[test]
fn compat_matches_options() -> Result<()> {
    use candle_fa2::compat;
    let mut rng = Rng::new(1100);
    let (q, k, v) = Case::new(1, 40, 60, 4, 2, 32).inputs(&mut rng, DType::F32, &CPU, false)?;
    let scale = 0.3;
    let same = |a: &Tensor, b: &Tensor| -> Result<()> {
        assert_eq!(candle_fa2::reference::max_abs_diff(a, b)?, 0.0);
        Ok(())
    };
    let opts = AttnOptions::causal().with_softmax_scale(scale);
    same(&compat::flash_attn(&q, &k, &v, scale, true)?, &flash_attn(&q, &k, &v, &opts)?)?;
    let opts = AttnOptions::default().with_softmax_scale(scale).with_window(Some(5), Some(2));
    same(&compat::flash_attn_windowed(&q, &k, &v, scale, Some(5), Some(2))?, &flash_attn(&q, &k, &v, &opts)?)?;
    let slopes = Tensor::new(&[0.1f32, 0.2, 0.3, 0.4], &CPU)?;
    let opts = AttnOptions::causal().with_softmax_scale(scale).with_alibi_slopes(slopes.clone());
    same(&compat::flash_attn_alibi(&q, &k, &v, &slopes, scale, true)?, &flash_attn(&q, &k, &v, &opts)?)?;

    // varlen: two sequences packed along the token axis give the per-sequence results.
    let (q2, k2, v2) = Case::new(1, 25, 33, 4, 2, 32).inputs(&mut rng, DType::F32, &CPU, false)?;
    let cat = |a: &Tensor, b: &Tensor| Tensor::cat(&[a.squeeze(0)?, b.squeeze(0)?], 0);
    let cu_q = Tensor::new(&[0u32, 40, 65], &CPU)?;
    let cu_k = Tensor::new(&[0u32, 60, 93], &CPU)?;
    let packed =
        compat::flash_attn_varlen(&cat(&q, &q2)?, &cat(&k, &k2)?, &cat(&v, &v2)?, &cu_q, &cu_k, 40, 60, scale, true)?;
    let opts = AttnOptions::causal().with_softmax_scale(scale);
    let want = cat(&flash_attn(&q, &k, &v, &opts)?, &flash_attn(&q2, &k2, &v2, &opts)?)?;
    same(&packed, &want)
}

/// The FP8 entry point on the CPU: e4m3 widened exactly to f32, so only the bf16 output rounds (rule 1
/// with the bf16 floor alone); descales applied; the dtype and descale errors name the problem.
#[test]
fn fp8_widened_on_cpu() -> Result<()> {
    use candle_fa2::{flash_attn_fp8, Fp8Descale};
    use common::errors::expect_err;
    use common::{fp8, tolerance};
    let mut rng = Rng::new(900);
    for (i, (case, opts)) in [
        (Case::new(2, 37, 70, 4, 2, 64), AttnOptions::causal()),
        (Case::new(1, 70, 37, 2, 2, 72), AttnOptions::default().with_softcap(5.0)),
        (Case::new(1, 1, 130, 4, 1, 128), AttnOptions::default().with_window(Some(40), None)),
    ]
    .into_iter()
    .enumerate()
    {
        let [q, k, v] = fp8::inputs(&case, &mut rng, &CPU, i % 2 == 1)?;
        let what = format!("fp8 cpu {case:?} {opts:?}");
        let e = fp8::check(&q, &k, &v, &opts, &what)?;
        eprintln!("{what}: ours {:.2e} e4m3-P reference {:.2e}", e.ours, e.emulated);
        tolerance::assert_forward(e.ours, 0.0, DType::BF16, &what);
    }
    let [q, k, v] = fp8::inputs(&Case::new(1, 8, 8, 2, 2, 32), &mut rng, &CPU, false)?;
    let opts = AttnOptions::default();
    expect_err(
        flash_attn_fp8(&q.to_dtype(DType::BF16)?, &k, &v, &Fp8Descale::default(), &opts),
        &["q has dtype BF16", "F8E4M3"],
    );
    expect_err(flash_attn_fp8(&q, &k, &v, &Fp8Descale { v: 0.0, ..Fp8Descale::default() }, &opts), &["descale.v", "0"]);
    expect_err(
        flash_attn_fp8(&q, &k, &v, &Fp8Descale { q: f32::NAN, ..Fp8Descale::default() }, &opts),
        &["descale.q", "NaN"],
    );
    expect_err(candle_fa2::quantize_fp8(&q, 1.0), &["quantize_fp8", "F8E4M3"]);
    // Per-head descales: dtype, shape and values named.
    use candle_fa2::{flash_attn_fp8_per_head, Fp8HeadDescale};
    let ones = |b: usize, h: usize| Tensor::ones((b, h), DType::F32, &CPU);
    let heads = Fp8HeadDescale { q: ones(1, 2)?, k: ones(1, 2)?, v: ones(1, 2)? };
    let with = |q: Tensor, k: Tensor, v: Tensor| Fp8HeadDescale { q, k, v };
    expect_err(
        flash_attn_fp8_per_head(&q, &k, &v, &with(heads.q.clone(), ones(2, 2)?, heads.v.clone()), &opts),
        &["descale.k", "[2, 2]", "(1, 2)"],
    );
    expect_err(
        flash_attn_fp8_per_head(
            &q,
            &k,
            &v,
            &with(heads.q.to_dtype(DType::BF16)?, heads.k.clone(), heads.v.clone()),
            &opts,
        ),
        &["descale.q", "BF16", "f32"],
    );
    let bad_v = Tensor::new(&[[1f32, -2.0]], &CPU)?;
    expect_err(
        flash_attn_fp8_per_head(&q, &k, &v, &with(heads.q.clone(), heads.k.clone(), bad_v), &opts),
        &["descale.v", "-2"],
    );
    expect_err(candle_fa2::quantize_fp8(&q.to_dtype(DType::F32)?, -1.0), &["descale", "-1"]);
    expect_err(candle_fa2::dequantize_fp8(&q, 1.0, DType::U8), &["dequantize_fp8", "U8"]);
    assert!(!candle_fa2::fp8_kernel_available(&CPU, 128));
    Ok(())
}

/// Per-head descales on the CPU (widened to f32, each head times its factors): against the reference on
/// the dequantised inputs, factors that differ between heads and sequences, GQA with q's factors per query
/// head and per group.
#[test]
fn fp8_per_head_widened_on_cpu() -> Result<()> {
    use common::{fp8, tolerance};
    let mut rng = Rng::new(910);
    for (i, (case, opts)) in [
        (Case::new(2, 37, 70, 4, 2, 64), AttnOptions::causal()),
        (Case::new(2, 20, 45, 6, 3, 32), AttnOptions::default().with_softcap(5.0)),
        (Case::new(1, 1, 130, 4, 1, 128), AttnOptions::default().with_window(Some(40), None)),
    ]
    .into_iter()
    .enumerate()
    {
        for q_per_group in [false, true] {
            let descale = fp8::head_descales(&case, q_per_group, &CPU)?;
            let [q, k, v] = fp8::inputs_per_head(&case, &mut rng, &CPU, &descale)?;
            let what = format!("fp8 per head cpu case {i} q_per_group={q_per_group}");
            let e = fp8::check_per_head(&q, &k, &v, &descale, &opts, &what)?;
            tolerance::assert_forward(e.ours, 0.0, DType::BF16, &what);
        }
    }
    Ok(())
}
