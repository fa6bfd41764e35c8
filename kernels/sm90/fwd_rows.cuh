// The 64 query rows of one warpgroup of the Hopper forwards (flash_fwd_sm90.cuh, flash_fwd_sm90_ws.cuh):
// their S, P and O in registers, the products that make them, the online softmax between and the epilogue.
// The kernels differ only in how K and V reach shared memory and who waits for what; this is the rest.
//
// The accumulator layout of wgmma is mma.sync's C fragment, one 16-row slice per warp: a thread holds half
// h of its warp's 16 rows (lane / 4 + 8 h). P stays in registers as the A operand of O += P V.
//
// e4m3 inputs (sm90/fwd_fp8.cuh): k-steps of 32 elements instead of 16 (the same 32 bytes of each row), V
// arrives transposed (V^T, K-major: 8-bit wgmma has no transposed operand) with its keys in the order
// accumulators_to_a_fp8 leaves P's, and O is written in bf16.
#pragma once
#include <math.h>

#include "common/fragments.cuh"
#include "common/fwd_block.cuh"
#include "common/logits.cuh"
#include "common/ptx.cuh"
#include "common/softmax.cuh"
#include "sm90/sm90_common.cuh"
#include "sm90/wgmma.cuh"

namespace fa2 {

// Tr: T, HEAD_DIM, BLOCK_M, BLOCK_N. TRANSFORM: logits are formed explicitly (softcap, ALiBi, a scale <= 0:
// common/logits.cuh), else the softmax folds the scale into exp2's argument.
template <typename Tr, bool TRANSFORM>
struct Sm90FwdRows {
    using T = typename Tr::T;
    using Out = Sm90Out<T>;
    static constexpr bool FP8 = sizeof(T) == 1;
    using Block = FwdBlock<Out, Tr::BLOCK_M, Tr::BLOCK_N>;
    static constexpr int NT = Tr::BLOCK_N / 8, DT = Tr::HEAD_DIM / 8;
    // k-steps of Q K^T and of P V: 32 bytes of each row of the K-major operands per instruction.
    static constexpr int QK_STEPS = Tr::HEAD_DIM * int(sizeof(T)) / 32, PV_STEPS = Tr::BLOCK_N * int(sizeof(T)) / 32;

    float o_acc[DT * 4];
    float s[NT * 4];
    uint32_t pv_a[PV_STEPS][4];  // P of the previous key block: the A fragments of O += P V
    float row_max[2], row_sum[2];
    float alpha[2];  // what O is rescaled by once the product in flight has landed
    const int wg;  // which 64 rows of the block
    const int lane;
    const float sl2;  // softmax_scale * log2(e), or 1 for logits already in base 2
    const Logits logits;
    const float slope;  // ALiBi: only the transformed kernel reads it

    __device__ __forceinline__ Sm90FwdRows(const FlashFwdParams& p, int wg, int head)
        : wg(wg), lane(threadIdx.x % 32), sl2(TRANSFORM ? 1.f : p.scale_log2), logits(p),
          slope(TRANSFORM ? logits.slope(head) : 0.f) {
#pragma unroll
        for (int i = 0; i < DT * 4; ++i) o_acc[i] = 0.f;
        row_max[0] = row_max[1] = -INFINITY;
        row_sum[0] = row_sum[1] = 0.f;
    }

    // Row of half h of the calling thread's rows, in warpgroup wg of block blk.
    __device__ __forceinline__ static int row_of(const Block& blk, int wg, int h) {
        return blk.m0 + wg * 64 + ((threadIdx.x / 32) % 4) * 16 + (threadIdx.x % 32) / 4 + h * 8;
    }
    __device__ __forceinline__ int row_of(const Block& blk, int h) const { return row_of(blk, wg, h); }

    // S = Q K^T against the K tile at smem_k, issued and committed (not waited for). The first k-step
    // overwrites S (accumulate 0), so S needs no zeroing, which would be a register write between the
    // caller's wgmma_fence() and the MMA.
    __device__ __forceinline__ void issue_qk(uint32_t smem_q, uint32_t smem_k) {
#pragma unroll
        for (int kk = 0; kk < QK_STEPS; ++kk)
            Wgmma<T, Tr::BLOCK_N>::ss(s, k_major_desc<Tr::BLOCK_M>(smem_q, wg * 64, kk),
                                      k_major_desc<Tr::BLOCK_N>(smem_k, 0, kk), kk > 0);
        wgmma_commit();
    }

    // O += P V with the V tile at smem_v (MN-major; e4m3: V^T, K-major), issued and committed.
    __device__ __forceinline__ void issue_pv(uint32_t smem_v) {
#pragma unroll
        for (int kk = 0; kk < PV_STEPS; ++kk) {
            if constexpr (FP8)
                Wgmma<T, Tr::HEAD_DIM>::rs(o_acc, pv_a[kk], k_major_desc<Tr::HEAD_DIM>(smem_v, 0, kk), 1);
            else
                Wgmma<T, Tr::HEAD_DIM>::rs(o_acc, pv_a[kk], mn_major_desc<Tr::BLOCK_N>(smem_v, kk), 1);
        }
        wgmma_commit();
    }

    // Masks S of key block n_block, updates the running max and sum and turns S into P in place (the
    // online softmax of common/softmax.cuh), leaving in alpha the factors O must be rescaled by.
    __device__ __forceinline__ void softmax(const FlashFwdParams& p, const Block& blk, int n_block) {
        const int n0 = n_block * Tr::BLOCK_N;
        if (TRANSFORM) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int dist = fragment_col(lane, n0, nt, e) - row_of(blk, e / 2) - blk.offset;
                    s[nt * 4 + e] = logits(s[nt * 4 + e], slope, dist) * LOG2E;
                }
        }
        if (blk.needs_mask(p, n0)) {  // a uniform branch per block
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (!blk.visible(p, row_of(blk, e / 2), fragment_col(lane, n0, nt, e))) s[nt * 4 + e] = -INFINITY;
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            auto scores = [&](int nt, int e) -> float& { return s[nt * 4 + e]; };
            const float block_sum = online_softmax_row<NT>(scores, h, row_max[h], sl2, [&](float a) { alpha[h] = a; });
            row_sum[h] = row_sum[h] * alpha[h] + block_sum;
        }
    }

    // O *= alpha, once the product that was in flight during the softmax has landed.
    __device__ __forceinline__ void rescale_o() {
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) o_acc[dt * 4 + e] *= alpha[e / 2];
    }

    // P (in S's registers) rounded to T as the A fragments of the next O += P V.
    __device__ __forceinline__ void pack_p() {
        if constexpr (FP8) accumulators_to_a_fp8<Tr::BLOCK_N>(pv_a, s);
        else accumulators_to_a<T, Tr::BLOCK_N>(pv_a, s);
    }

    // Normalises once and writes O and the LSE (natural log) of this thread's rows. o_scale: e4m3 only, V's
    // descale factor.
    __device__ __forceinline__ void epilogue(const FlashFwdParams& p, const Block& blk, float o_scale = 1.f) const {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float sum = quad_sum(row_sum[h]);
            const int row = row_of(blk, h);
            if (row >= p.seqlen_q) continue;
            const RowEnd end = row_end(row_max[h], sl2, sum);
            store_accumulator_row<Out, Tr::HEAD_DIM>(blk.o + row * p.o_row_stride, o_acc, h, lane, p.head_dim,
                                                     FP8 ? end.inv_sum * o_scale : end.inv_sum);
            if (lane % 4 == 0) blk.lse[row] = end.lse;
        }
    }
};

}  // namespace fa2
