// dQ accumulated in f32 (the dq_atomics mode: sm80/flash_bwd_kernel.cuh's KEYS_DQ pass by atomics,
// sm90/flash_bwd_sm90_onepass.cuh by bulk reductions): the pass adds each key block's partial dQ into
// bp.dq_accum, the rows of (.., heads_q, head_dim) in f32, which is zeroed before it and converted to dQ
// after it.
#pragma once
#include <cuda_runtime.h>

#include "common/flash_params.h"
#include "common/ptx.cuh"
#include "common/seq_view.cuh"

namespace fa2 {

// dq = dq_accum * factor in T.
template <typename T>
__global__ void bwd_dq_convert_kernel(const FlashBwdParams bp, float factor, int64_t n) {
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
    if (i >= n) return;  // n is a multiple of 8 (head_dim is)
    const float4 x = *reinterpret_cast<const float4*>(bp.dq_accum + i);
    uint2 out;
    out.x = pack2<T>(x.x * factor, x.y * factor);
    out.y = pack2<T>(x.z * factor, x.w * factor);
    *reinterpret_cast<uint2*>(reinterpret_cast<T*>(bp.dq) + i) = out;
}

// Runs `keys_dq_pass` (a callable launching the KEYS pass that adds into bp.dq_accum) between the zeroing
// and the conversion. dQ gets the scale dz/ds unless the transformed dS has it already.
template <typename T, typename KeysDqPass>
cudaError_t run_with_dq_accum(const FlashBwdParams& bp, cudaStream_t stream, KeysDqPass keys_dq_pass) {
    const FlashFwdParams& p = bp.fwd;
    const int64_t n = lse_rows(p) * p.head_dim;
    cudaError_t err = cudaMemsetAsync(bp.dq_accum, 0, n * sizeof(float), stream);
    if (err == cudaSuccess) err = keys_dq_pass();
    if (err != cudaSuccess) return err;
    const float ds_factor = p.transform_logits ? 1.f : p.softmax_scale;
    constexpr int THREADS = 256;
    bwd_dq_convert_kernel<T><<<unsigned((n / 4 + THREADS - 1) / THREADS), THREADS, 0, stream>>>(bp, ds_factor, n);
    return cudaGetLastError();
}

}  // namespace fa2
