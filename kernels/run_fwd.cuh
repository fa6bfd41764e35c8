// Which forward kernel runs a call, per instantiated head_dim: on Hopper, where the tile table
// (sm90/fwd_tiles.cuh) has the head_dim and the call suits it, the warp-specialised TMA kernel, else the
// cp.async wgmma one; else mma.sync (sm80/fwd_tiles.cuh), with blocks of 8 warps for long queries where the
// head_dim has them. Instantiated in generated/fwd_hdim*.cu.
#pragma once
#include "common/device_limits.cuh"
#include "sm80/fwd_tiles.cuh"
#include "sm90/fwd_tiles.cuh"

namespace fa2 {

// CANDLE_FA2_NO_WS=1 keeps the warp-specialised TMA forward out (the cp.async wgmma kernel runs its calls),
// for A/B runs on one build.
inline bool sm90_ws_allowed() {
    static const bool allowed = env_switch("CANDLE_FA2_NO_WS", 0) != 1;
    return allowed;
}

// Runs the call on the warp-specialised kernel WsTr where TMA can address it (a dense batch, aligned
// strides); err: the launch's result.
template <typename WsTr, bool TRANSFORM_OK>
bool try_fwd_sm90_ws(const FlashFwdParams& p, cudaStream_t stream, cudaError_t& err) {
    if (p.transform_logits && !TRANSFORM_OK) return false;
    FwdTmaMaps maps;
    if (!fwd_tma_maps<WsTr>(p, maps)) return false;
    err = p.transform_logits ? launch_fwd_sm90_ws<WsTr, TRANSFORM_OK>(p, maps, stream)
                             : launch_fwd_sm90_ws<WsTr, false>(p, maps, stream);
    return true;
}

// sm90a: the device runs sm_90a code (an H100/H200 and a build that holds it, decided in flash_api.cu).
template <typename T, int HEAD_DIM>
cudaError_t run_fwd(const FlashFwdParams& p, cudaStream_t stream, bool sm90a) {
    using Sm90 = Sm90Config<T, HEAD_DIM>;
    if constexpr (Sm90::AVAILABLE && SM90A_BUILT) {
        cudaError_t err = cudaSuccess;
        if (sm90a && sm90_ws_allowed() && p.seqlen_k >= Sm90::WS_FROM_SEQLEN_K) {
            if constexpr (HasWsMasked<Sm90>::value) {
                const bool right_bounded = p.window_right <= p.seqlen_k;  // causal or a window
                if (right_bounded && p.seqlen_q < Sm90::WS_MASKED_TALL_FROM_SEQLEN_Q &&
                    try_fwd_sm90_ws<typename Sm90::WsTraitsMasked, Sm90::WS_TRANSFORM>(p, stream, err))
                    return err;
            }
            if (try_fwd_sm90_ws<typename Sm90::WsTraits, Sm90::WS_TRANSFORM>(p, stream, err)) return err;
        }
        if (sm90a && p.seqlen_k >= Sm90::FROM_SEQLEN_K) {
            if (!p.transform_logits) return launch_fwd_sm90<typename Sm90::Traits, false>(p, stream);
            if constexpr (Sm90::TRANSFORM) return launch_fwd_sm90<typename Sm90::Traits, true>(p, stream);
        }
    }
    using Config = FwdConfig<T, HEAD_DIM>;
    // Blocks that need more shared memory than the device gives one (99 KB on sm_86/89/120) are not
    // launched: long-query blocks fall back to the default ones, those to TraitsSmall where it exists.
    if constexpr (HasLong<Config>::value) {
        const bool right_bounded = p.window_right <= p.seqlen_k;  // causal or a window
        if (p.seqlen_q >= (right_bounded ? Config::LONG_FROM_CAUSAL : Config::LONG_FROM) &&
            smem_fits(Config::TraitsLong::SMEM_BYTES))
            return launch_fwd<typename Config::TraitsLong>(p, stream);
    }
    if constexpr (HasSmall<Config>::value) {
        static_assert(Config::TraitsSmall::SMEM_BYTES <= CONSUMER_SMEM_BYTES, "the fallback fits");
        if (!smem_fits(Config::Traits::SMEM_BYTES)) return launch_fwd<typename Config::TraitsSmall>(p, stream);
    }
    return launch_fwd<typename Config::Traits>(p, stream);
}

}  // namespace fa2
