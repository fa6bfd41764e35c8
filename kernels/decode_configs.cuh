// Tile configuration of the split-KV decode per instantiated head_dim (head dims in between run on the next
// one up, masked). DecodeTraits<T, HEAD_DIM, NUM_WARPS, STAGES>: each warp takes 16 keys of a tile, so
// BLOCK_N = 16 x NUM_WARPS. Every configuration fits the 99 KB of consumer GPUs, so that up to three blocks
// share an SM on the A100/H100/H200, each with STAGES - 1 K/V tiles in flight.
#pragma once
#include "flash_decode_kernel.cuh"

namespace fa2 {

template <typename T, int HEAD_DIM>
struct DecodeConfig {
    // d <= 128: 64-key tiles of 4 warps; d128 with 3 stages is 109 KB, over the consumer limit: 2.
    // d > 128: 32-key tiles of 2 warps (a warp's O is HEAD_DIM / 2 accumulators per thread).
    static constexpr int WARPS = HEAD_DIM <= 128 ? 4 : 2;
    static constexpr int STAGES = HEAD_DIM <= 64 ? 3 : HEAD_DIM <= 128 ? 2 : HEAD_DIM <= 224 ? 3 : 2;
    using Traits = DecodeTraits<T, HEAD_DIM, WARPS, STAGES>;
};

template <typename T, int HEAD_DIM>
cudaError_t run_decode(const FlashDecodeParams& p, cudaStream_t stream) {
    return DecodeLaunch<typename DecodeConfig<T, HEAD_DIM>::Traits>::run(p, stream);
}

template <typename T, int HEAD_DIM>
int decode_num_splits(const FlashFwdParams& p) {
    return DecodeLaunch<typename DecodeConfig<T, HEAD_DIM>::Traits>::num_splits(p);
}

}  // namespace fa2
