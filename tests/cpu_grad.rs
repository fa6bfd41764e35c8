//! Gradients of the op (its CPU backward, through candle autograd) against candle autograd of a plain
//! attention written with differentiable candle ops in f64. `cargo test grad` selects these.

pub mod common;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_fa2::{flash_attn, AttnImpl, AttnOptions};
use common::grads::{differentiable_attention, grads};
use common::inputs::{Case, Rng};
use common::tolerance::assert_cpu_grad;

const CPU: Device = Device::Cpu;

/// Backward of `sum(out * w)` through the op (inputs in `dtype`) and through the f64 attention of
/// `common::grads`, held to rule 3 of tolerance.rs.
fn check_grads(case: Case, dtype: DType, opts: &AttnOptions, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let (q, k, v) = case.inputs(&mut rng, dtype, &CPU, false)?;
    let w = rng.tensor((case.batch, case.seqlen_q, case.heads_q, case.head_dim), 1.0, DType::F32, &CPU)?;
    let got = grads(&|q, k, v| flash_attn(q, k, v, opts), &q, &k, &v, &w)?;
    let f64s = |t: &Tensor| t.to_dtype(DType::F64);
    let want = grads(&|q, k, v| differentiable_attention(q, k, v, opts), &f64s(&q)?, &f64s(&k)?, &f64s(&v)?, &w)?;
    for (name, (got, want)) in ["dq", "dk", "dv"].into_iter().zip(got.iter().zip(&want)) {
        assert_cpu_grad(got, want, dtype, &format!("{case:?} {dtype:?} {opts:?}: {name}"))?;
    }
    Ok(())
}

#[test]
fn grad_plain_odd_lengths() -> Result<()> {
    check_grads(Case::new(2, 37, 53, 2, 2, 32), DType::F32, &AttnOptions::default(), 1)?;
    check_grads(Case::new(1, 150, 70, 2, 2, 40), DType::F32, &AttnOptions::default(), 2)
}

#[test]
fn grad_causal_across_blocks() -> Result<()> {
    check_grads(Case::new(1, 64, 100, 2, 2, 64), DType::F32, &AttnOptions::causal(), 3)?;
    check_grads(Case::new(1, 200, 200, 1, 1, 64), DType::F32, &AttnOptions::causal(), 4)
}

#[test]
fn grad_gqa_and_mqa() -> Result<()> {
    check_grads(Case::new(1, 70, 90, 4, 2, 32), DType::F32, &AttnOptions::causal(), 5)?;
    check_grads(Case::new(2, 45, 45, 4, 1, 32), DType::F32, &AttnOptions::default(), 6)
}

#[test]
fn grad_window_softcap_alibi() -> Result<()> {
    let slopes = Tensor::new(&[0.3f32, 0.05], &CPU)?;
    let opts = AttnOptions::default().with_window(Some(20), Some(5)).with_softcap(3.0).with_softmax_scale(0.5);
    check_grads(Case::new(1, 80, 100, 2, 1, 32), DType::F32, &opts, 7)?;
    let opts = AttnOptions::causal().with_alibi_slopes(slopes);
    check_grads(Case::new(1, 90, 140, 2, 2, 32), DType::F32, &opts, 8)
}

#[test]
fn grad_half_precision() -> Result<()> {
    // Inputs and gradients rounded to 8 (bf16) or 11 (f16) mantissa bits.
    check_grads(Case::new(1, 60, 90, 2, 1, 64), DType::BF16, &AttnOptions::causal(), 9)?;
    check_grads(Case::new(1, 60, 90, 2, 1, 64), DType::F16, &AttnOptions::causal(), 10)
}

/// `flash_attn_backward` called directly gives what autograd gives through the op (same code, same bits),
/// and both are deterministic.
#[test]
fn grad_direct_call_matches_autograd() -> Result<()> {
    let case = Case::new(2, 45, 61, 4, 2, 32);
    let mut rng = Rng::new(11);
    let (q, k, v) = case.inputs(&mut rng, DType::F32, &CPU, false)?;
    let w = rng.tensor((2, 45, 4, 32), 1.0, DType::F32, &CPU)?;
    let opts = AttnOptions::causal().with_softcap(4.0);
    let vars = [Var::from_tensor(&q)?, Var::from_tensor(&k)?, Var::from_tensor(&v)?];
    let out = flash_attn(vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor(), &opts)?;
    let g = (out * &w)?.sum_all()?.backward()?;
    let (out, lse) = candle_fa2::flash_attn_with_lse(&q, &k, &v, &opts)?;
    let direct = candle_fa2::flash_attn_backward(&q, &k, &v, &out, &lse, &w, &opts)?;
    for (var, got) in vars.iter().zip([direct.0, direct.1, direct.2]) {
        let want = g.get(var.as_tensor()).expect("a gradient for every input");
        assert_eq!(candle_fa2::reference::max_abs_diff(&got, want)?, 0.0);
    }
    Ok(())
}

/// `--attn naive` in training: under autograd `AttnImpl::Naive` switches to the differentiable softmax, so q
/// and k get gradients (candle's fused softmax records none), and they match the op's.
#[test]
fn grad_attn_impl_naive_matches_flash() -> Result<()> {
    let case = Case::new(2, 40, 56, 4, 2, 32);
    let (q, k, v) = case.inputs(&mut Rng::new(11), DType::F32, &CPU, false)?;
    let grads_of = |attn: AttnImpl| -> Result<Vec<Tensor>> {
        let vars = [Var::from_tensor(&q)?, Var::from_tensor(&k)?, Var::from_tensor(&v)?];
        let out = attn.run(vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor(), &AttnOptions::causal())?;
        let grads = out.sqr()?.sum_all()?.backward()?;
        Ok(vars.iter().map(|var| grads.get(var.as_tensor()).cloned().expect("a gradient for every input")).collect())
    };
    let (flash, naive) = (grads_of(AttnImpl::Flash)?, grads_of(AttnImpl::Naive)?);
    for (name, (got, want)) in ["dq", "dk", "dv"].into_iter().zip(naive.iter().zip(&flash)) {
        assert_cpu_grad(got, want, DType::F32, &format!("{name}: naive against flash"))?;
    }
    Ok(())
}
