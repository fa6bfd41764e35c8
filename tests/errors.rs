//! Every invalid input gives an `Error` whose message names the tensor (or option) and the value seen.

pub mod common;

use candle_core::{DType, Device, Tensor};
use candle_fa2::{flash_attn, AttnOptions};
use common::errors::expect_err;

fn t(shape: &[usize], dtype: DType) -> Tensor {
    Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn qkv() -> (Tensor, Tensor, Tensor) {
    (t(&[2, 5, 4, 32], DType::F32), t(&[2, 7, 2, 32], DType::F32), t(&[2, 7, 2, 32], DType::F32))
}

#[test]
fn rank_must_be_4() {
    let (q, k, v) = qkv();
    expect_err(
        flash_attn(&t(&[5, 4, 32], DType::F32), &k, &v, &AttnOptions::default()),
        &["q", "rank 4", "[5, 4, 32]"],
    );
    expect_err(flash_attn(&q, &t(&[1, 2, 7, 2, 32], DType::F32), &v, &AttnOptions::default()), &["k", "rank 4"]);
    expect_err(flash_attn(&q, &k, &t(&[7, 2, 32], DType::F32), &AttnOptions::default()), &["v", "rank 4"]);
}

#[test]
fn dtypes() {
    let (q, k, v) = qkv();
    expect_err(flash_attn(&q, &k.to_dtype(DType::F16).unwrap(), &v, &AttnOptions::default()), &["k", "F16", "F32"]);
    expect_err(flash_attn(&q, &k, &v.to_dtype(DType::BF16).unwrap(), &AttnOptions::default()), &["v", "BF16"]);
    let f64s = |x: &Tensor| x.to_dtype(DType::F64).unwrap();
    expect_err(flash_attn(&f64s(&q), &f64s(&k), &f64s(&v), &AttnOptions::default()), &["q", "F64", "supported"]);
}

#[test]
fn shapes() {
    let (q, k, v) = qkv();
    let o = AttnOptions::default();
    expect_err(flash_attn(&q, &t(&[2, 7, 2, 16], DType::F32), &v, &o), &["head_dim", "32", "16"]);
    expect_err(flash_attn(&q, &k, &t(&[2, 7, 2, 64], DType::F32), &o), &["head_dim", "64"]);
    expect_err(flash_attn(&q, &t(&[3, 7, 2, 32], DType::F32), &v, &o), &["batch", "3"]);
    expect_err(flash_attn(&q, &k, &t(&[2, 8, 2, 32], DType::F32), &o), &["seqlen_k", "7", "8"]);
    expect_err(
        flash_attn(&q, &t(&[2, 7, 3, 32], DType::F32), &t(&[2, 7, 3, 32], DType::F32), &o),
        &["heads_q (4)", "heads_kv (3)"],
    );
    expect_err(flash_attn(&q, &k, &t(&[2, 7, 1, 32], DType::F32), &o), &["heads_kv", "2", "1"]);
    expect_err(
        flash_attn(&t(&[2, 5, 4, 0], DType::F32), &t(&[2, 7, 2, 0], DType::F32), &t(&[2, 7, 2, 0], DType::F32), &o),
        &["head_dim is 0"],
    );
    expect_err(flash_attn(&q, &t(&[2, 7, 0, 32], DType::F32), &t(&[2, 7, 0, 32], DType::F32), &o), &["0 heads", "4"]);
}

#[test]
fn options() {
    let (q, k, v) = qkv();
    expect_err(flash_attn(&q, &k, &v, &AttnOptions::default().with_softmax_scale(f32::NAN)), &["softmax_scale", "NaN"]);
    expect_err(
        flash_attn(&q, &k, &v, &AttnOptions::default().with_softmax_scale(f32::INFINITY)),
        &["softmax_scale", "inf"],
    );
    expect_err(flash_attn(&q, &k, &v, &AttnOptions::default().with_softcap(-1.0)), &["softcap", "-1"]);
    expect_err(flash_attn(&q, &k, &v, &AttnOptions::default().with_softcap(0.0)), &["softcap", "0"]);
    expect_err(
        flash_attn(&q, &k, &v, &AttnOptions::default().with_window(Some(2), Some(-3))),
        &["window", "left 2", "right -3"],
    );
    expect_err(flash_attn(&q, &k, &v, &AttnOptions::causal().with_window(Some(-1), None)), &["window", "causal"]);
    // A band that lies wholly right of every key: offset 2, keys 0..7, band starts 9 to the right.
    expect_err(
        flash_attn(&q, &k, &v, &AttnOptions::default().with_window(Some(-9), None)),
        &["no key visible", "seqlen_k 7"],
    );
}

#[test]
fn alibi_slopes() {
    let (q, k, v) = qkv();
    let wrong_len = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    expect_err(
        flash_attn(&q, &k, &v, &AttnOptions::default().with_alibi_slopes(wrong_len)),
        &["alibi_slopes", "(4,)", "[3]"],
    );
    let wrong_rank = Tensor::zeros((1, 4), DType::F32, &Device::Cpu).unwrap();
    expect_err(
        flash_attn(&q, &k, &v, &AttnOptions::default().with_alibi_slopes(wrong_rank)),
        &["alibi_slopes", "[1, 4]"],
    );
    let wrong_dtype = Tensor::zeros(4, DType::F16, &Device::Cpu).unwrap();
    expect_err(
        flash_attn(&q, &k, &v, &AttnOptions::default().with_alibi_slopes(wrong_dtype)),
        &["alibi_slopes", "f32", "F16"],
    );
}

#[test]
fn compat_varlen_offsets() {
    use candle_fa2::compat::flash_attn_varlen;
    let q = t(&[10, 2, 32], DType::F32);
    let bad = Tensor::new(&[0u32, 6, 4], &Device::Cpu).unwrap();
    let good = Tensor::new(&[0u32, 4, 10], &Device::Cpu).unwrap();
    expect_err(
        flash_attn_varlen(&q, &q, &q, &bad, &good, 10, 10, 1.0, false),
        &["cu_seqlens_q", "end at 10", "[0, 6, 4]"],
    );
    expect_err(flash_attn_varlen(&q, &q, &q, &good, &good, 4, 10, 1.0, false), &["sequence 1", "maximum 4"]);
}

#[test]
fn backward_checks_out_lse_and_grad_out() {
    let (q, k, v) = qkv();
    let opts = AttnOptions::default();
    let (out, lse) = candle_fa2::flash_attn_with_lse(&q, &k, &v, &opts).unwrap();
    let grads = |out: &Tensor, lse: &Tensor, g: &Tensor| {
        candle_fa2::flash_attn_backward(&q, &k, &v, out, lse, g, &opts).map(|(dq, _, _)| dq)
    };
    expect_err(grads(&out, &lse, &t(&[2, 5, 4, 16], DType::F32)), &["grad_out", "[2, 5, 4, 32]", "[2, 5, 4, 16]"]);
    expect_err(grads(&out.to_dtype(DType::BF16).unwrap(), &lse, &out), &["out", "BF16"]);
    expect_err(grads(&out, &lse.narrow(2, 0, 3).unwrap(), &out), &["lse", "[2, 4, 5]", "[2, 4, 3]"]);
    expect_err(grads(&out, &lse.to_dtype(DType::F16).unwrap(), &out), &["lse", "F16"]);
}
