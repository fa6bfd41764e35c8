// Which backward kernels run a call, per instantiated head_dim: the Hopper passes where their tile table
// (sm90/bwd_tiles.cuh) has the head_dim and the call suits them, else mma.sync (sm80/bwd_tiles.cuh).
// dq_atomics on Hopper runs the one-pass kernel where the tile table has one (d128: dense batches from 2k
// queries and keys) and otherwise the two deterministic passes, which measured faster than mma.sync's
// atomics (BENCHMARKS.md, "One-pass backward, tried"). Instantiated in generated/bwd_hdim*.cu.
#pragma once
#include <type_traits>

#include "common/device_limits.cuh"
#include "sm80/bwd_tiles.cuh"
#include "sm90/bwd_tiles.cuh"

namespace fa2 {

// Whether run_bwd runs the call on the Hopper kernels; sm90a: the device runs sm_90a code (flash_api.cu).
template <typename T, int HEAD_DIM>
bool bwd_runs_sm90(const FlashBwdParams& p, bool sm90a) {
    using Sm90 = Sm90BwdConfig<T, HEAD_DIM>;
    if constexpr (Sm90::AVAILABLE && SM90A_BUILT) return sm90a && (!p.fwd.transform_logits || Sm90::TRANSFORM);
    return false;
}

// Whether a Hopper call with dq_atomics takes the one-pass kernel (and p.dq_accum): where the tile table has
// the kernel, the batch is dense, the call is long enough (bwd_one_pass_wanted) and, at launch, TMA can
// stream its Q and dO; else the two deterministic passes run it.
template <typename T, int HEAD_DIM>
bool bwd_runs_one_pass(const FlashBwdParams& p, bool sm90a) {
    if constexpr (HasOnePass<Sm90BwdConfig<T, HEAD_DIM>>::value)
        return p.dq_atomics && dense_batch(p.fwd) && bwd_one_pass_wanted(p.fwd) && bwd_runs_sm90<T, HEAD_DIM>(p, sm90a);
    return false;
}

// The f32 elements of p.dq_accum that run_bwd uses: DqAccumTiles for the one-pass kernel, rows for the
// mma.sync atomics, none where the call runs on the deterministic passes.
template <typename T, int HEAD_DIM>
int64_t bwd_dq_accum_elems(const FlashBwdParams& p, bool sm90a) {
    if (!p.dq_atomics) return 0;
    if (bwd_runs_one_pass<T, HEAD_DIM>(p, sm90a)) return DqAccumTiles::elems(p.fwd, HEAD_DIM);
    return bwd_runs_sm90<T, HEAD_DIM>(p, sm90a) ? 0 : lse_rows(p.fwd) * p.fwd.head_dim;
}

template <typename T, int HEAD_DIM>
cudaError_t run_bwd(const FlashBwdParams& p, cudaStream_t stream, bool sm90a) {
    using Sm90 = Sm90BwdConfig<T, HEAD_DIM>;
    if constexpr (Sm90::AVAILABLE && SM90A_BUILT) {
        auto passes = [&](auto transform) {
            constexpr bool TRANSFORM = decltype(transform)::value;
            cudaError_t err = launch_bwd_delta<T>(p, stream);
            if constexpr (HasOnePass<Sm90>::value) {
                if (err == cudaSuccess && bwd_runs_one_pass<T, HEAD_DIM>(p, sm90a)) {
                    bool ran = false;
                    err = launch_bwd_sm90_onepass<typename Sm90::OnePass, TRANSFORM>(p, stream, ran);
                    if (err != cudaSuccess || ran) return err;
                }
            }
            if (err == cudaSuccess) err = launch_bwd_sm90_pass<typename Sm90::Keys, TRANSFORM>(p, stream);
            if (err == cudaSuccess) err = launch_bwd_sm90_pass<typename Sm90::Queries, TRANSFORM>(p, stream);
            return err;
        };
        if (bwd_runs_sm90<T, HEAD_DIM>(p, sm90a)) {
            if constexpr (Sm90::TRANSFORM) {
                if (p.fwd.transform_logits) return passes(std::true_type{});
            }
            return passes(std::false_type{});
        }
    }
    using Config = BwdConfig<T, HEAD_DIM>;
    if constexpr (bwd_smem_bytes<Config>() > CONSUMER_SMEM_BYTES) {
        static_assert(bwd_smem_bytes<BwdConfigSmall<T, HEAD_DIM>>() <= CONSUMER_SMEM_BYTES, "the fallback fits");
        if (!smem_fits(bwd_smem_bytes<Config>())) return launch_bwd<T, BwdConfigSmall<T, HEAD_DIM>>(p, stream);
    }
    return launch_bwd<T, Config>(p, stream);
}

}  // namespace fa2
