//! The CUDA op on the GPU (feature `cuda`; compiled in CI, run on the device by scripts/gpu_run.sh).
#![cfg(feature = "cuda")]

pub mod common;

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::{flash_attn, flash_attn_with_lse, reference, AttnOptions};
use common::cuda::{gpu, gpu_matches_cpu_and_repeats, option_sample, opts_on_cpu, poison_pool};
use common::errors::expect_err;
use common::forward::check;
use common::fp8;
use common::inputs::{Case, Rng};
use common::tolerance::{self, CUDA_VS_CPU, SMOKE};

fn run(case: Case, dtype: DType, opts: &AttnOptions, transposed: bool, seed: u64) -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(seed);
    let (q, k, v) = case.inputs(&mut rng, dtype, &dev, transposed)?;
    let what = format!("{case:?} {dtype:?} causal={} transposed={transposed}", opts.causal);
    let e = check(&q, &k, &v, opts, &what)?;
    eprintln!("{what}: ours {:.2e} naive {:.2e} lse {:.2e}", e.ours, e.naive, e.lse);
    Ok(())
}

#[test]
fn every_instantiation() -> Result<()> {
    // Instantiated head dims and ones between them (run masked on the next one up).
    for (i, d) in
        [32, 40, 64, 80, 96, 120, 128, 136, 160, 192, 200, 224, 248, 256, 264, 400, 512].into_iter().enumerate()
    {
        for dtype in [DType::BF16, DType::F16] {
            for causal in [false, true] {
                poison_pool(&gpu(), 1 << 22)?;
                let opts = AttnOptions::default().with_causal(causal);
                run(Case::new(2, 203, 203, 4, 2, d), dtype, &opts, false, i as u64)?;
            }
        }
    }
    Ok(())
}

#[test]
fn lengths_both_ways() -> Result<()> {
    let lengths =
        [(1, 1), (1, 4096), (7, 7), (113, 203), (203, 113), (1000, 1000), (129, 1000), (1000, 129), (300, 2100)];
    for (i, (sq, sk)) in lengths.into_iter().enumerate() {
        for causal in [false, true] {
            for d in [64, 128] {
                let opts = AttnOptions::default().with_causal(causal);
                run(Case::new(2, sq, sk, 4, 4, d), DType::BF16, &opts, false, 100 + i as u64)?;
            }
        }
    }
    Ok(())
}

#[test]
fn gqa_mqa_and_strides() -> Result<()> {
    for (i, heads_kv) in [8, 4, 2, 1].into_iter().enumerate() {
        run(Case::new(3, 150, 300, 8, heads_kv, 64), DType::BF16, &AttnOptions::causal(), false, 200 + i as u64)?;
        run(Case::new(2, 150, 300, 8, heads_kv, 128), DType::F16, &AttnOptions::default(), true, 210 + i as u64)?;
    }
    // A view whose head_dim is not contiguous is copied, then runs.
    let dev = gpu();
    let mut rng = Rng::new(220);
    let q = rng.tensor((1, 64, 64, 4), 1.0, DType::BF16, &dev)?.transpose(2, 3)?.transpose(1, 2)?;
    let (_, k, v) = Case::new(1, 64, 64, 4, 4, 64).inputs(&mut rng, DType::BF16, &dev, false)?;
    check(&q, &k, &v, &AttnOptions::causal(), "q with strided head_dim")?;
    Ok(())
}

#[test]
fn windows_softcap_alibi() -> Result<()> {
    let dev = gpu();
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.125, 0.0625], &dev)?;
    let cases = [
        AttnOptions::default().with_window(Some(32), Some(0)),
        AttnOptions::causal().with_window(Some(100), None),
        AttnOptions::default().with_window(Some(5), Some(70)),
        AttnOptions::default().with_window(Some(9), Some(-3)),
        AttnOptions::default().with_softcap(5.0).with_softmax_scale(0.6),
        AttnOptions::causal().with_alibi_slopes(slopes.clone()),
        AttnOptions::default().with_alibi_slopes(slopes).with_softcap(3.0).with_window(Some(40), Some(20)),
        AttnOptions::causal().with_softmax_scale(-0.1),
    ];
    for (i, opts) in cases.iter().enumerate() {
        for (sq, sk) in [(200, 200), (77, 300), (300, 77)] {
            run(Case::new(2, sq, sk, 4, 2, 64), DType::BF16, opts, false, 300 + i as u64)?;
        }
        // On Hopper these run the wgmma kernels, with transformed logits too (kernels/sm90/fwd_tiles.cuh).
        run(Case::new(1, 130, 260, 4, 1, 128), DType::F16, opts, false, 310 + i as u64)?;
        run(Case::new(1, 70, 150, 4, 2, 256), DType::BF16, opts, false, 320 + i as u64)?;
    }
    Ok(())
}

/// Long queries run the 8-warp mma.sync kernels of kernels/sm80/fwd_tiles.cuh (d128 from 2k non-causal and 8k
/// causal, d256 always non-causal and from 8k causal), long keys the wgmma kernels at d64 on Hopper (from 1k
/// and 2k).
/// The f64 reference is too slow here: the CPU op, itself held against the reference by the CPU suite, is
/// the oracle.
#[test]
fn long_query_kernels() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(450);
    let shapes = [
        (128, 2100, 2300, false),
        (128, 8192, 8192, true),
        (256, 300, 900, false),
        (256, 8200, 8300, true),
        (64, 2100, 2300, false),
        (64, 1000, 4100, true),
    ];
    for (d, sq, sk, causal) in shapes {
        let (q, k, v) = Case::new(1, sq, sk, 2, 1, d).inputs(&mut rng, DType::BF16, &Device::Cpu, false)?;
        let opts = AttnOptions::default().with_causal(causal);
        let want = flash_attn(&q, &k, &v, &opts)?;
        let got = flash_attn(&q.to_device(&dev)?, &k.to_device(&dev)?, &v.to_device(&dev)?, &opts)?;
        let diff = reference::max_abs_diff(&got, &want)?;
        assert!(diff < CUDA_VS_CPU, "d {d} ({sq}, {sk}) causal {causal}: {diff}");
    }
    Ok(())
}

#[test]
fn rows_without_keys_are_zero() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(400);
    poison_pool(&dev, 1 << 20)?;
    let (q, k, v) = Case::new(1, 300, 20, 2, 2, 64).inputs(&mut rng, DType::BF16, &dev, false)?;
    let (got, lse) = flash_attn_with_lse(&q, &k, &v, &AttnOptions::causal())?;
    let (want, want_lse) = reference::attention(&q, &k, &v, &AttnOptions::causal())?;
    // The first 280 rows see no key: exactly zero (the reference writes zeros there too).
    let head = got.narrow(1, 0, 280)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    assert!(head.iter().all(|&x| x == 0.0), "rows without keys are not zero");
    assert!(reference::max_abs_diff(&got, &want)? < SMOKE);
    let lse = lse.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    tolerance::assert_lse(&lse, &want_lse.flatten_all()?.to_vec1::<f64>()?, "rows without keys");
    Ok(())
}

/// The Hopper warp-specialised forward runs persistent blocks, one per SM (kernels/sm90/tile_schedule.cuh):
/// with more tiles (128 query rows of one head, 192 at d64 mostly) than the H200's 132 SMs, a block walks several, its
/// producer loading the next tile's Q, K and V while its consumers finish the last. Tiles without keys
/// (causal with more queries than keys) in between, partial tiles, GQA, a window, every element written,
/// two runs bitwise equal, FP8 on the same kernel. Masked calls walk persistently only where that balances
/// (the launcher decides): scripts/gpu_run.sh also runs this test with `CANDLE_FA2_WS_PERSISTENT=1`
/// (always) and the whole suite with `CANDLE_FA2_FWD_BLOCKS=1` (one block walking every tile).
#[test]
fn persistent_blocks_walk_many_tiles() -> Result<()> {
    let dev = gpu();
    let cases = [
        (Case::new(2, 1100, 300, 8, 2, 128), AttnOptions::causal()),
        (Case::new(3, 1000, 777, 8, 4, 128), AttnOptions::default()),
        (Case::new(2, 700, 1100, 12, 3, 64), AttnOptions::default().with_window(Some(60), Some(0))),
        // d64 tiles are 192 rows (three consumers taking turns; causal from 4096 queries, 128 rows below):
        // 1000 and 4100 queries end in a partial one.
        (Case::new(2, 1000, 1300, 6, 2, 64), AttnOptions::default()),
        (Case::new(1, 4100, 4200, 2, 1, 64), AttnOptions::causal()),
        (Case::new(3, 600, 700, 12, 4, 256), AttnOptions::causal()),
    ];
    for (i, (case, opts)) in cases.into_iter().enumerate() {
        poison_pool(&dev, 1 << 24)?;
        run(case, DType::BF16, &opts, false, 1000 + i as u64)?;
    }
    let mut rng = Rng::new(1010);
    let (q, k, v) = Case::new(2, 1100, 1300, 8, 2, 128).inputs(&mut rng, DType::BF16, &Device::Cpu, false)?;
    gpu_matches_cpu_and_repeats(&q, &k, &v, &AttnOptions::causal())?;
    for (case, causal) in [(Case::new(2, 1100, 300, 8, 2, 128), true), (Case::new(3, 1000, 777, 8, 4, 256), false)] {
        let [q, k, v] = fp8::inputs(&case, &mut rng, &dev, false)?;
        let opts = AttnOptions::default().with_causal(causal);
        let what = format!("fp8 {case:?} causal={causal}");
        let e = fp8::check(&q, &k, &v, &opts, &what)?;
        tolerance::assert_fp8_forward(e.ours, e.emulated, &what);
    }
    Ok(())
}

#[test]
fn cpu_and_cuda_agree_and_runs_are_bitwise_equal() -> Result<()> {
    let mut rng = Rng::new(500);
    let (q, k, v) = Case::new(2, 333, 517, 8, 2, 128).inputs(&mut rng, DType::BF16, &Device::Cpu, false)?;
    gpu_matches_cpu_and_repeats(&q, &k, &v, &AttnOptions::causal())?;
    Ok(())
}

#[test]
fn extreme_scores_stay_finite() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(600);
    for dtype in [DType::BF16, DType::F16] {
        let q = rng.tensor((1, 256, 2, 64), 30.0, dtype, &dev)?;
        let k = rng.tensor((1, 256, 2, 64), 30.0, dtype, &dev)?;
        let v = rng.tensor((1, 256, 2, 64), 1.0, dtype, &dev)?;
        let out = flash_attn(&q, &k, &v, &AttnOptions::causal())?.to_dtype(DType::F32)?;
        let values = out.flatten_all()?.to_vec1::<f32>()?;
        assert!(values.iter().all(|x| x.is_finite()), "{dtype:?}: non-finite output");
        check(&q, &k, &v, &AttnOptions::causal(), &format!("{dtype:?} large scores"))?;
    }
    Ok(())
}

/// Head dims that are not multiples of 8, zero-padded to one inside the op (src/kernel_fit.rs): on each
/// instantiation they land on, MHA and GQA, causal or not, transposed inputs, f16 and bf16, every element
/// written (poisoned pool); the options with the caller's default scale 1/sqrt(head_dim) (not the padded
/// head_dim's: the reference would see the difference); the CPU op agrees and runs are bitwise equal.
#[test]
fn odd_head_dims() -> Result<()> {
    for (i, d) in [1, 33, 36, 59, 111, 255, 301].into_iter().enumerate() {
        for dtype in [DType::BF16, DType::F16] {
            for causal in [false, true] {
                poison_pool(&gpu(), 1 << 22)?;
                let opts = AttnOptions::default().with_causal(causal);
                run(Case::new(2, 203, 150, 4, 2, d), dtype, &opts, i % 2 == 1, 900 + i as u64)?;
            }
        }
    }
    let dev = gpu();
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.125, 0.0625], &dev)?;
    let variants = [
        AttnOptions::causal().with_window(Some(40), None),
        AttnOptions::default().with_softcap(5.0),
        AttnOptions::causal().with_alibi_slopes(slopes),
    ];
    for (i, opts) in variants.iter().enumerate() {
        run(Case::new(1, 130, 260, 4, 2, 59), DType::BF16, opts, false, 910 + i as u64)?;
    }
    let mut rng = Rng::new(920);
    let (q, k, v) = Case::new(2, 100, 177, 8, 2, 111).inputs(&mut rng, DType::BF16, &Device::Cpu, false)?;
    gpu_matches_cpu_and_repeats(&q, &k, &v, &AttnOptions::causal())?;
    Ok(())
}

/// f32 on CUDA runs as bf16 (src/kernel_fit.rs): an f32 output of q's shape held to rule 5 of tolerance.rs
/// (a bf16 call's accuracy), at head dims on and off the multiples of 8, GQA, transposed inputs, the options;
/// and inputs only bf16's range holds.
#[test]
fn f32_through_bf16() -> Result<()> {
    for (i, d) in [64, 128, 59].into_iter().enumerate() {
        for causal in [false, true] {
            poison_pool(&gpu(), 1 << 22)?;
            let opts = AttnOptions::default().with_causal(causal);
            run(Case::new(2, 203, 150, 8, 2, d), DType::F32, &opts, i == 1, 950 + i as u64)?;
        }
    }
    for (i, opts) in option_sample()?.iter().enumerate() {
        run(Case::new(1, 130, 260, 4, 1, 128), DType::F32, opts, false, 960 + i as u64)?;
    }
    // q and v past f16's largest value (65504), k below its smallest normal one (6e-5), scores of order one:
    // rounded to f16 instead of bf16, q would be inf and the output NaN.
    let (dev, mut rng) = (gpu(), Rng::new(970));
    let q = rng.tensor((1, 100, 2, 64), 1e5, DType::F32, &dev)?;
    let k = rng.tensor((1, 100, 2, 64), 1e-5, DType::F32, &dev)?;
    let v = rng.tensor((1, 100, 2, 64), 1e5, DType::F32, &dev)?;
    check(&q, &k, &v, &AttnOptions::causal(), "f32 outside f16's range")?;
    Ok(())
}

/// The e4m3 forward against the f64 reference on the dequantised inputs (rule 6 of tolerance.rs), repeated
/// bitwise: head dims of both FP8 kernels and below them (96, 192: masked columns), GQA, partial tiles,
/// one query row, transposed inputs, every option; 64 (transposed) and 72 (not a multiple of 16) take the
/// widening path.
#[test]
fn fp8_forward() -> Result<()> {
    let dev = gpu();
    let kernel = [64, 128, 256].map(|d| candle_fa2::fp8_kernel_available(&dev, d));
    eprintln!("FP8 kernel at head_dim 64 / 128 / 256: {kernel:?}");
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.125, 0.0625], &dev)?;
    let shapes = [
        (Case::new(2, 203, 203, 4, 2, 128), false),
        (Case::new(1, 1, 300, 4, 4, 128), false),
        (Case::new(2, 300, 1000, 4, 1, 64), true),
        (Case::new(1, 1000, 129, 2, 2, 256), false),
        (Case::new(2, 257, 385, 4, 2, 192), true),
        (Case::new(1, 130, 190, 4, 4, 96), false),
        (Case::new(1, 130, 190, 4, 2, 72), false),
    ];
    let mut rng = Rng::new(900);
    let mut run = |case: Case, opts: &AttnOptions, transposed: bool| -> Result<()> {
        poison_pool(&dev, 1 << 22)?;
        let [q, k, v] = fp8::inputs(&case, &mut rng, &dev, transposed)?;
        let what = format!("fp8 {case:?} {opts:?} transposed={transposed}");
        let e = fp8::check(&q, &k, &v, opts, &what)?;
        eprintln!("{what}: ours {:.2e} e4m3-P reference {:.2e}", e.ours, e.emulated);
        tolerance::assert_fp8_forward(e.ours, e.emulated, &what);
        Ok(())
    };
    for (case, transposed) in shapes {
        for causal in [false, true] {
            run(case, &AttnOptions::default().with_causal(causal), transposed)?;
        }
    }
    for d in [128, 256] {
        let options = [
            AttnOptions::default().with_window(Some(32), Some(0)),
            AttnOptions::default().with_softcap(5.0).with_softmax_scale(0.6),
            AttnOptions::causal().with_alibi_slopes(slopes.clone()),
            AttnOptions::default().with_softmax_scale(-0.3),
        ];
        for opts in &options {
            run(Case::new(1, 190, 300, 4, 2, d), opts, false)?;
        }
    }
    Ok(())
}

/// Per-head descales (`flash_attn_fp8_per_head`) on the FP8 kernel (d128, d256) and the widening path (d64),
/// held to the e4m3 emulation as `fp8_forward`: factors that differ between heads and sequences, on the
/// GPU and from the CPU, q's per query head and per group, GQA, causal, softcap; a descale on another
/// device is an error.
#[test]
fn fp8_per_head_descales() -> Result<()> {
    use candle_fa2::flash_attn_fp8_per_head;
    let dev = gpu();
    let mut rng = Rng::new(920);
    let cases = [
        (Case::new(2, 203, 330, 4, 2, 128), AttnOptions::causal()),
        (Case::new(3, 140, 140, 6, 3, 256), AttnOptions::default().with_softcap(5.0)),
        (Case::new(2, 70, 260, 4, 1, 64), AttnOptions::default()),
    ];
    for (i, (case, opts)) in cases.into_iter().enumerate() {
        for (q_per_group, on) in [(false, &dev), (true, &Device::Cpu)] {
            poison_pool(&dev, 1 << 22)?;
            let descale = fp8::head_descales(&case, q_per_group, on)?;
            let [q, k, v] = fp8::inputs_per_head(&case, &mut rng, &dev, &descale)?;
            let what = format!("fp8 per head case {i} q_per_group={q_per_group} descales on {on:?}");
            let e = fp8::check_per_head(&q, &k, &v, &descale, &opts, &what)?;
            eprintln!("{what}: ours {:.2e} e4m3-P reference {:.2e}", e.ours, e.emulated);
            tolerance::assert_fp8_forward(e.ours, e.emulated, &what);
        }
    }
    let case = Case::new(1, 16, 16, 2, 2, 128);
    let descale = fp8::head_descales(&case, false, &dev)?;
    let [q, k, v] = fp8::inputs_per_head(&case, &mut rng, &dev, &descale)?;
    let other = Device::new_cuda(0)?; // another instance of the same GPU: its tensors do not mix with q's
    let moved = candle_fa2::Fp8HeadDescale { v: descale.v.to_device(&Device::Cpu)?.to_device(&other)?, ..descale };
    expect_err(flash_attn_fp8_per_head(&q, &k, &v, &moved, &AttnOptions::default()), &["descale.v", "q is on"]);
    Ok(())
}

/// quantize_fp8 and dequantize_fp8 on the GPU (the crate's kernel) give the CPU's values: rounding to
/// nearest even, saturation at +-448, NaN kept, every source dtype, a transposed source read in place;
/// e4m3 -> bf16 / f32 exact.
#[test]
fn fp8_conversions_match_the_cpu() -> Result<()> {
    use candle_fa2::{dequantize_fp8, quantize_fp8};
    let dev = gpu();
    let mut values = Rng::new(950).normal_vec(4096, 100.0);
    values.extend([0.0, -0.0, 448.0, 449.0, 464.0, 1e6, -1e6, f32::NAN, 1.0 / 1024.0, 3.0 / 2048.0]);
    // (2, 2053) read through a transposed (2053, 2) view: the strided path of the conversion kernel.
    let x = Tensor::from_vec(values, (2053, 2), &Device::Cpu)?.t()?;
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let xd = x.to_dtype(dtype)?;
        for descale in [1.0f32, 0.25, 3.0] {
            let cpu = quantize_fp8(&xd, descale)?;
            let gpu8 = quantize_fp8(&xd.to_device(&dev)?, descale)?;
            let (a, b) = (cpu.to_dtype(DType::F32)?, gpu8.to_device(&Device::Cpu)?.to_dtype(DType::F32)?);
            let (a, b) = (a.flatten_all()?.to_vec1::<f32>()?, b.flatten_all()?.to_vec1::<f32>()?);
            // Equal values (candle's CPU cast drops the sign of -0, which e4m3 and the GPU keep).
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!(p == q || p.is_nan() && q.is_nan(), "{dtype:?} /{descale} [{i}]: {p} {q}");
            }
            assert!(a.iter().all(|v| v.is_nan() || v.abs() <= 448.0), "saturated");
            for wide in [DType::F32, DType::BF16] {
                let back = dequantize_fp8(&gpu8, 2.0, wide)?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
                let want = dequantize_fp8(&cpu, 2.0, wide)?.to_dtype(DType::F32)?;
                let (back, want) = (back.flatten_all()?.to_vec1::<f32>()?, want.flatten_all()?.to_vec1::<f32>()?);
                let same = back.iter().zip(&want).all(|(p, q)| p == q || p.is_nan() && q.is_nan());
                assert!(same, "dequantize {wide:?}");
            }
        }
    }
    Ok(())
}

#[test]
fn cuda_errors_name_the_problem() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(700);
    let (q, k, v) = Case::new(1, 16, 16, 2, 2, 64).inputs(&mut rng, DType::F64, &dev, false)?;
    expect_err(flash_attn(&q, &k, &v, &AttnOptions::default()), &["q has dtype F64"]);
    let (q, k, v) = Case::new(1, 16, 16, 2, 2, 64).inputs(&mut rng, DType::BF16, &dev, false)?;
    expect_err(flash_attn(&q, &k.to_device(&Device::Cpu)?, &v, &AttnOptions::default()), &["k is on", "Cpu"]);
    // Above the largest kernel: an error naming q's value (513 is not padded to 520 first).
    for d in [513, 520] {
        let (q, k, v) = Case::new(1, 16, 16, 2, 2, d).inputs(&mut rng, DType::BF16, &dev, false)?;
        expect_err(flash_attn(&q, &k, &v, &AttnOptions::default()), &["q has head_dim", &d.to_string(), "512"]);
    }
    Ok(())
}

/// Small shapes that reach every code path (each instantiation, partial blocks, masks, GQA, softcap,
/// ALiBi, empty rows), compared with the CPU op only: this is the test run under compute-sanitizer, so it
/// launches nothing but our kernel on the GPU.
#[test]
fn sanitizer_shapes() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(800);
    let slopes = [0.3f32, 0.1];
    for (i, d) in [32, 64, 96, 128, 160, 192, 224, 256, 40, 512, 264].into_iter().enumerate() {
        let variants = [
            AttnOptions::default(),
            AttnOptions::causal(),
            AttnOptions::default().with_window(Some(7), Some(3)).with_softcap(4.0),
            AttnOptions::causal().with_alibi_slopes(Tensor::new(&slopes, &dev)?),
        ];
        for (j, opts) in variants.into_iter().enumerate() {
            // 2050 rows reach the 8-warp mma.sync kernels at d128 and d256 (non-causal variants); 2050 keys
            // reach the wgmma kernels at d64 on Hopper (kernels/sm90/fwd_tiles.cuh).
            let long = match (d, j) {
                (128 | 256, 0) => Some((2050, 40)),
                (64, 0 | 1) => Some((40, 2050)),
                // Causal with 300 queries and 20 keys: two of the three Hopper tiles see no key.
                (128, 1) => Some((300, 20)),
                _ => None,
            };
            for (sq, sk) in [(37, 70), (70, 37)].into_iter().chain(long) {
                let (q, k, v) = Case::new(1, sq, sk, 2, 1, d).inputs(&mut rng, DType::BF16, &Device::Cpu, false)?;
                let want = flash_attn(&q, &k, &v, &opts_on_cpu(&opts)?)?;
                let got = flash_attn(&q.to_device(&dev)?, &k.to_device(&dev)?, &v.to_device(&dev)?, &opts)?;
                let diff = reference::max_abs_diff(&got, &want)?;
                assert!(diff < SMOKE, "d {d} variant {j} ({sq}, {sk}) case {i}: {diff}");
                // The FP8 forward (V^T, then the attention) at the head dims it runs, held to the e4m3
                // emulation of tests/common/fp8.rs on the CPU.
                if matches!(d, 64 | 128 | 256) {
                    let case = Case::new(1, sq, sk, 2, 1, d);
                    let [q, k, v] = fp8::inputs(&case, &mut rng, &dev, false)?;
                    let e = fp8::check(&q, &k, &v, &opts, &format!("fp8 d {d} variant {j} ({sq}, {sk})"))?;
                    tolerance::assert_fp8_forward(e.ours, e.emulated, &format!("fp8 d {d} variant {j}"));
                }
            }
        }
    }
    Ok(())
}
