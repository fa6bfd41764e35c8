// Which (query block, head, batch) tiles a block of the warp-specialised forward works on, and in what
// order. Two launches share it: one block per tile (gridDim.x = tiles: one round, the hardware hands tiles
// to SMs as blocks end), and persistent blocks (one per SM), which walk round after round, so that a block's
// producer loads the next tile's Q, K and V while its consumers finish the current one and write it out,
// with no block launch, barrier set-up or register reallocation between tiles (FlashAttention-3's persistent
// scheduler, here static).
//
// Tile t is the one-block-per-tile grid's block t: query blocks last to first (under causal masking the
// last has the most keys), then heads, then batches, so the blocks running at once read few heads' K and V,
// which stay in L2. Round r covers tiles [r G, r G + G) (G = gridDim.x); odd rounds hand them out in reverse
// block order, so that a block that took a heavier tile in one round takes a lighter one in the next.
//
// Where tiles differ in weight (causal, windows) no static order balances every shape: on the H200 the
// snake above lost 24-30% to a block per tile at 16k causal (d128, d256), where its busiest block gets
// about 1.5x the mean; query blocks heaviest first over all heads balanced that, but lost up to 20% at
// 512-2k keys, its concurrent tiles reading different heads' K and V (BENCHMARKS.md, "Persistent
// forward"). So the launcher weighs each call's tiles (persistent_walk_balances) and walks persistently only
// where the static walk's busiest block is within 3% of the hardware's.
#pragma once
#include <stdint.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <queue>
#include <vector>

#include "common/flash_params.h"
#include "common/mask.cuh"

namespace fa2 {

struct FwdTile {
    int m_block, head, batch;
};

// Built by the launcher, a kernel parameter.
struct FwdTileSchedule {
    int m_blocks;  // query blocks per head
    int heads, tiles;

    __host__ __device__ FwdTileSchedule(int m_blocks, int heads, int batch)
        : m_blocks(m_blocks), heads(heads), tiles(m_blocks * heads * batch) {}

    // This block's tile of round r; >= tiles once the block is done (rounds only go up).
    __device__ __forceinline__ int tile_of_round(int r) const {
        const int b = (r & 1) ? int(gridDim.x) - 1 - int(blockIdx.x) : int(blockIdx.x);
        return r * int(gridDim.x) + b;
    }

    __device__ __forceinline__ FwdTile operator()(int t) const {
        const int bh = t / m_blocks;
        return {m_blocks - 1 - t % m_blocks, bh % heads, bh / heads};
    }
};

// Whether `blocks` persistent blocks walking the tiles of a dense forward call as FwdTileSchedule does
// finish about as early as a block per tile would: the busiest block's work within 3% of the busiest SM's
// under the hardware's scheduling (the next tile to whichever SM is free first). A tile weighs its key
// blocks plus one (Q and the epilogue), counted as FwdBlock does. Equal tiles (no mask bounding the keys)
// need no weighing; the rest cost O(tiles) once per shape, O(tiles log blocks) where the static walk is
// not within 3% of the ideal (the last few shapes are kept per thread).
inline bool persistent_walk_balances(const FlashFwdParams& p, int block_m, int block_n, int64_t blocks) {
    const bool weighted = std::min(p.window_left, p.window_right) < p.seqlen_k + p.seqlen_q;
    const int m_blocks = (p.seqlen_q + block_m - 1) / block_m;
    const int64_t tiles = int64_t(m_blocks) * p.heads_q * p.batch;
    if (!weighted || tiles <= blocks) return true;
    struct Shape {
        int seqlen_q, seqlen_k, window_left, window_right, block_m, block_n;
        int64_t tiles, blocks;
        bool operator==(const Shape& o) const {
            return seqlen_q == o.seqlen_q && seqlen_k == o.seqlen_k && window_left == o.window_left &&
                   window_right == o.window_right && block_m == o.block_m && block_n == o.block_n &&
                   tiles == o.tiles && blocks == o.blocks;
        }
    };
    constexpr int KEPT = 8;
    thread_local Shape seen[KEPT];
    thread_local bool answer[KEPT];
    thread_local int filled = 0, next = 0;
    const Shape shape{p.seqlen_q, p.seqlen_k, p.window_left, p.window_right, block_m, block_n, tiles, blocks};
    for (int i = 0; i < filled; ++i)
        if (seen[i] == shape) return answer[i];
    auto remember = [&](bool balances) {
        seen[next] = shape;
        answer[next] = balances;
        next = (next + 1) % KEPT;
        filled = std::min(filled + 1, KEPT);
    };

    const Band band(p);
    std::vector<int64_t> weight(m_blocks);
    for (int m = 0; m < m_blocks; ++m) {
        const int m0 = m * block_m, last = std::min(p.seqlen_q, m0 + block_m) - 1;
        const int lo = band.key_lo(m0) / block_n, hi = band.key_hi(last);
        weight[m] = 1 + (hi > band.key_lo(m0) ? std::max(0, (hi + block_n - 1) / block_n - lo) : 0);
    }
    auto tile_weight = [&](int64_t t) { return weight[m_blocks - 1 - t % m_blocks]; };
    std::vector<int64_t> load(blocks, 0);
    for (int64_t t = 0; t < tiles; ++t) {
        const int64_t r = t / blocks, b = t % blocks;
        load[r % 2 ? blocks - 1 - b : b] += tile_weight(t);
    }
    const int64_t walked = *std::max_element(load.begin(), load.end());
    // No schedule finishes before the mean load or the heaviest tile: within 3% of that, no need to
    // simulate the hardware's (the common case, O(tiles)).
    const int64_t total = std::accumulate(load.begin(), load.end(), int64_t(0));
    const int64_t heaviest = *std::max_element(weight.begin(), weight.end());
    if (double(walked) <= 1.03 * std::max(double(total) / double(blocks), double(heaviest))) {
        remember(true);
        return true;
    }
    std::priority_queue<int64_t, std::vector<int64_t>, std::greater<int64_t>> free_at;
    for (int64_t b = 0; b < blocks; ++b) free_at.push(0);
    int64_t greedy = 0;
    for (int64_t t = 0; t < tiles; ++t) {
        const int64_t end = free_at.top() + tile_weight(t);
        free_at.pop();
        free_at.push(end);
        greedy = std::max(greedy, end);
    }
    const bool balances = double(walked) <= 1.03 * double(greedy);
    remember(balances);
    return balances;
}

}  // namespace fa2
