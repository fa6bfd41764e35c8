// Accumulator fragments of m16n8 mma.sync tiles, float[M][N][4] (M 16-row tiles, N 8-column tiles; lane l
// holds the same four elements of every tile in each warp): where an element sits, zeroing, their reuse as
// the A operand of the next product, and the shared-memory exchange by which warps that computed shares of
// one product (over parts of the head dim) add them.
#pragma once
#include <stdint.h>

#include "common/ptx.cuh"

namespace fa2 {

// The column of element e of n8 tile nt in fragments whose tile 0 starts at column n0: lane l holds columns
// 2 (l % 4) and 2 (l % 4) + 1 of each tile, in rows l / 4 (e = 0, 1) and l / 4 + 8 (e = 2, 3). wgmma's
// accumulators have this layout too, one 16-row slice per warp.
__device__ __forceinline__ int fragment_col(int lane, int n0, int nt, int e) {
    return n0 + nt * 8 + 2 * (lane % 4) + e % 2;
}

// The accumulators of n8 tiles 2 kk and 2 kk + 1 (lo, hi: one 16 x 16 block of a product) rounded to T as
// the A fragment of k16 step kk of the next product (P of P V; dS of dS K): an m16n8k16 A fragment holds,
// per lane, the elements the two accumulator tiles hold, so no data moves between lanes.
template <typename T>
__device__ __forceinline__ void accumulators_to_a(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
    a[0] = pack2<T>(lo[0], lo[1]);
    a[1] = pack2<T>(lo[2], lo[3]);
    a[2] = pack2<T>(hi[0], hi[1]);
    a[3] = pack2<T>(hi[2], hi[3]);
}

template <int M, int N>
__device__ __forceinline__ void zero_fragments(float (&c)[M][N][4]) {
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int n = 0; n < N; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) c[m][n][e] = 0.f;
}

// A warp's fragments take M * N * 32 float4s, tile (m, n) at (m * N + n) * 32 + lane: a warp's store or
// load of one tile is 512 contiguous bytes, no bank conflicts.
template <int M, int N>
__device__ __forceinline__ void store_fragments(float4* warp_base, const float (&c)[M][N][4], int lane) {
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int n = 0; n < N; ++n)
            warp_base[(m * N + n) * 32 + lane] = make_float4(c[m][n][0], c[m][n][1], c[m][n][2], c[m][n][3]);
}

// c += the fragments another warp stored at warp_base (store_fragments' layout).
template <int M, int N>
__device__ __forceinline__ void add_fragments(float (&c)[M][N][4], const float4* warp_base, int lane) {
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int n = 0; n < N; ++n) {
            const float4 x = warp_base[(m * N + n) * 32 + lane];
            c[m][n][0] += x.x, c[m][n][1] += x.y, c[m][n][2] += x.z, c[m][n][3] += x.w;
        }
}

}  // namespace fa2
