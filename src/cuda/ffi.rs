//! The C ABI of kernels/flash_api.cu. `FlashFwdParams` and `FlashBwdParams` mirror kernels/common/flash_params.h
//! field for field; the tests below hold the layouts together.

use std::ffi::{c_char, c_void};

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlashFwdParams {
    pub q: *const c_void,
    pub k: *const c_void,
    pub v: *const c_void,
    pub o: *mut c_void,
    pub lse: *mut f32,
    pub alibi_slopes: *const f32,

    pub q_batch_stride: i64,
    pub q_row_stride: i64,
    pub q_head_stride: i64,
    pub k_batch_stride: i64,
    pub k_row_stride: i64,
    pub k_head_stride: i64,
    pub v_batch_stride: i64,
    pub v_row_stride: i64,
    pub v_head_stride: i64,
    pub o_batch_stride: i64,
    pub o_row_stride: i64,
    pub o_head_stride: i64,

    pub batch: i32,
    pub seqlen_q: i32,
    pub seqlen_k: i32,
    pub heads_q: i32,
    pub heads_kv: i32,
    pub head_dim: i32,
    pub group_size: i32,

    pub window_left: i32,
    pub window_right: i32,

    pub softmax_scale: f32,
    pub scale_log2: f32,
    pub softcap: f32,
    pub transform_logits: i32,
    pub is_bf16: i32,

    pub cu_seqlens_q: *const u32,
    pub cu_seqlens_k: *const u32,
    pub seqused_k: *const u32,
    pub block_table: *const u32,
    pub block_table_stride: i64,
    pub lse_head_stride: i64,
    pub total_q: i32,
    pub total_k: i32,
    pub page_size: i32,
    pub num_pages: i32,
}

/// The backward pass: the forward's params (its output `o` and `lse` are read) plus dO, the gradients and a
/// row vector of scratch.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlashBwdParams {
    pub fwd: FlashFwdParams,
    pub d_o: *const c_void,
    pub dq: *mut c_void,
    pub dk: *mut c_void,
    pub dv: *mut c_void,
    pub delta: *mut f32,
    pub dq_accum: *mut f32,
    pub do_batch_stride: i64,
    pub do_row_stride: i64,
    pub do_head_stride: i64,
    pub dq_batch_stride: i64,
    pub dq_row_stride: i64,
    pub dq_head_stride: i64,
    pub dk_batch_stride: i64,
    pub dk_row_stride: i64,
    pub dk_head_stride: i64,
    pub dv_batch_stride: i64,
    pub dv_row_stride: i64,
    pub dv_head_stride: i64,
    pub dq_atomics: i32,
}

/// The split-KV decode: the forward's params plus the splits' scratch.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlashDecodeParams {
    pub fwd: FlashFwdParams,
    /// (num_splits, LSE rows, head_dim) f32 when `num_splits > 1`, else null.
    pub o_partial: *mut f32,
    /// (num_splits, LSE rows) f32 when `num_splits > 1`, else null.
    pub lse_partial: *mut f32,
    pub num_splits: i32,
    pub reserved: i32,
}

/// The e4m3 forward: the forward's params (q, k, v e4m3, o bf16, the descales of q and k in the scale) plus
/// the V^T scratch.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlashFp8Params {
    pub fwd: FlashFwdParams,
    /// (batch, heads_kv, head_dim, v_keys) bytes.
    pub v_transposed: *mut c_void,
    pub v_descale: f32,
    /// seqlen_k rounded up to a multiple of 16.
    pub v_keys: i32,
    /// Per-head descales, or null: (batch, heads_q) factors of the logits (q's times k's), (batch,
    /// heads_kv) factors of O (v's), contiguous f32.
    pub qk_descale_heads: *const f32,
    pub v_descale_heads: *const f32,
}

/// Writes new tokens' K or V rows into a paged cache (kernels/cache_write.cu); strides in bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CacheWriteParams {
    pub src: *const c_void,
    pub cache: *mut c_void,
    pub slots: *const i64,
    pub src_row_stride: i64,
    pub src_head_stride: i64,
    pub cache_page_stride: i64,
    pub cache_row_stride: i64,
    pub cache_head_stride: i64,
    pub tokens: i32,
    pub heads: i32,
    pub row_bytes: i32,
    pub page_size: i32,
    pub num_pages: i32,
    pub reserved: i32,
}

extern "C" {
    /// Launches the paged-cache write on `stream`.
    pub fn candle_fa2_write_cache(params: *const CacheWriteParams, stream: *mut c_void) -> i32;
    /// Launches the split-KV decode kernel (and the combine kernel when `num_splits > 1`) on `stream`.
    pub fn candle_fa2_decode(params: *const FlashDecodeParams, stream: *mut c_void) -> i32;
    /// The split count the decode heuristic picks for these sizes on the current device.
    pub fn candle_fa2_decode_num_splits(params: *const FlashFwdParams) -> i32;
    /// Launches the forward kernel on `stream`; returns a `cudaError_t` (0: success).
    pub fn candle_fa2_fwd(params: *const FlashFwdParams, stream: *mut c_void) -> i32;
    /// Launches the backward kernels (D, then the KEYS and QUERIES passes) on `stream`.
    pub fn candle_fa2_bwd(params: *const FlashBwdParams, stream: *mut c_void) -> i32;
    /// The f32 elements of `params.dq_accum` that `candle_fa2_bwd` uses (dq_atomics on the mma.sync kernels or
    /// the Hopper one-pass kernel), 0 where it uses none.
    pub fn candle_fa2_bwd_dq_accum_elems(params: *const FlashBwdParams) -> i64;
    /// Launches the e4m3 forward (V^T, then the attention) on `stream`; `cudaErrorNotSupported` off sm_90a.
    pub fn candle_fa2_fwd_fp8(params: *const FlashFp8Params, stream: *mut c_void) -> i32;
    /// `dst[i] = src[i] x scale` over `n` elements, one side e4m3, the other f32 / f16 / bf16 (types: 0 f32,
    /// 1 f16, 2 bf16, 3 e4m3), on `stream` (kernels/fp8_convert.cu); src is read through `sizes` and
    /// `strides` (4 dimensions, elements, outermost first), dst written contiguous.
    pub fn candle_fa2_fp8_convert(
        src: *const c_void,
        src_type: i32,
        sizes: *const i64,
        strides: *const i64,
        dst: *mut c_void,
        dst_type: i32,
        n: i64,
        scale: f32,
        stream: *mut c_void,
    ) -> i32;
    /// 1 when the current device and this build run the e4m3 forward at `head_dim`.
    pub fn candle_fa2_fp8_available(head_dim: i32) -> i32;
    /// 1 when this build holds the kernels `head_dim` runs on, else 0 (a build with `CANDLE_FA2_HDIMS`).
    pub fn candle_fa2_has_head_dim(head_dim: i32) -> i32;
    pub fn candle_fa2_error_string(code: i32) -> *const c_char;
    /// Writes `offsetof` of each field of the C struct, then its `sizeof`, into `out` (`n` slots); returns
    /// how many it wrote.
    #[cfg(test)]
    pub fn candle_fa2_params_layout(out: *mut i64, n: i32) -> i32;
    #[cfg(test)]
    pub fn candle_fa2_bwd_params_layout(out: *mut i64, n: i32) -> i32;
    #[cfg(test)]
    pub fn candle_fa2_decode_params_layout(out: *mut i64, n: i32) -> i32;
    #[cfg(test)]
    pub fn candle_fa2_cache_write_params_layout(out: *mut i64, n: i32) -> i32;
    #[cfg(test)]
    pub fn candle_fa2_fp8_params_layout(out: *mut i64, n: i32) -> i32;
}

/// `offset_of!` of every field, in declaration order, then `size_of`: what the C side must report.
#[cfg(test)]
pub fn rust_params_layout() -> Vec<i64> {
    use std::mem::offset_of;
    type P = FlashFwdParams;
    let offsets = [
        offset_of!(P, q),
        offset_of!(P, k),
        offset_of!(P, v),
        offset_of!(P, o),
        offset_of!(P, lse),
        offset_of!(P, alibi_slopes),
        offset_of!(P, q_batch_stride),
        offset_of!(P, q_row_stride),
        offset_of!(P, q_head_stride),
        offset_of!(P, k_batch_stride),
        offset_of!(P, k_row_stride),
        offset_of!(P, k_head_stride),
        offset_of!(P, v_batch_stride),
        offset_of!(P, v_row_stride),
        offset_of!(P, v_head_stride),
        offset_of!(P, o_batch_stride),
        offset_of!(P, o_row_stride),
        offset_of!(P, o_head_stride),
        offset_of!(P, batch),
        offset_of!(P, seqlen_q),
        offset_of!(P, seqlen_k),
        offset_of!(P, heads_q),
        offset_of!(P, heads_kv),
        offset_of!(P, head_dim),
        offset_of!(P, group_size),
        offset_of!(P, window_left),
        offset_of!(P, window_right),
        offset_of!(P, softmax_scale),
        offset_of!(P, scale_log2),
        offset_of!(P, softcap),
        offset_of!(P, transform_logits),
        offset_of!(P, is_bf16),
        offset_of!(P, cu_seqlens_q),
        offset_of!(P, cu_seqlens_k),
        offset_of!(P, seqused_k),
        offset_of!(P, block_table),
        offset_of!(P, block_table_stride),
        offset_of!(P, lse_head_stride),
        offset_of!(P, total_q),
        offset_of!(P, total_k),
        offset_of!(P, page_size),
        offset_of!(P, num_pages),
        std::mem::size_of::<P>(),
    ];
    offsets.iter().map(|&x| x as i64).collect()
}

/// The same for `FlashBwdParams`.
#[cfg(test)]
pub fn rust_bwd_params_layout() -> Vec<i64> {
    use std::mem::offset_of;
    type P = FlashBwdParams;
    let offsets = [
        offset_of!(P, fwd),
        offset_of!(P, d_o),
        offset_of!(P, dq),
        offset_of!(P, dk),
        offset_of!(P, dv),
        offset_of!(P, delta),
        offset_of!(P, dq_accum),
        offset_of!(P, do_batch_stride),
        offset_of!(P, do_row_stride),
        offset_of!(P, do_head_stride),
        offset_of!(P, dq_batch_stride),
        offset_of!(P, dq_row_stride),
        offset_of!(P, dq_head_stride),
        offset_of!(P, dk_batch_stride),
        offset_of!(P, dk_row_stride),
        offset_of!(P, dk_head_stride),
        offset_of!(P, dv_batch_stride),
        offset_of!(P, dv_row_stride),
        offset_of!(P, dv_head_stride),
        offset_of!(P, dq_atomics),
        std::mem::size_of::<P>(),
    ];
    offsets.iter().map(|&x| x as i64).collect()
}

/// The same for `FlashDecodeParams`.
#[cfg(test)]
pub fn rust_decode_params_layout() -> Vec<i64> {
    use std::mem::offset_of;
    type P = FlashDecodeParams;
    let offsets = [
        offset_of!(P, fwd),
        offset_of!(P, o_partial),
        offset_of!(P, lse_partial),
        offset_of!(P, num_splits),
        offset_of!(P, reserved),
        std::mem::size_of::<P>(),
    ];
    offsets.iter().map(|&x| x as i64).collect()
}

/// The same for `FlashFp8Params`.
#[cfg(test)]
pub fn rust_fp8_params_layout() -> Vec<i64> {
    use std::mem::offset_of;
    type P = FlashFp8Params;
    let offsets = [
        offset_of!(P, fwd),
        offset_of!(P, v_transposed),
        offset_of!(P, v_descale),
        offset_of!(P, v_keys),
        offset_of!(P, qk_descale_heads),
        offset_of!(P, v_descale_heads),
        std::mem::size_of::<P>(),
    ];
    offsets.iter().map(|&x| x as i64).collect()
}

/// The same for `CacheWriteParams`.
#[cfg(test)]
pub fn rust_cache_write_params_layout() -> Vec<i64> {
    use std::mem::offset_of;
    type P = CacheWriteParams;
    let offsets = [
        offset_of!(P, src),
        offset_of!(P, cache),
        offset_of!(P, slots),
        offset_of!(P, src_row_stride),
        offset_of!(P, src_head_stride),
        offset_of!(P, cache_page_stride),
        offset_of!(P, cache_row_stride),
        offset_of!(P, cache_head_stride),
        offset_of!(P, tokens),
        offset_of!(P, heads),
        offset_of!(P, row_bytes),
        offset_of!(P, page_size),
        offset_of!(P, num_pages),
        offset_of!(P, reserved),
        std::mem::size_of::<P>(),
    ];
    offsets.iter().map(|&x| x as i64).collect()
}

#[cfg(test)]
mod tests {
    fn c_layout(write: unsafe extern "C" fn(*mut i64, i32) -> i32, len: usize) -> Vec<i64> {
        let mut got = vec![-1i64; len + 4];
        // SAFETY: `got` has room for the `n` slots the function may write.
        let n = unsafe { write(got.as_mut_ptr(), got.len() as i32) };
        got.truncate(n as usize);
        got
    }

    #[test]
    fn params_layout_matches_c() {
        let want = super::rust_params_layout();
        let got = c_layout(super::candle_fa2_params_layout, want.len());
        assert_eq!(got, want, "FlashFwdParams: kernels/common/flash_params.h and src/cuda/ffi.rs disagree");
        let want = super::rust_bwd_params_layout();
        let got = c_layout(super::candle_fa2_bwd_params_layout, want.len());
        assert_eq!(got, want, "FlashBwdParams: kernels/common/flash_params.h and src/cuda/ffi.rs disagree");
        let want = super::rust_decode_params_layout();
        let got = c_layout(super::candle_fa2_decode_params_layout, want.len());
        assert_eq!(got, want, "FlashDecodeParams: kernels/common/flash_params.h and src/cuda/ffi.rs disagree");
        let want = super::rust_cache_write_params_layout();
        let got = c_layout(super::candle_fa2_cache_write_params_layout, want.len());
        assert_eq!(got, want, "CacheWriteParams: kernels/common/flash_params.h and src/cuda/ffi.rs disagree");
        let want = super::rust_fp8_params_layout();
        let got = c_layout(super::candle_fa2_fp8_params_layout, want.len());
        assert_eq!(got, want, "FlashFp8Params: kernels/common/flash_params.h and src/cuda/ffi.rs disagree");
    }

    /// Every head_dim the Rust side accepts runs on the smallest instantiation >= it (the next multiple of 32
    /// up to 256, then 512), present unless CANDLE_FA2_HDIMS (build.rs) left it out; none past the largest.
    #[test]
    fn head_dims_built() {
        let built: Option<Vec<usize>> =
            option_env!("CANDLE_FA2_HDIMS_BUILT").map(|l| l.split(',').map(|d| d.parse().unwrap()).collect());
        for d in (8..=crate::validate::MAX_HEAD_DIM).step_by(8) {
            let instantiation = if d <= 256 { d.next_multiple_of(32) } else { 512 };
            let want = built.as_ref().is_none_or(|b| b.contains(&instantiation));
            // SAFETY: a pure function of its argument.
            assert_eq!(unsafe { super::candle_fa2_has_head_dim(d as i32) } == 1, want, "head_dim {d}");
        }
        assert_eq!(unsafe { super::candle_fa2_has_head_dim(crate::validate::MAX_HEAD_DIM as i32 + 8) }, 0);
    }
}
