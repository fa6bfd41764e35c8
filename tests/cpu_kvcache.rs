//! `flash_attn_kvcache` (per-sequence key counts) and `merge_attn_states` on the CPU, against the f64
//! reference; their errors.

pub mod common;

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::{flash_attn_kvcache, flash_attn_with_lse, merge_attn_states, reference, AttnOptions};
use common::errors::expect_err;
use common::forward::check_kvcache;
use common::inputs::{Case, Rng};
use common::tolerance::F32_REORDERED;

/// Sequences of 0, 1, odd, a tile and the full capacity in one call; K/V narrowed from a larger buffer;
/// one and several query rows (bottom-right per sequence); GQA; every option.
#[test]
fn kvcache_per_sequence_lengths() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(50);
    let lens = [0u32, 1, 37, 64, 90];
    let (k_buf, v_buf) =
        (rng.tensor((5, 128, 2, 32), 1.0, DType::F32, &dev)?, rng.tensor((5, 128, 2, 32), 1.0, DType::F32, &dev)?);
    let (k_cache, v_cache) = (k_buf.narrow(1, 0, 90)?, v_buf.narrow(1, 0, 90)?);
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.1, 0.05], &dev)?;
    let variants = [
        AttnOptions::causal(),
        AttnOptions::default(),
        AttnOptions::causal().with_window(Some(10), None),
        AttnOptions::causal().with_alibi_slopes(slopes).with_softcap(3.0),
    ];
    for sq in [1, 4] {
        let q = rng.tensor((5, sq, 4, 32), 1.0, DType::F32, &dev)?;
        for (j, opts) in variants.iter().enumerate() {
            check_kvcache(&q, &k_cache, &v_cache, &lens, opts, &format!("sq {sq} variant {j}"))?;
        }
    }
    // bf16 too (the tolerance rule scales with the naive attention's error).
    let q = rng.tensor((5, 2, 4, 32), 1.0, DType::BF16, &dev)?;
    let (k_cache, v_cache) = (k_cache.to_dtype(DType::BF16)?, v_cache.to_dtype(DType::BF16)?);
    check_kvcache(&q, &k_cache, &v_cache, &lens, &AttnOptions::causal(), "bf16")?;
    Ok(())
}

/// Attention over disjoint key sets, merged, equals attention over their union; parts that saw no key
/// weigh nothing, and rows no part saw are zeros with LSE -inf.
#[test]
fn merge_equals_attention_over_the_union() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(60);
    let (q, k, v) = Case::new(2, 6, 150, 4, 2, 32).inputs(&mut rng, DType::F32, &dev, false)?;
    let opts = AttnOptions::default();
    let (want, want_lse) = reference::attention(&q, &k, &v, &opts)?;
    let cuts = [0, 40, 41, 150];
    let parts = cuts
        .windows(2)
        .map(|w| flash_attn_with_lse(&q, &k.narrow(1, w[0], w[1] - w[0])?, &v.narrow(1, w[0], w[1] - w[0])?, &opts))
        .collect::<Result<Vec<_>>>()?;
    let (out, lse) = merge_attn_states(&parts)?;
    assert!(reference::max_abs_diff(&out, &want)? < F32_REORDERED, "merged output");
    assert!(reference::max_abs_diff(&lse, &want_lse)? < F32_REORDERED, "merged lse");

    // A part whose rows saw nothing: zeros and -inf (as a sequence of 0 keys returns).
    let empty = (q.zeros_like()?, Tensor::full(f32::NEG_INFINITY, (2, 4, 6), &dev)?);
    let (out, lse) = merge_attn_states(&[parts[0].clone(), empty.clone(), parts[1].clone(), parts[2].clone()])?;
    assert!(reference::max_abs_diff(&out, &want)? < F32_REORDERED, "with an empty part");
    assert!(reference::max_abs_diff(&lse, &want_lse)? < F32_REORDERED);
    let (out, lse) = merge_attn_states(&[empty.clone(), empty])?;
    assert!(out.flatten_all()?.to_vec1::<f32>()?.iter().all(|&x| x == 0.0), "nothing seen: zeros");
    assert!(lse.flatten_all()?.to_vec1::<f32>()?.iter().all(|&x| x == f32::NEG_INFINITY), "nothing seen: -inf");
    Ok(())
}

#[test]
fn bad_seqlens_k_and_parts_are_errors() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(70);
    let (q, k, v) = Case::new(2, 1, 16, 4, 2, 32).inputs(&mut rng, DType::F32, &dev, false)?;
    let opts = AttnOptions::causal();
    expect_err(
        flash_attn_kvcache(&q, &k, &v, &Tensor::new(&[1u32, 2, 3], &dev)?, &opts),
        &["seqlens_k", "(2,)", "[3]"],
    );
    expect_err(flash_attn_kvcache(&q, &k, &v, &Tensor::new(&[1i64, 2], &dev)?, &opts), &["seqlens_k", "u32", "I64"]);
    expect_err(
        flash_attn_kvcache(&q, &k, &v, &Tensor::new(&[16u32, 17], &dev)?, &opts),
        &["seqlens_k[1] = 17", "capacity 16"],
    );
    expect_err(flash_attn_kvcache(&q, &k, &v, &Tensor::new(&[[1u32, 2]], &dev)?, &opts), &["seqlens_k", "[1, 2]"]);
    expect_err(
        flash_attn_kvcache(&q, &k, &v, &Tensor::new(&[1u32, 2], &dev)?, &opts.clone().with_num_splits(0)),
        &["num_splits", "0"],
    );

    let part = flash_attn_with_lse(&q, &k, &v, &opts)?;
    expect_err(merge_attn_states(&[]), &["no parts"]);
    expect_err(merge_attn_states(&[part.clone(), (part.0.to_dtype(DType::F16)?, part.1.clone())]), &["part 1", "F16"]);
    expect_err(merge_attn_states(&[part.clone(), (part.0.clone(), part.1.narrow(2, 0, 0)?)]), &["lse of part 1"]);
    Ok(())
}
