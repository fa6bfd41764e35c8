// Split-KV decode (flash-decoding), mma.sync (sm_80+): few query rows against a long K/V.
//
// Decode reads every key and value once per token, so HBM bandwidth, not FLOP/s, bounds it. The prefill
// kernel gives each query head its own block of >= 64 rows: with one query row that reads K/V once per
// query head and launches batch x heads_q mostly idle blocks. Here instead:
// - GQA packing: the query heads that share a KV head are rows of one 16-row tile (packed row r is query
//   row r / group_size of head kv_head * group_size + r % group_size), so each K/V tile is read once per KV
//   head, whatever the group size.
// - Split-KV: the keys a tile sees are cut into `num_splits` contiguous ranges, one work item each, so
//   that batch x heads_kv x splits items fill the GPU. Each split writes its O (normalised, f32) and LSE;
//   the combine kernel merges them by LSE: LSE = log sum_s exp(LSE_s), O = sum_s exp(LSE_s - LSE) O_s.
// - Inside an item, warps split the keys too: warp w takes keys [16 w, 16 w + 16) of every BLOCK_N-key
//   tile and keeps its own O, row max and row sum; the warps merge through shared memory once, at the end.
// - At d512 O's columns are cut into V_PARTS items of their own (a warp's O would not fit its registers),
//   each computing the same scores from all of K.
// - Persistent blocks (where shared memory allows): one block per SM takes item after item, and its
//   copies run on into the next item's tiles while it merges the current one (KeyCursor), so that no
//   SM waits for a new block's first tile. Elsewhere each block is one item.
// - K/V tiles stream through STAGES shared-memory stages by cp.async, STAGES - 1 tiles in flight while a
//   tile is computed on. Each warp copies its own keys' rows and waits for them alone: no block barrier in
//   the loop.
// - Each block works on its sequence's view (seq_view.cuh): per-sequence key counts, variable-length query
//   rows and paged K/V are all read on the device, so sequences of different fill decode in one launch,
//   with no host read-back, each with its own bottom-right diagonal.
// Logits are always formed explicitly (scale, softcap, ALiBi, mask): the kernel is memory-bound, the few
// extra instructions are free, and one kernel serves every option.
#pragma once
#include <math.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>

#include "common/device_limits.cuh"
#include "common/flash_params.h"
#include "common/fragments.cuh"
#include "common/logits.cuh"
#include "common/mask.cuh"
#include "common/ptx.cuh"
#include "common/seq_view.cuh"
#include "common/softmax.cuh"
#include "common/tile_loader.cuh"

namespace fa2 {

// The most splits a launch may have (the combine kernel caches one weight per split in shared memory).
constexpr int DECODE_MAX_SPLITS = 128;

template <typename T_, int HEAD_DIM_, int NUM_WARPS_, int STAGES_, bool VIA_L1_, bool PERSISTENT_ = false,
          int V_PARTS_ = 1>
struct DecodeTraits {
    using T = T_;
    static constexpr int HEAD_DIM = HEAD_DIM_;
    static constexpr int NUM_WARPS = NUM_WARPS_;
    static constexpr int THREADS = 32 * NUM_WARPS;
    static constexpr int BLOCK_M = 16;  // packed query rows of an item: one m16 MMA tile
    static constexpr int WARP_N = 16;   // keys per warp and tile: one k16 step of P V
    static constexpr int BLOCK_N = WARP_N * NUM_WARPS;
    static constexpr int STAGES = STAGES_;
    static constexpr bool VIA_L1 = VIA_L1_;  // K/V copies by cp.async.ca rather than .cg
    // Persistent blocks: one per SM, each taking item after item, copying the next item's first tiles while
    // it merges the current one (a block of its own per item starts with nothing in flight).
    static constexpr bool PERSISTENT = PERSISTENT_;
    // V's columns (O's) are cut into V_PARTS items of their own, each reading every K column and V_DIM of
    // V's: a warp holds 16 rows x V_DIM of O, HEAD_DIM / 2 accumulators per thread without the cut, 256 at
    // d512. K is read V_PARTS times (once per part, close in time, so mostly from L2), V once.
    static constexpr int V_PARTS = V_PARTS_;
    static constexpr int V_DIM = HEAD_DIM / V_PARTS;
    static constexpr int PITCH = HEAD_DIM + 8;  // 16 extra bytes: ldmatrix rows in distinct bank groups
    static constexpr int V_PITCH = V_DIM + 8;
    static constexpr int SMEM_Q = BLOCK_M * PITCH;
    // Q buffers: persistent blocks copy an item's Q STAGES steps before its first step, while the items of
    // up to STAGES steps before it may still read theirs (KeyCursor).
    static constexpr int Q_BUFFERS = PERSISTENT ? STAGES + 1 : 1;
    static constexpr int SMEM_KV = BLOCK_N * PITCH;   // one K tile
    static constexpr int SMEM_V = BLOCK_N * V_PITCH;  // one V tile (SMEM_KV when V_PARTS is 1)
    static constexpr int SMEM_STAGE = SMEM_KV + SMEM_V;
    // Q, then the K/V stages (stage s: its K tile, then its V tile).
    static constexpr int SMEM_BYTES = (Q_BUFFERS * SMEM_Q + STAGES * SMEM_STAGE) * int(sizeof(T));
    static constexpr int D_TILES = V_DIM / 8;  // n8 tiles of this warp's O
    // The warps merge through the rows each computed on last (MergeRows): 8 rows of its O (f32, padded)
    // and their row max and row sum in its K rows, the other 8 in its V rows.
    static constexpr int O_PITCH = V_DIM + 4;

    static_assert(HEAD_DIM % 16 == 0 && V_DIM % 16 == 0, "k16 steps of Q K^T, x4 ldmatrix pairs of V");
    static_assert(STAGES >= 2, "a stage loads while another is read");
    static_assert((8 * O_PITCH + 16) * 4 <= WARP_N * V_PITCH * int(sizeof(T)), "half a warp's merge fits its V rows");
    static_assert(SMEM_BYTES <= 227 * 1024, "shared memory per block on sm_90");
};

// One warp's share of a K tile (its WARP_N keys, all HEAD_DIM columns) or, V, of a V tile (V_DIM columns),
// as a TileLoader copies it with the warp's 32 lanes.
template <typename Tr, bool V>
struct WarpSlice {
    using T = typename Tr::T;
    static constexpr int HEAD_DIM = V ? Tr::V_DIM : Tr::HEAD_DIM;
    static constexpr int THREADS = 32;
    static constexpr int PITCH = V ? Tr::V_PITCH : Tr::PITCH;
};

// The work of one launch: items (row block, split, V part, KV head, sequence), numbered with the row block
// and split fastest. A block takes items first, first + stride, ... (stride: the grid's size): one item each
// when the grid covers them all, several when the blocks are persistent (DecodeTraits::PERSISTENT).
struct DecodeWork {
    int row_blocks;  // of the longest sequence (the launch's seqlen_q)
    int splits, heads_kv, items;

    __device__ __forceinline__ DecodeWork(const FlashDecodeParams& dp, int block_m, int v_parts) {
        row_blocks = (dp.fwd.seqlen_q * dp.fwd.group_size + block_m - 1) / block_m;
        splits = dp.num_splits;
        heads_kv = dp.fwd.heads_kv;
        items = row_blocks * splits * v_parts * heads_kv * dp.fwd.batch;
    }
};

// Where one item's rows and keys are: packed rows [r0, r0 + 16) of one KV head and the key tiles of one
// split, in its sequence's view `p` (seq_view.cuh: that sequence's query rows and key count).
struct DecodeBlock {
    int kv_head, split, v_part;
    int r0, packed_rows;     // first packed row; group_size * seqlen_q
    int offset;              // seqlen_k - seqlen_q (bottom-right diagonal)
    int key_lo, key_hi;      // keys [key_lo, key_hi) hold every key a row of the item sees
    int tile_begin, tiles;   // this split's tiles, BLOCK_N keys each from key_lo

    DecodeBlock() = default;
    // x: row block and split (split major); y: the KV head; part: the V part.
    __device__ __forceinline__ DecodeBlock(const FlashFwdParams& p, const DecodeWork& w, int x, int y, int part,
                                           int block_n) {
        split = x / w.row_blocks;
        r0 = (x % w.row_blocks) * 16;
        kv_head = y;
        v_part = part;
        packed_rows = p.seqlen_q * p.group_size;
        const Band band(p);
        offset = band.offset;
        const int i_lo = r0 / p.group_size, i_hi = (min(r0 + 16, packed_rows) - 1) / p.group_size;
        key_lo = band.key_lo(i_lo);
        key_hi = band.key_hi(i_hi);
        const int n_tiles = key_hi > key_lo ? (key_hi - key_lo + block_n - 1) / block_n : 0;
        const int per_split = (n_tiles + w.splits - 1) / w.splits;
        tile_begin = split * per_split;
        tiles = max(0, min(n_tiles, tile_begin + per_split) - tile_begin);
    }

    // Query row and query head of packed row r.
    __device__ __forceinline__ int query_row(const FlashFwdParams& p, int r) const { return r / p.group_size; }
    __device__ __forceinline__ int head(const FlashFwdParams& p, int r) const {
        return kv_head * p.group_size + r % p.group_size;
    }

    // A variable-length batch covers its longest sequence: row blocks past this one's have no work.
    __device__ __forceinline__ bool past_end() const { return r0 >= packed_rows; }

    // Pipeline steps of the item: its tiles, and one fully masked step when it has none (its rows then get
    // zeros and LSE -inf by the same code as every other).
    __device__ __forceinline__ int steps() const { return max(tiles, 1); }
};

// The first item at or after `item`, in steps of `stride`, that has rows; its sequence view and block.
// False when none is left (item >= w.items).
template <typename Tr>
__device__ __forceinline__ bool find_item(const FlashDecodeParams& dp, const DecodeWork& w, int& item, int stride,
                                          FlashFwdParams& p, DecodeBlock& blk) {
    constexpr int PARTS = Tr::V_PARTS;
    const int xs = w.row_blocks * w.splits;
    for (; item < w.items; item += stride) {
        // item = x + xs * (part + PARTS * (head + heads_kv * sequence))
        p = sequence_view<typename Tr::T>(dp.fwd, item / (xs * PARTS * w.heads_kv));
        blk = DecodeBlock(p, w, item % xs, (item / (xs * PARTS)) % w.heads_kv, (item / xs) % PARTS, Tr::BLOCK_N);
        if (!blk.past_end()) return true;
    }
    return false;
}

// An item's 16 packed query rows (gathered from their heads) into sQ, by the whole block.
template <typename Tr>
__device__ __forceinline__ void load_q(typename Tr::T* sQ, const FlashFwdParams& p, const DecodeBlock& blk) {
    using T = typename Tr::T;
    constexpr int CHUNKS = Tr::HEAD_DIM / 8;
    for (int c = threadIdx.x; c < Tr::BLOCK_M * CHUNKS; c += Tr::THREADS) {
        const int rr = c / CHUNKS, col = (c % CHUNKS) * 8, r = blk.r0 + rr;
        const bool valid = r < blk.packed_rows && col < p.head_dim;
        const T* src = reinterpret_cast<const T*>(p.q);
        if (valid) src += int64_t(blk.query_row(p, r)) * p.q_row_stride + blk.head(p, r) * p.q_head_stride + col;
        cp_async_16(sQ + rr * Tr::PITCH + col, src, valid);
    }
}

// Where warp `w`'s share of the merge is: its K rows (merged rows 0-7) and V rows (8-15) of the stage the
// item's last step was computed on. Each warp writes only rows it alone read, and the copies in flight
// (the next item's) go to other stages, so the merge needs neither a wait for them nor a barrier before
// it; the barrier after the epilogue comes before any copy into that stage.
template <typename Tr>
struct MergeRows {
    float* base;  // warp 0's K rows of the stage

    __device__ __forceinline__ MergeRows(typename Tr::T* stage) : base(reinterpret_cast<float*>(stage)) {}
    __device__ __forceinline__ float* half(int w, int rr) const {
        using T = typename Tr::T;
        constexpr int K_ROWS = Tr::WARP_N * Tr::PITCH * int(sizeof(T)) / 4;    // floats in a warp's K rows
        constexpr int V_ROWS = Tr::WARP_N * Tr::V_PITCH * int(sizeof(T)) / 4;  // ... and V rows
        constexpr int V_OFFSET = Tr::SMEM_KV * int(sizeof(T)) / 4;
        return base + (rr / 8) * V_OFFSET + w * (rr < 8 ? K_ROWS : V_ROWS);
    }
    __device__ __forceinline__ float* o_row(int w, int rr) const { return half(w, rr) + (rr % 8) * Tr::O_PITCH; }
    __device__ __forceinline__ float& row_max(int w, int rr) const { return half(w, rr)[8 * Tr::O_PITCH + rr % 8]; }
    __device__ __forceinline__ float& row_sum(int w, int rr) const { return half(w, rr)[8 * Tr::O_PITCH + 8 + rr % 8]; }
};

// Where the copies are: the pipeline step (item, tile) that this block's next K/V copy is for, STAGES - 1
// steps ahead of the one computed on. It walks the same items as the compute, across item ends, so a
// persistent block copies its next item's first tiles while it merges the current one. Entering an item,
// it copies that item's Q (its own cp.async group) into the item's Q buffer, STAGES steps before the
// item's first step is computed: the group has landed by the merge before it, whose barrier publishes it.
// Every thread of the block holds the same cursor.
template <typename Tr>
struct KeyCursor {
    using T = typename Tr::T;
    int item = 0, ordinal = -1;  // item >= items: past the last; ordinal: the item's number in this block
    int step = 0, steps = 0;
    int key_lo = 0, key_hi = 0, tile_begin = 0;
    int v_cols = 0;  // V_PARTS > 1: columns of the item's V part inside head_dim
    KvRows<T> k{}, v{};  // v: from the item's first V column
    uint32_t page_ahead = UINT32_MAX;  // paged: the block-table entry of this lane's key of the step

    __device__ __forceinline__ bool done(const DecodeWork& w) const { return item >= w.items; }
    __device__ __forceinline__ int warp_n0(int warp) const {
        return key_lo + (tile_begin + step) * Tr::BLOCK_N + warp * Tr::WARP_N;
    }

    __device__ __forceinline__ void enter(const FlashDecodeParams& dp, const DecodeWork& w, int from, int stride,
                                          T* sQ, int warp, int lane) {
        item = from;
        FlashFwdParams p;
        DecodeBlock blk;
        if (!find_item<Tr>(dp, w, item, stride, p, blk)) return;
        ++ordinal;
        step = 0;
        steps = blk.steps();
        key_lo = blk.key_lo, key_hi = blk.key_hi, tile_begin = blk.tile_begin;
        k = key_rows<T>(p, blk.kv_head), v = value_rows<T>(p, blk.kv_head);
        v.base += blk.v_part * Tr::V_DIM;
        v_cols = p.head_dim - blk.v_part * Tr::V_DIM;
        load_q<Tr>(sQ + (ordinal % Tr::Q_BUFFERS) * Tr::SMEM_Q, p, blk);
        cp_async_commit();
        look_up(w, warp, lane);
    }

    // Paged: lane l < WARP_N reads the block-table entry of its key of this step, a step before the copy.
    __device__ __forceinline__ void look_up(const DecodeWork& w, int warp, int lane) {
        if (k.pages && !done(w) && lane < Tr::WARP_N) {
            const int j = warp_n0(warp) + lane;
            page_ahead = j < key_hi ? k.pages[k.page_index(j)] : UINT32_MAX;
        }
    }

    __device__ __forceinline__ void advance(const FlashDecodeParams& dp, const DecodeWork& w, int stride, T* sQ,
                                            int warp, int lane) {
        if (done(w)) return;
        if (++step < steps) return look_up(w, warp, lane);
        enter(dp, w, item + stride, stride, sQ, warp, lane);
    }

    // This warp's WARP_N keys of the step into its rows sK of a stage's K tile and of its V tile. Keys
    // past key_hi are no row's: zero-filled, not read (and masked when computed on). Without V parts the V
    // loader is the K loader; with them it is made per copy, for the item's part.
    __device__ __forceinline__ void copy(const DecodeWork& w, T* sK, const TileLoader<WarpSlice<Tr, false>>& loader,
                                         int warp, int lane) const {
        if (done(w)) return;
        const int n0 = warp_n0(warp);
        T* sV = sK + Tr::SMEM_KV + warp * Tr::WARP_N * (Tr::V_PITCH - Tr::PITCH);
        using VLoader = TileLoader<WarpSlice<Tr, true>>;
        static_assert(VLoader::ROWS_PER_PASS == TileLoader<WarpSlice<Tr, false>>::ROWS_PER_PASS, "K's slots serve V");
        auto copy_v = [&](auto&& load_v) {
            if constexpr (Tr::V_PARTS == 1) load_v(loader);
            else load_v(VLoader(v_cols, lane));
        };
        if (k.pages) {
            constexpr int PASS = TileLoader<WarpSlice<Tr, false>>::ROWS_PER_PASS, ROWS_PER_LANE = Tr::WARP_N / PASS;
            const int mine = lane < Tr::WARP_N ? k.slot(n0 + lane, page_ahead) : -1;
            int slot[ROWS_PER_LANE];
#pragma unroll
            for (int i = 0; i < ROWS_PER_LANE; ++i) slot[i] = __shfl_sync(0xffffffffu, mine, loader.row0 + i * PASS);
            loader.template load_slots<Tr::WARP_N, Tr::VIA_L1>(sK, k, slot);
            copy_v([&](const auto& vl) { vl.template load_slots<Tr::WARP_N, Tr::VIA_L1>(sV, v, slot); });
        } else {
            loader.template load<Tr::WARP_N, Tr::VIA_L1>(sK, k, n0, key_hi - n0);
            copy_v([&](const auto& vl) { vl.template load<Tr::WARP_N, Tr::VIA_L1>(sV, v, n0, key_hi - n0); });
        }
    }
};

template <typename Tr>
__global__ void __launch_bounds__(Tr::THREADS) flash_decode_kernel(const FlashDecodeParams dp) {
    using T = typename Tr::T;
    constexpr int DT = Tr::D_TILES;
    extern __shared__ __align__(16) unsigned char smem[];
    T* sQ = reinterpret_cast<T*>(smem);            // Q_BUFFERS buffers of SMEM_Q
    T* sKV = sQ + Tr::Q_BUFFERS * Tr::SMEM_Q;      // stage s at s * SMEM_STAGE: its K tile, then its V tile

    const DecodeWork work(dp, Tr::BLOCK_M, Tr::V_PARTS);
    const int stride = gridDim.x * gridDim.y * gridDim.z;
    const int first = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int item = first;
    FlashFwdParams p;  // the computed item's sequence view and block
    DecodeBlock blk;
    if (!find_item<Tr>(dp, work, item, stride, p, blk)) return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    // ---- Prologue: the first item's Q, then the first STAGES - 1 steps' K/V. -------------------------------
    // Each warp copies the K/V rows of its own keys (WARP_N of each tile) and waits for them alone: no
    // block barrier in the loop. Measured against copies by the whole block with a barrier per tile, the
    // same tiles: 1-8% faster at d128 contiguous, 2-7% paged (BENCHMARKS.md, decode v5). Paged: lane
    // l < WARP_N reads the block-table entry of its key a step ahead, and the slots reach the lanes that
    // copy each row by shuffles.
    const TileLoader<WarpSlice<Tr, false>> loader(p.head_dim, lane);
    auto stage = [&](int g) { return sKV + (g % Tr::STAGES) * Tr::SMEM_STAGE; };
    auto warp_stage = [&](int g) { return stage(g) + warp * Tr::WARP_N * Tr::PITCH; };  // the warp's K rows
    KeyCursor<Tr> ahead;
    ahead.enter(dp, work, first, stride, sQ, warp, lane);  // the first item's Q: the first group
#pragma unroll
    for (int g = 0; g < Tr::STAGES - 1; ++g) {
        ahead.copy(work, warp_stage(g), loader, warp, lane);
        cp_async_commit();  // one group per step, empty ones included, so that wait counts stay uniform
        ahead.advance(dp, work, stride, sQ, warp, lane);
    }
    cp_async_wait<Tr::STAGES - 1>();  // this thread's part of the first Q landed (at least STAGES - 1 groups follow it) ...
    __syncthreads();                  // ... and every thread's
    // The combine kernel (launched with PDL) may take its place on the SMs now; it waits for this grid's end.
    grid_launch_dependents();

    const bool partial = dp.num_splits > 1;
    const Logits logits(dp.fwd);  // the same for every sequence
    const int64_t rows_total = lse_rows(dp.fwd);
    int g = 0;  // pipeline step of the block, over all its items
    for (int ordinal = 0;; ++ordinal) {
        const T* sQi = sQ + (ordinal % Tr::Q_BUFFERS) * Tr::SMEM_Q;
        // This thread's two rows (the C fragment holds rows lane / 4 and lane / 4 + 8): query row and slope.
        int row_i[2];
        float slope[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = min(blk.r0 + lane / 4 + 8 * h, blk.packed_rows - 1);  // rows past the end: any valid one
            row_i[h] = blk.query_row(p, r);
            slope[h] = logits.slope(blk.head(p, r));
        }

        float o_acc[DT][4];
        float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) o_acc[dt][e] = 0.f;

        // ---- Main loop: this item's steps; warp w owns keys [16 w, 16 w + 16) of each tile. -------------
        const int steps = blk.steps();
        for (int t = 0; t < steps; ++t, ++g) {
            cp_async_wait<Tr::STAGES - 2>();  // this thread's rows of step g landed ...
            __syncwarp();                     // ... and the warp's; the warp is done with step g - 1's stage
            ahead.copy(work, warp_stage(g + Tr::STAGES - 1), loader, warp, lane);  // into step g - 1's stage
            cp_async_commit();

            const T* sK = stage(g);
            const T* sV = sK + Tr::SMEM_KV;
            const int key0 = blk.key_lo + (blk.tile_begin + t) * Tr::BLOCK_N + warp * Tr::WARP_N;

            // S = Q K^T for this warp's 16 keys: two n8 tiles.
            float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
            for (int kk = 0; kk < Tr::HEAD_DIM / 16; ++kk) {
                uint32_t a[4], b[4];
                ldmatrix_x4(a, sQi + (lane % 16) * Tr::PITCH + kk * 16 + (lane / 16) * 8);
                ldmatrix_x4(b, sK + (warp * Tr::WARP_N + (lane / 16) * 8 + lane % 8) * Tr::PITCH + kk * 16 +
                                   ((lane / 8) % 2) * 8);
                mma_16816<T>(s[0], a, b[0], b[1]);
                mma_16816<T>(s[1], a, b[2], b[3]);
            }

            // Base-2 logits (common/logits.cuh), then the mask (-inf).
#pragma unroll
            for (int nt = 0; nt < 2; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int h = e / 2, key = fragment_col(lane, key0, nt, e);
                    const int dist = key - row_i[h] - blk.offset;
                    const float x = logits(s[nt][e], slope[h], dist) * LOG2E;
                    s[nt][e] = Band(p, blk.offset).visible(row_i[h], key) ? x : -INFINITY;
                }

            // Online softmax over the warp's keys (common/softmax.cuh), on base-2 logits.
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                auto scores = [&](int nt, int e) -> float& { return s[nt][e]; };
                const float block_sum = online_softmax_row<2>(scores, h, row_max[h], 1.f, [&](float alpha) {
                    row_sum[h] *= alpha;
#pragma unroll
                    for (int dt = 0; dt < DT; ++dt) o_acc[dt][2 * h] *= alpha, o_acc[dt][2 * h + 1] *= alpha;
                });
                row_sum[h] += block_sum;  // per-lane partial; the quad is summed at the merge
            }

            // O += P V: the S accumulators are the A fragment of one k16 step.
            uint32_t a[4];
            accumulators_to_a<T>(a, s[0], s[1]);
#pragma unroll
            for (int d16 = 0; d16 < DT / 2; ++d16) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, sV + (warp * Tr::WARP_N + ((lane / 8) % 2) * 8 + lane % 8) * Tr::V_PITCH +
                                         d16 * 16 + (lane / 16) * 8);
                mma_16816<T>(o_acc[2 * d16], a, b[0], b[1]);
                mma_16816<T>(o_acc[2 * d16 + 1], a, b[2], b[3]);
            }
            // After the compute: a new item's view and Q copy cost no wait the copies above would not.
            ahead.advance(dp, work, stride, sQ, warp, lane);
        }

        // ---- Merge the warps through shared memory: the rows of the stage of the last step. ----------------
        const MergeRows<Tr> merge(stage(g - 1));
        __syncwarp();  // every lane's reads of the warp's rows (ldmatrix) come before any lane writes them
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int rr = lane / 4 + 8 * h;
            const float sum = quad_sum(row_sum[h]);
            if (lane % 4 == 0) merge.row_max(warp, rr) = row_max[h], merge.row_sum(warp, rr) = sum;
            float* o_row = merge.o_row(warp, rr);
#pragma unroll
            for (int dt = 0; dt < DT; ++dt)
                *reinterpret_cast<float2*>(o_row + dt * 8 + 2 * (lane % 4)) = make_float2(o_acc[dt][2 * h], o_acc[dt][2 * h + 1]);
        }
        __syncthreads();  // also publishes the next item's Q (every thread awaited its part: KeyCursor)

        // ---- Epilogue: each thread a pair of columns of a row; O and LSE of the item (or of its split). ---
        // With V parts, each writes its columns and the first part the LSE (all parts have the same).
        const int64_t lse_base = p.lse - dp.fwd.lse;  // this sequence's first LSE row
        const int v0 = blk.v_part * Tr::V_DIM;
        for (int idx = threadIdx.x; idx < Tr::BLOCK_M * (Tr::V_DIM / 2); idx += Tr::THREADS) {
            const int rr = idx / (Tr::V_DIM / 2), c = (idx % (Tr::V_DIM / 2)) * 2, col = v0 + c, r = blk.r0 + rr;
            if (r >= blk.packed_rows || col >= p.head_dim) continue;
            float m = -INFINITY;
#pragma unroll
            for (int w = 0; w < Tr::NUM_WARPS; ++w) m = fmaxf(m, merge.row_max(w, rr));
            float sum = 0.f, o0 = 0.f, o1 = 0.f;
#pragma unroll
            for (int w = 0; w < Tr::NUM_WARPS; ++w) {
                const float mw = merge.row_max(w, rr);
                const float scale = mw == -INFINITY ? 0.f : exp2f(mw - m);
                const float2 o = *reinterpret_cast<const float2*>(merge.o_row(w, rr) + c);
                sum += scale * merge.row_sum(w, rr);
                o0 += scale * o.x, o1 += scale * o.y;
            }
            const RowEnd end = row_end(m, 1.f, sum);
            const int i = blk.query_row(p, r), head = blk.head(p, r);
            const int64_t lse_row = head * p.lse_head_stride + i;  // in this sequence's view
            if (partial) {
                const int64_t part_row = blk.split * rows_total + lse_base + lse_row;
                *reinterpret_cast<float2*>(dp.o_partial + part_row * p.head_dim + col) =
                    make_float2(o0 * end.inv_sum, o1 * end.inv_sum);
                if (col == 0) dp.lse_partial[part_row] = end.lse;  // col 0: the first part's first pair
            } else {
                T* o = reinterpret_cast<T*>(p.o) + int64_t(i) * p.o_row_stride + head * p.o_head_stride;
                *reinterpret_cast<uint32_t*>(o + col) = pack2<T>(o0 * end.inv_sum, o1 * end.inv_sum);
                if (col == 0) p.lse[lse_row] = end.lse;
            }
        }

        item += stride;
        if (!find_item<Tr>(dp, work, item, stride, p, blk)) return;
        __syncthreads();  // the epilogue has read the merge's stage before the next item's copies go there
    }
}

// Merges the splits' (O, LSE) of one query row per block: LSE = log sum_s exp(LSE_s), O = sum_s
// exp(LSE_s - LSE) O_s. Thread s first takes split s's LSE (two block reductions, the weights into shared
// memory); then the threads form groups of head_dim / 4, each thread one float4 of columns and the splits
// of its group (s = group, group + GROUPS, ...), so every thread has several independent loads in flight
// (one warp walking every split in turn waited on L2 once per split: 30 us at 49 splits). Splits that saw
// no key have LSE -inf and weight 0; a row no split saw gets zeros and LSE -inf.
template <typename T, int THREADS>
__global__ void __launch_bounds__(THREADS) decode_combine_kernel(const FlashDecodeParams dp) {
    static_assert(THREADS >= DECODE_MAX_SPLITS, "one thread per split");
    const FlashFwdParams& p = dp.fwd;
    __shared__ float weights[DECODE_MAX_SPLITS];
    __shared__ float reduce[THREADS / 32];
    __shared__ float4 partial_sums[THREADS];
    const int64_t rows_total = lse_rows(p);
    const int row = blockIdx.x;  // (batch, head, query row) or (head, query row of all sequences): the LSE's
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, splits = dp.num_splits;
    grid_dependency_wait();  // the splits' partials are written (DecodeLaunch::run launches this with PDL)

    // LSE over the splits: block max, then block sum of exp(LSE_s - max).
    const float lse_s = tid < splits ? dp.lse_partial[int64_t(tid) * rows_total + row] : -INFINITY;
    float m = lse_s;
#pragma unroll
    for (int x = 16; x > 0; x /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, x));
    if (lane == 0) reduce[warp] = m;
    __syncthreads();
    m = reduce[0];
#pragma unroll
    for (int w = 1; w < THREADS / 32; ++w) m = fmaxf(m, reduce[w]);
    const float m_ref = m == -INFINITY ? 0.f : m;
    float sum = expf(lse_s - m_ref);  // 0 for -inf
#pragma unroll
    for (int x = 16; x > 0; x /= 2) sum += __shfl_xor_sync(0xffffffff, sum, x);
    __syncthreads();  // every thread has read reduce[] above
    if (lane == 0) reduce[warp] = sum;
    __syncthreads();
    sum = 0.f;
#pragma unroll
    for (int w = 0; w < THREADS / 32; ++w) sum += reduce[w];
    const float lse = sum > 0.f ? m_ref + logf(sum) : -INFINITY;
    if (tid < splits) weights[tid] = sum > 0.f ? expf(lse_s - lse) : 0.f;
    __syncthreads();

    // O: groups of head_dim / 4 threads, each group a share of the splits.
    const int quads = p.head_dim / 4, groups = THREADS / quads;
    const int group = tid / quads, col = (tid % quads) * 4;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (group < groups) {
        const float* o_s = dp.o_partial + int64_t(row) * p.head_dim + col;
        const int64_t split_stride = int64_t(rows_total) * p.head_dim;
#pragma unroll 4
        for (int s = group; s < splits; s += groups) {
            const float4 part = *reinterpret_cast<const float4*>(o_s + s * split_stride);
            const float w = weights[s];
            acc.x += w * part.x, acc.y += w * part.y, acc.z += w * part.z, acc.w += w * part.w;
        }
    }
    partial_sums[tid] = acc;
    __syncthreads();
    if (group == 0) {
        for (int g = 1; g < groups; ++g) {
            const float4 other = partial_sums[g * quads + tid];
            acc.x += other.x, acc.y += other.y, acc.z += other.z, acc.w += other.w;
        }
        // Varlen: the LSE is (heads_q, total_q) and o (total_q, heads_q, head_dim), a batch of one.
        const int rows = p.cu_seqlens_q ? p.total_q : p.seqlen_q;
        const int i = row % rows, head = (row / rows) % p.heads_q, batch = row / (rows * p.heads_q);
        T* o = reinterpret_cast<T*>(p.o) + batch * p.o_batch_stride + int64_t(i) * p.o_row_stride +
               head * p.o_head_stride + col;
        *reinterpret_cast<uint2*>(o) = make_uint2(pack2<T>(acc.x, acc.y), pack2<T>(acc.z, acc.w));
    }
    if (tid == 0) p.lse[row] = lse;
}

// Programmatic dependent launch, where the combine kernel's code waits for the split kernel
// (grid_dependency_wait, common/ptx.cuh): in the sm_90a machine code only. The compute_80 PTX that sm_100 and
// sm_120 JIT-compile has no griddepcontrol, so there the combine kernel is launched after the split kernel.
// CANDLE_FA2_NO_PDL=1 does that everywhere (BENCHMARKS.md, decode v4).
inline bool device_has_pdl() {
    static const bool disabled = [] {
        const char* env = getenv("CANDLE_FA2_NO_PDL");
        return env && env[0] && env[0] != '0';
    }();
    return !disabled && device_runs_sm90a_code();
}

template <typename Tr>
struct DecodeLaunch {
    static int row_blocks(const FlashFwdParams& p) { return (p.seqlen_q * p.group_size + Tr::BLOCK_M - 1) / Tr::BLOCK_M; }
    // Work items of a launch with `splits` splits (DecodeWork: row block, split, V part, KV head, sequence).
    static int64_t items(const FlashFwdParams& p, int splits) {
        return int64_t(row_blocks(p)) * splits * Tr::V_PARTS * p.heads_kv * p.batch;
    }

    static cudaError_t prepare() {
        if (Tr::SMEM_BYTES <= 48 * 1024) return cudaSuccess;
        return cudaFuncSetAttribute(flash_decode_kernel<Tr>, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::SMEM_BYTES);
    }

    // Splits that fill the GPU: batch x heads_kv x row blocks blocks per split, as many blocks per SM as
    // shared memory allows. FA2's rule: the fewest splits whose last wave is at least 85% as full as the
    // best choice's, one split when the GPU is nearly full without splitting, never more splits than key
    // tiles. `p.seqlen_k` is the longest sequence (the cache's capacity with per-sequence counts).
    // Block slots of the device (SMs x resident blocks per SM), asked once per device and configuration.
    static int64_t slots() {
        static std::atomic<int64_t> cached[MAX_DEVICES];
        return once_per_device(cached, [](int dev) -> int64_t {
            int sms = 0, per_sm = 0;
            if (prepare() != cudaSuccess) return 0;
            if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 0;
            if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, flash_decode_kernel<Tr>, Tr::THREADS,
                                                              Tr::SMEM_BYTES) != cudaSuccess)
                return 0;
            return int64_t(sms) * max(per_sm, 1);
        });
    }

    // CANDLE_FA2_DECODE_BLOCKS=N: N persistent blocks (at most one per slot and item), so that tests on small
    // shapes run several items per block (every path of KeyCursor) on a GPU with more slots; 0 if unset.
    static int64_t blocks_from_env() {
        static const int64_t blocks = env_switch("CANDLE_FA2_DECODE_BLOCKS", 0);
        return blocks > 0 ? std::min(blocks, slots()) : 0;
    }
    // Persistent blocks at most: one per block slot, or CANDLE_FA2_DECODE_BLOCKS.
    static int64_t persistent_blocks() {
        const int64_t from_env = blocks_from_env();
        return from_env > 0 ? from_env : slots();
    }

    // Persistent blocks for `work` items: the fewest that take as many rounds (items per block) as one per
    // slot, where that leaves at most 4% of the slots idle. 512 items on 132 SMs: 128 blocks of 4 items
    // instead of 116 of 4 and 16 of 3, whose last round left 16 SMs idle: on the H200 0.8-1.8% faster at
    // 64 x 2k and 32 x 4k d128, d96 within 0.5% (results/h200-2026-12-03-decode-balanced/). Fewer blocks than
    // that would leave DRAM bandwidth unused in every round, not only the last.
    static int64_t persistent_grid(int64_t work) {
        if (const int64_t from_env = blocks_from_env(); from_env > 0) return std::min(work, from_env);
        const int64_t blocks = std::min(work, slots());
        if (blocks <= 0) return blocks;
        const int64_t rounds = (work + blocks - 1) / blocks;
        const int64_t even = (work + rounds - 1) / rounds;
        return even * 25 >= blocks * 24 ? even : blocks;
    }

    static int num_splits(const FlashFwdParams& p) {
        const int64_t slots = DecodeLaunch::slots();
        if (slots <= 0) return 1;
        const int64_t blocks = items(p, 1);
        if (blocks * 10 >= slots * 8) return 1;
        const int tiles = (p.seqlen_k + Tr::BLOCK_N - 1) / Tr::BLOCK_N;
        const int max_splits = max(1, min(DECODE_MAX_SPLITS, tiles));
        auto efficiency = [&](int s) {
            const double waves = double(blocks * s) / double(slots);
            return waves / ceil(waves);
        };
        double best = 0.0;
        for (int s = 1; s <= max_splits; ++s) best = fmax(best, efficiency(s));
        for (int s = 1; s <= max_splits; ++s)
            if (efficiency(s) >= 0.85 * best) return s;
        return 1;
    }

    static cudaError_t run(const FlashDecodeParams& dp, cudaStream_t stream) {
        const FlashFwdParams& p = dp.fwd;
        cudaError_t err = prepare();
        if (err != cudaSuccess) return err;
        const int64_t work = items(p, dp.num_splits);
        if (work > INT32_MAX / 2) return cudaErrorInvalidConfiguration;  // the kernel numbers items by int
        dim3 grid(row_blocks(p) * dp.num_splits * Tr::V_PARTS, p.heads_kv, p.batch);
        if (Tr::PERSISTENT) {
            const int64_t blocks = persistent_grid(work);
            if (blocks <= 0) return cudaErrorInvalidConfiguration;
            grid = dim3(unsigned(blocks));
        }
        flash_decode_kernel<Tr><<<grid, Tr::THREADS, Tr::SMEM_BYTES, stream>>>(dp);
        err = cudaGetLastError();
        if (err != cudaSuccess || dp.num_splits == 1) return err;
        // Launched as a programmatic dependent of the split kernel where the GPU has it (sm_90+): its blocks
        // are resident and waiting when the last split finishes, instead of launching after it.
        cudaLaunchConfig_t config = {};
        config.gridDim = dim3(unsigned(lse_rows(p)));
        config.blockDim = dim3(128);
        config.stream = stream;
        cudaLaunchAttribute pdl[1];
        pdl[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        pdl[0].val.programmaticStreamSerializationAllowed = 1;
        config.attrs = pdl;
        config.numAttrs = device_has_pdl() ? 1 : 0;
        return cudaLaunchKernelEx(&config, decode_combine_kernel<typename Tr::T, 128>, dp);
    }
};

}  // namespace fa2
