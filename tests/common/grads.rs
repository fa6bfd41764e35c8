//! Gradients through candle autograd, and the attention written with differentiable candle ops that the
//! gradient tests take as their reference (in f64) and their baseline (in the inputs' dtype).

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_fa2::AttnOptions;

/// An attention on (q, k, v), under autograd.
pub type Attention<'a> = &'a dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>;

/// Gradients of `sum(attention(q, k, v) * w)` for q, k and v, as f64 on the CPU. w is rounded to the
/// output's dtype first, so every attention compared on the same inputs gets the same upstream gradient.
/// Each gradient has its input's shape and dtype.
pub fn grads(attention: Attention, q: &Tensor, k: &Tensor, v: &Tensor, w: &Tensor) -> Result<[Tensor; 3]> {
    let vars = [Var::from_tensor(q)?, Var::from_tensor(k)?, Var::from_tensor(v)?];
    let out = attention(vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor())?;
    assert_eq!(out.dims(), q.dims());
    let w = w.to_device(out.device())?.to_dtype(out.dtype())?;
    let g = (out * w)?.to_dtype(DType::F32)?.sum_all()?.backward()?;
    let mut result = Vec::with_capacity(3);
    for var in &vars {
        let grad = g.get(var.as_tensor()).expect("a gradient for every input");
        assert_eq!((grad.dims(), grad.dtype()), (var.dims(), var.dtype()), "gradient shape and dtype");
        result.push(grad.to_device(&Device::Cpu)?.to_dtype(DType::F64)?);
    }
    Ok(result.try_into().expect("three gradients"))
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
