// Which backward kernels run a call, per instantiated head_dim: the Hopper passes where their tile table
// (sm90/bwd_tiles.cuh) has the head_dim and the call suits them, else mma.sync (sm80/bwd_tiles.cuh).
// dq_atomics has no Hopper kernel: there the two deterministic passes run it, faster than mma.sync's
// atomics and than a one-pass wgmma kernel with dQ by atomics or bulk reductions, which measured 0.95-1.05x
// the two passes at d128 and 0.78-0.88x at d64 (BENCHMARKS.md, "One-pass backward, tried").
// Instantiated in generated/bwd_hdim*.cu.
#pragma once
#include <type_traits>

#include "common/device_limits.cuh"
#include "sm80/bwd_tiles.cuh"
#include "sm90/bwd_tiles.cuh"

namespace fa2 {

// Whether run_bwd runs the call on the Hopper passes, which never touch dq_accum (dq_atomics or not); sm90a:
// the device runs sm_90a code (flash_api.cu).
template <typename T, int HEAD_DIM>
bool bwd_runs_sm90(const FlashBwdParams& p, bool sm90a) {
    using Sm90 = Sm90BwdConfig<T, HEAD_DIM>;
    if constexpr (Sm90::AVAILABLE && SM90A_BUILT) return sm90a && (!p.fwd.transform_logits || Sm90::TRANSFORM);
    return false;
}

template <typename T, int HEAD_DIM>
cudaError_t run_bwd(const FlashBwdParams& p, cudaStream_t stream, bool sm90a) {
    using Sm90 = Sm90BwdConfig<T, HEAD_DIM>;
    if constexpr (Sm90::AVAILABLE && SM90A_BUILT) {
        auto passes = [&](auto transform) {
            constexpr bool TRANSFORM = decltype(transform)::value;
            cudaError_t err = launch_bwd_delta<T>(p, stream);
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
