// Tile configuration of the two backward passes per instantiated head_dim (sm80/flash_bwd_kernel.cuh).
// Every head_dim that is a multiple of 8 runs on the smallest instantiation >= it, as the forward.
//
// KeysPass / QueriesPass<T, HEAD_DIM, M_TILES, NUM_WARPS, BLOCK_C, D_SPLIT, MIN_BLOCKS>. Registers bound the
// choice: a warp of the KEYS pass holds dK and dV (2 x M_TILES x D_OWN/8 x 4 f32) plus the S and dP tiles
// (2 x M_TILES x BLOCK_C/8 x 4); the QUERIES pass holds dQ plus the same two tiles. From d160 the KEYS
// pass splits the gradient columns over warp pairs (D_SPLIT 2) so both fit.
#pragma once
#include <algorithm>

#include "common/device_limits.cuh"
#include "sm80/flash_bwd_kernel.cuh"

namespace fa2 {

// Keys<KEYS> and Keys<KEYS_DQ> share one tile shape; the KEYS_DQ pass adds the dSᵀ tile to shared memory.
template <typename T, int D, int MT, int W, int C, int SPLIT, int MINB, bool SPLIT_S = false>
struct KeysPass {
    template <BwdPass P>
    using Keys = BwdTraits<T, P, D, MT, W, C, SPLIT, MINB, SPLIT_S>;
};
template <typename T, int D, int MT, int W, int C, int SPLIT, int MINB, bool SPLIT_S = false>
using QueriesPass = BwdTraits<T, BwdPass::QUERIES, D, MT, W, C, SPLIT, MINB, SPLIT_S>;

template <typename T, int HEAD_DIM>
struct BwdConfig;

// Measured on the H100 (BENCHMARKS.md, backward v2): what bounds the KEYS pass is shared-memory reads per
// MMA (every warp reads every streamed Q/dO fragment for its own rows) and, with dQ atomics, the atomics
// per key: more key rows per block help both.
//
// 64 keys (queries) per block, 4 warps of 16 rows, 64-wide streamed tiles.
template <typename T> struct BwdConfig<T, 32> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 32, 1, 4, 64, 1, 2>::template Keys<P>;
    using Queries = QueriesPass<T, 32, 1, 4, 64, 1, 2>;
};
// d64 KEYS: two m-tiles per warp (128 keys per block) reuse each streamed fragment twice: +20% fwd+bwd at
// 4k and 16k against one m-tile with 64-wide tiles (23% slower at 1k causal, the one row that lost).
template <typename T> struct BwdConfig<T, 64> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 64, 2, 4, 32, 1, 2>::template Keys<P>;
    using Queries = QueriesPass<T, 64, 1, 4, 64, 1, 2>;
};
template <typename T> struct BwdConfig<T, 96> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 96, 1, 4, 64, 1, 2>::template Keys<P>;
    using Queries = QueriesPass<T, 96, 1, 4, 64, 1, 2>;
};
// d128 KEYS: dK + dV are 128 accumulators per thread, so one m-tile per warp; 8 warps (128 keys per block)
// with 64-wide streamed tiles: +12-15% fwd+bwd against 4 warps with 32-wide tiles (half the dQ atomics and
// Q/dO reads per key).
template <typename T> struct BwdConfig<T, 128> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 128, 1, 8, 64, 1, 1>::template Keys<P>;
    using Queries = QueriesPass<T, 128, 1, 4, 64, 1, 2>;
};
template <typename T> struct BwdConfig<T, 160> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 160, 1, 8, 32, 2, 1>::template Keys<P>;
    using Queries = QueriesPass<T, 160, 1, 4, 32, 1, 2>;
};
template <typename T> struct BwdConfig<T, 192> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 192, 1, 8, 32, 2, 1>::template Keys<P>;
    using Queries = QueriesPass<T, 192, 1, 4, 32, 1, 1>;
};
template <typename T> struct BwdConfig<T, 224> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 224, 1, 8, 32, 2, 1>::template Keys<P>;
    using Queries = QueriesPass<T, 224, 1, 4, 32, 1, 1>;
};
template <typename T> struct BwdConfig<T, 256> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 256, 1, 8, 32, 2, 1>::template Keys<P>;
    using Queries = QueriesPass<T, 256, 1, 4, 32, 1, 1>;
};
// d512: gradient columns over four warps per row group in the KEYS pass (dK + dV: 128 accumulators) and two
// in the QUERIES pass (dQ: 128), with 16-wide streamed tiles. The warps of a group compute S and dP over
// their share of the head dim and add the shares (SPLIT_S): 148 / 138 KB, so the A100 runs them too.
template <typename T> struct BwdConfig<T, 512> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 512, 1, 8, 16, 4, 1, true>::template Keys<P>;
    using Queries = QueriesPass<T, 512, 1, 4, 16, 2, 1, true>;
};

// GPUs that give a block 99 KB of shared memory (sm_86/89/120: RTX 30xx-50xx, L4, L40S) cannot run the
// passes above from d128 (137-155 KB at d128, 100-137 KB above). These fit, at the cost of fewer rows per
// block (4 warps; 32-key KEYS blocks from d192, with 16-wide streamed tiles at d256).
template <typename T, int HEAD_DIM>
struct BwdConfigSmall {
    static constexpr bool SPLIT = HEAD_DIM > 128;
    template <BwdPass P>
    using Keys = typename KeysPass<T, HEAD_DIM, 1, 4, HEAD_DIM >= 256 ? 16 : 32, SPLIT ? 2 : 1, SPLIT ? 1 : 2>::template Keys<P>;
    using Queries = QueriesPass<T, HEAD_DIM, 1, 4, SPLIT ? 16 : 32, 1, SPLIT ? 1 : 2>;
};
// d512 in 99 KB: 16 keys (queries) per block, the same column splits, each warp computing all of S and dP
// (about 3x the MMA work of a pass that computes every product once).
template <typename T>
struct BwdConfigSmall<T, 512> {
    template <BwdPass P>
    using Keys = typename KeysPass<T, 512, 1, 4, 16, 4, 1>::template Keys<P>;
    using Queries = QueriesPass<T, 512, 1, 2, 16, 2, 1>;
};

// The most shared memory any pass of a configuration asks for (the KEYS_DQ pass with dQ atomics).
template <typename Config>
constexpr int bwd_smem_bytes() {
    return std::max({Config::template Keys<BwdPass::KEYS>::SMEM_BYTES,
                     Config::template Keys<BwdPass::KEYS_DQ>::SMEM_BYTES, Config::Queries::SMEM_BYTES});
}

}  // namespace fa2
