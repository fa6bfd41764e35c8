// Tile configuration of the mma.sync forward (sm80/flash_fwd_kernel.cuh) per instantiated head_dim. Every
// head_dim that is a multiple of 8 runs on the smallest instantiation >= it (columns past head_dim are
// zero-filled and not stored).
//
// FwdTraits<T, HEAD_DIM, M_TILES (16-row tiles per warp), NUM_WARPS, BLOCK_N, MIN_BLOCKS per SM, D_SPLIT>.
// Registers bound the choice: a warp holds M_TILES x (HEAD_DIM/8 + BLOCK_N/8) x 4 f32 accumulators (O and
// S), which must stay well under 255 per thread. Two m-tiles per warp reuse every K/V fragment twice,
// halving shared-memory reads per MMA; where O alone would not fit twice, warps own one m-tile.
// Measured numbers: BENCHMARKS.md (H100).
#pragma once
#include <type_traits>

#include "sm80/flash_fwd_kernel.cuh"

namespace fa2 {

template <typename T, int HEAD_DIM>
struct FwdConfig;

// Configurations with a `TraitsLong` also instantiate a kernel of 8 warps (256 or 128 query rows per block)
// for long queries: each K/V tile brought into shared memory then serves twice the rows. It wins from
// seqlen_q >= LONG_FROM (LONG_FROM_CAUSAL when the mask has a right bound), and loses below, where the
// larger blocks leave SMs idle or, causal, waste more work on the diagonal.

// 128 x 128 blocks, 4 warps of 32 rows: O 32 + S 128 accumulators per thread. 8 warps were within noise
// of 4 from 4k (non-causal) and slower causal (BENCHMARKS.md, v4): one kernel.
template <typename T> struct FwdConfig<T, 32> { using Traits = FwdTraits<T, 32, 2, 4, 128, 2>; };
template <typename T> struct FwdConfig<T, 64> { using Traits = FwdTraits<T, 64, 2, 4, 128, 2>; };
// 128 x 64 blocks, 4 warps of 32 rows: O 96..128 + S 64. BLOCK_N 32 was 5-10% slower (v3).
template <typename T> struct FwdConfig<T, 96> { using Traits = FwdTraits<T, 96, 2, 4, 64, 2>; };
template <typename T> struct FwdConfig<T, 128> {
    using Traits = FwdTraits<T, 128, 2, 4, 64, 2>;
    using TraitsLong = FwdTraits<T, 128, 2, 8, 64, 1>;  // 256 x 64: +5% at 2k..16k non-causal (v4)
    static constexpr int LONG_FROM = 2048, LONG_FROM_CAUSAL = 8192;
};
// 128 x 32 blocks: O 160 + S 32.
template <typename T> struct FwdConfig<T, 160> { using Traits = FwdTraits<T, 160, 2, 4, 32, 1>; };
// One m-tile per warp from here: O alone is 96..128 accumulators. 100 and 116 KB: GPUs that give a block
// 99 KB (sm_86/89/120: RTX 30xx-50xx, L4, L40S) run 64 x 64 blocks of 4 warps instead (TraitsSmall).
template <typename T> struct FwdConfig<T, 192> {
    using Traits = FwdTraits<T, 192, 1, 8, 64, 1>;
    using TraitsSmall = FwdTraits<T, 192, 1, 4, 64, 1>;
};
template <typename T> struct FwdConfig<T, 224> {
    using Traits = FwdTraits<T, 224, 1, 8, 64, 1>;
    using TraitsSmall = FwdTraits<T, 224, 1, 4, 64, 1>;
};
// d256: every K/V fragment feeds one MMA pair, so shared-memory bandwidth bounds the loop. 128 x 64 blocks
// of 8 warps measured 3-10% faster than 64 x 64 blocks of 4 (two per SM), except causal below 8k (v2).
template <typename T> struct FwdConfig<T, 256> {
    using Traits = FwdTraits<T, 256, 1, 4, 64, 2>;
    using TraitsLong = FwdTraits<T, 256, 1, 8, 64, 1>;
    static constexpr int LONG_FROM = 0, LONG_FROM_CAUSAL = 8192;
};
// d512 (Gemma 4's global layers): O is split over warp pairs (D_SPLIT 2), each holding 16 rows x 256 columns
// (128 accumulators). 64 x 32 blocks of 8 warps whose pairs add their halves of S (SPLIT_S): 146 KB (A100,
// H100). 32 x 32 blocks of 4 warps that each compute all of S (97.5 KB) on GPUs that give a block 99 KB.
template <typename T> struct FwdConfig<T, 512> {
    using Traits = FwdTraits<T, 512, 1, 8, 32, 1, 2, true>;
    using TraitsSmall = FwdTraits<T, 512, 1, 4, 32, 1, 2>;
};

template <typename Config, typename = void>
struct HasLong : std::false_type {};
template <typename Config>
struct HasLong<Config, std::void_t<typename Config::TraitsLong>> : std::true_type {};
template <typename Config, typename = void>
struct HasSmall : std::false_type {};
template <typename Config>
struct HasSmall<Config, std::void_t<typename Config::TraitsSmall>> : std::true_type {};

}  // namespace fa2
