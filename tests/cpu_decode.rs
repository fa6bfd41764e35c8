//! The CPU decode path (`seqlen_q <= 16`: src/cpu/decode.rs) against the f64 reference: query rows 1 to 16,
//! GQA ratios 1 to 16 and MQA, cache lengths around the block size and up to 64k, the cache's layouts
//! (contiguous, narrowed from a larger buffer, heads before the sequence), forced split counts from 1 to
//! the maximum, every option, per-sequence lengths of 0 and full, and repeated calls bitwise equal.

pub mod common;

use candle_core::{DType, Device, Result, Tensor};
use candle_fa2::{flash_attn_kvcache_with_lse, flash_attn_with_lse, AttnOptions};
use common::forward::{check, check_kvcache};
use common::inputs::Rng;

const CPU: Device = Device::Cpu;

/// K and V (batch, len, heads_kv, head_dim) in one of three layouts: contiguous; the first `len` rows of a
/// buffer with 13 more (a preallocated cache); a (b, s, h, d) view of a (b, h, s, d) tensor.
fn cache(rng: &mut Rng, (b, len, h, d): (usize, usize, usize, usize), layout: usize, dtype: DType) -> Result<Tensor> {
    match layout {
        0 => rng.tensor((b, len, h, d), 1.0, dtype, &CPU),
        1 => rng.tensor((b, len + 13, h, d), 1.0, dtype, &CPU)?.narrow(1, 0, len),
        _ => rng.tensor((b, h, len, d), 1.0, dtype, &CPU)?.transpose(1, 2),
    }
}

#[test]
fn query_rows_gqa_lengths_and_layouts() -> Result<()> {
    let mut rng = Rng::new(900);
    // (heads_q, heads_kv): MHA, GQA 4, 8 and 16, MQA.
    let heads = [(4, 4), (8, 2), (16, 2), (16, 1), (6, 1)];
    for (i, &(heads_q, heads_kv)) in heads.iter().enumerate() {
        for (j, &len) in [1, 63, 64, 65, 700, 2049].iter().enumerate() {
            let sq = [1, 2, 5, 16][(i + j) % 4];
            let layout = (i + j) % 3;
            let d = if j % 2 == 0 { 64 } else { 40 };
            let k = cache(&mut rng, (2, len, heads_kv, d), layout, DType::F32)?;
            let v = cache(&mut rng, (2, len, heads_kv, d), layout, DType::F32)?;
            let q = rng.tensor((2, sq, heads_q, d), 1.0, DType::F32, &CPU)?;
            for causal in [true, false] {
                let opts = AttnOptions::default().with_causal(causal);
                let what =
                    format!("heads {heads_q}/{heads_kv} len {len} sq {sq} d {d} layout {layout} causal {causal}");
                check(&q, &k, &v, &opts, &what)?;
            }
        }
    }
    Ok(())
}

#[test]
fn every_option_and_dtype() -> Result<()> {
    let mut rng = Rng::new(901);
    let slopes = Tensor::new(&[0.3f32, 0.1, 0.05, 0.01], &CPU)?;
    let options = [
        AttnOptions::causal().with_window(Some(100), None),
        AttnOptions::default().with_window(Some(40), Some(3)),
        AttnOptions::causal().with_softcap(5.0),
        AttnOptions::causal().with_alibi_slopes(slopes.clone()),
        AttnOptions::default().with_alibi_slopes(slopes).with_softcap(2.0).with_softmax_scale(0.3),
        // A window that leaves the first rows of a 4-row append without keys.
        AttnOptions::causal().with_window(Some(0), Some(0)),
    ];
    for (t, dtype) in [DType::F32, DType::F16, DType::BF16].into_iter().enumerate() {
        for (i, opts) in options.iter().enumerate() {
            for (sq, len, d) in [(1, 333, 128), (4, 1030, 32), (3, 2, 72)] {
                // Each option meets every layout over the three dtypes.
                let layout = (i + t) % 3;
                let k = cache(&mut rng, (2, len, 2, d), layout, dtype)?;
                let v = cache(&mut rng, (2, len, 2, d), layout, dtype)?;
                let q = rng.tensor((2, sq, 4, d), 1.0, dtype, &CPU)?;
                check(&q, &k, &v, opts, &format!("{dtype:?} option {i} sq {sq} len {len} d {d}"))?;
            }
        }
    }
    Ok(())
}

/// Forced splits from 1 to 128, more than there are keys included (empty parts), give the reference's
/// answer; each split count repeats bitwise.
#[test]
fn forced_splits_and_repeats() -> Result<()> {
    let mut rng = Rng::new(902);
    let k = cache(&mut rng, (3, 1500, 2, 64), 1, DType::BF16)?;
    let v = cache(&mut rng, (3, 1500, 2, 64), 1, DType::BF16)?;
    let q = rng.tensor((3, 2, 8, 64), 1.0, DType::BF16, &CPU)?;
    for splits in [None, Some(1), Some(2), Some(3), Some(7), Some(64), Some(128)] {
        for (len, causal) in [(1500, true), (90, false)] {
            let (k, v) = (k.narrow(1, 0, len)?, v.narrow(1, 0, len)?);
            let mut opts = AttnOptions::default().with_causal(causal);
            opts.num_splits = splits;
            check(&q, &k, &v, &opts, &format!("splits {splits:?} len {len}"))?;
            let (a, a_lse) = flash_attn_with_lse(&q, &k, &v, &opts)?;
            let (b, b_lse) = flash_attn_with_lse(&q, &k, &v, &opts)?;
            let bits = |t: &Tensor| -> Result<Vec<u32>> {
                Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?.iter().map(|x| x.to_bits()).collect())
            };
            assert_eq!(bits(&a)?, bits(&b)?, "splits {splits:?} len {len}: output not repeatable");
            assert_eq!(bits(&a_lse)?, bits(&b_lse)?, "splits {splits:?} len {len}: lse not repeatable");
        }
    }
    Ok(())
}

/// One launch over sequences of 0 keys, 1, odd counts and the full capacity, forced splits included.
#[test]
fn kvcache_zero_and_full_lengths() -> Result<()> {
    let mut rng = Rng::new(903);
    let lens = [0u32, 1, 777, 1000, 64];
    let (k, v) = (cache(&mut rng, (5, 1000, 2, 64), 1, DType::F16)?, cache(&mut rng, (5, 1000, 2, 64), 1, DType::F16)?);
    let slopes = Tensor::new(&[0.2f32, 0.1, 0.05, 0.02, 0.01, 0.005], &CPU)?;
    for sq in [1, 6] {
        let q = rng.tensor((5, sq, 6, 64), 1.0, DType::F16, &CPU)?;
        for splits in [1, 5, 128] {
            let opts = AttnOptions::causal().with_alibi_slopes(slopes.clone()).with_window(Some(500), None);
            let opts = opts.with_num_splits(splits);
            check_kvcache(&q, &k, &v, &lens, &opts, &format!("sq {sq} splits {splits}"))?;
        }
    }
    // A cache whose rows are not contiguous in head_dim takes the sequence-by-sequence path: same answer.
    let q = rng.tensor((5, 1, 6, 64), 1.0, DType::F32, &CPU)?;
    let strided =
        |t: &Tensor| -> Result<Tensor> { t.to_dtype(DType::F32)?.transpose(2, 3)?.contiguous()?.transpose(2, 3) };
    let (ks, vs) = (strided(&k)?, strided(&v)?);
    let seqlens = Tensor::new(&lens, &CPU)?;
    let (out, _) = flash_attn_kvcache_with_lse(&q, &ks, &vs, &seqlens, &AttnOptions::causal())?;
    let (want, _) =
        flash_attn_kvcache_with_lse(&q, &ks.contiguous()?, &vs.contiguous()?, &seqlens, &AttnOptions::causal())?;
    let diff = (out - want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    assert!(diff < 1e-5, "strided cache differs by {diff}");
    Ok(())
}

#[test]
fn long_cache() -> Result<()> {
    let mut rng = Rng::new(904);
    let len = 65536;
    let k = cache(&mut rng, (1, len, 1, 64), 1, DType::BF16)?;
    let v = cache(&mut rng, (1, len, 1, 64), 1, DType::BF16)?;
    let q = rng.tensor((1, 1, 4, 64), 1.0, DType::BF16, &CPU)?;
    check(&q, &k, &v, &AttnOptions::causal(), "1 x 64k, MQA 4")?;
    Ok(())
}
