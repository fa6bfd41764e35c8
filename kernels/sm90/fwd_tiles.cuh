// Tile configuration of the Hopper forwards per head_dim that has them; the others run on mma.sync
// (sm80/fwd_tiles.cuh). Which kernel runs a call: run_fwd.cuh.
#pragma once
#include <type_traits>

#include "sm90/flash_fwd_sm90.cuh"
#include "sm90/flash_fwd_sm90_ws.cuh"

namespace fa2 {

// Two Hopper (sm_90a, wgmma) kernels per head_dim, with two warpgroups of 64 query rows computing (three in
// the warp-specialised one at d64); a thread holds S (BLOCK_N / 2) and O (HEAD_DIM / 2) f32 accumulators,
// so BLOCK_N shrinks as HEAD_DIM grows.
// - WsTraits, Sm90WsTraits<T, HEAD_DIM, BLOCK_N, STAGES, CONSUMERS> (flash_fwd_sm90_ws.cuh): the
//   warp-specialised TMA kernel, for every dense batch TMA can address, from WS_FROM_SEQLEN_K keys. On the
//   H200 beside the cp.async kernel (BENCHMARKS.md, "Hopper forward, warp-specialised"): 1.15-1.34x at
//   d128, 1.09-1.41x at d256, 1.07-1.32x at d64 from 1k keys (below 1k mma.sync stays ahead on causal
//   rows: 0.92x at 512). Tried in one call: key blocks 176 at d128 (0.90-1.03x) and 192 at d64 (0.87-1.03x),
//   three stages (0.97-1.01x); key blocks 80 at d256 measured 0.98-1.09x over 64 and are the ones kept;
//   three consumers with 64-key blocks at d128 0.85-0.98x.
// - Traits, Sm90Traits<T, HEAD_DIM, warpgroups, BLOCK_N> (flash_fwd_sm90.cuh): the cp.async kernel, for the
//   rest (variable lengths, paged K/V, per-sequence key counts, strides TMA cannot take), from FROM_SEQLEN_K
//   keys: at d64 mma.sync was 4-16% faster up to 1k keys and wgmma 3-10% faster from 4k (BENCHMARKS.md,
//   sm90 v2).
// TRANSFORM: whether transformed logits (softcap, ALiBi, a scale <= 0) run on wgmma too, WS_TRANSFORM on
// the warp-specialised kernel. With softcap 30 at 4k (BENCHMARKS.md, "Building blocks"), the cp.async
// wgmma kernel measured 1.08-1.20x the mma.sync one at d128 and 1.62-1.68x at d256, but 0.94-0.98x at d64,
// where tanh and exp2 (two MUFU ops per score) weigh most. The warp-specialised kernel with softcap 30, 4k
// and 16k, against the cp.async one: 1.24-1.32x at d128, 0.96-1.00x at d256, which keeps the cp.async one
// there (results/h200-2026-12-01-ws/softcap/). Head dims without a configuration run on mma.sync.
template <typename T, int HEAD_DIM>
struct Sm90Config {
    static constexpr bool AVAILABLE = false;
    static constexpr bool TRANSFORM = false;
};
// d64: three consumer warpgroups (192-row tiles, FA3's d64 tile; a consumer's 160 registers hold S, O and
// P of 128-key blocks without spills) against two, in one call on the H200 (BENCHMARKS.md, "Three
// consumers"): not causal +5-17% from 1k keys, causal +4-12% from 4k queries, but 12% slower at 1k causal
// and 3% at 2k (fewer, taller tiles along a diagonal): calls whose mask bounds the keys on the right
// (causal, windows) with fewer than WS_MASKED_TALL_FROM_SEQLEN_Q queries keep two (WsTraitsMasked).
template <typename T> struct Sm90Config<T, 64> {
    static constexpr bool AVAILABLE = true;
    using WsTraits = Sm90WsTraits<T, 64, 128, 2, 3>;
    using WsTraitsMasked = Sm90WsTraits<T, 64, 128, 2, 2>;
    static constexpr int WS_MASKED_TALL_FROM_SEQLEN_Q = 4096;
    static constexpr int WS_FROM_SEQLEN_K = 1024;
    using Traits = Sm90Traits<T, 64, 2, 128>;
    static constexpr int FROM_SEQLEN_K = 2048;
    static constexpr bool TRANSFORM = false, WS_TRANSFORM = false;
};
template <typename T> struct Sm90Config<T, 128> {
    static constexpr bool AVAILABLE = true;
    using WsTraits = Sm90WsTraits<T, 128, 128, 2>;
    static constexpr int WS_FROM_SEQLEN_K = 0;
    using Traits = Sm90Traits<T, 128, 2, 128>;
    static constexpr int FROM_SEQLEN_K = 0;
    static constexpr bool TRANSFORM = true, WS_TRANSFORM = true;
};
template <typename T> struct Sm90Config<T, 256> {
    static constexpr bool AVAILABLE = true;
    using WsTraits = Sm90WsTraits<T, 256, 80, 2>;
    static constexpr int WS_FROM_SEQLEN_K = 0;
    using Traits = Sm90Traits<T, 256, 2, 64>;
    static constexpr int FROM_SEQLEN_K = 0;
    static constexpr bool TRANSFORM = true, WS_TRANSFORM = false;
};

// Whether a configuration has a warp-specialised kernel of its own for short masked calls.
template <typename Config, typename = void>
struct HasWsMasked : std::false_type {};
template <typename Config>
struct HasWsMasked<Config, std::void_t<typename Config::WsTraitsMasked>> : std::true_type {};

}  // namespace fa2
