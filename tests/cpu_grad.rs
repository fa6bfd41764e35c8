//! Gradients of the op (its CPU backward, through candle autograd) against candle autograd of a plain
//! attention written with differentiable candle ops in f64. `cargo test grad` selects these.

mod common;

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_fa2::{flash_attn, AttnOptions};
use common::{Case, Rng};

const CPU: Device = Device::Cpu;

/// softmax(q kᵀ · scale [softcap] [- alibi] [masked]) v with ops that all have a backward, in q's dtype.
fn differentiable_attention(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<Tensor> {
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
        let a: Vec<f64> = (0..sq).flat_map(|i| (0..sk).map(move |j| dist(i, j).abs() as f64)).collect();
        let a = Tensor::from_vec(a, (1, 1, sq, sk), &CPU)?.to_dtype(s.dtype())?;
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
    let visible = Tensor::from_vec(visible, (1, 1, sq, sk), &CPU)?.broadcast_as(s.shape())?;
    let neg_inf = Tensor::full(f64::NEG_INFINITY, s.shape(), &CPU)?.to_dtype(s.dtype())?;
    let p = candle_nn::ops::softmax(&visible.where_cond(&s, &neg_inf)?, D::Minus1)?;
    p.matmul(&v)?.transpose(1, 2)
}

/// Backward of `sum(out * w)` through the op (inputs in `dtype`) and through the f64 attention above;
/// asserts each gradient's max error relative to the reference gradient's largest magnitude.
fn check_grads(case: Case, dtype: DType, opts: &AttnOptions, tol: f64, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let (q, k, v) = case.inputs(&mut rng, dtype, &CPU, false)?;
    let w = rng.tensor((case.batch, case.seqlen_q, case.heads_q, case.head_dim), 1.0, DType::F64, &CPU)?;

    let vars = [Var::from_tensor(&q)?, Var::from_tensor(&k)?, Var::from_tensor(&v)?];
    let out = flash_attn(vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor(), opts)?;
    let grads = (out.to_dtype(DType::F64)? * &w)?.sum_all()?.backward()?;

    let vars64 = [q.to_dtype(DType::F64)?, k.to_dtype(DType::F64)?, v.to_dtype(DType::F64)?]
        .map(|t| Var::from_tensor(&t).unwrap());
    let opts64 = AttnOptions {
        alibi_slopes: opts.alibi_slopes.as_ref().map(|s| s.to_dtype(DType::F64)).transpose()?,
        ..opts.clone()
    };
    let out64 = differentiable_attention(vars64[0].as_tensor(), vars64[1].as_tensor(), vars64[2].as_tensor(), &opts64)?;
    let grads64 = (out64 * &w)?.sum_all()?.backward()?;

    for (name, (var, var64)) in ["dq", "dk", "dv"].into_iter().zip(vars.iter().zip(&vars64)) {
        let got = grads.get(var.as_tensor()).expect("a gradient for every input");
        let want = grads64.get(var64.as_tensor()).expect("a reference gradient");
        assert_eq!(got.dims(), var.as_tensor().dims(), "{name} shape");
        assert_eq!(got.dtype(), dtype, "{name} dtype");
        let err = candle_fa2::reference::max_abs_diff(got, want)?;
        let scale = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
        assert!(err <= tol * scale, "{case:?} {dtype:?} {opts:?}: {name} error {err:.3e} vs max |grad| {scale:.3e}");
    }
    Ok(())
}

#[test]
fn grad_plain_odd_lengths() -> Result<()> {
    check_grads(Case::new(2, 37, 53, 2, 2, 32), DType::F32, &AttnOptions::default(), 1e-4, 1)?;
    check_grads(Case::new(1, 150, 70, 2, 2, 40), DType::F32, &AttnOptions::default(), 1e-4, 2)
}

#[test]
fn grad_causal_across_blocks() -> Result<()> {
    check_grads(Case::new(1, 64, 100, 2, 2, 64), DType::F32, &AttnOptions::causal(), 1e-4, 3)?;
    check_grads(Case::new(1, 200, 200, 1, 1, 64), DType::F32, &AttnOptions::causal(), 1e-4, 4)
}

#[test]
fn grad_gqa_and_mqa() -> Result<()> {
    check_grads(Case::new(1, 70, 90, 4, 2, 32), DType::F32, &AttnOptions::causal(), 1e-4, 5)?;
    check_grads(Case::new(2, 45, 45, 4, 1, 32), DType::F32, &AttnOptions::default(), 1e-4, 6)
}

#[test]
fn grad_window_softcap_alibi() -> Result<()> {
    let slopes = Tensor::new(&[0.3f32, 0.05], &CPU)?;
    let opts = AttnOptions::default().with_window(Some(20), Some(5)).with_softcap(3.0).with_softmax_scale(0.5);
    check_grads(Case::new(1, 80, 100, 2, 1, 32), DType::F32, &opts, 1e-4, 7)?;
    let opts = AttnOptions::causal().with_alibi_slopes(slopes);
    check_grads(Case::new(1, 90, 140, 2, 2, 32), DType::F32, &opts, 1e-4, 8)
}

#[test]
fn grad_half_precision() -> Result<()> {
    // Inputs and gradients rounded to 8 (bf16) or 11 (f16) mantissa bits.
    check_grads(Case::new(1, 60, 90, 2, 1, 64), DType::BF16, &AttnOptions::causal(), 2e-2, 9)?;
    check_grads(Case::new(1, 60, 90, 2, 1, 64), DType::F16, &AttnOptions::causal(), 3e-3, 10)
}
