// The Hopper backward passes of flash_bwd_sm90.cuh for head dims whose gradient accumulators do not fit one
// warpgroup (d256: dK and dV are 256 f32 per thread over 64 rows). Two warpgroups share the block's 64
// rows and split the work, as FlashAttention-3's backward does, rather than repeating it:
//
//   warpgroup 0: C = X1 Y1ᵀ (Sᵀ or S), then P = exp2(C scale log2(e) - lse2) with the mask, to shared memory;
//   warpgroup 1: C = X2 Y2ᵀ (dPᵀ or dP), then dS = P (C - D) with P read back, to shared memory;
//   both:        the gradient products over their half of the head dim (columns [wg D/2, (wg + 1) D/2)):
//                KEYS dV += Pᵀ dO, dK += dSᵀ Q; QUERIES dQ += dS K.
//
// So every product runs once (as in the single-warpgroup kernel) and a thread holds D/2 accumulators per
// gradient. P goes over in f32, so dS is formed from the same P as the single-warpgroup kernel's.
// TRANSFORM (softcap, ALiBi, a scale <= 0: common/logits.cuh): warpgroup 0 also forms dz/ds per score and
// hands over P dz/ds in f32, and P itself packed (KEYS, for dV), so dS = P dz/ds (dP - D).
// Two named barriers hand P to warpgroup 1 and dS back to warpgroup 0; single buffers suffice (the comments
// at the barriers say why). Both warpgroups sync at each: with the producer only arriving, racecheck
// reported every exchange as a race, and syncing measured no slower (BENCHMARKS.md).
//
// Pipeline: at d256 shared memory holds two stages of the streamed tiles (64 KB each), not three. Step s
// issues step s-1's gradient products and then its own score product; the wait for the first frees stage
// (s-1) % 2 for step s+1's tiles, whose load then runs under step s's scores and the exchange.
#pragma once
#include <math.h>

#include "sm90/flash_bwd_sm90.cuh"

namespace fa2 {

template <typename T_, BwdPass PASS_, int HEAD_DIM_, int BLOCK_C_>
struct Sm90BwdPairedTraits {
    using T = T_;
    static constexpr BwdPass PASS = PASS_;
    static constexpr bool KEYS = PASS == BwdPass::KEYS;
    static constexpr bool PAIRED = true;
    static constexpr int HEAD_DIM = HEAD_DIM_;
    static constexpr int D_OWN = HEAD_DIM / 2;  // gradient columns per warpgroup
    static constexpr int THREADS = 256;
    static constexpr int BLOCK_R = 64;  // both warpgroups' rows
    static constexpr int BLOCK_C = BLOCK_C_;
    static constexpr int MIN_BLOCKS = 1;
    static constexpr int STAGES = 2;
    static constexpr int R_BYTES = BLOCK_R * HEAD_DIM * 2;
    static constexpr int C_BYTES = BLOCK_C * HEAD_DIM * 2;
    static constexpr int COL_BYTES = KEYS ? 2 * BLOCK_C * int(sizeof(float)) : 0;
    // The exchange: P (or P dz/ds) in f32, dS as packed A fragments and, KEYS with transformed logits, P
    // packed: BLOCK_C / 2, BLOCK_C / 4 and BLOCK_C / 4 words per thread.
    static constexpr int P_BYTES = 128 * (BLOCK_C / 2) * 4;
    static constexpr int DS_BYTES = 128 * (BLOCK_C / 4) * 4;
    static constexpr int PACKED_P_BYTES = KEYS ? 128 * (BLOCK_C / 4) * 4 : 0;
    static constexpr int SMEM_BYTES =
        2 * R_BYTES + STAGES * (2 * C_BYTES + COL_BYTES) + P_BYTES + DS_BYTES + PACKED_P_BYTES + 1024;

    static_assert(sizeof(T) == 2, "f16 / bf16");
    static_assert(PASS == BwdPass::KEYS || PASS == BwdPass::QUERIES, "no dQ atomics on this path");
    static_assert(D_OWN % 64 == 0 && D_OWN <= 256, "whole swizzle panels per warpgroup; wgmma n of a gradient");
    static_assert(BLOCK_C % 64 == 0 && BLOCK_C <= 256, "whole loader passes and k16 steps; wgmma n of S");
    static_assert(SMEM_BYTES <= 227 * 1024, "shared memory per block on sm_90");
};

// Named barriers (0 is __syncthreads): both warpgroups done with a stage's gradient products; P written;
// dS written.
struct PairedBarrier {
    static constexpr int STAGE_FREE = 1, P_READY = 2, DS_READY = 3;
};

template <typename Tr, bool TRANSFORM>
__global__ void __launch_bounds__(Tr::THREADS, 1) flash_bwd_sm90_paired_kernel(const FlashBwdParams params) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using T = typename Tr::T;
    constexpr bool KEYS = Tr::KEYS;
    constexpr int C = Tr::BLOCK_C, KC = C / 16, PAIRS = C / 4, D_OWN = Tr::D_OWN;
    const FlashBwdParams bp = bwd_sequence_view<T>(params, blockIdx.z);
    const FlashFwdParams& p = bp.fwd;
    extern __shared__ __align__(1024) unsigned char bwd_sm90_paired_smem[];
    const Sm90BwdSmem<Tr> sm(bwd_sm90_paired_smem);
    // [pair][thread of the warpgroup]: consecutive threads, consecutive words, no bank conflicts.
    float2* p_buf = sm.template at<float2>(sm.end());
    uint32_t* ds_buf = sm.template at<uint32_t>(sm.end() + Tr::P_BYTES);
    uint32_t* packed_p_buf = sm.template at<uint32_t>(sm.end() + Tr::P_BYTES + Tr::DS_BYTES);

    const BwdBlock<T, KEYS, Tr::BLOCK_R, C> blk(bp, KEYS ? blockIdx.x : gridDim.x - 1 - blockIdx.x, blockIdx.y);
    if (blk.past_end()) return;
    const int wg = threadIdx.x / 128, tid = threadIdx.x % 128, warp = tid / 32, lane = threadIdx.x % 32;
    // Both warpgroups own the same rows, so the same fragment positions: thread t of one is thread t of the
    // other in the exchange.
    const int first_row = blk.r0 + warp * 16 + lane / 4;
    const int col0 = wg * D_OWN;  // this warpgroup's gradient columns

    const SwizzledTileLoader<Tr> loader(p.head_dim);
    load_owned_rows(loader, blk, bp, sm);
    auto load_step = [&](int s) { load_column_step(loader, blk, bp, sm, s); };
    if (blk.steps > 0) load_step(0);
    cp_async_commit();

    float row_lse2[2], row_delta[2];  // QUERIES: warpgroup 0 reads the LSE, warpgroup 1 D
    load_row_stats<KEYS>(blk, bp, first_row, row_lse2, row_delta);

    float acc1[D_OWN / 2], acc2[D_OWN / 2];  // dV (KEYS) or dQ; dK (KEYS only): this warpgroup's columns
#pragma unroll
    for (int i = 0; i < D_OWN / 2; ++i) acc1[i] = 0.f, acc2[i] = 0.f;
    float c[C / 2];                    // S / Sᵀ, then P (warpgroup 0); dP / dPᵀ (warpgroup 1)
    uint32_t a_p[KC][4], a_ds[KC][4];  // P (KEYS only) and dS as A fragments, pair j at [j / 4][j % 4]

    const uint32_t x_own = wg == 0 ? sm.x1 : sm.x2;
    auto issue_score = [&](int stage) {
        const uint32_t y = wg == 0 ? sm.y1(stage) : sm.y2(stage);
#pragma unroll
        for (int kk = 0; kk < Tr::HEAD_DIM / 16; ++kk)
            Wgmma<T, C>::ss(c, k_major_desc<Tr::BLOCK_R>(x_own, 0, kk), k_major_desc<C>(y, 0, kk), kk > 0);
        wgmma_commit();
    };
    // The streamed tile read MN-major from this warpgroup's first panel.
    const uint32_t panel0 = (col0 / 64) * C * SWIZZLE_ROW_BYTES;
    auto issue_grads = [&](int stage) {
#pragma unroll
        for (int kk = 0; kk < KC; ++kk) {
            if (KEYS) {
                Wgmma<T, D_OWN>::rs(acc1, a_p[kk], mn_major_desc<C>(sm.y2(stage) + panel0, kk), 1);
                Wgmma<T, D_OWN>::rs(acc2, a_ds[kk], mn_major_desc<C>(sm.y1(stage) + panel0, kk), 1);
            } else {
                Wgmma<T, D_OWN>::rs(acc1, a_ds[kk], mn_major_desc<C>(sm.y1(stage) + panel0, kk), 1);
            }
        }
        wgmma_commit();
    };

    // Element pair j of a thread's C fragment (c[2j], c[2j + 1]) is row half j % 2 and columns col, col + 1
    // with col = fragment_col(lane, 0, j / 2, 0): the packing order of accumulators_to_a as well.
    const float sl2 = p.scale_log2;
    const Logits logits(p);
    auto exchange = [&](int s) {
        const int stage = s % Tr::STAGES, c0 = blk.c0_of(s);
        const float* col_lse = sm.col_lse(stage);
        const float* col_delta = col_lse + C;
        if (wg == 0) {
            const float slope = TRANSFORM ? logits.slope(blk.head_of(s)) : 0.f;
            float dz_ds[C / 2];  // TRANSFORM only
#pragma unroll
            for (int j = 0; j < PAIRS; ++j) {
                float2 l2 = make_float2(row_lse2[j % 2], row_lse2[j % 2]);
                if (KEYS) {
                    const float2 l = *reinterpret_cast<const float2*>(col_lse + fragment_col(lane, 0, j / 2, 0));
                    l2 = make_float2(lse_base2(l.x), lse_base2(l.y));
                }
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int i = 2 * j + e;
                    const float lse2 = e == 0 ? l2.x : l2.y;
                    if (TRANSFORM) {
                        const int row = first_row + 8 * (j % 2), col = fragment_col(lane, c0, j / 2, e);
                        const int dist = KEYS ? row - col - blk.offset : col - row - blk.offset;  // key - query - offset
                        const float z = logits(c[i], slope, dist, dz_ds[i]);
                        c[i] = exp2f(fmaf(z, LOG2E, -lse2));
                    } else {
                        c[i] = exp2f(fmaf(c[i], sl2, -lse2));
                    }
                }
            }
            if (blk.needs_mask(p, c0)) {  // a uniform branch per step; dS = 0 follows from P = 0
#pragma unroll
                for (int i = 0; i < C / 2; ++i)
                    if (!blk.visible(p, first_row + 8 * ((i / 2) % 2), fragment_col(lane, c0, i / 4, i % 4)))
                        c[i] = 0.f;
            }
#pragma unroll
            for (int j = 0; j < PAIRS; ++j) {
                if (KEYS) a_p[j / 4][j % 4] = pack2<T>(c[2 * j], c[2 * j + 1]);
                if (TRANSFORM) {
                    p_buf[j * 128 + tid] =
                        make_float2(c[2 * j] * dz_ds[2 * j], c[2 * j + 1] * dz_ds[2 * j + 1]);
                    if (KEYS) packed_p_buf[j * 128 + tid] = a_p[j / 4][j % 4];
                } else {
                    p_buf[j * 128 + tid] = make_float2(c[2 * j], c[2 * j + 1]);
                }
            }
            named_barrier_sync(PairedBarrier::P_READY, 256);
            // dS of step s; warpgroup 1 writes step s+1's only after this warpgroup's P of step s+1.
            named_barrier_sync(PairedBarrier::DS_READY, 256);
#pragma unroll
            for (int j = 0; j < PAIRS; ++j) a_ds[j / 4][j % 4] = ds_buf[j * 128 + tid];
        } else {
            // P of step s; warpgroup 0 writes step s+1's only after this warpgroup's dS of step s.
            named_barrier_sync(PairedBarrier::P_READY, 256);
#pragma unroll
            for (int j = 0; j < PAIRS; ++j) {
                float2 dl = make_float2(row_delta[j % 2], row_delta[j % 2]);
                if (KEYS) dl = *reinterpret_cast<const float2*>(col_delta + fragment_col(lane, 0, j / 2, 0));
                const float2 prob = p_buf[j * 128 + tid];  // P dz/ds when TRANSFORM
                if (KEYS) a_p[j / 4][j % 4] = TRANSFORM ? packed_p_buf[j * 128 + tid] : pack2<T>(prob.x, prob.y);
                a_ds[j / 4][j % 4] = pack2<T>(prob.x * (c[2 * j] - dl.x), prob.y * (c[2 * j + 1] - dl.y));
                ds_buf[j * 128 + tid] = a_ds[j / 4][j % 4];
            }
            named_barrier_sync(PairedBarrier::DS_READY, 256);
        }
    };

    // Step 0 alone (no gradients in flight), then the pipelined steps, then the last gradients, peeled so
    // ptxas sees which wgmma group each register waits for (flash_bwd_sm90.cuh).
    const int steps = blk.steps;
    if (steps > 0) {
        publish_smem<0>();  // the owned rows and step 0's tiles
        if (steps > 1) load_step(1);
        cp_async_commit();
        wgmma_fence();
        issue_score(0);
        wgmma_wait<0>();
        fence_registers(c);
        exchange(0);
        for (int s = 1; s < steps; ++s) {
            publish_smem<0>();  // step s's tiles
            wgmma_fence();
            issue_grads((s - 1) % Tr::STAGES);
            issue_score(s % Tr::STAGES);
            wgmma_wait<1>();  // step s-1's gradients
            fence_registers(acc1);
            if (KEYS) fence_registers(acc2);
            // Both warpgroups are past step s-1's gradient products: their stage takes step s+1's tiles.
            named_barrier_sync(PairedBarrier::STAGE_FREE, 256);
            if (s + 1 < steps) load_step(s + 1);
            cp_async_commit();
            wgmma_wait<0>();  // the score product of step s
            fence_registers(c);
            exchange(s);
        }
        wgmma_fence();
        issue_grads((steps - 1) % Tr::STAGES);
        wgmma_wait<0>();
        fence_registers(acc1);
        if (KEYS) fence_registers(acc2);
    }
    cp_async_wait<0>();

    // dz/ds is in the transformed dS already.
    store_gradients<T, D_OWN, KEYS>(blk, bp, acc1, acc2, TRANSFORM ? 1.f : p.softmax_scale, first_row, col0);
#elif defined(__CUDA_ARCH__)
    __trap();  // built without sm_90a: only launched on a device that runs sm_90a code
#endif
}

}  // namespace fa2
