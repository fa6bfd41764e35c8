// FlashAttention-2 forward on Hopper's warpgroup MMA (wgmma, sm_90a).
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
#include "common/fragments.cuh"
#include "common/fwd_block.cuh"
#include "common/logits.cuh"
#include "common/ptx.cuh"
#include "common/softmax.cuh"
#include "sm90/sm90_common.cuh"
#include "sm90/wgmma.cuh"

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
    constexpr int NT = Tr::BLOCK_N / 8, DT = Tr::HEAD_DIM / 8;
    extern __shared__ __align__(1024) unsigned char sm90_smem[];
    const uint32_t smem_q = (smem_addr(sm90_smem) + 1023) & ~1023u;
    auto smem_k = [&](int buf) { return smem_q + Tr::Q_BYTES + buf * Tr::KV_BYTES; };
    auto smem_v = [&](int buf) { return smem_q + Tr::Q_BYTES + (2 + buf) * Tr::KV_BYTES; };

    // Causal blocks with many keys start first (load balance), as in flash_fwd_kernel.
    const int m_block = gridDim.x - 1 - blockIdx.x;
    const int head = blockIdx.y;
    const FlashFwdParams p = sequence_view<T>(params, blockIdx.z);
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    const FwdBlock<T, Tr::BLOCK_M, Tr::BLOCK_N> blk(p, m_block, head);
    if (blk.past_end()) return;
    // This thread's rows: half h of its warp's 16 rows of its warpgroup's 64 (wgmma's accumulator layout is
    // mma.sync's C fragment, one 16-row slice per warp).
    auto row_of = [&](int h) { return blk.m0 + wg * 64 + warp * 16 + lane / 4 + h * 8; };

    if (blk.empty()) {
        for (int h = 0; h < 2; ++h) blk.write_empty_row(p, row_of(h), lane);
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
    // Plain: the softmax folds the scale into exp2's argument. Transformed: scores become base-2 logits
    // first, and the fold is 1.
    const float sl2 = TRANSFORM ? 1.f : p.scale_log2;
    const Logits logits(p);
    const float slope = TRANSFORM ? logits.slope(head) : 0.f;  // ALiBi: only the transformed kernel reads it
    float o_acc[DT * 4];
#pragma unroll
    for (int i = 0; i < DT * 4; ++i) o_acc[i] = 0.f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
    float s[NT * 4];
    uint32_t pv_a[Tr::BLOCK_N / 16][4];  // P of the previous block: the A fragments of O += P V

    // S = Q K^T for this warpgroup's 64 rows against K in buffer `buf`, issued (not waited for). The first
    // k-step overwrites S (accumulate 0), so S needs no zeroing, which would be a register write between
    // the caller's wgmma_fence() and the MMA.
    auto issue_qk = [&](int buf) {
#pragma unroll
        for (int kk = 0; kk < Tr::HEAD_DIM / 16; ++kk)
            Wgmma<T, Tr::BLOCK_N>::ss(s, k_major_desc<Tr::BLOCK_M>(smem_q, wg * 64, kk),
                                      k_major_desc<Tr::BLOCK_N>(smem_k(buf), 0, kk), kk > 0);
        wgmma_commit();
    };
    // O += P V with V in buffer `buf`, MN-major.
    auto issue_pv = [&](int buf) {
#pragma unroll
        for (int kk = 0; kk < Tr::BLOCK_N / 16; ++kk)
            Wgmma<T, Tr::HEAD_DIM>::rs(o_acc, pv_a[kk], mn_major_desc<Tr::BLOCK_N>(smem_v(buf), kk), 1);
        wgmma_commit();
    };
    // Masks S of key block n_block, updates the running max and sum and turns S into P in place (the online
    // softmax of common/softmax.cuh); alpha gets the factors O must be rescaled by once the product still in
    // flight has landed.
    float alpha[2];
    auto softmax = [&](int n_block) {
        const int n0 = n_block * Tr::BLOCK_N;
        if (TRANSFORM) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int dist = fragment_col(lane, n0, nt, e) - row_of(e / 2) - blk.offset;
                    s[nt * 4 + e] = logits(s[nt * 4 + e], slope, dist) * LOG2E;
                }
        }
        if (blk.needs_mask(p, n0)) {  // a uniform branch per block
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (!blk.visible(p, row_of(e / 2), fragment_col(lane, n0, nt, e))) s[nt * 4 + e] = -INFINITY;
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            auto scores = [&](int nt, int e) -> float& { return s[nt * 4 + e]; };
            const float block_sum = online_softmax_row<NT>(scores, h, row_max[h], sl2, [&](float a) { alpha[h] = a; });
            row_sum[h] = row_sum[h] * alpha[h] + block_sum;
        }
    };
    auto pack_p = [&] { accumulators_to_a<T, Tr::BLOCK_N>(pv_a, s); };

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
    issue_qk(0);
    wgmma_wait<0>();
    fence_registers(s);
    softmax(n_block_max - 1);
    pack_p();

    for (int i = 1; i < steps; ++i) {
        publish_smem<0>();  // K_i and V_{i-1}
        if (i + 1 < steps) load_k((i + 1) % 2, n_block_max - 1 - (i + 1));
        load_v(i % 2, n_block_max - 1 - i);
        cp_async_commit();
        wgmma_fence();
        issue_qk(i % 2);
        issue_pv((i - 1) % 2);
        wgmma_wait<1>();  // S_i
        fence_registers(s);
        softmax(n_block_max - 1 - i);
        wgmma_wait<0>();  // P_{i-1} V_{i-1}
        fence_registers(o_acc);
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) o_acc[dt * 4 + e] *= alpha[e / 2];
        pack_p();
    }
    publish_smem<0>();  // V_{steps-1}
    wgmma_fence();
    issue_pv((steps - 1) % 2);
    wgmma_wait<0>();
    fence_registers(o_acc);

    // Epilogue: normalise once, write O and the LSE (natural log).
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const float sum = quad_sum(row_sum[h]);
        const int row = row_of(h);
        if (row >= p.seqlen_q) continue;
        const RowEnd end = row_end(row_max[h], sl2, sum);
        store_accumulator_row<T, Tr::HEAD_DIM>(blk.o + row * p.o_row_stride, o_acc, h, lane, p.head_dim, end.inv_sum);
        if (lane % 4 == 0) blk.lse[row] = end.lse;
    }
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
