//! The CUDA backward kernels through candle autograd (feature `cuda`; compiled in CI, run on the device by
//! scripts/gpu_run.sh). `cargo test --features cuda grad` selects these with the CPU gradient suite.
#![cfg(feature = "cuda")]

pub mod common;

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::{flash_attn, flash_attn_backward, flash_attn_with_lse, reference, AttnOptions};
use common::cuda::{gpu, option_sample, opts_on_cpu, poison_pool};
use common::grads::{differentiable_attention, grads};
use common::inputs::{Case, Rng};
use common::tolerance::{self, rel_err, CUDA_VS_CPU_GRAD};

/// Rule 2 of tolerance.rs: gradients of `sum(out * w)` through the op and through the differentiable
/// attention in the inputs' dtype (the baseline), each against candle autograd of the same attention in f64.
/// For f32, rule 5: the baseline on the inputs rounded to bf16, in bf16, and the bf16 bound.
fn check(case: Case, dtype: DType, opts: &AttnOptions, transposed: bool, seed: u64) -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(seed);
    let (q, k, v) = case.inputs(&mut rng, dtype, &dev, transposed)?;
    let w = rng.tensor((case.batch, case.seqlen_q, case.heads_q, case.head_dim), 1.0, DType::F32, &dev)?;
    poison_pool(&dev, 1 << 22)?;
    let ours = grads(&|q, k, v| flash_attn(q, k, v, opts), &q, &k, &v, &w)?;
    let computed = tolerance::computed_as(dtype, &dev);
    let (qc, kc, vc) = (q.to_dtype(computed)?, k.to_dtype(computed)?, v.to_dtype(computed)?);
    let naive = grads(&|q, k, v| differentiable_attention(q, k, v, opts), &qc, &kc, &vc, &w)?;
    let cpu = |t: &Tensor| t.to_device(&Device::Cpu)?.to_dtype(DType::F64);
    let opts64 = opts_on_cpu(opts)?;
    let want = grads(&|q, k, v| differentiable_attention(q, k, v, &opts64), &cpu(&q)?, &cpu(&k)?, &cpu(&v)?, &w)?;
    for (i, name) in ["dq", "dk", "dv"].into_iter().enumerate() {
        let values = ours[i].flatten_all()?.to_vec1::<f64>()?;
        assert!(values.iter().all(|x| x.is_finite()), "{case:?} {dtype:?}: non-finite {name}");
        let (e_ours, e_naive) = (rel_err(&ours[i], &want[i])?, rel_err(&naive[i], &want[i])?);
        eprintln!("{case:?} {dtype:?} causal={} {name}: ours {e_ours:.2e} naive {e_naive:.2e}", opts.causal);
        tolerance::assert_grad(e_ours, e_naive, computed, &format!("{case:?} {dtype:?} {opts:?}: {name}"));
    }
    Ok(())
}

/// Both backward modes (the default: dQ in a second pass; dq_atomics: dQ by f32 atomics) on every
/// instantiation.
#[test]
fn grad_every_instantiation() -> Result<()> {
    for (i, d) in [32, 40, 64, 96, 128, 136, 160, 192, 200, 224, 256, 264, 512].into_iter().enumerate() {
        for (dtype, dq_atomics) in [(DType::BF16, false), (DType::F16, false), (DType::BF16, true)] {
            for causal in [false, true] {
                let opts = AttnOptions::default().with_causal(causal).with_dq_atomics(dq_atomics);
                check(Case::new(2, 131, 157, 4, 2, d), dtype, &opts, false, 1000 + i as u64)?;
            }
        }
    }
    Ok(())
}

#[test]
fn grad_lengths_heads_strides() -> Result<()> {
    // Queries that see no key (causal with seqlen_q > seqlen_k) have no f64 reference (softmax of nothing);
    // grad_cuda_matches_cpu covers them.
    let lengths = [(1, 1), (1, 300), (7, 7), (113, 203), (203, 113), (300, 64)];
    for (i, (sq, sk)) in lengths.into_iter().enumerate() {
        for causal in [false, true] {
            if causal && sq > sk {
                continue;
            }
            let opts = AttnOptions::default().with_causal(causal);
            check(Case::new(2, sq, sk, 4, 4, 64), DType::BF16, &opts, false, 1100 + i as u64)?;
            check(Case::new(1, sq, sk, 2, 2, 128), DType::F16, &opts, false, 1150 + i as u64)?;
        }
    }
    for (i, heads_kv) in [8, 2, 1].into_iter().enumerate() {
        check(Case::new(3, 150, 170, 8, heads_kv, 64), DType::BF16, &AttnOptions::causal(), false, 1200 + i as u64)?;
        check(Case::new(2, 150, 170, 8, heads_kv, 128), DType::F16, &AttnOptions::default(), true, 1210 + i as u64)?;
    }
    Ok(())
}

/// dq_atomics at d64 and d128 (mma.sync's KEYS_DQ pass; on Hopper the two deterministic passes, or at d128
/// the one-pass kernel with CANDLE_FA2_BWD_ONE_PASS=1): partial blocks, queries past a short key range, GQA
/// and MQA, transposed inputs and every option.
#[test]
fn grad_dq_atomics_lengths_heads_options() -> Result<()> {
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.125, 0.0625], &gpu())?;
    let lengths = [(1, 1), (7, 7), (113, 203), (203, 113), (300, 64), (640, 700)];
    for (i, (sq, sk)) in lengths.into_iter().enumerate() {
        for causal in [false, true] {
            let opts = AttnOptions::default().with_causal(causal).with_dq_atomics(true);
            if !(causal && sq > sk) {
                check(Case::new(2, sq, sk, 4, 2, 64), DType::BF16, &opts, false, 1900 + i as u64)?;
                check(Case::new(1, sq, sk, 4, 4, 128), DType::F16, &opts, i % 2 == 1, 1910 + i as u64)?;
            }
        }
    }
    for (i, heads_kv) in [8, 2, 1].into_iter().enumerate() {
        let opts = AttnOptions::causal().with_dq_atomics(true);
        check(Case::new(2, 150, 170, 8, heads_kv, 64), DType::F16, &opts, true, 1920 + i as u64)?;
        check(Case::new(2, 150, 170, 8, heads_kv, 128), DType::BF16, &opts, false, 1930 + i as u64)?;
    }
    let combined = AttnOptions::default().with_alibi_slopes(slopes).with_softcap(3.0).with_window(Some(40), Some(20));
    for (i, opts) in option_sample()?.into_iter().chain([combined]).enumerate() {
        let opts = opts.with_dq_atomics(true);
        check(Case::new(2, 200, 200, 4, 2, 64), DType::BF16, &opts, false, 1940 + i as u64)?;
        check(Case::new(1, 77, 300, 4, 1, 128), DType::F16, &opts, false, 1950 + i as u64)?;
    }
    Ok(())
}

/// dq_atomics from 2k queries and keys, which the one-pass kernel runs on the H100/H200 unless
/// CANDLE_FA2_BWD_ONE_PASS=0 (the shorter shapes above take it only with =1): a partial last query tile, GQA,
/// two sequences.
#[test]
fn grad_dq_atomics_long() -> Result<()> {
    for (i, causal) in [false, true].into_iter().enumerate() {
        let opts = AttnOptions::default().with_causal(causal).with_dq_atomics(true);
        check(Case::new(2, 2049, 2111, 4, 2, 128), DType::BF16, &opts, false, 1960 + i as u64)?;
    }
    Ok(())
}

#[test]
fn grad_windows_softcap_alibi() -> Result<()> {
    let dev = gpu();
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.125, 0.0625], &dev)?;
    let cases = [
        AttnOptions::default().with_window(Some(32), Some(0)),
        AttnOptions::default().with_window(Some(5), Some(70)),
        AttnOptions::default().with_softcap(5.0).with_softmax_scale(0.6),
        AttnOptions::causal().with_alibi_slopes(slopes.clone()),
        AttnOptions::default().with_alibi_slopes(slopes).with_softcap(3.0).with_window(Some(40), Some(20)),
        AttnOptions::causal().with_softmax_scale(-0.1),
    ];
    for (i, opts) in cases.iter().enumerate() {
        check(Case::new(2, 200, 200, 4, 2, 64), DType::BF16, opts, false, 1300 + i as u64)?;
        check(Case::new(1, 77, 300, 4, 1, 128), DType::F16, opts, false, 1310 + i as u64)?;
        // d256 runs the paired-warpgroup Hopper kernels on the H200; transposed inputs every other case.
        check(Case::new(1, 130, 190, 4, 2, 256), DType::BF16, opts, i % 2 == 1, 1320 + i as u64)?;
    }
    Ok(())
}

/// Head dims that are not multiples of 8: the op pads q, k, v with zero columns and narrows dq, dk, dv back
/// (src/kernel_fit.rs). Rule 2 in both backward modes, f16 and bf16, GQA, transposed inputs.
#[test]
fn grad_odd_head_dims() -> Result<()> {
    for (i, d) in [1, 33, 59, 111, 255, 301].into_iter().enumerate() {
        for (dtype, dq_atomics) in [(DType::BF16, false), (DType::F16, false), (DType::BF16, true)] {
            for causal in [false, true] {
                let opts = AttnOptions::default().with_causal(causal).with_dq_atomics(dq_atomics);
                check(Case::new(2, 131, 157, 4, 2, d), dtype, &opts, i % 2 == 1, 1600 + i as u64)?;
            }
        }
    }
    let dev = gpu();
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.125, 0.0625], &dev)?;
    let variants = [
        AttnOptions::default().with_window(Some(32), Some(0)),
        AttnOptions::default().with_softcap(5.0),
        AttnOptions::causal().with_alibi_slopes(slopes),
    ];
    for (i, opts) in variants.iter().enumerate() {
        check(Case::new(1, 77, 300, 4, 1, 59), DType::BF16, opts, false, 1650 + i as u64)?;
    }
    Ok(())
}

/// f32 on CUDA: the backward runs the bf16 kernels and returns f32 gradients of the inputs' shapes, held to
/// rule 5 of tolerance.rs; both modes, a head_dim off the multiples of 8, the options.
#[test]
fn grad_f32_through_bf16() -> Result<()> {
    for (i, d) in [64, 128, 59].into_iter().enumerate() {
        for (causal, dq_atomics) in [(false, false), (true, false), (true, true)] {
            let opts = AttnOptions::default().with_causal(causal).with_dq_atomics(dq_atomics);
            check(Case::new(2, 131, 157, 4, 2, d), DType::F32, &opts, i == 1, 1700 + i as u64)?;
        }
    }
    for (i, opts) in option_sample()?.iter().enumerate() {
        check(Case::new(2, 200, 200, 4, 2, 64), DType::F32, opts, false, 1750 + i as u64)?;
    }
    Ok(())
}

/// `flash_attn_backward` called on the caller's tensors (f32, a head_dim off the multiples of 8, both)
/// fits them as the forward did: gradients of the inputs' shapes and dtype, bitwise equal to autograd's
/// through the op (the same deterministic kernels on the same fitted tensors).
#[test]
fn flash_attn_backward_fits_like_autograd() -> Result<()> {
    let dev = gpu();
    for (i, (d, dtype)) in [(59, DType::F32), (33, DType::BF16), (128, DType::F32)].into_iter().enumerate() {
        let mut rng = Rng::new(1800 + i as u64);
        let (q, k, v) = Case::new(2, 77, 93, 4, 2, d).inputs(&mut rng, dtype, &dev, false)?;
        let w = rng.tensor((2, 77, 4, d), 1.0, dtype, &dev)?;
        let opts = AttnOptions::causal();
        let want = grads(&|q, k, v| flash_attn(q, k, v, &opts), &q, &k, &v, &w)?;
        let (out, lse) = flash_attn_with_lse(&q, &k, &v, &opts)?;
        let (dq, dk, dv) = flash_attn_backward(&q, &k, &v, &out, &lse, &w, &opts)?;
        for (name, got, want, input) in [("dq", dq, &want[0], &q), ("dk", dk, &want[1], &k), ("dv", dv, &want[2], &v)] {
            assert_eq!((got.dims(), got.dtype()), (input.dims(), dtype), "d {d} {dtype:?}: {name}");
            let diff = reference::max_abs_diff(&got, want)?;
            assert_eq!(diff, 0.0, "d {d} {dtype:?}: {name} differs from autograd's by {diff:e}");
        }
    }
    Ok(())
}

/// The CPU backward (itself held against the f64 reference by tests/cpu_grad.rs) is the oracle where the
/// reference has none: queries that see no key, and lengths where the f64 autograd would be slow. Both
/// modes; by default two runs give bitwise equal gradients. Every element is written
/// (poisoned pool).
#[test]
fn grad_cuda_matches_cpu_and_is_deterministic() -> Result<()> {
    let dev = gpu();
    let cases = [
        (Case::new(1, 300, 200, 4, 2, 64), AttnOptions::causal()),
        (Case::new(1, 1100, 1300, 4, 1, 128), AttnOptions::causal()),
        (Case::new(2, 700, 700, 2, 2, 256), AttnOptions::default()),
        (Case::new(1, 513, 1024, 4, 4, 96), AttnOptions::default().with_window(Some(100), Some(30))),
    ];
    for (i, (case, opts)) in cases.iter().enumerate() {
        let mut rng = Rng::new(1400 + i as u64);
        let (q, k, v) = case.inputs(&mut rng, DType::BF16, &Device::Cpu, false)?;
        let w = rng.tensor((case.batch, case.seqlen_q, case.heads_q, case.head_dim), 1.0, DType::F32, &Device::Cpu)?;
        let on_cpu = grads(&|q, k, v| flash_attn(q, k, v, opts), &q, &k, &v, &w)?;
        let (qg, kg, vg) = (q.to_device(&dev)?, k.to_device(&dev)?, v.to_device(&dev)?);
        let with_atomics = opts.clone().with_dq_atomics(true);
        poison_pool(&dev, 1 << 24)?;
        let atomic = grads(&|q, k, v| flash_attn(q, k, v, &with_atomics), &qg, &kg, &vg, &w)?;
        poison_pool(&dev, 1 << 24)?;
        let first = grads(&|q, k, v| flash_attn(q, k, v, opts), &qg, &kg, &vg, &w)?;
        let second = grads(&|q, k, v| flash_attn(q, k, v, opts), &qg, &kg, &vg, &w)?;
        for (j, name) in ["dq", "dk", "dv"].into_iter().enumerate() {
            assert_eq!(reference::max_abs_diff(&first[j], &second[j])?, 0.0, "{case:?}: two runs differ in {name}");
            for (mode, got) in [("dq_atomics", &atomic[j]), ("default", &first[j])] {
                let values = got.flatten_all()?.to_vec1::<f64>()?;
                assert!(values.iter().all(|x| x.is_finite()), "{case:?} {mode}: non-finite {name}");
                let err = rel_err(got, &on_cpu[j])?;
                eprintln!("{case:?} {mode} {name}: cuda vs cpu {err:.2e}");
                assert!(err < CUDA_VS_CPU_GRAD, "{case:?} {opts:?} {mode}: {name} cuda vs cpu {err:.3e}");
            }
        }
    }
    Ok(())
}

/// The gradients of one call (2 query heads on 1 KV head) on the GPU against the same call on the CPU op:
/// what the sanitizer runs compare, so that they launch nothing but our kernels on the GPU.
fn check_against_cpu(sq: usize, sk: usize, d: usize, opts: &AttnOptions, seed: u64) -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(seed);
    let (q, k, v) = Case::new(1, sq, sk, 2, 1, d).inputs(&mut rng, DType::BF16, &Device::Cpu, false)?;
    let w = rng.tensor((1, sq, 2, d), 1.0, DType::F32, &Device::Cpu)?;
    let cpu_opts = opts_on_cpu(opts)?;
    let want = grads(&|q, k, v| flash_attn(q, k, v, &cpu_opts), &q, &k, &v, &w)?;
    let (qg, kg, vg) = (q.to_device(&dev)?, k.to_device(&dev)?, v.to_device(&dev)?);
    let got = grads(&|q, k, v| flash_attn(q, k, v, opts), &qg, &kg, &vg, &w)?;
    for (g, (a, b)) in got.iter().zip(&want).enumerate() {
        let err = rel_err(a, b)?;
        assert!(err < CUDA_VS_CPU_GRAD, "d {d} {opts:?} ({sq}, {sk}) gradient {g}: {err:.3e}");
    }
    Ok(())
}

/// Small shapes that reach every backward code path (each instantiation, partial blocks, masks, GQA,
/// softcap, ALiBi, queries without keys), compared with the CPU op only: this is the test run under
/// compute-sanitizer.
#[test]
fn grad_sanitizer_shapes() -> Result<()> {
    let dev = gpu();
    let slopes = [0.3f32, 0.1];
    for (i, d) in [32, 64, 96, 128, 160, 192, 224, 256, 40, 512].into_iter().enumerate() {
        let variants = [
            AttnOptions::default(),
            AttnOptions::causal(),
            AttnOptions::default().with_window(Some(7), Some(3)),
            AttnOptions::default().with_window(Some(7), Some(3)).with_softcap(4.0),
            AttnOptions::causal().with_alibi_slopes(Tensor::new(&slopes, &dev)?),
            AttnOptions::default().with_dq_atomics(true),
            AttnOptions::causal().with_window(Some(7), Some(3)).with_dq_atomics(true),
        ];
        for (j, opts) in variants.iter().enumerate() {
            for (sq, sk) in [(37, 70), (70, 37)] {
                check_against_cpu(sq, sk, d, opts, 1500 + 10 * i as u64 + j as u64)?;
            }
        }
    }
    Ok(())
}

/// Blocks of at least four steps, so that every stage of the backward's three-stage stream (two at d256
/// and in the one-pass kernel of dq_atomics with CANDLE_FA2_BWD_ONE_PASS=1, whose dS buffers are reused
/// too) is refilled, under the sanitizer too (the shapes above give a block at most two): a KEYS block
/// walks 4-7 query blocks of each of two query heads, a QUERIES block 2-7 key blocks.
#[test]
fn grad_sanitizer_shapes_stages_reused() -> Result<()> {
    let modes = [
        AttnOptions::default(),
        AttnOptions::causal(),
        AttnOptions::default().with_dq_atomics(true),
        AttnOptions::causal().with_dq_atomics(true),
    ];
    for (i, d) in [64, 128, 256].into_iter().enumerate() {
        for (j, opts) in modes.iter().enumerate() {
            for (sq, sk) in [(200, 400), (400, 200)] {
                check_against_cpu(sq, sk, d, opts, 1600 + 10 * i as u64 + j as u64)?;
            }
        }
    }
    Ok(())
}
