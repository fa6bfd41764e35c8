//! The candle op: a `CustomOp3` on (q, k, v) whose CPU and CUDA forwards share one validated spec.

use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use crate::kernel_fit::KernelFit;
use crate::validate::AttnSpec;

/// `CustomOp3` returns one tensor, so the op leaves the log-sum-exp it computed in a slot shared with the
/// caller: the forward puts the storage there, [`crate::flash_attn_with_lse`] turns it into a tensor and
/// puts that back, and the backward reads it (no second forward pass).
#[derive(Default)]
pub(crate) struct Lse {
    pub storage: Mutex<Option<Storage>>,
    pub tensor: OnceLock<Tensor>,
}

pub(crate) type LseSlot = Arc<Lse>;

pub(crate) struct FlashAttnOp {
    pub spec: AttnSpec,
    pub lse: LseSlot,
}

impl FlashAttnOp {
    fn keep_lse(&self, lse: Storage) {
        // A poisoned lock only means another thread panicked while holding it; the slot is still usable.
        *self.lse.storage.lock().unwrap_or_else(|e| e.into_inner()) = Some(lse);
    }
}

impl CustomOp3 for FlashAttnOp {
    fn name(&self) -> &'static str {
        "flash-attn"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_l: &Layout,
        k: &CpuStorage,
        k_l: &Layout,
        v: &CpuStorage,
        v_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if self.spec.seqlens_k.is_some() || self.spec.ragged.is_some() {
            bail!("flash_attn: per-sequence lengths and pages run on the CPU one sequence at a time, not in the op")
        }
        let (out, lse) = crate::cpu::forward(&self.spec, (q, q_l), (k, k_l), (v, v_l))?;
        self.keep_lse(Storage::Cpu(lse));
        Ok((out, self.spec.out_shape()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        q_l: &Layout,
        k: &candle_core::CudaStorage,
        k_l: &Layout,
        v: &candle_core::CudaStorage,
        v_l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (out, lse) = crate::cuda::forward(&self.spec, (q, q_l), (k, k_l), (v, v_l))?;
        self.keep_lse(Storage::Cuda(lse));
        Ok((out, self.spec.out_shape()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad_out: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if self.spec.seqlens_k.is_some() || self.spec.paged().is_some() {
            bail!(
                "flash_attn: the KV-cache and paged calls have no backward (inference only); use flash_attn or \
                   flash_attn_varlen to train"
            )
        }
        let Some(lse) = self.lse.tensor.get() else {
            bail!("flash_attn backward: the forward's log-sum-exp is missing")
        };
        let (dq, dk, dv) = backward(&self.spec, (q, k, v), out, grad_out, lse)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// Gradients for q, k and v from the forward's output and LSE, on the inputs' device.
pub(crate) fn backward(
    spec: &AttnSpec,
    qkv: (&Tensor, &Tensor, &Tensor),
    out: &Tensor,
    grad_out: &Tensor,
    lse: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    if qkv.0.device().is_cpu() {
        return crate::cpu::backward(spec, qkv, out, grad_out, lse);
    }
    // Through autograd the op's inputs are fitted already (no fit needed); `flash_attn_backward` brings the
    // caller's.
    match KernelFit::for_call(qkv.0.device(), spec) {
        Some(fit) => fit.backward(spec, qkv, out, grad_out, lse, &cuda_backward),
        None => cuda_backward(spec, qkv, out, grad_out, lse),
    }
}

#[cfg(feature = "cuda")]
fn cuda_backward(
    spec: &AttnSpec,
    qkv: (&Tensor, &Tensor, &Tensor),
    out: &Tensor,
    grad_out: &Tensor,
    lse: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    crate::cuda::backward(spec, qkv, out, grad_out, lse)
}

#[cfg(not(feature = "cuda"))]
fn cuda_backward(
    _: &AttnSpec,
    (q, ..): (&Tensor, &Tensor, &Tensor),
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    bail!(
        "flash_attn backward: q is on {:?}, but candle-fa2 was built without the `cuda` feature",
        q.device().location()
    )
}
