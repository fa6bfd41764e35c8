// The C ABI the Rust side calls (src/cuda/ffi.rs): dispatch on dtype and head_dim, report CUDA errors.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stddef.h>

#include "flash_api.h"


template <typename T>
static cudaError_t dispatch_head_dim(const FlashFwdParams& p, cudaStream_t stream) {
    using namespace fa2;
    if (p.head_dim <= 32) return run_fwd<T, 32>(p, stream);
    if (p.head_dim <= 64) return run_fwd<T, 64>(p, stream);
    if (p.head_dim <= 96) return run_fwd<T, 96>(p, stream);
    if (p.head_dim <= 128) return run_fwd<T, 128>(p, stream);
    if (p.head_dim <= 160) return run_fwd<T, 160>(p, stream);
    if (p.head_dim <= 192) return run_fwd<T, 192>(p, stream);
    if (p.head_dim <= 224) return run_fwd<T, 224>(p, stream);
    if (p.head_dim <= 256) return run_fwd<T, 256>(p, stream);
    return cudaErrorInvalidValue;  // the Rust side rejects these first
}

extern "C" int candle_fa2_fwd(const FlashFwdParams* params, void* stream) {
    auto s = static_cast<cudaStream_t>(stream);
    return params->is_bf16 ? dispatch_head_dim<__nv_bfloat16>(*params, s) : dispatch_head_dim<__half>(*params, s);
}

extern "C" const char* candle_fa2_error_string(int code) {
    return cudaGetErrorString(static_cast<cudaError_t>(code));
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
        int64_t(sizeof(FlashFwdParams)),
    };
    const int count = int(sizeof(layout) / sizeof(layout[0]));
    int written = 0;
    for (; written < count && written < n; ++written) out[written] = layout[written];
    return written;
}
#undef FIELD
