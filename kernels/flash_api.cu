// The C ABI the Rust side calls (src/cuda/ffi.rs): dispatch on dtype and head_dim, report CUDA errors.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stddef.h>
#include <stdlib.h>

#include "common/device_limits.cuh"
#include "flash_api.h"
#include "generated/dispatch_head_dim.h"
#include "sm80/flash_decode_kernel.cuh"  // DECODE_MAX_SPLITS

// Whether the current device runs the sm_90a (wgmma) kernels: an H100/H200 and a build that holds them
// (common/device_limits.cuh). CANDLE_FA2_NO_WGMMA (any value) turns them off, to time the mma.sync kernels on
// the same GPU.
static bool device_runs_sm90a() {
    static const bool disabled = getenv("CANDLE_FA2_NO_WGMMA") != nullptr;
    return !disabled && fa2::device_runs_sm90a_code();
}

// Whether this build compiled head_dim's kernels (CANDLE_FA2_HDIMS, build.rs).
static bool head_dim_built(int head_dim) {
    return dispatch_head_dim(head_dim, [](auto) { return cudaSuccess; }) == cudaSuccess;
}

// Head dims between those of the Hopper kernels (64, 128, 256) run there on the next one up, 65-96 on d128
// and 129-224 on d256: the columns past head_dim are zeros in shared memory (TMA and the loaders fill them)
// and are never stored, so from 1/8 (d224) to nearly half (d72, d136) of each product is spent on zeros,
// yet on the H200 against the mma.sync kernels of their own head dim, bf16 (BENCHMARKS.md, "Head dims
// between the Hopper kernels'"): forward 1.21-2.12x (d72-d224, 1k-16k), forward + backward 1.17-1.86x.
// `bit`: 1 the forward, 2 the backward; CANDLE_FA2_NO_SM90_PAD=1 keeps both on mma.sync (A/B runs), 2
// only the backward.
static int sm90_dispatch_dim(int head_dim, bool sm90a, int bit) {
    static const int off = fa2::env_switch("CANDLE_FA2_NO_SM90_PAD", 0);
    if (!sm90a || (off == 1 || (off == 2 && bit == 2))) return head_dim;
    const int up = head_dim > 64 && head_dim <= 96 ? 128 : head_dim > 128 && head_dim <= 224 ? 256 : head_dim;
    return head_dim_built(up) ? up : head_dim;
}

extern "C" int candle_fa2_fwd(const FlashFwdParams* params, void* stream) {
    const FlashFwdParams& p = *params;
    auto s = static_cast<cudaStream_t>(stream);
    const bool sm90a = device_runs_sm90a();
    const cudaError_t err = dispatch_head_dim(sm90_dispatch_dim(p.head_dim, sm90a, 1), [&](auto dim) {
        constexpr int D = decltype(dim)::value;
        return p.is_bf16 ? fa2::run_fwd<__nv_bfloat16, D>(p, s, sm90a) : fa2::run_fwd<__half, D>(p, s, sm90a);
    });
    return err != cudaSuccess ? err : fa2::fill_uncovered_rows(p, s);
}

extern "C" int candle_fa2_bwd(const FlashBwdParams* params, void* stream) {
    const FlashBwdParams& p = *params;
    auto s = static_cast<cudaStream_t>(stream);
    const bool sm90a = device_runs_sm90a();
    return dispatch_head_dim(sm90_dispatch_dim(p.fwd.head_dim, sm90a, 2), [&](auto dim) {
        constexpr int D = decltype(dim)::value;
        return p.fwd.is_bf16 ? fa2::run_bwd<__nv_bfloat16, D>(p, s, sm90a) : fa2::run_bwd<__half, D>(p, s, sm90a);
    });
}

// The f32 elements of p.dq_accum that candle_fa2_bwd reads and writes (dq_atomics on the mma.sync kernels or
// on the Hopper one-pass kernel), 0 where it uses none: the caller allocates that many. 0 where the
// head_dim is not built (the launch reports that).
extern "C" int64_t candle_fa2_bwd_dq_accum_elems(const FlashBwdParams* params) {
    const FlashBwdParams& p = *params;
    if (!p.dq_atomics) return 0;
    const bool sm90a = device_runs_sm90a();
    int64_t elems = 0;
    dispatch_head_dim(sm90_dispatch_dim(p.fwd.head_dim, sm90a, 2), [&](auto dim) {
        constexpr int D = decltype(dim)::value;
        elems = p.fwd.is_bf16 ? fa2::bwd_dq_accum_elems<__nv_bfloat16, D>(p, sm90a)
                              : fa2::bwd_dq_accum_elems<__half, D>(p, sm90a);
        return cudaSuccess;
    });
    return elems;
}

extern "C" int candle_fa2_decode(const FlashDecodeParams* params, void* stream) {
    const FlashDecodeParams& p = *params;
    if (p.num_splits < 1 || p.num_splits > fa2::DECODE_MAX_SPLITS) return cudaErrorInvalidValue;
    auto s = static_cast<cudaStream_t>(stream);
    const cudaError_t err = dispatch_head_dim(p.fwd.head_dim, [&](auto dim) {
        constexpr int D = decltype(dim)::value;
        return p.fwd.is_bf16 ? fa2::run_decode<__nv_bfloat16, D>(p, s) : fa2::run_decode<__half, D>(p, s);
    });
    return err != cudaSuccess ? err : fa2::fill_uncovered_rows(p.fwd, s);
}

// The e4m3 forward, on sm_90a only (the Rust side widens e4m3 to bf16 elsewhere): head dims that are
// multiples of 16 from 80 up to 128 run on the d128 kernel, up to 256 on the d256 one
// (dispatch_fp8_head_dim). Head dims up to 64 would run the d128 tiles half empty: 0.82-0.98x of the bf16
// d64 kernel on the H200 (BENCHMARKS.md, "FP8 forward"), so they widen too.
static bool fp8_head_dim_runs(int head_dim) { return head_dim % 16 == 0 && head_dim > 64; }

extern "C" int candle_fa2_fwd_fp8(const FlashFp8Params* params, void* stream) {
    const FlashFp8Params& p = *params;
    if (!device_runs_sm90a() || !fp8_head_dim_runs(p.fwd.head_dim)) return cudaErrorNotSupported;
    auto s = static_cast<cudaStream_t>(stream);
    return dispatch_fp8_head_dim(p.fwd.head_dim, [&](auto dim) {
        return fa2::run_fwd_fp8<decltype(dim)::value>(p, s);
    });
}

// 1 when this device and build run the e4m3 forward at head_dim (candle_fa2_fwd_fp8), else 0.
extern "C" int candle_fa2_fp8_available(int head_dim) {
    return device_runs_sm90a() && fp8_head_dim_runs(head_dim) &&
           dispatch_fp8_head_dim(head_dim, [](auto) { return cudaSuccess; }) == cudaSuccess;
}

// The split count the decode heuristic picks (sm80/flash_decode_kernel.cuh), for the caller to size the
// scratch; 1 when the device cannot be queried.
extern "C" int candle_fa2_decode_num_splits(const FlashFwdParams* params) {
    const FlashFwdParams& p = *params;
    int splits = 1;
    dispatch_head_dim(p.head_dim, [&](auto dim) {
        constexpr int D = decltype(dim)::value;
        splits = p.is_bf16 ? fa2::decode_num_splits<__nv_bfloat16, D>(p) : fa2::decode_num_splits<__half, D>(p);
        return cudaSuccess;
    });
    return splits;
}

// 1 when this build holds the kernels head_dim runs on, else 0: a development build may compile only some
// head dims (CANDLE_FA2_HDIMS, build.rs), and the Rust side asks before it launches, to name the head_dim in
// its error instead of reporting the cudaErrorNotSupported the dispatch returns.
extern "C" int candle_fa2_has_head_dim(int head_dim) { return head_dim_built(head_dim); }

extern "C" const char* candle_fa2_error_string(int code) {
    return cudaGetErrorString(static_cast<cudaError_t>(code));
}

// Field offsets of the params structs, then their size, for the layout tests of src/cuda/ffi.rs.
template <int N>
static int write_layout(const int64_t (&layout)[N], int64_t* out, int n) {
    int written = 0;
    for (; written < N && written < n; ++written) out[written] = layout[written];
    return written;
}

#define FIELD(name) int64_t(offsetof(FlashFwdParams, name))
extern "C" int candle_fa2_params_layout(int64_t* out, int n) {
    const int64_t layout[] = {
        FIELD(q), FIELD(k), FIELD(v), FIELD(o), FIELD(lse), FIELD(alibi_slopes),
        FIELD(q_batch_stride), FIELD(q_row_stride), FIELD(q_head_stride),
        FIELD(k_batch_stride), FIELD(k_row_stride), FIELD(k_head_stride),
        FIELD(v_batch_stride), FIELD(v_row_stride), FIELD(v_head_stride),
        FIELD(o_batch_stride), FIELD(o_row_stride), FIELD(o_head_stride),
        FIELD(batch), FIELD(seqlen_q), FIELD(seqlen_k), FIELD(heads_q), FIELD(heads_kv), FIELD(head_dim),
        FIELD(group_size), FIELD(window_left), FIELD(window_right),
        FIELD(softmax_scale), FIELD(scale_log2), FIELD(softcap), FIELD(transform_logits), FIELD(is_bf16),
        FIELD(cu_seqlens_q), FIELD(cu_seqlens_k), FIELD(seqused_k), FIELD(block_table), FIELD(block_table_stride),
        FIELD(lse_head_stride), FIELD(total_q), FIELD(total_k), FIELD(page_size), FIELD(num_pages),
        int64_t(sizeof(FlashFwdParams)),
    };
    return write_layout(layout, out, n);
}
#undef FIELD

#define FIELD(name) int64_t(offsetof(FlashBwdParams, name))
extern "C" int candle_fa2_bwd_params_layout(int64_t* out, int n) {
    const int64_t layout[] = {
        FIELD(fwd), FIELD(d_o), FIELD(dq), FIELD(dk), FIELD(dv), FIELD(delta), FIELD(dq_accum),
        FIELD(do_batch_stride), FIELD(do_row_stride), FIELD(do_head_stride),
        FIELD(dq_batch_stride), FIELD(dq_row_stride), FIELD(dq_head_stride),
        FIELD(dk_batch_stride), FIELD(dk_row_stride), FIELD(dk_head_stride),
        FIELD(dv_batch_stride), FIELD(dv_row_stride), FIELD(dv_head_stride), FIELD(dq_atomics),
        int64_t(sizeof(FlashBwdParams)),
    };
    return write_layout(layout, out, n);
}
#undef FIELD

#define FIELD(name) int64_t(offsetof(FlashDecodeParams, name))
extern "C" int candle_fa2_decode_params_layout(int64_t* out, int n) {
    const int64_t layout[] = {
        FIELD(fwd), FIELD(o_partial), FIELD(lse_partial), FIELD(num_splits), FIELD(reserved),
        int64_t(sizeof(FlashDecodeParams)),
    };
    return write_layout(layout, out, n);
}
#undef FIELD

#define FIELD(name) int64_t(offsetof(FlashFp8Params, name))
extern "C" int candle_fa2_fp8_params_layout(int64_t* out, int n) {
    const int64_t layout[] = {
        FIELD(fwd),     FIELD(v_transposed),     FIELD(v_descale),
        FIELD(v_keys),  FIELD(qk_descale_heads), FIELD(v_descale_heads),
        int64_t(sizeof(FlashFp8Params)),
    };
    return write_layout(layout, out, n);
}
#undef FIELD

#define FIELD(name) int64_t(offsetof(CacheWriteParams, name))
extern "C" int candle_fa2_cache_write_params_layout(int64_t* out, int n) {
    const int64_t layout[] = {
        FIELD(src), FIELD(cache), FIELD(slots), FIELD(src_row_stride), FIELD(src_head_stride),
        FIELD(cache_page_stride), FIELD(cache_row_stride), FIELD(cache_head_stride), FIELD(tokens), FIELD(heads),
        FIELD(row_bytes), FIELD(page_size), FIELD(num_pages), FIELD(reserved),
        int64_t(sizeof(CacheWriteParams)),
    };
    return write_layout(layout, out, n);
}
#undef FIELD
