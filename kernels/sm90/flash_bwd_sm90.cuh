// FlashAttention-2 backward on Hopper's warpgroup MMA (wgmma, sm_90a): the two deterministic passes of
// flash_bwd_kernel.cuh (KEYS: dK and dV, QUERIES: dQ; see there for the algebra), with every tile product
// on wgmma. Each warpgroup owns 64 rows; the tensor cores read the owned tiles and the streamed ones
// straight from shared memory, where on mma.sync every streamed Q/dO (K/V) fragment went through ldmatrix
// once per 16-row warp slice and bounded the loop (BENCHMARKS.md, backward v2).
//
//   KEYS:    Sᵀ = K Qᵀ, dPᵀ = V dOᵀ (both operands K-major in shared memory), then Pᵀ and dSᵀ in registers
//            are the A operands of dV += Pᵀ dO and dK += dSᵀ Q (dO and Q read MN-major, trans-b).
//   QUERIES: S = Q Kᵀ, dP = dO Vᵀ, then dQ += dS K (K read MN-major).
// Both passes share this kernel: "rows" X1, X2 are K, V (KEYS) or Q, dO; the streamed "columns" Y1, Y2 are
// Q, dO (KEYS) or K, V. TRANSFORM: logits formed explicitly (softcap, ALiBi, a scale <= 0:
// common/logits.cuh), a kernel of its own. No dQ atomics: those run on flash_bwd_kernel.cuh.
//
// Pipeline: step s issues C_s (the two score products of column block s) and the gradient products of
// step s-1 together, then computes P and dS of step s while the tensor cores finish s-1 (as the forward's
// S_i with P_{i-1} V_{i-1}). The streamed tiles have three stages: step s loads step s+1's over those of
// step s-2, whose last readers (step s-2's gradient products) were waited for during step s-1.
//
// Streaming, two ways. cp.async: every thread copies its share of step s+1's tiles and the block meets at a
// barrier each step, so both warpgroups reach their softmax at once and leave the tensor cores idle
// together. TMA (dense batches whose tensors TMA can address): one thread requests each tile, every stage
// has a "full" mbarrier (the bytes have landed) and an "empty" one (each warp has waited for the products
// that read it), and no block barrier is left in the loop. Left to themselves the two warpgroups stay in
// step (same start, same work), so they take turns (ping-pong, as the forward): a warpgroup issues its
// products only after the other has issued its own, and its P and dS run under them. No producer
// warpgroup: a KEYS thread at d128 already holds 255 registers, above the 240 that setmaxnreg leaves
// consumers beside one.
#pragma once
#include <math.h>

#include "common/bwd_block.cuh"
#include "common/device_limits.cuh"
#include "common/flash_params.h"
#include "common/fragments.cuh"
#include "common/logits.cuh"
#include "common/ptx.cuh"
#include "sm90/sm90_common.cuh"
#include "sm90/tma.cuh"
#include "sm90/wgmma.cuh"

namespace fa2 {

template <typename T_, BwdPass PASS_, int HEAD_DIM_, int NUM_WG_, int BLOCK_C_, int MIN_BLOCKS_ = 1, int STAGES_ = 3>
struct Sm90BwdTraits {
    using T = T_;
    static constexpr BwdPass PASS = PASS_;
    static constexpr bool KEYS = PASS == BwdPass::KEYS;
    static constexpr bool PAIRED = false;  // see flash_bwd_sm90_paired.cuh
    static constexpr int HEAD_DIM = HEAD_DIM_;
    static constexpr int NUM_WG = NUM_WG_;  // warpgroups, 64 owned rows each
    static constexpr int THREADS = 128 * NUM_WG;
    static constexpr int BLOCK_R = 64 * NUM_WG;
    static constexpr int BLOCK_C = BLOCK_C_;
    static constexpr int MIN_BLOCKS = MIN_BLOCKS_;  // per SM: registers per thread <= 64K / (THREADS x this)
    static constexpr int STAGES = STAGES_;
    static constexpr int R_BYTES = BLOCK_R * HEAD_DIM * 2;
    static constexpr int C_BYTES = BLOCK_C * HEAD_DIM * 2;
    // KEYS: the LSE and D of each streamed query, per stage.
    static constexpr int COL_BYTES = KEYS ? 2 * BLOCK_C * int(sizeof(float)) : 0;
    static constexpr int TILE_BYTES = 2 * R_BYTES + STAGES * (2 * C_BYTES + COL_BYTES);
    // TMA streaming: a full and an empty mbarrier per stage, placed in the alignment slack (Sm90BwdSmem).
    static constexpr int BARRIER_BYTES = 2 * 8 * STAGES;
    // X1, X2; Y1, Y2 per stage; the column vectors per stage; +1024: the base is rounded up to the
    // swizzle's 1024-byte period.
    static constexpr int SMEM_BYTES = TILE_BYTES + 1024;

    static_assert(sizeof(T) == 2, "f16 / bf16");
    static_assert(PASS == BwdPass::KEYS || PASS == BwdPass::QUERIES, "no dQ atomics on this path");
    static_assert(HEAD_DIM % 64 == 0 && HEAD_DIM <= 256, "whole swizzle panels; wgmma n of a gradient");
    static_assert(BLOCK_C % 64 == 0 && BLOCK_C <= 256, "whole loader passes and k16 steps; wgmma n of S");
    static_assert(SMEM_BYTES <= 227 * 1024, "shared memory per block on sm_90");
    static_assert(BARRIER_BYTES <= 1024 / 2, "the barriers fit before or after the tiles (Sm90BwdSmem::bars)");
    // The driver reserves 1 KiB per block out of the SM's 228 KiB.
    static_assert((SMEM_BYTES + 1024) * MIN_BLOCKS <= 228 * 1024, "MIN_BLOCKS blocks fit an SM's shared memory");
};

// The shared memory of a Hopper backward block: the owned rows X1, X2, then per stage the streamed tiles
// Y1, Y2, then per stage the LSE and D of the streamed queries (KEYS); the base rounded up to the swizzle's
// 1024-byte period. end(): where a kernel's own buffers may start.
template <typename Tr>
struct Sm90BwdSmem {
    unsigned char* generic;  // the dynamic shared memory, for reads through generic pointers
    uint32_t raw, x1, x2;

    __device__ __forceinline__ explicit Sm90BwdSmem(unsigned char* smem)
        : generic(smem), raw(smem_addr(smem)), x1((raw + 1023) & ~1023u), x2(x1 + Tr::R_BYTES) {}
    // The TMA streaming's mbarriers (Tr::BARRIER_BYTES), in the bytes the rounding up leaves unused: before
    // the tiles where that gap holds them, else after them (the gap is then smaller than they are, and the
    // rest of the 1024 bytes holds them). Never past SMEM_BYTES: two d64 QUERIES blocks fill an SM's shared
    // memory to the last byte.
    __device__ __forceinline__ uint32_t bars() const {
        return x1 - raw >= uint32_t(Tr::BARRIER_BYTES) ? x1 - Tr::BARRIER_BYTES : x1 + Tr::TILE_BYTES;
    }
    __device__ __forceinline__ uint32_t y1(int stage) const { return x1 + 2 * Tr::R_BYTES + stage * 2 * Tr::C_BYTES; }
    __device__ __forceinline__ uint32_t y2(int stage) const { return y1(stage) + Tr::C_BYTES; }
    __device__ __forceinline__ uint32_t cols(int stage) const { return y1(Tr::STAGES) + stage * Tr::COL_BYTES; }
    __device__ __forceinline__ uint32_t end() const { return cols(Tr::STAGES); }
    // A generic pointer at shared address `addr`.
    template <typename U>
    __device__ __forceinline__ U* at(uint32_t addr) const {
        return reinterpret_cast<U*>(generic + (addr - raw));
    }
    // KEYS: [lse BLOCK_C | delta BLOCK_C] of a stage.
    __device__ __forceinline__ const float* col_lse(int stage) const { return at<const float>(cols(stage)); }
};

// The owned rows into X1, X2: K and V (KEYS) or Q and dO.
template <typename Tr, typename Block>
__device__ __forceinline__ void load_owned_rows(const SwizzledTileLoader<Tr>& loader, const Block& blk,
                                                const FlashBwdParams& bp, const Sm90BwdSmem<Tr>& sm) {
    const FlashFwdParams& p = bp.fwd;
    if (Tr::KEYS) {
        loader.template load<Tr::BLOCK_R>(sm.x1, blk.k + int64_t(blk.r0) * p.k_row_stride, p.k_row_stride,
                                          blk.rows_valid);
        loader.template load<Tr::BLOCK_R>(sm.x2, blk.v + int64_t(blk.r0) * p.v_row_stride, p.v_row_stride,
                                          blk.rows_valid);
    } else {
        loader.template load<Tr::BLOCK_R>(sm.x1, blk.q_of(bp, blk.head_lo) + int64_t(blk.r0) * p.q_row_stride,
                                          p.q_row_stride, blk.rows_valid);
        loader.template load<Tr::BLOCK_R>(sm.x2, blk.do_of(bp, blk.head_lo) + int64_t(blk.r0) * bp.do_row_stride,
                                          bp.do_row_stride, blk.rows_valid);
    }
}

// Step s's streamed tiles into its stage: Q, dO and the queries' LSE and D (KEYS) or K, V.
template <typename Tr, typename Block>
__device__ __forceinline__ void load_column_step(const SwizzledTileLoader<Tr>& loader, const Block& blk,
                                                 const FlashBwdParams& bp, const Sm90BwdSmem<Tr>& sm, int s) {
    const FlashFwdParams& p = bp.fwd;
    const int stage = s % Tr::STAGES, h = blk.head_of(s), c0 = blk.c0_of(s);
    const int cols_valid = blk.n_cols - c0;
    if (Tr::KEYS) {
        loader.template load<Tr::BLOCK_C>(sm.y1(stage), blk.q_of(bp, h) + int64_t(c0) * p.q_row_stride,
                                          p.q_row_stride, cols_valid);
        loader.template load<Tr::BLOCK_C>(sm.y2(stage), blk.do_of(bp, h) + int64_t(c0) * bp.do_row_stride,
                                          bp.do_row_stride, cols_valid);
        // Queries past seqlen_q get LSE 0 and D 0: their Q and dO rows are zero, so P = 1 meets dO = 0
        // and dS = 0; they add nothing.
#pragma unroll
        for (int i = threadIdx.x; i < 2 * Tr::BLOCK_C; i += Tr::THREADS) {
            const int c = i % Tr::BLOCK_C;
            const float* src = (i < Tr::BLOCK_C ? blk.lse_of(bp, h) : blk.delta_of(bp, h)) + c0 + c;
            cp_async_4(sm.cols(stage) + i * 4, src, c < cols_valid);
        }
    } else {
        loader.template load<Tr::BLOCK_C>(sm.y1(stage), blk.k + int64_t(c0) * p.k_row_stride, p.k_row_stride,
                                          cols_valid);
        loader.template load<Tr::BLOCK_C>(sm.y2(stage), blk.v + int64_t(c0) * p.v_row_stride, p.v_row_stride,
                                          cols_valid);
    }
}

// Writes this thread's two owned rows (first_row and first_row + 8) of a 64 x N accumulator tile times
// `factor` into head `head` of a gradient, columns [col0, col0 + N) below head_dim; rows past n_rows are
// padding.
template <typename T, int N>
__device__ __forceinline__ void store_owned_rows(const float (&acc)[N / 2], float factor, void* base,
                                                 int64_t row_stride, int64_t head_stride, int head, int first_row,
                                                 int n_rows, int col0, int head_dim) {
    T* out = reinterpret_cast<T*>(base) + head * head_stride + col0;
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int row = first_row + 8 * h;
        if (row < n_rows) store_accumulator_row<T, N>(out + row * row_stride, acc, h, lane, head_dim - col0, factor);
    }
}

// The gradients of the owned rows out, columns [col0, col0 + N): dV and dK (KEYS) or dQ, the last two
// times ds_factor (the scale dz/ds, unless the transformed dS has it already).
template <typename T, int N, bool KEYS, typename Block>
__device__ __forceinline__ void store_gradients(const Block& blk, const FlashBwdParams& bp, const float (&acc1)[N / 2],
                                                const float (&acc2)[N / 2], float ds_factor, int first_row,
                                                int col0) {
    const int head_dim = bp.fwd.head_dim;
    if (KEYS) {
        store_owned_rows<T, N>(acc1, 1.f, bp.dv, bp.dv_row_stride, bp.dv_head_stride, blk.kv_head, first_row,
                               blk.n_rows, col0, head_dim);
        store_owned_rows<T, N>(acc2, ds_factor, bp.dk, bp.dk_row_stride, bp.dk_head_stride, blk.kv_head, first_row,
                               blk.n_rows, col0, head_dim);
    } else {
        store_owned_rows<T, N>(acc1, ds_factor, bp.dq, bp.dq_row_stride, bp.dq_head_stride, blk.head_lo, first_row,
                               blk.n_rows, col0, head_dim);
    }
}

// QUERIES: the LSE (base 2) and D of this thread's owned rows first_row and first_row + 8, which stay in
// registers; rows past seqlen_q (and every row of a KEYS pass, which reads them per column) get +inf and 0.
template <bool KEYS, typename Block>
__device__ __forceinline__ void load_row_stats(const Block& blk, const FlashBwdParams& bp, int first_row,
                                               float (&lse2)[2], float (&delta)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int row = first_row + 8 * h;
        const bool valid = !KEYS && row < bp.fwd.seqlen_q;
        lse2[h] = valid ? lse_base2(blk.lse_of(bp, blk.head_lo)[row]) : INFINITY;
        delta[h] = valid ? blk.delta_of(bp, blk.head_lo)[row] : 0.f;
    }
}

// The tensor maps of the streamed tiles (tma.cuh), boxes of BLOCK_C rows: Q and dO (KEYS) or K and V.
struct BwdTmaMaps {
    CUtensorMap y1, y2;
    int pingpong;  // two warpgroups take turns to issue their products
};

// One TMA stage's copies, by warp 0 of a block: step s's Y1 and Y2 tiles (one request per 64-column panel,
// from lane 0) and, KEYS, the LSE and D of its queries, zero past seqlen_q, loaded and stored by every lane,
// each of which then arrives on the stage's full barrier (32 arrivals beside lane 0's expect_tx). Through
// registers: racecheck reported every pair as a race when cp.async stored them and arrived by
// cp.async.mbarrier.arrive (BENCHMARKS.md, "Backward streamed by TMA, tried").
template <typename Tr, typename Block>
__device__ __forceinline__ void tma_column_step(const BwdTmaMaps& maps, const Block& blk, const FlashBwdParams& bp,
                                                const Sm90BwdSmem<Tr>& sm, uint32_t full, int s, int batch) {
    const int stage = s % Tr::STAGES, h = blk.head_of(s), c0 = blk.c0_of(s), lane = threadIdx.x % 32;
    const int head = Tr::KEYS ? h : blk.kv_head;
    if (lane == 0) {
        mbarrier_arrive_expect_tx(full, 2 * Tr::C_BYTES);
#pragma unroll
        for (int c = 0; c < Tr::HEAD_DIM / 64; ++c) {
            const uint32_t panel = c * Tr::BLOCK_C * SWIZZLE_ROW_BYTES;
            tma_load_4d(sm.y1(stage) + panel, &maps.y1, full, c * 64, c0, head, batch);
            tma_load_4d(sm.y2(stage) + panel, &maps.y2, full, c * 64, c0, head, batch);
        }
    }
    if (Tr::KEYS) {
        constexpr int PER_LANE = 2 * Tr::BLOCK_C / 32;
        float vals[PER_LANE];
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            const int i = lane + 32 * j, c = i % Tr::BLOCK_C;
            const float* src = i < Tr::BLOCK_C ? blk.lse_of(bp, h) : blk.delta_of(bp, h);
            vals[j] = c0 + c < blk.n_cols ? src[c0 + c] : 0.f;
        }
        float* cols = sm.template at<float>(sm.cols(stage));
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) cols[lane + 32 * j] = vals[j];
        mbarrier_arrive(full);
    }
}

// The TMA streaming's stages: a full and an empty mbarrier each (Sm90BwdSmem::bars). Use u of a stage (step
// u x STAGES + stage) waits for phase parity u & 1 of its full barrier, and its refill for the release of
// use u - 1 by every warp.
template <typename Tr>
struct BwdTmaStages {
    uint32_t bars;
    int lane;  // the calling thread's, threadIdx.x % 32

    __device__ __forceinline__ uint32_t full(int s) const { return bars + 8 * (s % Tr::STAGES); }
    __device__ __forceinline__ uint32_t empty(int s) const { return bars + 8 * (Tr::STAGES + s % Tr::STAGES); }
    // By one thread, before a block barrier. KEYS: warp 0's lanes arrive on the full barrier beside the
    // TMA bytes (tma_column_step's LSE and D).
    __device__ __forceinline__ void init() const {
        for (int b = 0; b < Tr::STAGES; ++b) {
            mbarrier_init(full(b), Tr::KEYS ? 1 + 32 : 1);
            mbarrier_init(empty(b), Tr::THREADS / 32);
        }
        fence_mbarrier_init();
    }
    // Step s's streamed tiles into its stage, by warp 0 once every warp has released the stage's last use.
    template <typename Block>
    __device__ __forceinline__ void load(const BwdTmaMaps& maps, const Block& blk, const FlashBwdParams& bp,
                                         const Sm90BwdSmem<Tr>& sm, int s) const {
        if (s >= Tr::STAGES) mbarrier_wait(empty(s), uint32_t(s / Tr::STAGES + 1) & 1);
        tma_column_step(maps, blk, bp, sm, full(s), s, blockIdx.z);
        __syncwarp();
    }
    __device__ __forceinline__ void await(int s) const { mbarrier_wait(full(s), uint32_t(s / Tr::STAGES) & 1); }
    // This warp is done with step s's stage: its products that read it are (waited for), and KEYS, its
    // lanes' reads of the stage's LSE and D, which __syncwarp orders before lane 0's arrival.
    __device__ __forceinline__ void release(int s) const {
        __syncwarp();
        if (lane == 0) mbarrier_arrive(empty(s));
    }
};

// C1 = X1 Y1ᵀ and C2 = X2 Y2ᵀ for warpgroup wg's 64 owned rows against the stage's streamed tile, both
// operands K-major: Sᵀ and dPᵀ (KEYS) or S and dP. Issued and committed, not waited for.
template <typename Tr>
__device__ __forceinline__ void issue_scores(float (&c1)[Tr::BLOCK_C / 2], float (&c2)[Tr::BLOCK_C / 2],
                                             const Sm90BwdSmem<Tr>& sm, int stage, int wg) {
    using T = typename Tr::T;
#pragma unroll
    for (int kk = 0; kk < Tr::HEAD_DIM / 16; ++kk) {
        Wgmma<T, Tr::BLOCK_C>::ss(c1, k_major_desc<Tr::BLOCK_R>(sm.x1, wg * 64, kk),
                                  k_major_desc<Tr::BLOCK_C>(sm.y1(stage), 0, kk), kk > 0);
        Wgmma<T, Tr::BLOCK_C>::ss(c2, k_major_desc<Tr::BLOCK_R>(sm.x2, wg * 64, kk),
                                  k_major_desc<Tr::BLOCK_C>(sm.y2(stage), 0, kk), kk > 0);
    }
    wgmma_commit();
}

// Step s's P = exp2(s scale log2(e) - lse2) and dS = P (dP - D) in place of C1 and C2 (this thread's
// owned rows first_row and first_row + 8), then zeros where the pair is masked. dz/ds, the scale, is
// applied once to dK and dQ at the end. Transformed: P = exp2(z log2(e) - lse2) and dS = P (dP - D) dz/ds,
// with z and dz/ds per score. KEYS reads the LSE and D per column from the stage; QUERIES takes its rows'.
template <typename Tr, bool TRANSFORM, typename Block>
__device__ __forceinline__ void bwd_probabilities(float (&c1)[Tr::BLOCK_C / 2], float (&c2)[Tr::BLOCK_C / 2],
                                                  const Block& blk, const FlashFwdParams& p, const Logits& logits,
                                                  const Sm90BwdSmem<Tr>& sm, int s, int first_row,
                                                  const float (&row_lse2)[2], const float (&row_delta)[2]) {
    constexpr bool KEYS = Tr::KEYS;
    constexpr int CT = Tr::BLOCK_C / 8;
    const int lane = threadIdx.x % 32;
    const int stage = s % Tr::STAGES, c0 = blk.c0_of(s);
    const float sl2 = p.scale_log2;
    const float slope = TRANSFORM ? logits.slope(blk.head_of(s)) : 0.f;
    const float* col_lse = sm.col_lse(stage);
    const float* col_delta = col_lse + Tr::BLOCK_C;
#pragma unroll
    for (int ct = 0; ct < CT; ++ct) {
        float lse2[2], delta[2];
        if (KEYS) {  // per column: the two queries of this lane
            const int c = ct * 8 + 2 * (lane % 4);
            const float2 l = *reinterpret_cast<const float2*>(col_lse + c);
            const float2 d = *reinterpret_cast<const float2*>(col_delta + c);
            lse2[0] = lse_base2(l.x), lse2[1] = lse_base2(l.y), delta[0] = d.x, delta[1] = d.y;
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const float l2 = KEYS ? lse2[e % 2] : row_lse2[e / 2];
            const float dl = KEYS ? delta[e % 2] : row_delta[e / 2];
            if (TRANSFORM) {
                const int row = first_row + 8 * (e / 2), col = fragment_col(lane, c0, ct, e);
                const int dist = KEYS ? row - col - blk.offset : col - row - blk.offset;  // key - query - offset
                float dz_ds;
                const float z = logits(c1[ct * 4 + e], slope, dist, dz_ds);
                const float prob = exp2f(fmaf(z, LOG2E, -l2));
                c2[ct * 4 + e] = prob * (c2[ct * 4 + e] - dl) * dz_ds;
                c1[ct * 4 + e] = prob;
            } else {
                const float prob = exp2f(fmaf(c1[ct * 4 + e], sl2, -l2));
                c2[ct * 4 + e] = prob * (c2[ct * 4 + e] - dl);
                c1[ct * 4 + e] = prob;
            }
        }
    }
    if (blk.needs_mask(p, c0)) {  // a uniform branch per step
#pragma unroll
        for (int ct = 0; ct < CT; ++ct)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (!blk.visible(p, first_row + 8 * (e / 2), fragment_col(lane, c0, ct, e)))
                    c1[ct * 4 + e] = 0.f, c2[ct * 4 + e] = 0.f;
    }
}

template <typename Tr, bool TRANSFORM, bool TMA>
__global__ void __launch_bounds__(Tr::THREADS, Tr::MIN_BLOCKS)
    flash_bwd_sm90_kernel(const FlashBwdParams params, const __grid_constant__ BwdTmaMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using T = typename Tr::T;
    constexpr bool KEYS = Tr::KEYS;
    constexpr int KC = Tr::BLOCK_C / 16, D = Tr::HEAD_DIM;
    const FlashBwdParams bp = bwd_sequence_view<T>(params, blockIdx.z);
    const FlashFwdParams& p = bp.fwd;
    extern __shared__ __align__(1024) unsigned char bwd_sm90_smem[];
    const Sm90BwdSmem<Tr> sm(bwd_sm90_smem);

    // KEYS runs the heaviest blocks first (low keys see the most queries when causal); QUERIES the last
    // query blocks first, as the forward.
    const BwdBlock<T, KEYS, Tr::BLOCK_R, Tr::BLOCK_C> blk(bp, KEYS ? blockIdx.x : gridDim.x - 1 - blockIdx.x,
                                                          blockIdx.y);
    if (blk.past_end()) return;
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    // This thread's rows: half h of its warp's 16-row slice of its warpgroup's 64.
    const int first_row = blk.r0 + wg * 64 + warp * 16 + lane / 4;

    const BwdTmaStages<Tr> stages{sm.bars(), lane};
    if (TMA) {
        if (threadIdx.x == 0) stages.init();
        __syncthreads();
    }

    const SwizzledTileLoader<Tr> loader(p.head_dim);
    load_owned_rows(loader, blk, bp, sm);
    // Step s's streamed tiles into their stage. TMA: by warp 0 (BwdTmaStages::load); the other warps go on.
    auto load_step = [&](int s) {
        if (!TMA) return load_column_step(loader, blk, bp, sm, s);
        if (threadIdx.x < 32) stages.load(maps, blk, bp, sm, s);
    };
    auto await_step = [&](int s) {
        if (TMA) stages.await(s);
    };
    auto release_step = [&](int s) {
        if (TMA) stages.release(s);
    };
    // Ping-pong turns, as the forward's: named barrier 1 + wg lets warpgroup wg issue its products, and it
    // hands the turn over once they are issued, so one warpgroup's softmax runs under the other's products.
    const bool turns = TMA && Tr::NUM_WG == 2 && maps.pingpong;
    auto turn_begin = [&] {
        if (turns) named_barrier_sync(1 + wg, 256);
    };
    auto turn_end = [&] {
        if (turns) named_barrier_arrive(1 + (wg ^ 1), 256);
    };
    if (blk.steps > 0) load_step(0);
    cp_async_commit();

    float row_lse2[2], row_delta[2];  // QUERIES
    load_row_stats<KEYS>(blk, bp, first_row, row_lse2, row_delta);

    // acc1: dV (KEYS) or dQ; acc2: dK (KEYS only).
    float acc1[D / 2], acc2[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) acc1[i] = 0.f, acc2[i] = 0.f;
    float c1[Tr::BLOCK_C / 2], c2[Tr::BLOCK_C / 2];  // S or Sᵀ, then P; dP or dPᵀ, then dS
    uint32_t a_p[KC][4], a_ds[KC][4];                 // P (KEYS only) and dS as A fragments

    // KEYS: dV += Pᵀ dO, dK += dSᵀ Q; QUERIES: dQ += dS K. The streamed tile is B, MN-major.
    auto issue_grads = [&](int stage) {
#pragma unroll
        for (int kk = 0; kk < KC; ++kk) {
            if (KEYS) {
                Wgmma<T, D>::rs(acc1, a_p[kk], mn_major_desc<Tr::BLOCK_C>(sm.y2(stage), kk), 1);
                Wgmma<T, D>::rs(acc2, a_ds[kk], mn_major_desc<Tr::BLOCK_C>(sm.y1(stage), kk), 1);
            } else {
                Wgmma<T, D>::rs(acc1, a_ds[kk], mn_major_desc<Tr::BLOCK_C>(sm.y1(stage), kk), 1);
            }
        }
        wgmma_commit();
    };
    const Logits logits(p);
    auto probabilities = [&](int s) {
        bwd_probabilities<Tr, TRANSFORM>(c1, c2, blk, p, logits, sm, s, first_row, row_lse2, row_delta);
    };
    auto pack = [&] {
        if (KEYS) accumulators_to_a<T, Tr::BLOCK_C>(a_p, c1);
        accumulators_to_a<T, Tr::BLOCK_C>(a_ds, c2);
    };

    // Step 0 alone (no gradients in flight yet), then the pipelined steps, then the last gradients. The
    // steps are peeled rather than branched on so that ptxas sees which wgmma group each register waits
    // for (it injects a full wait where it cannot tell).
    const int steps = blk.steps;
    if (steps > 0) {
        publish_smem<0>();  // the owned rows (and cp.async: step 0's tiles)
        await_step(0);
        if (!TMA && steps > 1) load_step(1);
        cp_async_commit();
        if (turns && wg == 1) named_barrier_arrive(1, 256);  // warpgroup 0 goes first
        turn_begin();
        wgmma_fence();
        issue_scores(c1, c2, sm, 0, wg);
        turn_end();
        if (TMA && steps > 1) load_step(1);
        wgmma_wait<0>();
        fence_registers(c1);
        fence_registers(c2);
        probabilities(0);
        pack();
        for (int s = 1; s < steps; ++s) {
            if (TMA) {
                await_step(s);
            } else {
                publish_smem<0>();  // step s's tiles
                if (s + 1 < steps) load_step(s + 1);
                cp_async_commit();
            }
            turn_begin();
            wgmma_fence();
            issue_scores(c1, c2, sm, s % Tr::STAGES, wg);
            issue_grads((s - 1) % Tr::STAGES);
            turn_end();
            // TMA: requested once this warpgroup's products are on their way (step s-2's stage, released
            // during step s-1 by every warp).
            if (TMA && s + 1 < steps) load_step(s + 1);
            wgmma_wait<1>();  // the scores of step s
            fence_registers(c1);
            fence_registers(c2);
            probabilities(s);
            wgmma_wait<0>();  // step s-1's gradients: its A fragments are free again
            release_step(s - 1);
            fence_registers(acc1);
            if (KEYS) fence_registers(acc2);
            pack();
        }
        turn_begin();
        wgmma_fence();
        issue_grads((steps - 1) % Tr::STAGES);
        turn_end();
        // Warpgroup 1 arrived on warpgroup 0's barrier once more than warpgroup 0 synced on it.
        if (turns && wg == 0) named_barrier_sync(1, 256);
        wgmma_wait<0>();
        fence_registers(acc1);
        if (KEYS) fence_registers(acc2);
    }
    cp_async_wait<0>();

    // Epilogue: the owned rows out; dK and dQ get the scale (dz/ds), which the transformed dS has already.
    store_gradients<T, D, KEYS>(blk, bp, acc1, acc2, TRANSFORM ? 1.f : p.softmax_scale, first_row, 0);
#elif defined(__CUDA_ARCH__)
    __trap();  // built without sm_90a: only launched on a device that runs sm_90a code
#endif
}

// Launches a Hopper backward pass kernel over the owned row blocks of every head (KEYS: KV heads) and
// sequence; `args` after the params.
template <typename Tr, typename Kernel, typename... Args>
cudaError_t launch_bwd_sm90_grid(Kernel kernel, const FlashBwdParams& bp, cudaStream_t stream, const Args&... args) {
    const FlashFwdParams& p = bp.fwd;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::SMEM_BYTES);
    if (err != cudaSuccess) return err;
    const int rows = Tr::KEYS ? p.seqlen_k : p.seqlen_q;
    const dim3 grid((rows + Tr::BLOCK_R - 1) / Tr::BLOCK_R, Tr::KEYS ? p.heads_kv : p.heads_q, p.batch);
    kernel<<<grid, Tr::THREADS, Tr::SMEM_BYTES, stream>>>(bp, args...);
    return cudaGetLastError();
}

// CANDLE_FA2_BWD_NO_TMA=1 keeps the backward's streamed tiles on cp.async, and CANDLE_FA2_BWD_NO_PINGPONG=1
// the two warpgroups of a TMA block out of turns, for A/B runs on one build.
inline bool bwd_tma_allowed() {
    static const bool allowed = env_switch("CANDLE_FA2_BWD_NO_TMA", 0) != 1;
    return allowed;
}
inline bool bwd_pingpong_allowed() {
    static const bool allowed = env_switch("CANDLE_FA2_BWD_NO_PINGPONG", 0) != 1;
    return allowed;
}

// The maps of a pass's streamed tensors where TMA can stream them: a dense batch, aligned strides.
template <typename Tr>
bool bwd_tma_maps(const FlashBwdParams& bp, BwdTmaMaps& maps) {
    const FlashFwdParams& p = bp.fwd;
    if (!bwd_tma_allowed() || !dense_batch(p)) return false;
    if (Tr::KEYS)
        return encode_rows_map(&maps.y1, p.q, p.batch, p.seqlen_q, p.heads_q, p.head_dim, p.q_batch_stride,
                               p.q_row_stride, p.q_head_stride, Tr::BLOCK_C) &&
               encode_rows_map(&maps.y2, bp.d_o, p.batch, p.seqlen_q, p.heads_q, p.head_dim, bp.do_batch_stride,
                               bp.do_row_stride, bp.do_head_stride, Tr::BLOCK_C);
    return encode_rows_map(&maps.y1, p.k, p.batch, p.seqlen_k, p.heads_kv, p.head_dim, p.k_batch_stride,
                           p.k_row_stride, p.k_head_stride, Tr::BLOCK_C) &&
           encode_rows_map(&maps.y2, p.v, p.batch, p.seqlen_k, p.heads_kv, p.head_dim, p.v_batch_stride,
                           p.v_row_stride, p.v_head_stride, Tr::BLOCK_C);
}

// One pass of this kernel: TMA streaming where bwd_tma_maps allows, else cp.async.
template <typename Tr, bool TRANSFORM>
cudaError_t launch_bwd_sm90(const FlashBwdParams& bp, cudaStream_t stream) {
    BwdTmaMaps maps{};
    maps.pingpong = bwd_pingpong_allowed();
    if (bwd_tma_maps<Tr>(bp, maps))
        return launch_bwd_sm90_grid<Tr>(flash_bwd_sm90_kernel<Tr, TRANSFORM, true>, bp, stream, maps);
    return launch_bwd_sm90_grid<Tr>(flash_bwd_sm90_kernel<Tr, TRANSFORM, false>, bp, stream, maps);
}

}  // namespace fa2
