// One-pass Hopper backward (dq_atomics, sm_90a): the KEYS pass of flash_bwd_sm90.cuh also forms dQ for each
// streamed query tile and adds it into an f32 accumulator, FlashAttention-3's schedule, so that a step runs
// 5 tile products where the two deterministic passes run 7 (S and dP twice).
//
// A block owns 128 keys, 64 per warpgroup, as the KEYS pass, and streams 64-query tiles (Q, dO, their LSE
// and D) by TMA through two stages. Step s of warpgroup w:
//   Sᵀ = K_w Qᵀ, dPᵀ = V_w dOᵀ (both operands K-major in shared memory), then Pᵀ and dSᵀ in registers;
//   dSᵀ also to shared memory (its 64 key rows of the step's buffer), then dV_w += Pᵀ dO;
//   a barrier of both warpgroups: the step's dSᵀ is whole;
//   dQ panel w (64 queries x 64 of the head dim) = dS K (dSᵀ read MN-major as A, trans-a; K MN-major), then
//   dK_w += dSᵀ Q; once dV and dQ are done (dK still running), dQ is staged in shared memory and added to
//   dq_accum (DqAccumTiles: the panel is contiguous there) by one bulk reduction (TMA), which reads the
//   staging while the next step runs.
// The warpgroups pass one barrier a step together; the dQ product and its reduction run under dK's. dSᵀ
// has two buffers, so a warpgroup may write step s+1's while the other's step-s dQ product still reads.
// The reductions add in no fixed order: dQ is not bitwise repeatable (the mode's contract), dK and dV are.
#pragma once

#include "common/dq_accum.cuh"
#include "sm90/flash_bwd_sm90.cuh"

namespace fa2 {

template <typename T_, int HEAD_DIM_>
struct Sm90BwdOnePassTraits : Sm90BwdTraits<T_, BwdPass::KEYS, HEAD_DIM_, 2, 64, 1, 2> {
    using Base = Sm90BwdTraits<T_, BwdPass::KEYS, HEAD_DIM_, 2, 64, 1, 2>;
    static constexpr bool ONE_PASS = true;
    // A step's dSᵀ: BLOCK_R key rows of BLOCK_C queries (one 128-byte swizzle panel), two buffers.
    static constexpr int DS_BYTES = Base::BLOCK_R * Base::BLOCK_C * 2;
    static constexpr int DS_BUFFERS = 2;
    // A warpgroup's dQ panel, in DqAccumTiles' order.
    static constexpr int DQ_COLS = DqAccumTiles::PANEL_COLS;
    static constexpr int PANEL_BYTES = DqAccumTiles::PANEL_FLOATS * 4;
    static constexpr int STAGING_BYTES = Base::NUM_WG * PANEL_BYTES;
    // After the tiles and the TMA barriers (either place Sm90BwdSmem::bars picks), 1024-aligned.
    static constexpr int DS_OFFSET = (Base::TILE_BYTES + Base::BARRIER_BYTES + 1023) / 1024 * 1024;
    static constexpr int SMEM_BYTES = DS_OFFSET + DS_BUFFERS * DS_BYTES + STAGING_BYTES + 1024;

    static_assert(HEAD_DIM_ == 64 * Base::NUM_WG, "one 64-column dQ panel per warpgroup");
    static_assert(Base::BLOCK_C == 64, "a dSᵀ row is one swizzle panel");
    static_assert(Base::BLOCK_C == DqAccumTiles::ROWS, "a step's queries are one tile of dq_accum");
    static_assert(SMEM_BYTES <= 227 * 1024, "shared memory per block on sm_90");
};

template <typename Tr, bool TRANSFORM>
__global__ void __launch_bounds__(Tr::THREADS, 1)
    flash_bwd_sm90_onepass_kernel(const FlashBwdParams params, const __grid_constant__ BwdTmaMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using T = typename Tr::T;
    constexpr int KC = Tr::BLOCK_C / 16, D = Tr::HEAD_DIM;
    const FlashBwdParams bp = bwd_sequence_view<T>(params, blockIdx.z);
    const FlashFwdParams& p = bp.fwd;
    extern __shared__ __align__(1024) unsigned char bwd_onepass_smem[];
    const Sm90BwdSmem<Tr> sm(bwd_onepass_smem);

    // The heaviest key blocks first (low keys see the most queries when causal), as the KEYS pass.
    const BwdBlock<T, true, Tr::BLOCK_R, Tr::BLOCK_C> blk(bp, blockIdx.x, blockIdx.y);
    if (blk.past_end()) return;
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
    const int first_row = blk.r0 + wg * 64 + warp * 16 + lane / 4;

    const BwdTmaStages<Tr> stages{sm.bars(), lane};
    if (threadIdx.x == 0) stages.init();
    __syncthreads();
    const SwizzledTileLoader<Tr> loader(p.head_dim);
    load_owned_rows(loader, blk, bp, sm);
    cp_async_commit();
    const int steps = blk.steps;
    if (steps > 0 && threadIdx.x < 32) stages.load(maps, blk, bp, sm, 0);

    float row_lse2[2], row_delta[2];  // unused: a KEYS block reads them per column
    load_row_stats<true>(blk, bp, first_row, row_lse2, row_delta);
    const Logits logits(p);

    float acc1[D / 2], acc2[D / 2];  // dV, dK
#pragma unroll
    for (int i = 0; i < D / 2; ++i) acc1[i] = 0.f, acc2[i] = 0.f;
    float c1[Tr::BLOCK_C / 2], c2[Tr::BLOCK_C / 2];  // Sᵀ, then Pᵀ; dPᵀ, then dSᵀ
    uint32_t a_p[KC][4], a_ds[KC][4];
    // dQ's accumulators are C1's: free from the packing of Pᵀ to the next step's scores.
    static_assert(Tr::BLOCK_C / 2 == Tr::DQ_COLS / 2, "a dQ panel fits C1's registers");
    auto& dq = c1;

    const uint32_t ds_base = sm.x1 + Tr::DS_OFFSET;
    const uint32_t staging = ds_base + Tr::DS_BUFFERS * Tr::DS_BYTES + wg * Tr::PANEL_BYTES;
    // The first thread of a warpgroup adds its dQ panel.
    const bool reducer = threadIdx.x % 128 == 0;

    // dSᵀ of this warpgroup's keys into buffer b, from the packed fragments: a_ds[kk][j] holds key row
    // warp * 16 + lane / 4 + 8 (j % 2), query columns kk * 16 + 8 (j / 2) + 2 (lane % 4) and the next, 16-byte
    // chunk 2 kk + j / 2 of a 128-byte row (swizzled as every tile: slot chunk ^ row % 8).
    auto store_ds = [&](int b) {
        const uint32_t buf = ds_base + b * Tr::DS_BYTES;
#pragma unroll
        for (int kk = 0; kk < KC; ++kk)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int row = wg * 64 + warp * 16 + lane / 4 + 8 * (j % 2), chunk = 2 * kk + j / 2;
                *sm.template at<uint32_t>(buf + row * SWIZZLE_ROW_BYTES + ((chunk ^ (row % 8)) * 16) +
                                          4 * (lane % 4)) = a_ds[kk][j];
            }
    };

    publish_smem<0>();  // the owned rows
    for (int s = 0; s < steps; ++s) {
        const int stage = s % Tr::STAGES, b = s % Tr::DS_BUFFERS;
        stages.await(s);
        wgmma_fence();
        issue_scores(c1, c2, sm, stage, wg);
        // Step s+1's tiles into step s-1's stage, which every warp released at the end of step s-1.
        if (s + 1 < steps && threadIdx.x < 32) stages.load(maps, blk, bp, sm, s + 1);
        wgmma_wait<0>();
        fence_registers(c1);
        fence_registers(c2);
        bwd_probabilities<Tr, TRANSFORM>(c1, c2, blk, p, logits, sm, s, first_row, row_lse2, row_delta);
        accumulators_to_a<T, Tr::BLOCK_C>(a_p, c1);
        accumulators_to_a<T, Tr::BLOCK_C>(a_ds, c2);
        store_ds(b);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < KC; ++kk) Wgmma<T, D>::rs(acc1, a_p[kk], mn_major_desc<Tr::BLOCK_C>(sm.y2(stage), kk), 1);
        wgmma_commit();
        // The staging is free once this thread's reductions of step s-1 have read it; the barrier below tells
        // the warpgroup.
        if (reducer) bulk_wait_read();
        fence_proxy_async_shared();  // dSᵀ, for the tensor cores of both warpgroups
        named_barrier_sync(1, Tr::THREADS);
        wgmma_fence();
        {
            const uint32_t ds = ds_base + b * Tr::DS_BYTES;
            const uint32_t k_panel = sm.x1 + wg * Tr::BLOCK_R * SWIZZLE_ROW_BYTES;
#pragma unroll
            for (int kk = 0; kk < Tr::BLOCK_R / 16; ++kk)
                Wgmma<T, 64>::ss_mn(dq, mn_major_desc<Tr::BLOCK_R>(ds, kk), mn_major_desc<Tr::BLOCK_R>(k_panel, kk),
                                    kk > 0);
            wgmma_commit();
        }
#pragma unroll
        for (int kk = 0; kk < KC; ++kk) Wgmma<T, D>::rs(acc2, a_ds[kk], mn_major_desc<Tr::BLOCK_C>(sm.y1(stage), kk), 1);
        wgmma_commit();
        wgmma_wait<1>();  // dV and dQ; dK runs on
        fence_registers(acc1);
        fence_registers(dq);
        // dQ panel into the staging, then one bulk reduction of all of it (rows past seqlen_q land in rows of
        // the tile that the conversion skips).
        float* panel = sm.template at<float>(staging);
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int nt = 0; nt < Tr::DQ_COLS / 8; ++nt)
                *reinterpret_cast<float2*>(panel + DqAccumTiles::in_panel(warp * 16 + lane / 4 + 8 * h,
                                                                          nt * 8 + 2 * (lane % 4))) =
                    make_float2(dq[nt * 4 + 2 * h], dq[nt * 4 + 2 * h + 1]);
        fence_proxy_async_shared();  // the staging, for the bulk reduction's async proxy
        named_barrier_sync(2 + wg, 128);
        if (reducer) {
            const int64_t tile = DqAccumTiles::panel_offset(params.fwd, D, blockIdx.z, blk.head_of(s),
                                                            blk.c0_of(s) / DqAccumTiles::ROWS, wg);
            bulk_reduce_add_f32(params.dq_accum + tile, staging, Tr::PANEL_BYTES);
            bulk_commit();
        }
        wgmma_wait<0>();  // dK: the last reader of the stage
        fence_registers(acc2);
        stages.release(s);
    }
    if (reducer) bulk_wait_all();  // the staging stays until the reductions are done with it

    // dV, and dK with the scale (dz/ds), which the transformed dS has already.
    store_gradients<T, D, true>(blk, bp, acc1, acc2, TRANSFORM ? 1.f : p.softmax_scale, first_row, 0);
#elif defined(__CUDA_ARCH__)
    __trap();  // built without sm_90a: only launched on a device that runs sm_90a code
#endif
}

// The dq_atomics calls this kernel runs: those of at least ONE_PASS_MIN_LENGTH queries and keys, where it
// measured 1.02-1.09x the two deterministic passes in forward + backward (0.93-0.98x at 512 and 1k, where
// blocks walk fewer steps; H100, bf16, d128: results/h100-2026-12-07-bwd-one-pass/).
// CANDLE_FA2_BWD_ONE_PASS=1: every call (the suites' shapes are short), =0: none.
constexpr int ONE_PASS_MIN_LENGTH = 2048;
inline bool bwd_one_pass_wanted(const FlashFwdParams& p) {
    static const int mode = env_switch("CANDLE_FA2_BWD_ONE_PASS", -1);
    return mode == 1 || (mode == -1 && p.seqlen_q >= ONE_PASS_MIN_LENGTH && p.seqlen_k >= ONE_PASS_MIN_LENGTH);
}

// The one-pass backward where TMA can stream the call's Q and dO (bwd_tma_maps): dq_accum zeroed, the kernel,
// then dQ from dq_accum (common/dq_accum.cuh). False in `ran` where it cannot, and nothing is launched.
template <typename Tr, bool TRANSFORM>
cudaError_t launch_bwd_sm90_onepass(const FlashBwdParams& bp, cudaStream_t stream, bool& ran) {
    BwdTmaMaps maps{};
    ran = bp.dq_accum != nullptr && bwd_tma_maps<Tr>(bp, maps);
    if (!ran) return cudaSuccess;
    return run_with_dq_accum<typename Tr::T>(bp, stream, [&] {
        return launch_bwd_sm90_grid<Tr>(flash_bwd_sm90_onepass_kernel<Tr, TRANSFORM>, bp, stream, maps);
    }, Tr::HEAD_DIM);
}

}  // namespace fa2
