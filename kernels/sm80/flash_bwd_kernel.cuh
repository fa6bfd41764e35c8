// FlashAttention-2 backward, mma.sync (sm_80+): deterministic by default, dQ by f32 atomics on request.
//
// P is recomputed from Q, K and the forward's LSE tile by tile, so nothing N x N is stored. With
// D_i = dO_i · O_i (first kernel), P = exp(z - lse), dP = dO Vᵀ and dS = P ∘ (dP - D) ∘ dz/ds:
//   dV = Pᵀ dO,  dK = dSᵀ Q,  dQ = dS K.
// One kernel template runs three kinds of pass:
//  - KEYS (grid over key blocks): warps own key rows, query tiles (Q, dO, LSE, D) stream through shared
//    memory. The pass computes the transposed tiles Sᵀ = K Qᵀ and dPᵀ = V dOᵀ, so Pᵀ and dSᵀ leave the
//    tensor cores already laid out as the A operand of dV += Pᵀ dO and dK += dSᵀ Q: no shared-memory
//    round trip for P or dS, and every query head of a GQA group adds into the same registers.
//  - KEYS_DQ: KEYS, and also dQ_i += dS K_j for the streamed query tile: dSᵀ goes through shared memory
//    (ldmatrix.trans reads it back as dS) and the block's partial dQ is added to an f32 buffer with
//    atomics, as FA2 does (5 tile products in all). The order of the atomic adds varies, so dQ may differ
//    in the last bits between runs.
//  - QUERIES (grid over query blocks): warps own query rows, K/V tiles stream. S = Q Kᵀ, dP = dO Vᵀ,
//    dQ += dS K: the forward's loop with a second product instead of the online softmax.
// The default runs KEYS then QUERIES: S and dP are computed twice (7 tile products instead of 5), each
// pass writes only rows it owns, and two runs give bitwise equal gradients. It measured as fast as KEYS_DQ
// or faster except at d64 from 2k (BENCHMARKS.md, final run): KEYS_DQ's extra barrier, shared-memory
// round trip and atomics cost about what the QUERIES pass does.
#pragma once
#include <math.h>

#include "common/bwd_block.cuh"
#include "common/dq_accum.cuh"
#include "common/flash_params.h"
#include "common/fragments.cuh"
#include "common/logits.cuh"
#include "common/ptx.cuh"
#include "common/tile_loader.cuh"

namespace fa2 {

// Every tile and shared-memory decision of one backward pass. "Rows" are what the block owns (keys in
// KEYS, queries in QUERIES), "columns" what streams past them.
template <typename T_, BwdPass PASS_, int HEAD_DIM_, int M_TILES_, int NUM_WARPS_, int BLOCK_C_, int D_SPLIT_,
          int MIN_BLOCKS_, bool SPLIT_S_ = false>
struct BwdTraits {
    using T = T_;
    static constexpr BwdPass PASS = PASS_;
    static constexpr int HEAD_DIM = HEAD_DIM_;
    static constexpr int M_TILES = M_TILES_;  // 16-row MMA tiles per warp
    static constexpr int NUM_WARPS = NUM_WARPS_;
    static constexpr int THREADS = NUM_WARPS * 32;
    // Warps that share the same rows, each accumulating HEAD_DIM / D_SPLIT gradient columns: at large head
    // dims dK and dV do not both fit one warp's registers. Without SPLIT_S they each compute the same S and
    // dP tiles; with it each computes them over HEAD_DIM / D_SPLIT of the head dim and the warps add their
    // shares through shared memory (SMEM_SC), every warp in the same order (the same bits in each).
    static constexpr int D_SPLIT = D_SPLIT_;
    static constexpr int D_OWN = HEAD_DIM / D_SPLIT;
    static constexpr bool SPLIT_S = SPLIT_S_;
    static constexpr int BLOCK_R = 16 * M_TILES * NUM_WARPS / D_SPLIT;
    static constexpr int BLOCK_C = BLOCK_C_;
    static constexpr int MIN_BLOCKS = MIN_BLOCKS_;
    static constexpr int PITCH = HEAD_DIM + 8;  // 16 spare bytes per row: ldmatrix rows hit distinct banks
    static constexpr int STAGES = 2;            // the next column tile loads while this one is used
    static constexpr int SMEM_R = BLOCK_R * PITCH;
    static constexpr int SMEM_C = BLOCK_C * PITCH;
    static constexpr bool OWNS_KEYS = PASS != BwdPass::QUERIES;
    // KEYS_DQ: dSᵀ of the block, rows = keys, padded as the tiles.
    static constexpr int DS_PITCH = BLOCK_C + 8;
    static constexpr int SMEM_DS = PASS == BwdPass::KEYS_DQ ? BLOCK_R * DS_PITCH : 0;
    // Two row tiles, two column tiles per stage, dSᵀ, (KEYS*) the LSE and D of each streamed query, and
    // (SPLIT_S) each warp's shares of the C1 and C2 tiles, float4s in fragment order.
    static constexpr int SMEM_SC_OFFSET = (2 * SMEM_R + 2 * STAGES * SMEM_C + SMEM_DS) * int(sizeof(T)) +
                                          (OWNS_KEYS ? 2 * STAGES * BLOCK_C * int(sizeof(float)) : 0);
    static constexpr int SC_FRAGS = 2 * M_TILES * (BLOCK_C / 8) * 32;  // float4s of a warp: C1's, then C2's
    static constexpr int SMEM_BYTES = SMEM_SC_OFFSET + (SPLIT_S ? NUM_WARPS * SC_FRAGS * 16 : 0);
    // KEYS_DQ: the block's dQ tile (BLOCK_C queries x HEAD_DIM) is split over the warps by query m-tile and
    // by 16-column pairs, DQ_PAIRS pairs per warp at most.
    static constexpr int DQ_M_TILES = BLOCK_C / 16;
    static constexpr int DQ_PARTS = NUM_WARPS / DQ_M_TILES;
    static constexpr int DQ_PAIRS = (HEAD_DIM / 16 + DQ_PARTS - 1) / DQ_PARTS;
    static constexpr int C_TILES = BLOCK_C / 8;  // n8 tiles of S per m-tile
    static constexpr int O_TILES = D_OWN / 8;    // n8 tiles of a gradient per m-tile

    static_assert(HEAD_DIM % 16 == 0 && D_OWN % 16 == 0, "k16 steps and x4 ldmatrix pairs");
    static_assert(BLOCK_C % 16 == 0, "column tiles are k16 steps of the gradient products");
    static_assert(NUM_WARPS % D_SPLIT == 0, "whole row groups");
    static_assert(PASS != BwdPass::KEYS_DQ || (NUM_WARPS % DQ_M_TILES == 0 && BLOCK_R % 16 == 0),
                  "the dQ tile splits evenly over the warps");
    static_assert(SMEM_BYTES <= 227 * 1024, "shared memory per block on sm_90");
    static_assert(!SPLIT_S || (D_SPLIT > 1 && NUM_WARPS / D_SPLIT <= 15 && SMEM_SC_OFFSET % 16 == 0),
                  "a named barrier per row group, float4s aligned");
};

// D_i = dO_i · O_i in f32: ROW_LANES lanes per (batch, row, head), 16-byte loads each, so a warp reads
// whole rows at every head_dim (a warp per row left 3/4 of its lanes idle at d64 and took twice the time
// of FA2's kernel: results/h200-2026-11-30-ncu).
template <typename T, int ROW_LANES>
__global__ void bwd_delta_kernel(const FlashBwdParams bp) {
    const FlashFwdParams& p = bp.fwd;
    const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / ROW_LANES;
    const int lane = threadIdx.x % ROW_LANES;
    // No early return: every lane of the warp takes part in the shuffles below.
    // A variable-length batch is one batch of total_q rows here: D is per row, whatever its sequence.
    const int rows = p.cu_seqlens_q ? p.total_q : p.seqlen_q;
    const bool valid = w < lse_rows(p);
    const int head = int(w % p.heads_q);
    const int row = int((w / p.heads_q) % rows);
    const int batch = int(w / (int64_t(p.heads_q) * rows));
    float acc = 0.f;
    if (valid) {
        const T* o = reinterpret_cast<const T*>(p.o) + batch * p.o_batch_stride + row * p.o_row_stride +
                     head * p.o_head_stride;
        const T* d_o = reinterpret_cast<const T*>(bp.d_o) + batch * bp.do_batch_stride + row * bp.do_row_stride +
                       head * bp.do_head_stride;
        for (int col = lane * 8; col < p.head_dim; col += ROW_LANES * 8) {
            const uint4 a = *reinterpret_cast<const uint4*>(o + col);
            const uint4 b = *reinterpret_cast<const uint4*>(d_o + col);
            const uint32_t aw[4] = {a.x, a.y, a.z, a.w}, bw[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float2 x = unpack2<T>(aw[i]), y = unpack2<T>(bw[i]);
                acc = fmaf(x.x, y.x, fmaf(x.y, y.y, acc));
            }
        }
    }
#pragma unroll
    for (int s = ROW_LANES / 2; s > 0; s /= 2) acc += __shfl_xor_sync(0xffffffff, acc, s);
    if (valid && lane == 0) bp.delta[(int64_t(batch) * p.heads_q + head) * p.lse_head_stride + row] = acc;
}

// KEYS_DQ: dQ[c0 + m, :] += sum over the block's keys of dS[m, key] K[key, :], for this warp's query
// m-tile and column pairs; f32 atomics into bp.dq_accum (the sequence's rows of (.., heads_q, head_dim)).
template <typename Tr>
__device__ __forceinline__ void add_dq_partial(const FlashBwdParams& bp, const typename Tr::T* sDs,
                                               const typename Tr::T* sK, int head, int c0, int lane, int warp) {
    using T = typename Tr::T;
    const FlashFwdParams& p = bp.fwd;
    constexpr int PAIRS = Tr::DQ_PAIRS;
    const int m_tile = warp % Tr::DQ_M_TILES, part = warp / Tr::DQ_M_TILES;
    float acc[PAIRS][2][4];
#pragma unroll
    for (int i = 0; i < PAIRS; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < Tr::BLOCK_R / 16; ++kk) {
        // A = dS (queries x keys), stored as dSᵀ (keys x queries): ldmatrix.trans.
        uint32_t a[4];
        ldmatrix_x4_trans(a, sDs + (kk * 16 + (lane / 16) * 8 + lane % 8) * Tr::DS_PITCH + m_tile * 16 +
                                 ((lane / 8) % 2) * 8);
#pragma unroll
        for (int i = 0; i < PAIRS; ++i) {
            const int pair = part + i * Tr::DQ_PARTS;
            if (pair >= Tr::HEAD_DIM / 16) break;
            uint32_t b[4];  // B = K (keys x head_dim), read transposed as V in the forward
            ldmatrix_x4_trans(b, sK + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * Tr::PITCH + pair * 16 +
                                     (lane / 16) * 8);
            mma_16816<T>(acc[i][0], a, b[0], b[1]);
            mma_16816<T>(acc[i][1], a, b[2], b[3]);
        }
    }
    float* dq = bp.dq_accum + head * p.head_dim;
    const int64_t row_stride = int64_t(p.heads_q) * p.head_dim;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int query = c0 + m_tile * 16 + lane / 4 + h * 8;
        if (query >= p.seqlen_q) continue;
#pragma unroll
        for (int i = 0; i < PAIRS; ++i) {
            const int pair = part + i * Tr::DQ_PARTS;
            if (pair >= Tr::HEAD_DIM / 16) break;
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int col = pair * 16 + j * 8 + 2 * (lane % 4);
                if (col < p.head_dim) atomic_add2(dq + query * row_stride + col, acc[i][j][2 * h], acc[i][j][2 * h + 1]);
            }
        }
    }
}

template <typename Tr>
__global__ void __launch_bounds__(Tr::THREADS, Tr::MIN_BLOCKS) flash_bwd_kernel(const FlashBwdParams params) {
    using T = typename Tr::T;
    constexpr bool KEYS = Tr::OWNS_KEYS, DQ_ATOMIC = Tr::PASS == BwdPass::KEYS_DQ;
    constexpr int MT = Tr::M_TILES, CT = Tr::C_TILES, OT = Tr::O_TILES;
    const FlashBwdParams bp = bwd_sequence_view<T>(params, blockIdx.z);
    const FlashFwdParams& p = bp.fwd;
    extern __shared__ __align__(16) unsigned char smem[];
    T* sX1 = reinterpret_cast<T*>(smem);          // rows: K (KEYS) or Q, A operand of S
    T* sX2 = sX1 + Tr::SMEM_R;                    // rows: V (KEYS) or dO, A operand of dP
    T* sY1 = sX2 + Tr::SMEM_R;                    // columns per stage: Q (KEYS) or K
    T* sY2 = sY1 + Tr::STAGES * Tr::SMEM_C;       // columns per stage: dO (KEYS) or V
    T* sDs = sY2 + Tr::STAGES * Tr::SMEM_C;      // KEYS_DQ: dSᵀ of the step
    float* sLse2 = reinterpret_cast<float*>(sDs + Tr::SMEM_DS);  // KEYS*: per stage, per query
    float* sDelta = sLse2 + Tr::STAGES * Tr::BLOCK_C;
    float4* sC = reinterpret_cast<float4*>(smem + Tr::SMEM_SC_OFFSET);  // SPLIT_S: the warps' shares of C1, C2

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row_group = warp / Tr::D_SPLIT;            // 16 * MT rows
    const int d_part = warp % Tr::D_SPLIT, d0 = d_part * Tr::D_OWN;  // first gradient column of this warp

    // ---- Prologue: owned rows, the heads they serve, the columns any of them meets. --------------------
    // KEYS runs the heaviest blocks first by launch order (low keys see the most queries when causal);
    // QUERIES reverses it, as the forward.
    const BwdBlock<T, KEYS, Tr::BLOCK_R, Tr::BLOCK_C> blk(bp, KEYS ? blockIdx.x : gridDim.x - 1 - blockIdx.x,
                                                          blockIdx.y);
    if (blk.past_end()) return;
    const int head_lo = blk.head_lo, r0 = blk.r0, n_cols = blk.n_cols;

    const TileLoader<Tr> loader(p.head_dim);
    if (KEYS) {
        loader.template load<Tr::BLOCK_R>(sX1, blk.k + int64_t(r0) * p.k_row_stride, p.k_row_stride, blk.rows_valid);
        loader.template load<Tr::BLOCK_R>(sX2, blk.v + int64_t(r0) * p.v_row_stride, p.v_row_stride, blk.rows_valid);
    } else {
        loader.template load<Tr::BLOCK_R>(sX1, blk.q_of(bp, head_lo) + int64_t(r0) * p.q_row_stride, p.q_row_stride,
                                          blk.rows_valid);
        loader.template load<Tr::BLOCK_R>(sX2, blk.do_of(bp, head_lo) + int64_t(r0) * bp.do_row_stride,
                                          bp.do_row_stride, blk.rows_valid);
    }
    auto load_step = [&](int s) {
        const int stage = s % Tr::STAGES;
        const int h = blk.head_of(s), c0 = blk.c0_of(s);
        T* y1 = sY1 + stage * Tr::SMEM_C;
        T* y2 = sY2 + stage * Tr::SMEM_C;
        if (KEYS) {
            loader.template load<Tr::BLOCK_C>(y1, blk.q_of(bp, h) + int64_t(c0) * p.q_row_stride, p.q_row_stride,
                                              n_cols - c0);
            loader.template load<Tr::BLOCK_C>(y2, blk.do_of(bp, h) + int64_t(c0) * bp.do_row_stride,
                                              bp.do_row_stride, n_cols - c0);
            // Queries past seqlen_q get P = 0 through an infinite LSE: no mask needed for them.
            for (int c = threadIdx.x; c < Tr::BLOCK_C; c += Tr::THREADS) {
                const bool valid = c0 + c < n_cols;
                sLse2[stage * Tr::BLOCK_C + c] = valid ? lse_base2(blk.lse_of(bp, h)[c0 + c]) : INFINITY;
                sDelta[stage * Tr::BLOCK_C + c] = valid ? blk.delta_of(bp, h)[c0 + c] : 0.f;
            }
        } else {
            loader.template load<Tr::BLOCK_C>(y1, blk.k + int64_t(c0) * p.k_row_stride, p.k_row_stride, n_cols - c0);
            loader.template load<Tr::BLOCK_C>(y2, blk.v + int64_t(c0) * p.v_row_stride, p.v_row_stride, n_cols - c0);
        }
    };
    if (blk.steps > 0) load_step(0);
    cp_async_commit();

    // This thread's rows: m-tile mt, half h (the C fragment holds rows lane/4 and lane/4 + 8).
    auto row_of = [&](int mt, int h) { return r0 + (row_group * MT + mt) * 16 + lane / 4 + h * 8; };
    // QUERIES: the LSE and D of the owned rows stay in registers.
    float row_lse2[MT][2], row_delta[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = row_of(mt, h);
            const bool valid = !KEYS && row < p.seqlen_q;
            row_lse2[mt][h] = valid ? lse_base2(blk.lse_of(bp, head_lo)[row]) : INFINITY;
            row_delta[mt][h] = valid ? blk.delta_of(bp, head_lo)[row] : 0.f;
        }

    // dV and dK (KEYS) or dQ and nothing (QUERIES), this warp's D_OWN columns.
    float acc1[MT][OT][4], acc2[MT][OT][4];
    zero_fragments(acc1);
    zero_fragments(acc2);

    // ---- Main loop over (head, column block) steps. ----------------------------------------------------
    for (int s = 0; s < blk.steps; ++s) {
        const int stage = s % Tr::STAGES;
        const int head = blk.head_of(s), c0 = blk.c0_of(s);
        cp_async_wait<0>();  // this step's tiles (and the row tiles) landed
        __syncthreads();     // ... for every thread, and every warp is done with the other stage
        if (s + 1 < blk.steps) load_step(s + 1);
        cp_async_commit();
        const T* y1 = sY1 + stage * Tr::SMEM_C;
        const T* y2 = sY2 + stage * Tr::SMEM_C;

        // C1 = X1 Y1ᵀ (S or Sᵀ), C2 = X2 Y2ᵀ (dP or dPᵀ).
        float c1[MT][CT][4], c2[MT][CT][4];
        zero_fragments(c1);
        zero_fragments(c2);
        constexpr int KK_OWN = Tr::HEAD_DIM / 16 / (Tr::SPLIT_S ? Tr::D_SPLIT : 1);  // k16 steps of this warp
#pragma unroll
        for (int k = 0; k < KK_OWN; ++k) {
            const int kk = (Tr::SPLIT_S ? d_part * KK_OWN : 0) + k;
            uint32_t a1[MT][4], a2[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                const int a_off = ((row_group * MT + mt) * 16 + lane % 16) * Tr::PITCH + kk * 16 + (lane / 16) * 8;
                ldmatrix_x4(a1[mt], sX1 + a_off);
                ldmatrix_x4(a2[mt], sX2 + a_off);
            }
#pragma unroll
            for (int cp = 0; cp < CT / 2; ++cp) {
                const int b_off = (cp * 16 + (lane / 16) * 8 + lane % 8) * Tr::PITCH + kk * 16 + ((lane / 8) % 2) * 8;
                uint32_t b1[4], b2[4];
                ldmatrix_x4(b1, y1 + b_off);
                ldmatrix_x4(b2, y2 + b_off);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816<T>(c1[mt][2 * cp], a1[mt], b1[0], b1[1]);
                    mma_16816<T>(c1[mt][2 * cp + 1], a1[mt], b1[2], b1[3]);
                    mma_16816<T>(c2[mt][2 * cp], a2[mt], b2[0], b2[1]);
                    mma_16816<T>(c2[mt][2 * cp + 1], a2[mt], b2[2], b2[3]);
                }
            }
        }

        if constexpr (Tr::SPLIT_S) {
            // The row group's shares of C1 and C2, added in the order of the warps (lane l of each holds the
            // same elements). The buffer is rewritten only after the next step's block barrier.
            constexpr int HALF = Tr::SC_FRAGS / 2;
            store_fragments(sC + warp * Tr::SC_FRAGS, c1, lane);
            store_fragments(sC + warp * Tr::SC_FRAGS + HALF, c2, lane);
            named_barrier_sync(1 + row_group, 32 * Tr::D_SPLIT);
            zero_fragments(c1);
            zero_fragments(c2);
#pragma unroll
            for (int q = 0; q < Tr::D_SPLIT; ++q) {
                const float4* part = sC + (row_group * Tr::D_SPLIT + q) * Tr::SC_FRAGS;
                add_fragments(c1, part, lane);
                add_fragments(c2, part + HALF, lane);
            }
        }

        // P and dS in place of C1 and C2 (masked pairs are zeroed after: unmasked, a zero-filled key past
        // seqlen_k would get a nonzero P, and dS, which KEYS_DQ multiplies by that key's zero row: inf * 0
        // if P overflowed).
        const bool need_mask = blk.needs_mask(p, c0);
        // (query, key) of score e of n-tile ct in m-tile mt.
        auto query_key = [&](int mt, int ct, int e) {
            const int row = row_of(mt, e / 2), col = fragment_col(lane, c0, ct, e);
            return KEYS ? make_int2(col, row) : make_int2(row, col);
        };
        if (p.transform_logits) {
            // z = softcap * tanh(scale s / softcap) - slope |key - query - offset| (common/logits.cuh);
            // dS = P (dP - D) dz/ds.
            const Logits logits(p);
            const float slope = logits.slope(head);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int ct = 0; ct < CT; ++ct)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int2 qk = query_key(mt, ct, e);
                        const int c = fragment_col(lane, 0, ct, e);
                        const float lse2 = KEYS ? sLse2[stage * Tr::BLOCK_C + c] : row_lse2[mt][e / 2];
                        const float delta = KEYS ? sDelta[stage * Tr::BLOCK_C + c] : row_delta[mt][e / 2];
                        float dz_ds;
                        const float z = logits(c1[mt][ct][e], slope, qk.y - qk.x - blk.offset, dz_ds);
                        const float prob = exp2f(fmaf(z, LOG2E, -lse2));
                        c2[mt][ct][e] = prob * (c2[mt][ct][e] - delta) * dz_ds;
                        c1[mt][ct][e] = prob;
                    }
        } else {
            // P = exp2(s scale log2(e) - lse2), dS = P (dP - D); dz/ds is the scale, applied once to dQ and
            // dK in the epilogue. The transformed and masked cases' index arithmetic stays out of this loop.
#pragma unroll
            for (int ct = 0; ct < CT; ++ct) {
                float2 col_lse2 = make_float2(0.f, 0.f), col_delta = make_float2(0.f, 0.f);
                if (KEYS) {  // per column: the two queries of this lane
                    col_lse2 = *reinterpret_cast<const float2*>(sLse2 + stage * Tr::BLOCK_C + ct * 8 + 2 * (lane % 4));
                    col_delta = *reinterpret_cast<const float2*>(sDelta + stage * Tr::BLOCK_C + ct * 8 + 2 * (lane % 4));
                }
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const float lse2 = KEYS ? (e % 2 ? col_lse2.y : col_lse2.x) : row_lse2[mt][e / 2];
                        const float delta = KEYS ? (e % 2 ? col_delta.y : col_delta.x) : row_delta[mt][e / 2];
                        const float prob = exp2f(fmaf(c1[mt][ct][e], p.scale_log2, -lse2));
                        c2[mt][ct][e] = prob * (c2[mt][ct][e] - delta);
                        c1[mt][ct][e] = prob;
                    }
            }
        }
        if (need_mask) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int ct = 0; ct < CT; ++ct)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        if (!blk.visible(p, row_of(mt, e / 2), fragment_col(lane, c0, ct, e)))
                            c1[mt][ct][e] = 0.f, c2[mt][ct][e] = 0.f;
        }

        if (DQ_ATOMIC) {
            // dQ_i += dS K_j for the whole block: dSᵀ to shared memory, then each warp takes a query m-tile
            // and some 16-column pairs of dQ, reads dS back transposed and adds its f32 partial with atomics.
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int ct = 0; ct < CT; ++ct)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const int r = (row_group * MT + mt) * 16 + lane / 4 + h * 8;
                        if (warp % Tr::D_SPLIT == 0)  // warps of one row group hold the same dSᵀ
                            *reinterpret_cast<uint32_t*>(sDs + r * Tr::DS_PITCH + ct * 8 + 2 * (lane % 4)) =
                                pack2<T>(c2[mt][ct][2 * h], c2[mt][ct][2 * h + 1]);
                    }
            __syncthreads();
            add_dq_partial<Tr>(bp, sDs, sX1, head, c0, lane, warp);
        }

        // KEYS: dV += Pᵀ dO and dK += dSᵀ Q; QUERIES: dQ += dS K. The C tiles of n-tiles 2kk, 2kk+1 are the
        // A fragment of k-step kk; the streamed tile is the B operand, read transposed.
#pragma unroll
        for (int kk = 0; kk < Tr::BLOCK_C / 16; ++kk) {
            uint32_t a_p[MT][4], a_ds[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                accumulators_to_a<T>(a_ds[mt], c2[mt][2 * kk], c2[mt][2 * kk + 1]);
                if (KEYS) accumulators_to_a<T>(a_p[mt], c1[mt][2 * kk], c1[mt][2 * kk + 1]);
            }
#pragma unroll
            for (int dp = 0; dp < OT / 2; ++dp) {
                const int b_off = (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * Tr::PITCH + d0 + dp * 16 + (lane / 16) * 8;
                uint32_t b1[4];
                ldmatrix_x4_trans(b1, y1 + b_off);  // Q (KEYS) or K
                if (KEYS) {
                    uint32_t b2[4];
                    ldmatrix_x4_trans(b2, y2 + b_off);  // dO
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        mma_16816<T>(acc1[mt][2 * dp], a_p[mt], b2[0], b2[1]);
                        mma_16816<T>(acc1[mt][2 * dp + 1], a_p[mt], b2[2], b2[3]);
                        mma_16816<T>(acc2[mt][2 * dp], a_ds[mt], b1[0], b1[1]);
                        mma_16816<T>(acc2[mt][2 * dp + 1], a_ds[mt], b1[2], b1[3]);
                    }
                } else {
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        mma_16816<T>(acc1[mt][2 * dp], a_ds[mt], b1[0], b1[1]);
                        mma_16816<T>(acc1[mt][2 * dp + 1], a_ds[mt], b1[2], b1[3]);
                    }
                }
            }
        }
    }

    // ---- Epilogue: the scale (plain path) and the owned rows out. --------------------------------------
    const float ds_factor = p.transform_logits ? 1.f : p.softmax_scale;
    auto store = [&](const float (&acc)[MT][OT][4], float factor, void* base, int64_t row_stride, int64_t head_stride,
                     int head) {
        T* out = reinterpret_cast<T*>(base) + head * head_stride;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = row_of(mt, h);
                if (row >= blk.n_rows) continue;
#pragma unroll
                for (int ot = 0; ot < OT; ++ot) {
                    const int col = d0 + ot * 8 + 2 * (lane % 4);
                    if (col < p.head_dim)
                        *reinterpret_cast<uint32_t*>(out + row * row_stride + col) =
                            pack2<T>(acc[mt][ot][2 * h] * factor, acc[mt][ot][2 * h + 1] * factor);
                }
            }
    };
    if (KEYS) {
        store(acc1, 1.f, bp.dv, bp.dv_row_stride, bp.dv_head_stride, blk.kv_head);
        store(acc2, ds_factor, bp.dk, bp.dk_row_stride, bp.dk_head_stride, blk.kv_head);
    } else {
        store(acc1, ds_factor, bp.dq, bp.dq_row_stride, bp.dq_head_stride, head_lo);
    }
}

template <typename Tr>
cudaError_t launch_bwd_pass(const FlashBwdParams& bp, cudaStream_t stream) {
    const FlashFwdParams& p = bp.fwd;
    auto kernel = flash_bwd_kernel<Tr>;
    if (Tr::SMEM_BYTES > 48 * 1024) {
        cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::SMEM_BYTES);
        if (err != cudaSuccess) return err;
    }
    const bool keys = Tr::OWNS_KEYS;
    const int rows = keys ? p.seqlen_k : p.seqlen_q;
    const dim3 grid((rows + Tr::BLOCK_R - 1) / Tr::BLOCK_R, keys ? p.heads_kv : p.heads_q, p.batch);
    kernel<<<grid, Tr::THREADS, Tr::SMEM_BYTES, stream>>>(bp);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launch_bwd_delta(const FlashBwdParams& bp, cudaStream_t stream) {
    const FlashFwdParams& p = bp.fwd;
    const int64_t rows = lse_rows(p);
    constexpr int THREADS = 256;
    auto launch = [&](auto kernel, int row_lanes) {
        kernel<<<unsigned((rows * row_lanes + THREADS - 1) / THREADS), THREADS, 0, stream>>>(bp);
        return cudaGetLastError();
    };
    // One 16-byte chunk per lane and row where head_dim allows it.
    if (p.head_dim <= 32) return launch(bwd_delta_kernel<T, 4>, 4);
    if (p.head_dim <= 64) return launch(bwd_delta_kernel<T, 8>, 8);
    if (p.head_dim <= 128) return launch(bwd_delta_kernel<T, 16>, 16);
    return launch(bwd_delta_kernel<T, 32>, 32);
}

// D first (every pass reads it). By default the KEYS and QUERIES passes, independent of each other; with
// dq_atomics: dq_accum zeroed, the KEYS_DQ pass, then dq from dq_accum.
template <typename T, typename Config>
cudaError_t launch_bwd(const FlashBwdParams& bp, cudaStream_t stream) {
    cudaError_t err = launch_bwd_delta<T>(bp, stream);
    if (err != cudaSuccess) return err;
    if (!bp.dq_atomics) {
        err = launch_bwd_pass<typename Config::template Keys<BwdPass::KEYS>>(bp, stream);
        if (err != cudaSuccess) return err;
        return launch_bwd_pass<typename Config::Queries>(bp, stream);
    }
    return run_with_dq_accum<T>(
        bp, stream, [&] { return launch_bwd_pass<typename Config::template Keys<BwdPass::KEYS_DQ>>(bp, stream); });
}

}  // namespace fa2
