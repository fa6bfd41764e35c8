// FlashAttention-2 forward, mma.sync (sm_80+).
//
// Work partitioning (FA2): one thread block per (query block, head, batch); each warp owns
// 16 * M_TILES query rows and sees every key, so warps never combine partial results. From d512 the O
// columns are split over D_SPLIT warps that share the rows (O would not fit one warp); they compute S each
// over their share of the head dim and add the shares through shared memory (SPLIT_S). K and V stream
// through shared memory by cp.async: V[n] loads while S = Q K[n]^T runs, K[n-1] loads while the softmax
// and O += P V[n] run. Key blocks run from last to first, so a causal diagonal block (the only masked one)
// comes first and the rest skip the mask arithmetic. P never leaves registers: the S accumulators are
// repacked as the A operand of P V. O is rescaled when the running max grows and divided by the row sum
// once at the end; only the log-sum-exp is stored.
#pragma once
#include <math.h>

#include "common/flash_params.h"
#include "common/fragments.cuh"
#include "common/fwd_block.cuh"
#include "common/logits.cuh"
#include "common/ptx.cuh"
#include "common/softmax.cuh"
#include "common/tile_loader.cuh"

namespace fa2 {

// Every tile and shared-memory decision of one kernel configuration.
template <typename T_, int HEAD_DIM_, int M_TILES_, int NUM_WARPS_, int BLOCK_N_, int MIN_BLOCKS_, int D_SPLIT_ = 1,
          bool SPLIT_S_ = false>
struct FwdTraits {
    using T = T_;
    static constexpr int HEAD_DIM = HEAD_DIM_;    // instantiated head_dim; smaller ones run masked
    static constexpr int M_TILES = M_TILES_;      // 16-row MMA tiles per warp: K/V fragments are reused
                                                  // M_TILES times, which halves shared-memory reads at 2
    static constexpr int NUM_WARPS = NUM_WARPS_;
    static constexpr int THREADS = NUM_WARPS * 32;
    // Warps that share the same query rows, each accumulating HEAD_DIM / D_SPLIT columns of O: at d512 a
    // warp's O alone would be 256 f32 per thread. Without SPLIT_S each computes all of S (1.5x the MMA work
    // at 2, and twice the Q and K reads); with it each computes S over HEAD_DIM / D_SPLIT of the head dim,
    // and the warps add their partial S through shared memory (SMEM_S) behind a barrier of their own.
    static constexpr int D_SPLIT = D_SPLIT_;
    static constexpr int D_OWN = HEAD_DIM / D_SPLIT;
    static constexpr bool SPLIT_S = SPLIT_S_;
    static constexpr int BLOCK_M = 16 * M_TILES * NUM_WARPS / D_SPLIT;
    static constexpr int BLOCK_N = BLOCK_N_;
    static constexpr int MIN_BLOCKS = MIN_BLOCKS_;  // __launch_bounds__ occupancy hint (caps registers)
    // Shared-memory row pitch: 16 extra bytes put the 8 rows an ldmatrix reads in 8 different bank groups.
    static constexpr int PITCH = HEAD_DIM + 8;
    static constexpr int SMEM_Q = BLOCK_M * PITCH;
    static constexpr int SMEM_KV = BLOCK_N * PITCH;
    static constexpr int N_TILES = BLOCK_N / 8;    // n8 tiles of S per m-tile
    static constexpr int SMEM_S = SPLIT_S ? NUM_WARPS * M_TILES * N_TILES * 32 * 4 : 0;  // f32, fragment order
    static constexpr int SMEM_BYTES = (SMEM_Q + 2 * SMEM_KV) * int(sizeof(T)) + SMEM_S * int(sizeof(float));
    static constexpr int D_TILES = D_OWN / 8;      // n8 tiles of O per m-tile, this warp's columns

    static_assert(HEAD_DIM % 16 == 0, "head_dim tiles are k16 steps of Q K^T");
    static_assert(BLOCK_N % 16 == 0, "key blocks are k16 steps of P V");
    static_assert(D_OWN % 16 == 0 && NUM_WARPS % D_SPLIT == 0, "x4 ldmatrix pairs of V, whole row groups");
    // Two shares: a + b == b + a, so both warps of a pair get the same S bit for bit (three would add in
    // different orders, and the warps' softmax would differ in the last bits).
    static_assert(!SPLIT_S || (D_SPLIT == 2 && NUM_WARPS / D_SPLIT <= 15), "pairs, a named barrier each");
    static_assert(SMEM_BYTES <= 227 * 1024, "shared memory per block on sm_90");
};

// TRANSFORM: logits are formed explicitly (softcap, ALiBi, a scale <= 0). A kernel of its own rather than a
// runtime branch: the branch's live values cost the plain kernel registers (spills at d64-d128) and up to
// 5-8% at short sequences (BENCHMARKS.md, v6).
template <typename Tr, bool TRANSFORM>
__global__ void __launch_bounds__(Tr::THREADS, Tr::MIN_BLOCKS) flash_fwd_kernel(const FlashFwdParams params) {
    using T = typename Tr::T;
    constexpr int MT = Tr::M_TILES, NT = Tr::N_TILES, DT = Tr::D_TILES;
    extern __shared__ __align__(16) unsigned char smem[];
    T* sQ = reinterpret_cast<T*>(smem);
    T* sK = sQ + Tr::SMEM_Q;
    T* sV = sK + Tr::SMEM_KV;
    float4* sS = reinterpret_cast<float4*>(sV + Tr::SMEM_KV);  // SPLIT_S: each warp's partial S

    // Causal blocks with many keys start first: the tail of the grid is then short blocks (load balance).
    const int m_block = gridDim.x - 1 - blockIdx.x;
    const int head = blockIdx.y;
    const FlashFwdParams p = sequence_view<T>(params, blockIdx.z);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row_group = warp / Tr::D_SPLIT;         // 16 * MT query rows
    const int d_part = warp % Tr::D_SPLIT, d0 = d_part * Tr::D_OWN;  // this warp's first column of O
    const FwdBlock<T, Tr::BLOCK_M, Tr::BLOCK_N> blk(p, m_block, head);
    if (blk.past_end()) return;
    // This thread's rows: m-tile mt, half h (the C fragment holds rows lane/4 and lane/4 + 8).
    auto row_of = [&](int mt, int h) { return blk.m0 + (row_group * MT + mt) * 16 + lane / 4 + h * 8; };

    if (blk.empty()) {
        if (d_part == 0)
            for (int mt = 0; mt < MT; ++mt)
                for (int h = 0; h < 2; ++h) blk.write_empty_row(p, row_of(mt, h), lane);
        return;
    }
    const int n_block_min = blk.n_block_min, n_block_max = blk.n_block_max;

    const TileLoader<Tr> loader(p.head_dim);
    loader.template load<Tr::BLOCK_M>(sQ, blk.q, p.q_row_stride, blk.rows_valid);
    {
        const int n0 = (n_block_max - 1) * Tr::BLOCK_N;
        loader.template load<Tr::BLOCK_N>(sK, blk.k, n0, p.seqlen_k - n0);
    }
    cp_async_commit();

    const Logits logits(p);
    const float slope = logits.slope(head);
    // Plain path: the softmax works on raw scores and folds the scale into exp2's argument (one FFMA).
    // Transformed path: scores become base-2 logits first, and the fold is 1.
    const float sl2 = TRANSFORM ? 1.f : p.scale_log2;

    float o_acc[MT][DT][4];
    float row_max[MT][2], row_sum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) o_acc[mt][dt][e] = 0.f;
#pragma unroll
        for (int h = 0; h < 2; ++h) row_max[mt][h] = -INFINITY, row_sum[mt][h] = 0.f;
    }

    // ---- Main loop over key blocks, last to first. ----------------------------------------------------
    for (int n_block = n_block_max - 1; n_block >= n_block_min; --n_block) {
        const int n0 = n_block * Tr::BLOCK_N;
        cp_async_wait<0>();  // K[n] (and Q) landed
        __syncthreads();     // ... for every thread, and every warp is done reading V[n+1]
        loader.template load<Tr::BLOCK_N>(sV, blk.v, n0, p.seqlen_k - n0);
        cp_async_commit();

        // S = Q K^T.
        float s[MT][NT][4];
        zero_fragments(s);
        constexpr int KK_OWN = Tr::HEAD_DIM / 16 / (Tr::SPLIT_S ? Tr::D_SPLIT : 1);  // k16 steps of this warp
#pragma unroll
        for (int k = 0; k < KK_OWN; ++k) {
            const int kk = (Tr::SPLIT_S ? d_part * KK_OWN : 0) + k;
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
                ldmatrix_x4(a[mt], sQ + ((row_group * MT + mt) * 16 + lane % 16) * Tr::PITCH + kk * 16 + (lane / 16) * 8);
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t b[4];
                ldmatrix_x4(b, sK + (np * 16 + (lane / 16) * 8 + lane % 8) * Tr::PITCH + kk * 16 +
                                   ((lane / 8) % 2) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816<T>(s[mt][2 * np], a[mt], b[0], b[1]);
                    mma_16816<T>(s[mt][2 * np + 1], a[mt], b[2], b[3]);
                }
            }
        }

        if constexpr (Tr::SPLIT_S) {
            // The pair's partial S, added: lane l of both warps holds the same elements, so each lane reads
            // its partner's fragments. The buffer is rewritten only after the next step's block barriers.
            constexpr int FRAGS = MT * NT * 32;  // float4s of a warp
            store_fragments(sS + warp * FRAGS, s, lane);
            named_barrier_sync(1 + row_group, 64);
            add_fragments(s, sS + (warp ^ 1) * FRAGS, lane);
        }

        // Logits (softcap, ALiBi: common/logits.cuh), then the mask: a uniform branch per block, rare.
        if (TRANSFORM) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int dist = fragment_col(lane, n0, nt, e) - row_of(mt, e / 2) - blk.offset;
                        s[mt][nt][e] = logits(s[mt][nt][e], slope, dist) * LOG2E;
                    }
        }
        if (blk.needs_mask(p, n0)) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        if (!blk.visible(p, row_of(mt, e / 2), fragment_col(lane, n0, nt, e)))
                            s[mt][nt][e] = -INFINITY;
        }

        cp_async_wait<0>();  // V[n] landed
        __syncthreads();     // ... for every thread, and every warp is done reading K[n]
        if (n_block > n_block_min) {
            const int n_prev = n0 - Tr::BLOCK_N;
            loader.template load<Tr::BLOCK_N>(sK, blk.k, n_prev, p.seqlen_k - n_prev);
            cp_async_commit();
        }

        // Online softmax (common/softmax.cuh). O is rescaled every block, as in FA2: skipping it when no row max grew (a warp vote) measured
        // no faster at d64/d128 and 8% slower at d256 (BENCHMARKS.md, v3).
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                auto scores = [&](int nt, int e) -> float& { return s[mt][nt][e]; };
                const float block_sum = online_softmax_row<NT>(scores, h, row_max[mt][h], sl2, [&](float alpha) {
                    row_sum[mt][h] *= alpha;
#pragma unroll
                    for (int dt = 0; dt < DT; ++dt) o_acc[mt][dt][2 * h] *= alpha, o_acc[mt][dt][2 * h + 1] *= alpha;
                });
                row_sum[mt][h] += block_sum;  // per-lane partial; the quad is summed once at the end
            }

        // O += P V: the S accumulators of n-tiles 2kk, 2kk+1 are the A fragment of k-step kk.
#pragma unroll
        for (int kk = 0; kk < Tr::BLOCK_N / 16; ++kk) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) accumulators_to_a<T>(a[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
            for (int dp = 0; dp < DT / 2; ++dp) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, sV + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * Tr::PITCH + d0 + dp * 16 +
                                         (lane / 16) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816<T>(o_acc[mt][2 * dp], a[mt], b[0], b[1]);
                    mma_16816<T>(o_acc[mt][2 * dp + 1], a[mt], b[2], b[3]);
                }
            }
        }
    }

    // ---- Epilogue: normalise once, write O and the LSE (natural log). ----------------------------------
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float sum = quad_sum(row_sum[mt][h]);
            const int row = row_of(mt, h);
            if (row >= p.seqlen_q) continue;
            const RowEnd end = row_end(row_max[mt][h], sl2, sum);
            T* o_row = blk.o + row * p.o_row_stride;
#pragma unroll
            for (int dt = 0; dt < DT; ++dt) {
                const int col = d0 + dt * 8 + 2 * (lane % 4);
                if (col < p.head_dim)
                    *reinterpret_cast<uint32_t*>(o_row + col) =
                        pack2<T>(o_acc[mt][dt][2 * h] * end.inv_sum, o_acc[mt][dt][2 * h + 1] * end.inv_sum);
            }
            if (lane % 4 == 0 && d_part == 0) blk.lse[row] = end.lse;
        }
}

template <typename Tr>
cudaError_t launch_fwd(const FlashFwdParams& p, cudaStream_t stream) {
    auto kernel = p.transform_logits ? flash_fwd_kernel<Tr, true> : flash_fwd_kernel<Tr, false>;
    if (Tr::SMEM_BYTES > 48 * 1024) {
        // Above 48 KiB a block must opt in; the attribute is per function and cheap to set again.
        cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::SMEM_BYTES);
        if (err != cudaSuccess) return err;
    }
    const dim3 grid((p.seqlen_q + Tr::BLOCK_M - 1) / Tr::BLOCK_M, p.heads_q, p.batch);
    kernel<<<grid, Tr::THREADS, Tr::SMEM_BYTES, stream>>>(p);
    return cudaGetLastError();
}

}  // namespace fa2
