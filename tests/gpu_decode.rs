//! The split-KV decode kernel on the GPU (feature `cuda`; compiled in CI, run on the device by
//! scripts/gpu_run.sh): `flash_attn` with seqlen_q <= 16, `flash_attn_kvcache` with per-sequence key counts,
//! forced split counts, every option, and `merge_attn_states` on CUDA.
#![cfg(feature = "cuda")]

pub mod common;

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::{flash_attn, flash_attn_kvcache, flash_attn_with_lse, merge_attn_states, reference, AttnOptions};
use common::cuda::{gpu, gpu_matches_cpu_and_repeats, opts_on_cpu, poison_pool};
use common::errors::expect_err;
use common::forward::{check, check_kvcache};
use common::inputs::{Case, Rng};
use common::tolerance::{CUDA_VS_CPU, LSE, SMOKE};

fn run(case: Case, dtype: DType, opts: &AttnOptions, seed: u64) -> Result<()> {
    let dev = gpu();
    poison_pool(&dev, 1 << 22)?;
    let mut rng = Rng::new(seed);
    let (q, k, v) = case.inputs(&mut rng, dtype, &dev, false)?;
    let what = format!("{case:?} {dtype:?} causal={} splits={:?}", opts.causal, opts.num_splits);
    let e = check(&q, &k, &v, opts, &what)?;
    eprintln!("{what}: ours {:.2e} naive {:.2e} lse {:.2e}", e.ours, e.naive, e.lse);
    Ok(())
}

/// Query rows 1 to 16, GQA ratios 1, 4, 8, 16 and MQA, cache lengths on and off the 64- and 32-key tiles,
/// every instantiated head dim and ones between them, with the heuristic's split count, one split and three.
#[test]
fn decode_matches_reference() -> Result<()> {
    let cases = [
        // (seqlen_q, heads_q, heads_kv, head_dim, seqlen_k)
        (1, 32, 8, 128, 1000),
        (1, 8, 8, 64, 1),
        (1, 16, 1, 64, 333),
        (2, 16, 4, 128, 4097),
        (4, 32, 8, 128, 64),
        (7, 16, 1, 96, 65),
        (16, 8, 8, 64, 63),
        (16, 16, 2, 256, 700),
        (3, 32, 2, 160, 129),
        (5, 8, 4, 192, 250),
        (1, 4, 1, 224, 97),
        (1, 16, 1, 32, 300),
        (2, 8, 2, 40, 77),
        (1, 8, 1, 200, 190),
        // d512: V cut in two parts (kernels/sm80/decode_configs.cuh), and a head dim that runs on it masked.
        (1, 16, 1, 512, 333),
        (4, 8, 2, 400, 129),
    ];
    for (i, (sq, hq, hkv, d, sk)) in cases.into_iter().enumerate() {
        for causal in [false, true] {
            for splits in [None, Some(1), Some(3)] {
                let dtype = if i % 2 == 0 { DType::BF16 } else { DType::F16 };
                let mut opts = AttnOptions::default().with_causal(causal);
                opts.num_splits = splits;
                run(Case::new(2, sq, sk, hq, hkv, d), dtype, &opts, 1000 + i as u64)?;
            }
        }
    }
    Ok(())
}

/// Every split count from 1 to the maximum on one long cache, and more splits than key tiles (empty splits
/// write LSE -inf and weigh nothing in the combine).
#[test]
fn forced_splits_up_to_the_maximum() -> Result<()> {
    for (j, splits) in [1, 2, 7, 31, 64, 100, 128].into_iter().enumerate() {
        let opts = AttnOptions::causal().with_num_splits(splits);
        run(Case::new(1, 1, 9000, 8, 2, 128), DType::BF16, &opts, 1100 + j as u64)?;
        run(Case::new(3, 4, 100, 8, 1, 64), DType::F16, &opts, 1120 + j as u64)?;
        run(Case::new(2, 1, 2100, 8, 2, 512), DType::BF16, &opts, 1140 + j as u64)?;
    }
    Ok(())
}

/// Windows, softcap, ALiBi and a negative scale on the decode path, split and not.
#[test]
fn options_on_the_decode_path() -> Result<()> {
    let dev = gpu();
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.125, 0.0625, 0.03, 0.02, 0.01, 0.005], &dev)?;
    let variants = [
        AttnOptions::causal().with_window(Some(32), None),
        AttnOptions::default().with_window(Some(5), Some(70)),
        AttnOptions::default().with_window(Some(300), Some(-2)),
        AttnOptions::default().with_softcap(5.0).with_softmax_scale(0.6),
        AttnOptions::causal().with_alibi_slopes(slopes.clone()),
        AttnOptions::default().with_alibi_slopes(slopes).with_softcap(3.0).with_window(Some(40), Some(20)),
        AttnOptions::causal().with_softmax_scale(-0.1),
    ];
    for (i, opts) in variants.iter().enumerate() {
        for (sq, sk) in [(1, 500), (5, 1200), (16, 90)] {
            for splits in [1, 4] {
                let opts = opts.clone().with_num_splits(splits);
                run(Case::new(2, sq, sk, 8, 2, 64), DType::BF16, &opts, 1200 + i as u64)?;
            }
        }
        run(Case::new(1, 3, 2000, 8, 1, 128), DType::F16, opts, 1250 + i as u64)?;
        run(Case::new(2, 2, 700, 8, 4, 512), DType::BF16, &opts.clone().with_num_splits(3), 1270 + i as u64)?;
    }
    Ok(())
}

/// K/V as views of a larger cache (the capacity narrowed from a preallocated buffer, as KvCache hands
/// them out), sequences of 0, 1, a tile, an odd count and the full capacity in one launch.
#[test]
fn kvcache_per_sequence_lengths() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(1300);
    let lens = [0u32, 1, 64, 299, 300, 17];
    let slopes = Tensor::new(&[0.3f32, 0.2, 0.1, 0.05], &dev)?;
    for (d, hq, hkv) in [(128, 4, 1), (64, 4, 4), (256, 4, 2), (512, 4, 1)] {
        let buffer_k = rng.tensor((lens.len(), 512, hkv, d), 1.0, DType::BF16, &dev)?;
        let buffer_v = rng.tensor((lens.len(), 512, hkv, d), 1.0, DType::BF16, &dev)?;
        let (k_cache, v_cache) = (buffer_k.narrow(1, 0, 300)?, buffer_v.narrow(1, 0, 300)?);
        for sq in [1, 3] {
            let q = rng.tensor((lens.len(), sq, hq, d), 1.0, DType::BF16, &dev)?;
            let variants = [
                AttnOptions::causal(),
                AttnOptions::default(),
                AttnOptions::causal().with_window(Some(20), None).with_num_splits(5),
                AttnOptions::causal().with_alibi_slopes(slopes.clone()).with_softcap(4.0).with_num_splits(1),
            ];
            for (j, opts) in variants.iter().enumerate() {
                poison_pool(&dev, 1 << 22)?;
                let what = format!("kvcache d {d} heads {hq}/{hkv} sq {sq} variant {j}");
                let err = check_kvcache(&q, &k_cache, &v_cache, &lens, opts, &what)?;
                eprintln!("{what}: {err:.2e}");
            }
        }
    }
    Ok(())
}

/// Head dims that are not multiples of 8 on the decode kernel (q, k, v zero-padded inside the op): query
/// rows 1 to 16, GQA packing, split and not, f16 and bf16.
#[test]
fn decode_odd_head_dims() -> Result<()> {
    let cases = [
        // (seqlen_q, heads_q, heads_kv, head_dim, seqlen_k)
        (1, 16, 2, 33, 300),
        (4, 8, 8, 59, 129),
        (16, 8, 1, 111, 700),
        (2, 32, 8, 59, 1000),
        (1, 8, 1, 255, 190),
    ];
    for (i, (sq, hq, hkv, d, sk)) in cases.into_iter().enumerate() {
        for splits in [None, Some(1), Some(3)] {
            let dtype = if i % 2 == 0 { DType::BF16 } else { DType::F16 };
            let opts = AttnOptions { num_splits: splits, ..AttnOptions::causal() };
            run(Case::new(2, sq, sk, hq, hkv, d), dtype, &opts, 1900 + i as u64)?;
        }
    }
    Ok(())
}

/// f32 on the decode kernel (run as bf16, rule 5 of tolerance.rs): split and not, one head_dim off the
/// multiples of 8, an option that reads the scale.
#[test]
fn decode_f32_through_bf16() -> Result<()> {
    for (i, (sq, d, sk)) in [(1, 128, 1000), (3, 59, 500)].into_iter().enumerate() {
        for splits in [None, Some(1), Some(4)] {
            let opts = AttnOptions { num_splits: splits, ..AttnOptions::causal() };
            run(Case::new(2, sq, sk, 32, 8, d), DType::F32, &opts, 1950 + i as u64)?;
        }
    }
    let opts = AttnOptions::default().with_softcap(5.0).with_window(Some(300), Some(-2));
    run(Case::new(2, 2, 800, 8, 2, 64), DType::F32, &opts, 1960)?;
    Ok(())
}

/// `flash_attn_kvcache` on a cache of a head_dim off the multiples of 8, or in f32: the whole cache (a view
/// of a larger buffer) is copied and fitted each call; per-sequence counts of 0 up to the capacity.
#[test]
fn kvcache_odd_head_dims_and_f32() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(1970);
    let lens = [0u32, 1, 64, 299, 300, 17];
    for (d, dtype) in [(33, DType::BF16), (111, DType::F16), (59, DType::F32), (128, DType::F32)] {
        let buffer_k = rng.tensor((lens.len(), 512, 2, d), 1.0, dtype, &dev)?;
        let buffer_v = rng.tensor((lens.len(), 512, 2, d), 1.0, dtype, &dev)?;
        let (k_cache, v_cache) = (buffer_k.narrow(1, 0, 300)?, buffer_v.narrow(1, 0, 300)?);
        for sq in [1, 3, 20] {
            let q = rng.tensor((lens.len(), sq, 8, d), 1.0, dtype, &dev)?;
            for (j, opts) in [AttnOptions::causal(), AttnOptions::causal().with_num_splits(5)].iter().enumerate() {
                poison_pool(&dev, 1 << 22)?;
                let what = format!("kvcache d {d} {dtype:?} sq {sq} variant {j}");
                let err = check_kvcache(&q, &k_cache, &v_cache, &lens, opts, &what)?;
                eprintln!("{what}: {err:.2e}");
            }
        }
    }
    Ok(())
}

/// The long end: 64k keys for one sequence and 40,000 for another of the same launch.
#[test]
fn kvcache_long_cache() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(1400);
    let (k_cache, v_cache) = (
        rng.tensor((2, 65536, 1, 128), 1.0, DType::BF16, &dev)?,
        rng.tensor((2, 65536, 1, 128), 1.0, DType::BF16, &dev)?,
    );
    let q = rng.tensor((2, 1, 8, 128), 1.0, DType::BF16, &dev)?;
    let err = check_kvcache(&q, &k_cache, &v_cache, &[65536, 40000], &AttnOptions::causal(), "kvcache 64k")?;
    eprintln!("kvcache 64k: {err:.2e}");
    Ok(())
}

#[test]
fn decode_runs_are_bitwise_equal_and_agree_with_the_cpu() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(1500);
    let (q, k, v) = Case::new(3, 2, 3000, 16, 4, 128).inputs(&mut rng, DType::BF16, &Device::Cpu, false)?;
    let opts = AttnOptions::causal();
    let [qg, kg, vg] = gpu_matches_cpu_and_repeats(&q, &k, &v, &opts)?;
    let lens = Tensor::new(&[3000u32, 1234, 5], &dev)?;
    let a = flash_attn_kvcache(&qg, &kg, &vg, &lens, &opts)?;
    let b = flash_attn_kvcache(&qg, &kg, &vg, &lens, &opts)?;
    assert_eq!(reference::max_abs_diff(&a, &b)?, 0.0, "two kvcache runs differ");
    let on_cpu = flash_attn_kvcache(&q, &k, &v, &lens.to_device(&Device::Cpu)?, &opts)?;
    assert!(reference::max_abs_diff(&a, &on_cpu)? < CUDA_VS_CPU, "kvcache cpu vs cuda");
    Ok(())
}

/// Attention over two disjoint key ranges, merged, equals attention over all of them; on CUDA as on CPU.
#[test]
fn merge_on_cuda() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(1600);
    let (q, k, v) = Case::new(2, 5, 700, 8, 2, 64).inputs(&mut rng, DType::BF16, &dev, false)?;
    let opts = AttnOptions::default();
    let (want, want_lse) = flash_attn_with_lse(&q, &k, &v, &opts)?;
    let a = flash_attn_with_lse(&q, &k.narrow(1, 0, 300)?, &v.narrow(1, 0, 300)?, &opts)?;
    let b = flash_attn_with_lse(&q, &k.narrow(1, 300, 400)?, &v.narrow(1, 300, 400)?, &opts)?;
    let (out, lse) = merge_attn_states(&[a, b])?;
    assert!(reference::max_abs_diff(&out, &want)? < CUDA_VS_CPU);
    assert!(reference::max_abs_diff(&lse, &want_lse)? < LSE);
    Ok(())
}

#[test]
fn kvcache_errors_name_the_problem() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(1700);
    let (q, k, v) = Case::new(2, 1, 64, 4, 2, 64).inputs(&mut rng, DType::BF16, &dev, false)?;
    let kvcache = |lens: &Tensor| flash_attn_kvcache(&q, &k, &v, lens, &AttnOptions::causal());
    expect_err(kvcache(&Tensor::new(&[3u32, 4, 5], &dev)?), &["seqlens_k", "[3]"]);
    expect_err(kvcache(&Tensor::new(&[3i64, 4], &dev)?), &["seqlens_k", "I64"]);
    expect_err(kvcache(&Tensor::new(&[3u32, 4], &Device::Cpu)?), &["seqlens_k", "Cpu"]);
    expect_err(flash_attn(&q, &k, &v, &AttnOptions::default().with_num_splits(129)), &["num_splits", "129"]);
    Ok(())
}

/// Small shapes that reach every branch of the decode path (one split and several, the combine, empty
/// splits, rows without keys, per-sequence counts of 0 and above the capacity, GQA packing over two row
/// tiles, each head-dim class), compared with the CPU op only: the test run under compute-sanitizer.
#[test]
fn decode_sanitizer_shapes() -> Result<()> {
    let dev = gpu();
    let mut rng = Rng::new(1800);
    let slopes = [0.3f32, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001];
    for d in [64, 128, 256, 512] {
        for (j, base) in [
            AttnOptions::causal(),
            AttnOptions::default().with_window(Some(7), Some(3)).with_softcap(4.0),
            AttnOptions::causal().with_alibi_slopes(Tensor::new(&slopes, &dev)?),
        ]
        .into_iter()
        .enumerate()
        {
            for splits in [None, Some(1), Some(4), Some(40)] {
                let opts = AttnOptions { num_splits: splits, ..base.clone() };
                let cpu_opts = opts_on_cpu(&opts)?;
                // 4 query rows x 8 heads per KV head: 32 packed rows, two row tiles.
                let (q, k, v) = Case::new(2, 4, 70, 8, 1, d).inputs(&mut rng, DType::BF16, &Device::Cpu, false)?;
                let (qg, kg, vg) = (q.to_device(&dev)?, k.to_device(&dev)?, v.to_device(&dev)?);
                let want = flash_attn(&q, &k, &v, &cpu_opts)?;
                let diff = reference::max_abs_diff(&flash_attn(&qg, &kg, &vg, &opts)?, &want)?;
                assert!(diff < SMOKE, "d {d} variant {j} splits {splits:?}: {diff}");
                let lens = [0u32, 70];
                let want = flash_attn_kvcache(&q, &k, &v, &Tensor::new(&lens, &Device::Cpu)?, &cpu_opts)?;
                let got = flash_attn_kvcache(&qg, &kg, &vg, &Tensor::new(&[0u32, 5000], &dev)?, &opts)?;
                let diff = reference::max_abs_diff(&got, &want)?;
                assert!(diff < SMOKE, "kvcache d {d} variant {j} splits {splits:?}: {diff}");
            }
        }
    }
    Ok(())
}
