//! The candle op: a `CustomOp3` on (q, k, v) whose CPU and CUDA forwards share one validated spec.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage};

use crate::validate::AttnSpec;

/// `CustomOp3` returns one tensor, so the op leaves the log-sum-exp it computed in a slot shared with the
/// caller ([`crate::flash_attn_with_lse`] reads it back, and a backward pass can use it).
pub(crate) type LseSlot = Arc<Mutex<Option<Storage>>>;

pub(crate) struct FlashAttnOp {
    pub spec: AttnSpec,
    pub lse: LseSlot,
}

impl FlashAttnOp {
    fn keep_lse(&self, lse: Storage) {
        // A poisoned lock only means another thread panicked while holding it; the slot is still usable.
        *self.lse.lock().unwrap_or_else(|e| e.into_inner()) = Some(lse);
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
        let (out, lse) = crate::cpu::forward(&self.spec, (q, q_l), (k, k_l), (v, v_l))?;
        self.keep_lse(Storage::Cpu(lse));
        Ok((out, self.spec.dims.out_shape().into()))
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
        Ok((out, self.spec.dims.out_shape().into()))
    }
}
