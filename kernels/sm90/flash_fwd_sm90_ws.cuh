// FlashAttention forward on Hopper, warp-specialised (sm_90a): FA3's structure (Shah et al. 2024) on the
// tiles and softmax of flash_fwd_sm90.cuh.
//
// A tile is 64 query rows per consumer of one head (two consumers, 128 rows; three at d64, 192); a block has
// a producer warpgroup besides. The producer (warpgroup 0) gives its registers away (setmaxnreg) and one of
// its threads streams the tiles in with TMA: Q once, then K and V key block by key block into STAGES buffers
// each, every buffer guarded by a "full" mbarrier (the bytes have landed) and an "empty" one (every consumer
// is done reading it). The consumers (warpgroups 1.., 64 rows each) run flash_fwd_sm90's software
// pipeline: step i issues S_i = Q K_i and O += P_{i-1} V_{i-1}, then runs the softmax of S_i while
// P_{i-1} V_{i-1} finishes. No thread of the block waits at a block-wide barrier and none issues a copy.
//
// Ping-pong: the consumers take turns issuing their products (a named barrier each), so one's softmax runs
// while another's products occupy the tensor cores, instead of all reaching the softmax at once (without
// the turns: 0.94-1.01x at d128/d256 and 0.86-0.92x at d64 on the H200, BENCHMARKS.md).
//
// Persistent blocks: a block walks tiles (sm90/tile_schedule.cuh), and the pipeline runs on across them:
// the Q buffer has full and empty barriers too, so the producer loads the next tile's Q once every consumer's
// last Q K^T of the current one is done, and its K and V as buffers free up, while the consumers finish
// and write the current tile; one consumer's epilogue runs during another's turn.
//
// Dense batches only (TMA boxes address (batch, row, head) coordinates); varlen, paged and per-sequence key
// counts run on flash_fwd_sm90.cuh. The same kernel runs the e4m3 forward (sm90/fwd_fp8.cuh), whose V
// tiles are V^T: HEAD_DIM rows of BLOCK_N keys.
#pragma once
#include "common/device_limits.cuh"
#include "common/flash_params.h"
#include "common/fwd_block.cuh"
#include "common/ptx.cuh"
#include "sm90/fwd_rows.cuh"
#include "sm90/sm90_common.cuh"
#include "sm90/tile_schedule.cuh"
#include "sm90/tma.cuh"

namespace fa2 {

template <typename T_, int HEAD_DIM_, int BLOCK_N_, int STAGES_, int CONSUMERS_ = 2>
struct Sm90WsTraits {
    using T = T_;
    static constexpr bool FP8 = sizeof(T) == 1;
    static constexpr int PANEL_COLS = SWIZZLE_ROW_BYTES / int(sizeof(T));  // columns of one swizzle panel
    static constexpr int HEAD_DIM = HEAD_DIM_;
    static constexpr int CONSUMERS = CONSUMERS_;  // warpgroups of 64 query rows
    static constexpr int THREADS = 128 * (CONSUMERS + 1);
    static constexpr int BLOCK_M = 64 * CONSUMERS;
    static constexpr int BLOCK_N = BLOCK_N_;
    static constexpr int STAGES = STAGES_;
    // setmaxnreg, per thread: two consumers 240 and the producer 24 (128 x 24 + 256 x 240 <= 64K registers);
    // three consumers 160 and the producer 32 (128 x 32 + 384 x 160 = 64K).
    static constexpr int PRODUCER_REGS = CONSUMERS == 2 ? 24 : 32;
    static constexpr int CONSUMER_REGS = CONSUMERS == 2 ? 240 : 160;
    static constexpr int Q_BYTES = BLOCK_M * HEAD_DIM * int(sizeof(T));
    static constexpr int KV_BYTES = BLOCK_N * HEAD_DIM * int(sizeof(T));  // a K tile (and a 16-bit V tile)
    // e4m3: V^T tiles are whole panels of 128 keys, V_PANELS of them (the keys of a last partial panel past
    // BLOCK_N arrive too, unread).
    static constexpr int V_PANELS = FP8 ? (BLOCK_N + 127) / 128 : 0;
    static constexpr int V_BYTES = FP8 ? V_PANELS * HEAD_DIM * SWIZZLE_ROW_BYTES : KV_BYTES;
    static constexpr int TILE_BYTES = Q_BYTES + STAGES * (KV_BYTES + V_BYTES);
    static constexpr int BARRIERS = 2 + 4 * STAGES;  // full and empty of Q and of each K and V buffer
    // +1024: the dynamic shared-memory base is rounded up to the swizzle's 1024-byte period.
    static constexpr int SMEM_BYTES = TILE_BYTES + 8 * BARRIERS + 1024;

    static_assert(sizeof(T) == 2 || sizeof(T) == 1, "f16 / bf16, or e4m3");
    static_assert(HEAD_DIM % PANEL_COLS == 0, "tiles are whole 128-byte swizzle panels, one TMA box each");
    static_assert(!FP8 || BLOCK_N % 32 == 0, "e4m3: k-steps of 32 keys in P V");
    static_assert(KV_BYTES % 1024 == 0 && V_BYTES % 1024 == 0, "tiles start on the swizzle's 1024-byte period");
    static_assert(BLOCK_N % 16 == 0 && BLOCK_N <= 256, "wgmma n of S, k16 steps of P V, TMA box rows");
    static_assert(HEAD_DIM <= 256, "wgmma n of O");
    static_assert(CONSUMERS == 2 || CONSUMERS == 3, "register split; named barriers 1..CONSUMERS take turns");
    static_assert(128 * PRODUCER_REGS + 128 * CONSUMERS * CONSUMER_REGS <= 64 * 1024, "registers of an SM");
    static_assert(SMEM_BYTES <= 227 * 1024, "shared memory per block on sm_90");
};

// The tensor maps of one call (tma.cuh), a kernel parameter of its own: TMA reads them in parameter space.
struct FwdTmaMaps {  // CUtensorMap is 64-byte aligned itself, as TMA needs
    CUtensorMap q, k, v;
};

// This block's tile of round r as producer and consumers both see it: where it is, its sequence's view and
// its block (rows, key blocks, outputs). Only o and the LSE are read through the view (q, k and v through
// the tensor maps), so its element type is the output's.
template <typename Tr>
struct WalkedTile {
    using Out = Sm90Out<typename Tr::T>;
    FwdTile tile;
    FlashFwdParams p;
    FwdBlock<Out, Tr::BLOCK_M, Tr::BLOCK_N> blk;
    __device__ __forceinline__ WalkedTile(const FlashFwdParams& params, const FwdTileSchedule& schedule, int r)
        : tile(schedule(schedule.tile_of_round(r))), p(sequence_view<Out>(params, tile.batch)),
          blk(p, tile.m_block, tile.head) {}
};

// The descale factors of an e4m3 call (sm90/fwd_fp8.cuh); 16-bit calls pass the default, which scales
// nothing. Per-tensor ones of q and k are in the softmax scale already.
struct FwdDescales {
    float o = 1.f;                    // multiplies O: v's per-tensor descale
    const float* qk_heads = nullptr;  // (batch, heads_q) factors of the logits (q's times k's), or null
    const float* o_heads = nullptr;   // (batch, heads_kv) factors of O (v's), with qk_heads

    // Tile t's factors: the logits' into p's scales; returns what multiplies its O.
    __device__ __forceinline__ float apply(FlashFwdParams& p, const FwdTile& t) const {
        if (qk_heads == nullptr) return o;
        const float f = qk_heads[int64_t(t.batch) * p.heads_q + t.head];
        p.softmax_scale *= f;
        p.scale_log2 *= f;
        return o * o_heads[int64_t(t.batch) * p.heads_kv + t.head / p.group_size];
    }
};

// The grid is 1-d: one block per tile, or persistent blocks walking several, in the order of `schedule`
// (sm90/tile_schedule.cuh).
template <typename Tr, bool TRANSFORM>
__global__ void __launch_bounds__(Tr::THREADS, 1)
    flash_fwd_sm90_ws_kernel(const FlashFwdParams params, const __grid_constant__ FwdTmaMaps maps,
                             const FwdDescales descales, const FwdTileSchedule schedule) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int PANELS = Tr::HEAD_DIM / Tr::PANEL_COLS, S = Tr::STAGES;
    extern __shared__ __align__(1024) unsigned char sm90_smem[];
    const uint32_t smem_q = (smem_addr(sm90_smem) + 1023) & ~1023u;
    auto smem_k = [&](int buf) { return smem_q + Tr::Q_BYTES + buf * Tr::KV_BYTES; };
    auto smem_v = [&](int buf) { return smem_q + Tr::Q_BYTES + S * Tr::KV_BYTES + buf * Tr::V_BYTES; };
    const uint32_t bars = smem_q + Tr::TILE_BYTES;
    const uint32_t q_full = bars, q_empty = bars + 8;
    auto k_full = [&](int buf) { return bars + 8 * (2 + buf); };
    auto v_full = [&](int buf) { return bars + 8 * (2 + S + buf); };
    auto k_empty = [&](int buf) { return bars + 8 * (2 + 2 * S + buf); };
    auto v_empty = [&](int buf) { return bars + 8 * (2 + 3 * S + buf); };

    const int wg = threadIdx.x / 128, lane = threadIdx.x % 32;
    const int cw = wg - 1;  // consumer index: which 64 rows of the block
    using Rows = Sm90FwdRows<Tr, TRANSFORM>;

    if (threadIdx.x == 0) {
        mbarrier_init(q_full, 1);
        // One arrival per consumer warp, after its own wgmma_wait (as the K and V buffers' empty barriers).
        mbarrier_init(q_empty, 4 * Tr::CONSUMERS);
        for (int b = 0; b < S; ++b) {
            mbarrier_init(k_full(b), 1);
            mbarrier_init(v_full(b), 1);
            mbarrier_init(k_empty(b), 4 * Tr::CONSUMERS);
            mbarrier_init(v_empty(b), 4 * Tr::CONSUMERS);
        }
        fence_mbarrier_init();
    }
    __syncthreads();

    // Both sides walk the same tiles and count the same buffer uses: `loads` K/V key blocks and `q_loads` Q
    // tiles so far. Use u of a buffer waits for phase parity u & 1 of its full barrier, and its refill for the
    // release of use u - 1 (parity (u - 1) & 1) of its empty one. Tiles without keys use nothing.
    if (wg == 0) {  // the producer
        setmaxnreg_dec<Tr::PRODUCER_REGS>();
        if (threadIdx.x != 0) return;
        int loads = 0, q_loads = 0;
        for (int r = 0; schedule.tile_of_round(r) < schedule.tiles; ++r) {
            const WalkedTile<Tr> w(params, schedule, r);
            const FwdTile& tile = w.tile;
            const FlashFwdParams& p = w.p;
            const typename Rows::Block& blk = w.blk;
            if (blk.past_end() || blk.empty()) continue;
            const int kv_head = tile.head / p.group_size;
            if (q_loads > 0) mbarrier_wait(q_empty, (q_loads - 1) & 1);
            ++q_loads;
            mbarrier_arrive_expect_tx(q_full, Tr::Q_BYTES);
            for (int c = 0; c < PANELS; ++c)
                tma_load_4d(smem_q + c * Tr::BLOCK_M * SWIZZLE_ROW_BYTES, &maps.q, q_full, c * Tr::PANEL_COLS, blk.m0,
                            tile.head, tile.batch);
            for (int n_block = blk.n_block_max - 1; n_block >= blk.n_block_min; --n_block, ++loads) {
                const int buf = loads % S, n0 = n_block * Tr::BLOCK_N;
                const uint32_t parity = ((loads / S) + 1) & 1;
                if (loads >= S) mbarrier_wait(k_empty(buf), parity);
                mbarrier_arrive_expect_tx(k_full(buf), Tr::KV_BYTES);
                for (int c = 0; c < PANELS; ++c)
                    tma_load_4d(smem_k(buf) + c * Tr::BLOCK_N * SWIZZLE_ROW_BYTES, &maps.k, k_full(buf),
                                c * Tr::PANEL_COLS, n0, kv_head, tile.batch);
                if (loads >= S) mbarrier_wait(v_empty(buf), parity);
                mbarrier_arrive_expect_tx(v_full(buf), Tr::V_BYTES);
                if constexpr (Tr::FP8) {  // V^T: panel c holds keys [n0 + 128 c, + 128) of all HEAD_DIM rows
                    for (int c = 0; c < Tr::V_PANELS; ++c)
                        tma_load_4d(smem_v(buf) + c * Tr::HEAD_DIM * SWIZZLE_ROW_BYTES, &maps.v, v_full(buf),
                                    n0 + c * 128, 0, kv_head, tile.batch);
                } else {
                    for (int c = 0; c < PANELS; ++c)
                        tma_load_4d(smem_v(buf) + c * Tr::BLOCK_N * SWIZZLE_ROW_BYTES, &maps.v, v_full(buf), c * 64,
                                    n0, kv_head, tile.batch);
                }
            }
        }
        return;
    }
    setmaxnreg_inc<Tr::CONSUMER_REGS>();

    // A consumer warp's release of a buffer, once its own wgmma_wait says the products reading it are done.
    auto release = [&](uint32_t empty) {
        if (lane == 0) mbarrier_arrive(empty);
    };
    // Ping-pong turns: named barrier 1 + c lets consumer c issue; each issue round syncs on its own and
    // arrives on the next consumer's (c + 1, the last on the first's). Consumer 0 goes first: the last
    // consumer arrives once before its first round. All consumers run the same rounds of the same tiles, so
    // the turns carry on from tile to tile: one's epilogue runs while another issues. A block whose tiles
    // all lack keys touches no named barrier (racecheck hung on the sanitizer's shapes when consumer 1
    // arrived and exited before consumer 0's closing sync with no round between).
    constexpr int LAST = Tr::CONSUMERS - 1;
    auto turn_begin = [&] { named_barrier_sync(1 + cw, 256); };
    auto turn_end = [&] { named_barrier_arrive(1 + (cw == LAST ? 0 : cw + 1), 256); };
    bool turns_started = false;

    int loads = 0, q_loads = 0;
    for (int r = 0; schedule.tile_of_round(r) < schedule.tiles; ++r) {
        WalkedTile<Tr> w(params, schedule, r);
        const FwdTile& tile = w.tile;
        const float o_scale = Tr::FP8 ? descales.apply(w.p, tile) : 1.f;
        const FlashFwdParams& p = w.p;
        const typename Rows::Block& blk = w.blk;
        if (blk.past_end()) continue;
        if (blk.empty()) {
            for (int h = 0; h < 2; ++h) blk.write_empty_row(p, Rows::row_of(blk, cw, h), lane);
            continue;
        }
        const int n_block_max = blk.n_block_max;
        const int steps = n_block_max - blk.n_block_min;  // step i is key block n_block_max - 1 - i
        // Buffer and full-barrier parity of this tile's key block i.
        auto buf = [&](int i) { return (loads + i) % S; };
        auto parity = [&](int i) { return uint32_t((loads + i) / S) & 1; };
        Rows rows(p, cw, tile.head);
        if (!turns_started && cw == LAST) named_barrier_arrive(1, 256);
        turns_started = true;

        mbarrier_wait(q_full, q_loads & 1);
        mbarrier_wait(k_full(buf(0)), parity(0));
        turn_begin();
        wgmma_fence();
        rows.issue_qk(smem_q, smem_k(buf(0)));
        turn_end();
        wgmma_wait<0>();
        release(k_empty(buf(0)));
        if (steps == 1) release(q_empty);  // the tile's last Q K^T is done: the next tile's Q may come in
        fence_registers(rows.s);
        rows.softmax(p, blk, n_block_max - 1);
        rows.pack_p();

        for (int i = 1; i < steps; ++i) {
            const int kb = buf(i), vb = buf(i - 1);
            mbarrier_wait(k_full(kb), parity(i));
            mbarrier_wait(v_full(vb), parity(i - 1));
            turn_begin();
            wgmma_fence();
            rows.issue_qk(smem_q, smem_k(kb));
            rows.issue_pv(smem_v(vb));
            turn_end();
            wgmma_wait<1>();  // S_i
            release(k_empty(kb));
            if (i == steps - 1) release(q_empty);
            fence_registers(rows.s);
            rows.softmax(p, blk, n_block_max - 1 - i);
            wgmma_wait<0>();  // P_{i-1} V_{i-1}
            release(v_empty(vb));
            fence_registers(rows.o_acc);
            rows.rescale_o();
            rows.pack_p();
        }
        const int vb = buf(steps - 1);
        mbarrier_wait(v_full(vb), parity(steps - 1));
        turn_begin();
        wgmma_fence();
        rows.issue_pv(smem_v(vb));
        turn_end();
        wgmma_wait<0>();
        release(v_empty(vb));
        fence_registers(rows.o_acc);
        rows.epilogue(p, blk, o_scale);
        loads += steps;
        ++q_loads;
    }
    // The last consumer arrived on consumer 0's barrier once more than consumer 0 synced on it: the last one
    // completes here, so that no barrier is left half-counted at exit.
    if (cw == 0 && turns_started) named_barrier_sync(1, 256);
#elif defined(__CUDA_ARCH__)
    __trap();  // built without sm_90a: launch_fwd_sm90_ws is only called on a device that runs sm_90a code
#endif
}

// The tensor maps of q and k (Tr::T elements), as both the 16-bit and the e4m3 forward read them; false
// where TMA cannot address them.
template <typename Tr>
bool encode_qk_maps(const FlashFwdParams& p, FwdTmaMaps& maps) {
    constexpr int E = int(sizeof(typename Tr::T));
    return encode_rows_map<E>(&maps.q, p.q, p.batch, p.seqlen_q, p.heads_q, p.head_dim, p.q_batch_stride,
                              p.q_row_stride, p.q_head_stride, Tr::BLOCK_M) &&
           encode_rows_map<E>(&maps.k, p.k, p.batch, p.seqlen_k, p.heads_kv, p.head_dim, p.k_batch_stride,
                              p.k_row_stride, p.k_head_stride, Tr::BLOCK_N);
}

// Whether the call can run here: a dense batch whose q, k and v TMA can address. Fills `maps`.
template <typename Tr>
bool fwd_tma_maps(const FlashFwdParams& p, FwdTmaMaps& maps) {
    if (!dense_batch(p)) return false;
    return encode_qk_maps<Tr>(p, maps) &&
           encode_rows_map(&maps.v, p.v, p.batch, p.seqlen_k, p.heads_kv, p.head_dim, p.v_batch_stride,
                           p.v_row_stride, p.v_head_stride, Tr::BLOCK_N);
}

// Blocks of a persistent launch: one per SM (a block of three or four warpgroups and 80-224 KB fills one).
// CANDLE_FA2_FWD_BLOCKS=N caps them at N, so that tests on small shapes run several tiles per block (every
// hand-over between tiles).
inline int64_t fwd_persistent_blocks() {
    static std::atomic<int64_t> cached[MAX_DEVICES];
    static const int64_t cap = [] {
        const char* env = getenv("CANDLE_FA2_FWD_BLOCKS");
        return env ? int64_t(atoi(env)) : int64_t(0);
    }();
    const int64_t sms = once_per_device(cached, [](int dev) -> int64_t {
        int n = 0;
        return cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess ? n : 0;
    });
    return cap > 0 ? (sms > 0 ? std::min(cap, sms) : cap) : sms;
}

// Whether the warp-specialised forward walks its tiles with persistent blocks. CANDLE_FA2_WS_PERSISTENT (A/B
// runs on one build): 0 never (a block per tile), 1 always; unset, where the static walk balances the
// call's tiles as well as the hardware would (persistent_walk_balances: every call without a mask bounding
// the keys, most causal ones).
inline bool fwd_walks_persistent(const FlashFwdParams& p, int block_m, int block_n, int64_t blocks) {
    static const int mode = [] {
        const char* env = getenv("CANDLE_FA2_WS_PERSISTENT");
        return env && (env[0] == '0' || env[0] == '1') ? env[0] - '0' : -1;
    }();
    if (blocks <= 0 || mode == 0) return false;
    return mode == 1 || persistent_walk_balances(p, block_m, block_n, blocks);
}

template <typename Tr, bool TRANSFORM>
cudaError_t launch_fwd_sm90_ws(const FlashFwdParams& p, const FwdTmaMaps& maps, cudaStream_t stream,
                               const FwdDescales& descales = {}) {
    auto kernel = flash_fwd_sm90_ws_kernel<Tr, TRANSFORM>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::SMEM_BYTES);
    if (err != cudaSuccess) return err;
    const int m_blocks = (p.seqlen_q + Tr::BLOCK_M - 1) / Tr::BLOCK_M;
    const int64_t tiles = int64_t(m_blocks) * p.heads_q * p.batch;
    if (tiles > INT32_MAX / 2) return cudaErrorInvalidConfiguration;
    const int64_t persistent = fwd_persistent_blocks();
    const int64_t blocks = fwd_walks_persistent(p, Tr::BLOCK_M, Tr::BLOCK_N, persistent) ? std::min(tiles, persistent)
                                                                                          : tiles;
    kernel<<<unsigned(blocks), Tr::THREADS, Tr::SMEM_BYTES, stream>>>(p, maps, descales,
                                                                      FwdTileSchedule(m_blocks, p.heads_q, p.batch));
    return cudaGetLastError();
}

}  // namespace fa2
