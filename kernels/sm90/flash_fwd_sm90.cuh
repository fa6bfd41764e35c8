// FlashAttention-2 forward on Hopper's warpgroup MMA (wgmma, sm_90a), copying with cp.async: the Hopper
// forward of what TMA cannot address (variable lengths, paged K/V, per-sequence key counts, odd strides);
// dense batches run on the warp-specialised flash_fwd_sm90_ws.cuh. The rows' products, softmax and
// epilogue are the two kernels' shared fwd_rows.cuh; this file is the pipeline.
//
// The work partitioning of flash_fwd_kernel.cuh (one block per query block, head and batch; every row owned
// by one thread quad, no reduction between warps; online softmax in base 2; key blocks last to first), with
// the tile products on wgmma instead of mma.sync: each warpgroup of 4 warps owns 64 query rows, and the
// tensor cores read Q, K and V straight from shared memory. On mma.sync every K/V fragment went through
// ldmatrix into registers first, and at d256 (one m-tile per warp) those shared-memory reads bounded the
// loop (BENCHMARKS.md, v2). P stays in registers as wgmma's A operand.
//
// Shared memory: Q, two K buffers and two V buffers (the software pipeline in the kernel says who reads
// which), in the swizzled panel layout of sm90_common.cuh; K is read K-major (S = Q K^T) and V MN-major
// (O += P V, trans-b), so one layout and one loader serve both.
#pragma once
#include <math.h>

#include "common/flash_params.h"
#include "common/fwd_block.cuh"
#include "common/ptx.cuh"
#include "sm90/fwd_rows.cuh"
#include "sm90/sm90_common.cuh"

namespace fa2 {

template <typename T_, int HEAD_DIM_, int NUM_WG_, int BLOCK_N_>
struct Sm90Traits {
    using T = T_;
    static constexpr int HEAD_DIM = HEAD_DIM_;
    static constexpr int NUM_WG = NUM_WG_;  // warpgroups, 64 query rows each
    static constexpr int THREADS = 128 * NUM_WG;
    static constexpr int BLOCK_M = 64 * NUM_WG;
    static constexpr int BLOCK_N = BLOCK_N_;
    static constexpr int Q_BYTES = BLOCK_M * HEAD_DIM * 2;
    static constexpr int KV_BYTES = BLOCK_N * HEAD_DIM * 2;
    // +1024: the dynamic shared-memory base is rounded up to the swizzle's 1024-byte period.
    static constexpr int SMEM_BYTES = Q_BYTES + 4 * KV_BYTES + 1024;  // Q, two K and two V buffers

    static_assert(sizeof(T) == 2, "f16 / bf16");
    static_assert(HEAD_DIM % 64 == 0, "tiles are whole 128-byte swizzle panels");
    static_assert(BLOCK_N % 16 == 0 && BLOCK_N <= 256, "wgmma n of S, k16 steps of P V");
    static_assert(HEAD_DIM <= 256, "wgmma n of O");
    static_assert(SMEM_BYTES <= 227 * 1024, "shared memory per block on sm_90");
};

// TRANSFORM: logits are formed explicitly (softcap, ALiBi, a scale <= 0: common/logits.cuh), a kernel of
// its own as in flash_fwd_kernel. Masks (causal, windows, partial blocks) are applied here.
template <typename Tr, bool TRANSFORM>
__global__ void __launch_bounds__(Tr::THREADS, 1) flash_fwd_sm90_kernel(const FlashFwdParams params) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using T = typename Tr::T;
    extern __shared__ __align__(1024) unsigned char sm90_smem[];
    const uint32_t smem_q = (smem_addr(sm90_smem) + 1023) & ~1023u;
    auto smem_k = [&](int buf) { return smem_q + Tr::Q_BYTES + buf * Tr::KV_BYTES; };
    auto smem_v = [&](int buf) { return smem_q + Tr::Q_BYTES + (2 + buf) * Tr::KV_BYTES; };

    // Causal blocks with many keys start first (load balance), as in flash_fwd_kernel.
    const int m_block = gridDim.x - 1 - blockIdx.x;
    const int head = blockIdx.y;
    const FlashFwdParams p = sequence_view<T>(params, blockIdx.z);
    const int wg = threadIdx.x / 128, lane = threadIdx.x % 32;
    using Rows = Sm90FwdRows<Tr, TRANSFORM>;
    const typename Rows::Block blk(p, m_block, head);
    if (blk.past_end()) return;
    if (blk.empty()) {
        for (int h = 0; h < 2; ++h) blk.write_empty_row(p, Rows::row_of(blk, wg, h), lane);
        return;
    }
    const int n_block_min = blk.n_block_min, n_block_max = blk.n_block_max;

    const SwizzledTileLoader<Tr> loader(p.head_dim);
    auto load_k = [&](int buf, int n_block) {
        const int n0 = n_block * Tr::BLOCK_N;
        loader.template load<Tr::BLOCK_N>(smem_k(buf), blk.k, n0, p.seqlen_k - n0);
    };
    auto load_v = [&](int buf, int n_block) {
        const int n0 = n_block * Tr::BLOCK_N;
        loader.template load<Tr::BLOCK_N>(smem_v(buf), blk.v, n0, p.seqlen_k - n0);
    };
    Rows rows(p, wg, head);

    // Software pipeline (FA3's intra-warpgroup overlap): step i issues S_i = Q K_i and O += P_{i-1} V_{i-1}
    // together, then runs the softmax of S_i while the tensor cores finish P_{i-1} V_{i-1}; O is rescaled
    // once that product has landed. K and V have two buffers each: step i reads K_i and V_{i-1} and loads
    // K_{i+1} and V_i over the buffers of K_{i-1} and V_{i-2}, which step i-1 finished with.
    // Step i is key block n_block_max - 1 - i (last to first).
    const int steps = n_block_max - n_block_min;
    loader.template load<Tr::BLOCK_M>(smem_q, blk.q, p.q_row_stride, blk.rows_valid);
    load_k(0, n_block_max - 1);
    cp_async_commit();
    if (steps > 1) load_k(1, n_block_max - 2);
    load_v(0, n_block_max - 1);
    cp_async_commit();
    publish_smem<1>();  // Q and K_0
    wgmma_fence();
    rows.issue_qk(smem_q, smem_k(0));
    wgmma_wait<0>();
    fence_registers(rows.s);
    rows.softmax(p, blk, n_block_max - 1);
    rows.pack_p();

    for (int i = 1; i < steps; ++i) {
        publish_smem<0>();  // K_i and V_{i-1}
        if (i + 1 < steps) load_k((i + 1) % 2, n_block_max - 1 - (i + 1));
        load_v(i % 2, n_block_max - 1 - i);
        cp_async_commit();
        wgmma_fence();
        rows.issue_qk(smem_q, smem_k(i % 2));
        rows.issue_pv(smem_v((i - 1) % 2));
        wgmma_wait<1>();  // S_i
        fence_registers(rows.s);
        rows.softmax(p, blk, n_block_max - 1 - i);
        wgmma_wait<0>();  // P_{i-1} V_{i-1}
        fence_registers(rows.o_acc);
        rows.rescale_o();
        rows.pack_p();
    }
    publish_smem<0>();  // V_{steps-1}
    wgmma_fence();
    rows.issue_pv(smem_v((steps - 1) % 2));
    wgmma_wait<0>();
    fence_registers(rows.o_acc);
    rows.epilogue(p, blk);
#elif defined(__CUDA_ARCH__)
    __trap();  // built without sm_90a: launch_fwd_sm90 is only called on a device that runs sm_90a code
#endif
}

template <typename Tr, bool TRANSFORM>
cudaError_t launch_fwd_sm90(const FlashFwdParams& p, cudaStream_t stream) {
    auto kernel = flash_fwd_sm90_kernel<Tr, TRANSFORM>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::SMEM_BYTES);
    if (err != cudaSuccess) return err;
    const dim3 grid((p.seqlen_q + Tr::BLOCK_M - 1) / Tr::BLOCK_M, p.heads_q, p.batch);
    kernel<<<grid, Tr::THREADS, Tr::SMEM_BYTES, stream>>>(p);
    return cudaGetLastError();
}

}  // namespace fa2
