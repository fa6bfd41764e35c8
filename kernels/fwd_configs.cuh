// Tile configuration per instantiated head_dim. Every head_dim that is a multiple of 8 runs on the
// smallest instantiation >= it (columns past head_dim are zero-filled and not stored).
//
// FwdTraits<T, HEAD_DIM, M_TILES (16-row tiles per warp), NUM_WARPS, BLOCK_N, MIN_BLOCKS per SM>.
// Registers bound the choice: a warp holds M_TILES x (HEAD_DIM/8 + BLOCK_N/8) x 4 f32 accumulators (O and
// S), which must stay well under 255 per thread. Two m-tiles per warp reuse every K/V fragment twice,
// halving shared-memory reads per MMA; where O alone would not fit twice, warps own one m-tile.
// Measured numbers: BENCHMARKS.md (H100).
#pragma once
#include "flash_fwd_kernel.cuh"

namespace fa2 {

template <typename T, int HEAD_DIM>
struct FwdConfig;

// 128 x 128 blocks, 4 warps of 32 rows: O 32 + S 128 accumulators per thread.
template <typename T> struct FwdConfig<T, 32> { using Traits = FwdTraits<T, 32, 2, 4, 128, 2>; };
template <typename T> struct FwdConfig<T, 64> { using Traits = FwdTraits<T, 64, 2, 4, 128, 2>; };
// 128 x 64 blocks, 4 warps of 32 rows: O 96..128 + S 64.
template <typename T> struct FwdConfig<T, 96> { using Traits = FwdTraits<T, 96, 2, 4, 64, 2>; };
template <typename T> struct FwdConfig<T, 128> { using Traits = FwdTraits<T, 128, 2, 4, 64, 2>; };
// 128 x 32 blocks: O 160 + S 32.
template <typename T> struct FwdConfig<T, 160> { using Traits = FwdTraits<T, 160, 2, 4, 32, 1>; };
// One m-tile per warp from here: O alone is 96..128 accumulators.
template <typename T> struct FwdConfig<T, 192> { using Traits = FwdTraits<T, 192, 1, 8, 64, 1>; };
template <typename T> struct FwdConfig<T, 224> { using Traits = FwdTraits<T, 224, 1, 8, 64, 1>; };
// 64 x 64 blocks of 4 warps, two blocks per SM (the original kernel's H100 choice for d256).
template <typename T> struct FwdConfig<T, 256> { using Traits = FwdTraits<T, 256, 1, 4, 64, 2>; };

template <typename T, int HEAD_DIM>
cudaError_t run_fwd(const FlashFwdParams& p, cudaStream_t stream) {
    return launch_fwd<typename FwdConfig<T, HEAD_DIM>::Traits>(p, stream);
}

}  // namespace fa2
