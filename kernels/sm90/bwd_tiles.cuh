// Tile configuration of the Hopper backward (sm90/flash_bwd_sm90.cuh) per head_dim that has one; the
// others run on mma.sync (sm80/bwd_tiles.cuh). Which of the two runs a call: run_bwd.cuh.
#pragma once
#include <type_traits>

#include "sm90/flash_bwd_sm90.cuh"
#include "sm90/flash_bwd_sm90_onepass.cuh"
#include "sm90/flash_bwd_sm90_paired.cuh"

namespace fa2 {

// Hopper (sm_90a, wgmma) configurations: Sm90BwdTraits<T, PASS, HEAD_DIM, warpgroups, BLOCK_C, blocks per
// SM>. Warpgroups own 64 rows each; a KEYS thread holds dK and dV (HEAD_DIM / 2 f32 each) and the two score
// tiles (BLOCK_C / 2 each), 192 accumulators at d128, so one block of two warpgroups per SM there. Calls
// without dQ atomics run here, transformed logits (softcap, ALiBi) where TRANSFORM says so; the rest and
// the other head dims run on mma.sync. With softcap 30, forward + backward at 2k and 8k measured 1.13-1.31x
// on these kernels at d128 against mma.sync, 0.96-0.97x at d64 (BENCHMARKS.md, "Building blocks"), as the
// forward's d64 (sm90/fwd_tiles.cuh).
template <typename T, int HEAD_DIM>
struct Sm90BwdConfig {
    static constexpr bool AVAILABLE = false;
    static constexpr bool TRANSFORM = false;
};
// d64 QUERIES: one warpgroup of 64 queries against 128-key tiles, two blocks per SM (140 -> 220
// registers, no spills), so one block's P and dS overlap the other's products: +6-9% fwd+bwd from 2k and
// +3-8% below against two warpgroups with 64-key tiles (BENCHMARKS.md, backward sm90 v2). The KEYS pass
// with one warpgroup and two blocks per SM won up to 1k and lost from 4k: kept at two.
template <typename T> struct Sm90BwdConfig<T, 64> {
    static constexpr bool AVAILABLE = true;
    using Keys = Sm90BwdTraits<T, BwdPass::KEYS, 64, 2, 64>;
    using Queries = Sm90BwdTraits<T, BwdPass::QUERIES, 64, 1, 128, 2>;
    static constexpr bool TRANSFORM = false;
};
// d128 with dq_atomics from 2k queries and keys: one pass (flash_bwd_sm90_onepass.cuh: 255 registers, no
// spills, 195 KB of shared memory) where TMA can stream Q and dO, 1.02-1.09x the two passes in forward +
// backward on the H100 (results/h100-2026-12-07-bwd-one-pass/).
template <typename T> struct Sm90BwdConfig<T, 128> {
    static constexpr bool AVAILABLE = true;
    using Keys = Sm90BwdTraits<T, BwdPass::KEYS, 128, 2, 64>;
    using Queries = Sm90BwdTraits<T, BwdPass::QUERIES, 128, 2, 64>;
    using OnePass = Sm90BwdOnePassTraits<T, 128>;
    static constexpr bool TRANSFORM = true;
};
// d256: a KEYS thread of the kernel above would hold 256 gradient accumulators, so two warpgroups share 64
// rows and split the head dim (flash_bwd_sm90_paired.cuh), 64-query (64-key) streamed tiles in two stages
// (226 KB). Forward + backward on the H200, bf16 (results/h200-2026-12-02-bwd-paired/): 1.6-2.1x the
// mma.sync kernels.
template <typename T> struct Sm90BwdConfig<T, 256> {
    static constexpr bool AVAILABLE = true;
    using Keys = Sm90BwdPairedTraits<T, BwdPass::KEYS, 256, 64>;
    using Queries = Sm90BwdPairedTraits<T, BwdPass::QUERIES, 256, 64>;
    static constexpr bool TRANSFORM = true;
};

// Whether a configuration has a one-pass kernel for dq_atomics.
template <typename Config, typename = void>
struct HasOnePass : std::false_type {};
template <typename Config>
struct HasOnePass<Config, std::void_t<typename Config::OnePass>> : std::true_type {};

// One pass on the kernel its traits name.
template <typename Tr, bool TRANSFORM>
cudaError_t launch_bwd_sm90_pass(const FlashBwdParams& bp, cudaStream_t stream) {
    if constexpr (Tr::PAIRED) {
        return launch_bwd_sm90_grid<Tr>(flash_bwd_sm90_paired_kernel<Tr, TRANSFORM>, bp, stream);
    } else {
        return launch_bwd_sm90<Tr, TRANSFORM>(bp, stream);
    }
}

}  // namespace fa2
