// The e4m3 (FP8) forward on Hopper: FA3's FP8 path (Shah et al. 2024) on the warp-specialised kernel
// (flash_fwd_sm90_ws.cuh). Q K^T and P V run as 8-bit wgmma (k = 32, twice the 16-bit rate), S and O
// accumulate in f32, P is rounded to e4m3 for its product, O is written in bf16.
//
// 8-bit wgmma reads both operands K-major, so P V needs V^T (head_dim rows of keys). A first kernel writes
// it, (batch, heads_kv, head_dim, v_keys) with v_keys = seqlen_k rounded up to 16, from V in the caller's
// layout: one pass over V, against the attention's pass over V per 128 query rows. It also puts each
// 16-key group in the order accumulators_to_a_fp8 leaves P's k-columns in (sm90/sm90_common.cuh), so P
// needs no exchange between lanes.
//
// Descale factors: the host folds q's and k's per-tensor ones into the softmax scale; v's multiplies O at
// the epilogue. Per-head ones (FwdDescales) scale each tile's logits and O on top.
#pragma once
#include <cuda_fp8.h>

#include "common/device_limits.cuh"
#include "common/flash_params.h"
#include "sm90/flash_fwd_sm90_ws.cuh"

namespace fa2 {

// Tiles per head_dim: 128 query rows (two consumer warpgroups) x 128 keys, two stages (80 KB at d128, 160
// KB at d256). A thread holds S (64 f32), O (HEAD_DIM / 2) and P (16 registers). Tried on the H200 in one
// call (BENCHMARKS.md, "FP8 forward"): key blocks of 192 and 224 at d128 (FA3's choice is 224) from -8%
// (1k causal) to +4% (16k not causal) of 128; three stages at d128 and d256 within 2%.
template <int HEAD_DIM>
struct Fp8Config;
template <> struct Fp8Config<128> { using Traits = Sm90WsTraits<__nv_fp8_e4m3, 128, 128, 2>; };
template <> struct Fp8Config<256> { using Traits = Sm90WsTraits<__nv_fp8_e4m3, 256, 128, 2>; };

// V (batch, seqlen_k, heads_kv, head_dim) -> V^T (batch, heads_kv, head_dim, v_keys), keys of each 16-key
// group permuted: column c holds key (c & ~15) | fp8_key_of_column(c & 15); keys >= seqlen_k are zeros.
// A block takes 64 keys of one head: 16-byte row reads into shared memory, 4-byte column writes out.
// head_dim is a multiple of 16 and V's row, head and batch strides multiples of 16 bytes (host checks).
template <int HEAD_DIM>
__global__ void __launch_bounds__(256) fp8_transpose_v_kernel(const FlashFwdParams p, uint8_t* v_t, int v_keys) {
    constexpr int KEYS = 64, PITCH = HEAD_DIM + 16;
    __shared__ __align__(16) uint8_t tile[KEYS * PITCH];
    const int n0 = blockIdx.x * KEYS, head = blockIdx.y, b = blockIdx.z;
    const uint8_t* v = static_cast<const uint8_t*>(p.v) + b * p.v_batch_stride + head * p.v_head_stride;
    const int chunks = p.head_dim / 16;
    for (int i = threadIdx.x; i < KEYS * chunks; i += blockDim.x) {
        const int key = i / chunks, c = i % chunks;
        uint4 x = make_uint4(0u, 0u, 0u, 0u);
        if (n0 + key < p.seqlen_k) x = *reinterpret_cast<const uint4*>(v + int64_t(n0 + key) * p.v_row_stride + c * 16);
        *reinterpret_cast<uint4*>(tile + key * PITCH + c * 16) = x;
    }
    __syncthreads();
    uint8_t* out = v_t + (int64_t(b) * p.heads_kv + head) * p.head_dim * v_keys;
    for (int i = threadIdx.x; i < p.head_dim * (KEYS / 4); i += blockDim.x) {
        const int d = i / (KEYS / 4), c = (i % (KEYS / 4)) * 4;
        if (n0 + c >= v_keys) continue;
        uint32_t word = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int col = c + j, key = (col & ~15) | fp8_key_of_column(col & 15);
            word |= uint32_t(tile[key * PITCH + d]) << (8 * j);
        }
        *reinterpret_cast<uint32_t*>(out + int64_t(d) * v_keys + n0 + c) = word;
    }
}

// Tensor maps of q and k and of V^T; false where TMA cannot address q or k.
template <typename Tr>
bool fp8_tma_maps(const FlashFp8Params& f, FwdTmaMaps& maps) {
    const FlashFwdParams& p = f.fwd;
    const int64_t head_stride = int64_t(p.head_dim) * f.v_keys;
    return encode_qk_maps<Tr>(p, maps) &&
           encode_rows_map<1>(&maps.v, f.v_transposed, p.batch, p.head_dim, p.heads_kv, f.v_keys,
                              p.heads_kv * head_stride, f.v_keys, head_stride, Tr::HEAD_DIM);
}

template <int HEAD_DIM>
cudaError_t run_fwd_fp8(const FlashFp8Params& f, cudaStream_t stream) {
    if constexpr (!SM90A_BUILT) {
        return cudaErrorNotSupported;
    } else {
        using Tr = typename Fp8Config<HEAD_DIM>::Traits;
        const FlashFwdParams& p = f.fwd;
        if (p.head_dim % 16 != 0 || p.head_dim > HEAD_DIM || f.v_keys % 16 != 0 || f.v_keys < p.seqlen_k ||
            !dense_batch(p))
            return cudaErrorInvalidValue;
        FwdTmaMaps maps;
        if (!fp8_tma_maps<Tr>(f, maps)) return cudaErrorNotSupported;
        const dim3 grid((f.v_keys + 63) / 64, p.heads_kv, p.batch);
        fp8_transpose_v_kernel<HEAD_DIM><<<grid, 256, 0, stream>>>(p, static_cast<uint8_t*>(f.v_transposed), f.v_keys);
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return err;
        const FwdDescales descales{f.v_descale, f.qk_descale_heads, f.v_descale_heads};
        return p.transform_logits ? launch_fwd_sm90_ws<Tr, true>(p, maps, stream, descales)
                                  : launch_fwd_sm90_ws<Tr, false>(p, maps, stream, descales);
    }
}

}  // namespace fa2
