//! Writing new tokens' keys and values into a paged K/V cache ([`crate::PagedKv`]'s pages).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, DType, InplaceOp3, Layout, Result, Tensor};

/// Writes the keys and values of new tokens into their slots of a paged cache, in place (vLLM's
/// `reshape_and_cache`): token `t` goes to row `slot % page_size` of page `slot / page_size`, with
/// `slot = slot_mapping[t]`; a negative slot is skipped (padding tokens).
///
/// - `k_new`, `v_new`: (tokens, heads_kv, head_dim); `k_pages`, `v_pages`: (num_pages, page_size, heads_kv,
///   head_dim), the same dtype (any) and device.
/// - `slot_mapping`: (tokens,) i64 on the same device.
/// - On the CPU a slot past the cache is an error; on CUDA (no read-back) it is skipped. Two tokens with
///   the same slot leave one of them, unspecified which. One launch per cache on CUDA.
pub fn write_kv_pages(
    k_new: &Tensor,
    v_new: &Tensor,
    k_pages: &Tensor,
    v_pages: &Tensor,
    slot_mapping: &Tensor,
) -> Result<()> {
    let (num_pages, page_size, heads, head_dim) = match k_pages.dims() {
        &[n, p, h, d] => (n, p, h, d),
        dims => bail!("write_kv_pages: k_pages must be (num_pages, page_size, heads_kv, head_dim), got {dims:?}"),
    };
    if v_pages.dims() != k_pages.dims() || v_pages.dtype() != k_pages.dtype() {
        bail!(
            "write_kv_pages: v_pages is {:?} {:?}, k_pages {:?} {:?}",
            v_pages.dims(),
            v_pages.dtype(),
            k_pages.dims(),
            k_pages.dtype()
        )
    }
    let tokens = slot_mapping.dims1().map_err(|_| {
        candle_core::Error::Msg(format!(
            "write_kv_pages: slot_mapping must be (tokens,), got {:?}",
            slot_mapping.dims()
        ))
    })?;
    if slot_mapping.dtype() != DType::I64 {
        bail!("write_kv_pages: slot_mapping must be i64, got {:?}", slot_mapping.dtype())
    }
    for (name, t) in [("k_new", k_new), ("v_new", v_new)] {
        if t.dims() != [tokens, heads, head_dim] || t.dtype() != k_pages.dtype() {
            bail!(
                "write_kv_pages: {name} must be {:?} {:?} (slot_mapping's tokens, the pages' heads and head_dim), \
                 got {:?} {:?}",
                (tokens, heads, head_dim),
                k_pages.dtype(),
                t.dims(),
                t.dtype()
            )
        }
    }
    for (name, t) in [("k_new", k_new), ("v_new", v_new), ("v_pages", v_pages), ("slot_mapping", slot_mapping)] {
        if !t.device().same_device(k_pages.device()) {
            bail!(
                "write_kv_pages: {name} is on {:?}, k_pages on {:?}",
                t.device().location(),
                k_pages.device().location()
            )
        }
    }
    if tokens == 0 {
        return Ok(());
    }
    if k_pages.device().is_cpu() {
        let slots = slot_mapping.to_vec1::<i64>()?;
        let capacity = num_pages * page_size;
        if let Some((t, &slot)) = slots.iter().enumerate().find(|(_, &s)| s >= capacity as i64) {
            bail!("write_kv_pages: slot_mapping[{t}] = {slot} is past the cache's {capacity} slots")
        }
    }
    k_pages.inplace_op3(k_new, slot_mapping, &WritePages)?;
    v_pages.inplace_op3(v_new, slot_mapping, &WritePages)
}

/// The in-place op on (pages, new rows, slots).
struct WritePages;

/// Copies token t's (heads, head_dim) rows of `new` into its slot of `pages`, any strides on both sides.
fn copy_rows<T: Copy>(pages: &mut [T], pl: &Layout, new: &[T], nl: &Layout, slots: &[i64]) {
    let (ps, ns) = (pl.stride(), nl.stride());
    let (page_size, heads, head_dim) = (pl.dims()[1], pl.dims()[2], pl.dims()[3]);
    for (t, &slot) in slots.iter().enumerate() {
        if slot < 0 {
            continue;
        }
        let (page, row) = (slot as usize / page_size, slot as usize % page_size);
        for h in 0..heads {
            let dst = pl.start_offset() + page * ps[0] + row * ps[1] + h * ps[2];
            let src = nl.start_offset() + t * ns[0] + h * ns[1];
            for c in 0..head_dim {
                pages[dst + c * ps[3]] = new[src + c * ns[2]];
            }
        }
    }
}

impl InplaceOp3 for WritePages {
    fn name(&self) -> &'static str {
        "write-kv-pages"
    }

    fn cpu_fwd(
        &self,
        pages: &mut CpuStorage,
        pl: &Layout,
        new: &CpuStorage,
        nl: &Layout,
        slots: &CpuStorage,
        sl: &Layout,
    ) -> Result<()> {
        let CpuStorage::I64(slots) = slots else { bail!("write_kv_pages: slot_mapping must be i64") };
        let slots = match sl.contiguous_offsets() {
            Some((a, b)) => &slots[a..b],
            None => bail!("write_kv_pages: slot_mapping must be contiguous"),
        };
        match (pages, new) {
            (CpuStorage::F32(p), CpuStorage::F32(n)) => copy_rows(p, pl, n, nl, slots),
            (CpuStorage::F16(p), CpuStorage::F16(n)) => copy_rows(p, pl, n, nl, slots),
            (CpuStorage::BF16(p), CpuStorage::BF16(n)) => copy_rows(p, pl, n, nl, slots),
            (CpuStorage::F64(p), CpuStorage::F64(n)) => copy_rows(p, pl, n, nl, slots),
            (p, _) => bail!("write_kv_pages: pages of dtype {:?} are not supported", p.dtype()),
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        pages: &mut candle_core::CudaStorage,
        pl: &Layout,
        new: &candle_core::CudaStorage,
        nl: &Layout,
        slots: &candle_core::CudaStorage,
        sl: &Layout,
    ) -> Result<()> {
        crate::cuda::write_pages((pages, pl), (new, nl), (slots, sl))
    }
}
