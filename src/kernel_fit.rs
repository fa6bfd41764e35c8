//! Calls the CUDA kernels cannot take as they are, made into calls they can: a head_dim that is not a
//! multiple of 8 is zero-padded up to one, f32 is rounded to bf16; the results are turned back into the
//! caller's head_dim and dtype. Everything else (the CPU, f16/bf16 with a head_dim multiple of 8) passes
//! through untouched, so it pays no copy.
//!
//! Why zero columns are exact: a zero column adds `0 * 0` to every `q · k` (the scores, and so P and the
//! LSE, do not change, provided the scale stays the caller's `1/sqrt(head_dim)`, which `validate` fixed
//! before this runs) and gives a zero column of `P V`, which the narrowing drops. In the backward the
//! padded columns of dq, dk and dv are dropped the same way; the others do not see them.

use candle_core::{DType, Device, Result, Tensor, D};

use crate::validate::AttnSpec;

/// The head_dim granularity of the kernels: a row is read in 16-byte cp.async chunks of 8 f16/bf16 values
/// (kernels/common/tile_loader.cuh).
pub const KERNEL_HEAD_DIM_MULTIPLE: usize = 8;

/// How one call's q, k, v differ from what the kernels take, and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelFit {
    /// The caller's head_dim and dtype: what the results are turned back into.
    head_dim: usize,
    dtype: DType,
    /// What the kernels run on.
    kernel_head_dim: usize,
    kernel_dtype: DType,
}

/// The forward a fitted call runs: the op on (q, k, v) with the spec of their sizes -> (out, lse).
type Forward<'a> = &'a dyn Fn(&Tensor, &Tensor, &Tensor, AttnSpec) -> Result<(Tensor, Tensor)>;

/// The backward the fitted call runs: (spec, (q, k, v), out, grad_out, lse) -> (dq, dk, dv).
type Backward<'a> =
    &'a dyn Fn(&AttnSpec, (&Tensor, &Tensor, &Tensor), &Tensor, &Tensor, &Tensor) -> Result<(Tensor, Tensor, Tensor)>;

impl KernelFit {
    /// What a call of `spec` on `device` needs, or `None` where the backend takes it as it is: every CPU
    /// call, and on CUDA f16/bf16 with a head_dim multiple of 8.
    pub fn for_call(device: &Device, spec: &AttnSpec) -> Option<Self> {
        if !device.is_cuda() {
            return None;
        }
        Self::cuda(spec.dims.head_dim, spec.dtype)
    }

    /// On CUDA: head_dim up to the next multiple of 8, f32 as bf16. bf16 rather than f16: it keeps f32's
    /// 8-bit exponent, so any finite f32 input stays finite and keeps its relative precision (f16 overflows
    /// to inf past 65504 and loses precision below 6e-5); the mantissa bf16 drops (8 bits against f16's 11)
    /// costs what every bf16 model already pays, and the kernels accumulate in f32 either way.
    fn cuda(head_dim: usize, dtype: DType) -> Option<Self> {
        let fit = Self {
            head_dim,
            dtype,
            kernel_head_dim: head_dim.next_multiple_of(KERNEL_HEAD_DIM_MULTIPLE),
            kernel_dtype: if dtype == DType::F32 { DType::BF16 } else { dtype },
        };
        (fit.kernel_head_dim != head_dim || fit.kernel_dtype != dtype).then_some(fit)
    }

    /// The spec of the fitted call: the kernels' head_dim and dtype. The softmax scale stays the one
    /// `validate` computed from the caller's head_dim (the padded one would change the result).
    fn spec(&self, spec: &AttnSpec) -> AttnSpec {
        let mut spec = spec.clone();
        spec.dims.head_dim = self.kernel_head_dim;
        spec.dtype = self.kernel_dtype;
        spec
    }

    /// q, k, v, out or grad_out as the kernels take it: a copy, rounded and padded (differentiable: autograd
    /// carries gradients back through the rounding and the padding to the caller's tensor).
    fn input(&self, t: &Tensor) -> Result<Tensor> {
        pad_head_dim(&t.to_dtype(self.kernel_dtype)?, self.kernel_head_dim)
    }

    /// A result of the kernels (out, dq, dk, dv) as the caller's: its head_dim, its dtype, contiguous as the
    /// op's outputs always are.
    fn output(&self, t: &Tensor) -> Result<Tensor> {
        t.narrow(D::Minus1, 0, self.head_dim)?.to_dtype(self.dtype)?.contiguous()
    }

    /// The forward `run` on fitted q, k, v; returns the output as the caller's and the LSE (f32 already,
    /// and the same for the padded call).
    pub fn forward(
        &self,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        spec: &AttnSpec,
        run: Forward,
    ) -> Result<(Tensor, Tensor)> {
        let (out, lse) = run(&self.input(q)?, &self.input(k)?, &self.input(v)?, self.spec(spec))?;
        Ok((self.output(&out)?, lse))
    }

    /// The backward `run` on fitted tensors, for [`crate::flash_attn_backward`] called on the caller's ones
    /// (through autograd the op already holds the fitted ones, and this is not needed); returns dq, dk, dv
    /// as the caller's.
    pub fn backward(
        &self,
        spec: &AttnSpec,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        out: &Tensor,
        grad_out: &Tensor,
        lse: &Tensor,
        run: Backward,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (q, k, v) = (self.input(q)?, self.input(k)?, self.input(v)?);
        let (dq, dk, dv) = run(&self.spec(spec), (&q, &k, &v), &self.input(out)?, &self.input(grad_out)?, lse)?;
        Ok((self.output(&dq)?, self.output(&dk)?, self.output(&dv)?))
    }
}

/// `t` with zero columns appended on its last (head_dim) axis up to `head_dim`; `t` itself when it is
/// that wide already.
pub fn pad_head_dim(t: &Tensor, head_dim: usize) -> Result<Tensor> {
    let d = t.dim(D::Minus1)?;
    if head_dim < d {
        candle_core::bail!("pad_head_dim: cannot pad a head_dim of {d} to {head_dim}")
    }
    t.pad_with_zeros(D::Minus1, 0, head_dim - d)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Result, Tensor, Var};

    use super::{pad_head_dim, KernelFit};
    use crate::reference::max_abs_diff;
    use crate::{validate, AttnOptions};

    /// Deterministic values far from uniform (a sine of a quadratic in the index), so that every score
    /// differs and a wrong scale or a leaked column shows.
    fn values(shape: &[usize], seed: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * i) as f64 * 0.0137 + i as f64 * 0.61 + seed).sin() as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }

    #[test]
    fn pad_head_dim_appends_zero_columns() -> Result<()> {
        // A (b, s, h, d) view of a (b, h, s, d) tensor, as models pass them: any layout is read.
        let t = values(&[2, 3, 5, 33], 0.1)?.transpose(1, 2)?;
        let padded = pad_head_dim(&t, 40)?;
        assert_eq!(padded.dims(), [2, 5, 3, 40]);
        assert_eq!(max_abs_diff(&padded.narrow(3, 0, 33)?, &t)?, 0.0);
        let tail = padded.narrow(3, 33, 7)?.flatten_all()?.to_vec1::<f32>()?;
        assert!(tail.iter().all(|&x| x == 0.0), "padded columns are not zero");
        assert_eq!(pad_head_dim(&t, 33)?.dims(), t.dims());
        assert!(pad_head_dim(&t, 32).is_err());
        Ok(())
    }

    #[test]
    fn only_what_the_kernels_cannot_take_is_fitted() -> Result<()> {
        let fit = |d, dtype| KernelFit::cuda(d, dtype).map(|f| (f.kernel_head_dim, f.kernel_dtype));
        assert_eq!(fit(64, DType::BF16), None);
        assert_eq!(fit(40, DType::F16), None);
        assert_eq!(fit(256, DType::F16), None);
        assert_eq!(fit(1, DType::F16), Some((8, DType::F16)));
        assert_eq!(fit(59, DType::BF16), Some((64, DType::BF16)));
        assert_eq!(fit(111, DType::F16), Some((112, DType::F16)));
        assert_eq!(fit(128, DType::F32), Some((128, DType::BF16)));
        assert_eq!(fit(33, DType::F32), Some((40, DType::BF16)));
        assert_eq!(fit(255, DType::F32), Some((256, DType::BF16)));
        assert_eq!(fit(301, DType::BF16), Some((304, DType::BF16)));
        assert_eq!(fit(512, DType::F16), None);
        // The CPU takes every call as it is.
        let q = values(&[1, 4, 2, 33], 0.2)?;
        let spec = validate::validate(&q, &q, &q, &AttnOptions::default())?;
        assert_eq!(KernelFit::for_call(&Device::Cpu, &spec), None);
        Ok(())
    }

    /// The padding alone (f32 kept, so the comparison is tight), the CPU op standing in for the kernels:
    /// output, LSE and gradients (through autograd, and as `flash_attn_backward` gets them) equal those of
    /// the unpadded call. A scale taken from the padded head_dim or a padded column leaking into a result
    /// would move them far past f32 rounding.
    #[test]
    fn padded_call_equals_the_plain_one() -> Result<()> {
        let pad = KernelFit { head_dim: 33, dtype: DType::F32, kernel_head_dim: 40, kernel_dtype: DType::F32 };
        let slopes = Tensor::new(&[0.3f32, 0.1, 0.05, 0.02], &Device::Cpu)?;
        let variants = [
            AttnOptions::causal(),
            AttnOptions::default().with_window(Some(5), Some(2)).with_softcap(3.0).with_alibi_slopes(slopes),
        ];
        let close = |a: &Tensor, b: &Tensor| -> Result<bool> {
            let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
            Ok(max_abs_diff(a, b)? <= 1e-5 * (1.0 + scale))
        };
        for (i, opts) in variants.iter().enumerate() {
            let q = Var::from_tensor(&values(&[2, 9, 4, 33], 0.3)?)?;
            let k = Var::from_tensor(&values(&[2, 13, 2, 33], 1.1)?)?;
            let v = Var::from_tensor(&values(&[2, 13, 2, 33], 2.9)?)?;
            let qkv = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let spec = validate::validate(&q, &k, &v, opts)?;
            let (want, want_lse) = crate::flash_attn_with_lse(&q, &k, &v, opts)?;
            let (got, got_lse) = pad.forward(qkv, &spec, &crate::apply_op)?;
            assert_eq!(got.dims(), want.dims(), "variant {i}: output shape");
            assert!(got.is_contiguous(), "variant {i}: output not contiguous");
            assert!(close(&got, &want)?, "variant {i}: output {:e}", max_abs_diff(&got, &want)?);
            assert!(close(&got_lse, &want_lse)?, "variant {i}: lse {:e}", max_abs_diff(&got_lse, &want_lse)?);

            let w = values(&[2, 9, 4, 33], 4.2)?;
            let grads = |out: &Tensor| -> Result<Vec<Tensor>> {
                let g = (out * &w)?.sum_all()?.backward()?;
                Ok([&q, &k, &v].iter().map(|x| g.get(x.as_tensor()).expect("a gradient").clone()).collect())
            };
            let (want_g, got_g) = (grads(&want)?, grads(&got)?);
            let explicit = pad.backward(&spec, qkv, &got, &w, &got_lse, &crate::op::backward)?;
            let explicit = [explicit.0, explicit.1, explicit.2];
            for (n, name) in ["dq", "dk", "dv"].into_iter().enumerate() {
                assert_eq!(got_g[n].dims(), want_g[n].dims(), "variant {i}: {name} shape");
                let err = max_abs_diff(&got_g[n], &want_g[n])?;
                assert!(close(&got_g[n], &want_g[n])?, "variant {i}: {name} through autograd {err:e}");
                assert_eq!(explicit[n].dims(), want_g[n].dims(), "variant {i}: explicit {name} shape");
                let err = max_abs_diff(&explicit[n], &want_g[n])?;
                assert!(close(&explicit[n], &want_g[n])?, "variant {i}: explicit {name} {err:e}");
            }
        }
        Ok(())
    }

    /// f32 through bf16, the CPU op standing in for the kernels: an f32 output of the caller's shape whose
    /// values are bf16 ones widened, within a rounding of the bf16 call on the inputs rounded to bf16 (the
    /// two round f32 results of different sums, over 33 and 40 columns, to bf16: an ulp, 2^-8 at |o| < 1).
    #[test]
    fn f32_runs_as_bf16() -> Result<()> {
        let fit = KernelFit::cuda(33, DType::F32).expect("f32 at head_dim 33 is fitted");
        let (q, k, v) = (values(&[1, 7, 2, 33], 0.5)?, values(&[1, 11, 1, 33], 1.7)?, values(&[1, 11, 1, 33], 3.1)?);
        let opts = AttnOptions::causal();
        let spec = validate::validate(&q, &k, &v, &opts)?;
        let (got, _) = fit.forward((&q, &k, &v), &spec, &crate::apply_op)?;
        assert_eq!((got.dims(), got.dtype()), (q.dims(), DType::F32));
        assert!(got.is_contiguous());
        assert_eq!(max_abs_diff(&got, &got.to_dtype(DType::BF16)?)?, 0.0, "values are not bf16 ones");
        let bf16 = |t: &Tensor| t.to_dtype(DType::BF16);
        let want = crate::flash_attn(&bf16(&q)?, &bf16(&k)?, &bf16(&v)?, &opts)?;
        let err = max_abs_diff(&got, &want)?;
        assert!(err <= 2f64.powi(-8), "f32 through bf16 vs the bf16 call: {err:e}");
        Ok(())
    }
}
