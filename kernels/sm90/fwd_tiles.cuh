// Tile configuration of the Hopper forward (sm90/flash_fwd_sm90.cuh) per head_dim that has one; the others
// run on mma.sync (sm80/fwd_tiles.cuh). Which of the two runs a call: run_fwd.cuh.
#pragma once
#include "sm90/flash_fwd_sm90.cuh"

namespace fa2 {

// Hopper (sm_90a, wgmma) configurations: Sm90Traits<T, HEAD_DIM, warpgroups, BLOCK_N>. Two warpgroups of 64
// query rows; a thread holds S (BLOCK_N / 2) and O (HEAD_DIM / 2) f32 accumulators, so BLOCK_N shrinks as
// HEAD_DIM grows: 64 + 64 at d128, 32 + 128 at d256. They run from FROM_SEQLEN_K keys: at d64 the mma.sync
// kernel was 4-16% faster up to 1k keys and the wgmma one 3-10% faster from 4k (BENCHMARKS.md, sm90 v2),
// the software pipeline paying off over longer loops. Head dims without one run on mma.sync everywhere.
// TRANSFORM: whether transformed logits (softcap, ALiBi, a scale <= 0) run here too. With softcap 30 at 4k
// (BENCHMARKS.md, "Building blocks"), the wgmma kernel measured 1.08-1.20x the mma.sync one at d128 and
// 1.62-1.68x at d256, but 0.94-0.98x at d64, where tanh and exp2 (two MUFU ops per score) weigh most.
template <typename T, int HEAD_DIM>
struct Sm90Config {
    static constexpr bool AVAILABLE = false;
    static constexpr bool TRANSFORM = false;
};
template <typename T> struct Sm90Config<T, 64> {
    static constexpr bool AVAILABLE = true;
    using Traits = Sm90Traits<T, 64, 2, 128>;
    static constexpr int FROM_SEQLEN_K = 2048;
    static constexpr bool TRANSFORM = false;
};
template <typename T> struct Sm90Config<T, 128> {
    static constexpr bool AVAILABLE = true;
    using Traits = Sm90Traits<T, 128, 2, 128>;
    static constexpr int FROM_SEQLEN_K = 0;
    static constexpr bool TRANSFORM = true;
};
template <typename T> struct Sm90Config<T, 256> {
    static constexpr bool AVAILABLE = true;
    using Traits = Sm90Traits<T, 256, 2, 64>;
    static constexpr int FROM_SEQLEN_K = 0;
    static constexpr bool TRANSFORM = true;
};

}  // namespace fa2
