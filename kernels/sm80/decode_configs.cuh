// Tile configurations of the split-KV decode per instantiated head_dim (head dims in between run on the next
// one up, masked), and the choice between them at run time. DecodeTraits<T, HEAD_DIM, NUM_WARPS, STAGES,
// VIA_L1, PERSISTENT, V_PARTS>: each warp takes 16 keys of a tile, so BLOCK_N = 16 x NUM_WARPS. Measured on the H200
// (BENCHMARKS.md, decode v1-v6; results/h200-2026-11-30-decode-variants/, -decode-v6/).
#pragma once
#include <type_traits>

#include "sm80/flash_decode_kernel.cuh"

namespace fa2 {

template <typename T, int HEAD_DIM>
struct DecodeConfig {
    // Fits the 99 KB of shared memory that sm_86 / sm_89 / sm_120 GPUs give a block (RTX 30xx/40xx/50xx, L4,
    // L40S): 64-key tiles of 4 warps up to d128 (3 stages at d64, 2 at d96/d128: 3 would be 109 KB), 32-key
    // tiles of 2 warps above (a warp's O is HEAD_DIM / 2 accumulators per thread). 2-6 stages, 32- or 64-key
    // tiles and L2 prefetch hints all measured within the run-to-run spread of each other here.
    static constexpr int WARPS = HEAD_DIM <= 128 ? 4 : 2;
    static constexpr int STAGES = HEAD_DIM <= 64 ? 3 : HEAD_DIM <= 128 ? 2 : HEAD_DIM <= 224 ? 3 : 2;
    // cp.async.ca up to d128: 5-9% faster at d64 and d128 on the large rows; 10-15% slower at d256.
    static constexpr bool VIA_L1 = HEAD_DIM <= 128;
    using Small = DecodeTraits<T, HEAD_DIM, WARPS, STAGES, VIA_L1>;
    static_assert(Small::SMEM_BYTES <= CONSUMER_SMEM_BYTES, "the fallback fits consumer GPUs");
    // Where the GPU has the shared memory (A100, H100, H200): tiles of 8 warps (128 keys) up to d128, of 4
    // warps (64 keys) above, where a thread's O takes half its registers (255 at d256); two stages, copies
    // through L1: 76 KB at d64, 143 KB at d128 and d256. On the H200 at d128: 0.94-1.01x cuDNN against
    // 0.82-0.99x for Small. Beside Small in one call (results/h200-2026-12-02-decode-tiles/): d256 +10-17%
    // (1 x 64k 3515 -> 4104 GB/s, 16 x 32k 4176 -> 4608), d64 +1-4%; at d256 the same tiles without L1
    // were 7-10% behind, with three stages and without L1 8-14%, two warps of three or four stages 17-24%.
    // Three stages at d128 (213 KB) measured 15-20% slower on every row, contiguous and paged alike
    // (results/h200-2026-11-30-serving/decode-stages-variants.jsonl). Only where a block may have more than
    // the 99 KB of consumer GPUs (with_decode_traits): measured there alone, and its copies lean on the L1
    // that the shared memory leaves.
    static constexpr int LARGE_WARPS = HEAD_DIM <= 128 ? 8 : 4;
    using Large = std::conditional_t<(HEAD_DIM >= 64 && HEAD_DIM <= 256), DecodeTraits<T, HEAD_DIM, LARGE_WARPS, 2, true>,
                                     Small>;
    // Large's tiles in persistent blocks (152 KB with three Q buffers: A100, H100, H200). Beside Large in one
    // call on the H200 (BENCHMARKS.md, decode v6): 64 x 2k 4026 -> 4135 GB/s, paged 64 x 2k +2-3%, the other
    // d128 rows within 1%. A first version with a merge region of its own (220 KB) was 9% slower on every
    // d128 row, persistent or not: the copies go through L1 (VIA_L1), which shared memory then squeezes.
    using Persistent =
        std::conditional_t<HEAD_DIM == 96 || HEAD_DIM == 128, DecodeTraits<T, HEAD_DIM, 8, 2, true, true>, Large>;
};

// d512: V (O) cut in two parts of 256 columns, items of their own (a warp's O would be 256 accumulators per
// thread). Two warps and two stages (114 KB: A100, H100); one warp and three stages (90 KB) for 99 KB GPUs.
template <typename T>
struct DecodeConfig<T, 512> {
    using Small = DecodeTraits<T, 512, 1, 3, false, false, 2>;
    static_assert(Small::SMEM_BYTES <= CONSUMER_SMEM_BYTES, "the fallback fits consumer GPUs");
    using Large = DecodeTraits<T, 512, 2, 2, false, false, 2>;
    using Persistent = Large;
};

// CANDLE_FA2_DECODE_PERSISTENT=0 keeps one block per item where persistent blocks would run (for A/B runs).
inline bool decode_persistent_allowed() {
    static const bool allowed = env_switch("CANDLE_FA2_DECODE_PERSISTENT", 1) != 0;
    return allowed;
}

// Small on GPUs with 99 KB of shared memory per block or less; elsewhere the largest configuration whose
// shared memory the device lets a block have (smem_optin). Persistent only where its blocks get several
// items each (`num_splits` known, else Large's split count, the same): with one item per block Large
// measured 0.5-1.6% faster on the same call (decode v6).
template <typename T, int HEAD_DIM, typename Run>
auto with_decode_traits(const FlashFwdParams& p, int num_splits, Run&& run) {
    using Config = DecodeConfig<T, HEAD_DIM>;
    using Persistent = DecodeLaunch<typename Config::Persistent>;
    const int optin = smem_optin();
    if (optin <= CONSUMER_SMEM_BYTES) return run(DecodeLaunch<typename Config::Small>{});
    if (decode_persistent_allowed() && optin >= Config::Persistent::SMEM_BYTES &&
        Persistent::items(p, num_splits) > Persistent::persistent_blocks())
        return run(Persistent{});
    if (optin >= Config::Large::SMEM_BYTES) return run(DecodeLaunch<typename Config::Large>{});
    return run(DecodeLaunch<typename Config::Small>{});
}

template <typename T, int HEAD_DIM>
cudaError_t run_decode(const FlashDecodeParams& p, cudaStream_t stream) {
    return with_decode_traits<T, HEAD_DIM>(p.fwd, p.num_splits, [&](auto launch) { return decltype(launch)::run(p, stream); });
}

template <typename T, int HEAD_DIM>
int decode_num_splits(const FlashFwdParams& p) {
    // Large and Persistent have one block per SM each, so either gives the same count.
    return with_decode_traits<T, HEAD_DIM>(p, 1, [&](auto launch) { return decltype(launch)::num_splits(p); });
}

}  // namespace fa2
