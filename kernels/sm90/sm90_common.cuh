// Building blocks of the Hopper (sm_90a, wgmma) kernels, forward (flash_fwd_sm90.cuh) and backward
// (flash_bwd_sm90.cuh): the swizzled shared-memory tile layout, its descriptors and loader, the barrier that
// publishes cp.async writes to the tensor cores, and the accumulator layout's conversions.
//
// Every tile is stored as HEAD_DIM/64 panels of [rows][64] elements (128-byte rows) in the 128-byte swizzle
// that wgmma's descriptors name: the 16-byte chunk c of row r sits in slot c ^ (r % 8), which also spreads
// an 8-row column of chunks over all banks. One layout serves both operand orders: a tile read K-major
// (its rows are the product's M or N) and MN-major (its rows are the product's K, trans-b).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#include <type_traits>

#include "common/fragments.cuh"
#include "common/ptx.cuh"
#include "common/seq_view.cuh"

namespace fa2 {

constexpr int SWIZZLE_ROW_BYTES = 128;  // 64 16-bit or 128 8-bit elements: one panel row of the 128-byte swizzle

// The output type of a forward over inputs of type T: e4m3 inputs (sm90/fwd_fp8.cuh) write bf16.
template <typename T>
using Sm90Out = std::conditional_t<sizeof(T) == 1, __nv_bfloat16, T>;

// Matrix descriptor of a 128-byte-swizzled tile at shared address `addr` (1024-byte aligned atoms):
// 8-row groups 1024 bytes apart (stride byte offset); `lbo`: bytes between 64-column panels, used only when
// the instruction's N spans panels of an MN-major operand (K-major operands read within one panel).
__device__ __forceinline__ uint64_t swizzle128_desc(uint32_t addr, uint32_t lbo) {
    return uint64_t((addr & 0x3FFFF) >> 4) | uint64_t((lbo >> 4) & 0x3FFF) << 16 | uint64_t(1024 >> 4) << 32 |
           uint64_t(1) << 62;
}

// K-major descriptor of k-step kk (32 bytes of each row: 16 16-bit or 32 8-bit elements) of a ROWS-row tile
// at `tile`, starting at row `row0`: four k-steps per panel, panels ROWS rows apart.
template <int ROWS>
__device__ __forceinline__ uint64_t k_major_desc(uint32_t tile, int row0, int kk) {
    return swizzle128_desc(tile + (kk / 4) * ROWS * SWIZZLE_ROW_BYTES + row0 * SWIZZLE_ROW_BYTES + (kk % 4) * 32, 16);
}

// MN-major descriptor (trans-b) of k16 step kk of a ROWS-row tile: 16 rows (2048 bytes of each panel) per
// step, panels ROWS rows apart.
template <int ROWS>
__device__ __forceinline__ uint64_t mn_major_desc(uint32_t tile, int kk) {
    return swizzle128_desc(tile + kk * 16 * SWIZZLE_ROW_BYTES, ROWS * SWIZZLE_ROW_BYTES);
}

// Global -> shared copies of ROWS x HEAD_DIM tiles into the swizzled panel layout, 16 bytes per cp.async.
// As TileLoader: each thread owns one column chunk and every ROWS_PER_PASS-th row from its first; rows >=
// rows_valid and columns >= head_dim are zero-filled. ROWS_PER_PASS is a multiple of 8, so a thread's rows
// share one swizzle slot and its destination advances by a constant. Tr provides T, HEAD_DIM and THREADS.
template <typename Tr>
struct SwizzledTileLoader {
    using T = typename Tr::T;
    static constexpr int CHUNKS = Tr::HEAD_DIM / 8;
    static constexpr int ROWS_PER_PASS = Tr::THREADS / CHUNKS;
    static_assert(Tr::THREADS % CHUNKS == 0 && ROWS_PER_PASS % 8 == 0, "a thread's rows share a swizzle slot");

    int row0, col;
    uint32_t dst_offset;  // of row0 within a tile, before adding the tile's panel stride
    int panel;
    bool col_valid;

    __device__ __forceinline__ explicit SwizzledTileLoader(int head_dim) {
        row0 = threadIdx.x / CHUNKS;
        const int chunk = threadIdx.x % CHUNKS;
        col = chunk * 8;
        col_valid = col < head_dim;
        panel = chunk / 8;
        dst_offset = row0 * SWIZZLE_ROW_BYTES + (((chunk % 8) ^ (row0 % 8)) * 16);
    }

    template <int ROWS>
    __device__ __forceinline__ void load(uint32_t smem, const T* gmem, int64_t row_stride, int rows_valid) const {
        static_assert(ROWS % ROWS_PER_PASS == 0, "tile rows are whole passes");
        const T* src = gmem + row0 * row_stride + col;
        const uint32_t dst = smem + panel * ROWS * SWIZZLE_ROW_BYTES + dst_offset;
        const int64_t pass_stride = ROWS_PER_PASS * row_stride;
#pragma unroll
        for (int i = 0; i < ROWS / ROWS_PER_PASS; ++i) {
            cp_async_16(dst + i * ROWS_PER_PASS * SWIZZLE_ROW_BYTES, src,
                        col_valid && row0 + i * ROWS_PER_PASS < rows_valid);
            src += pass_stride;
        }
    }

    // Keys [n0, n0 + ROWS) of a dense or paged K/V head, as TileLoader's.
    template <int ROWS>
    __device__ __forceinline__ void load(uint32_t smem, const KvRows<T>& src, int n0, int rows_valid) const {
        if (!src.pages) return load<ROWS>(smem, src.base + int64_t(n0) * src.row_stride, src.row_stride, rows_valid);
        const uint32_t dst = smem + panel * ROWS * SWIZZLE_ROW_BYTES + dst_offset;
#pragma unroll
        for (int i = 0; i < ROWS / ROWS_PER_PASS; ++i) {
            const int r = row0 + i * ROWS_PER_PASS;
            const T* row = r < rows_valid ? src.row(n0 + r) : nullptr;
            cp_async_16(dst + i * ROWS_PER_PASS * SWIZZLE_ROW_BYTES, row ? row + col : src.base,
                        col_valid && row != nullptr);
        }
    }
};

// Waits for this thread's cp.async groups but the most recent MORE, then publishes shared memory to every
// thread of the block and to the tensor cores (cp.async writes through the generic proxy, wgmma reads
// through the async one).
template <int MORE>
__device__ __forceinline__ void publish_smem() {
    cp_async_wait<MORE>();
    fence_proxy_async_shared();
    __syncthreads();
}

// A 64 x N wgmma result (f32, mma.sync's C-fragment layout per 16-row warp slice: N / 8 tiles of four) rounded
// to T as the A operand of a product that reads A from registers: n-tiles 2kk and 2kk+1 are k-step kk's
// fragment, as for mma.sync (common/fragments.cuh).
template <typename T, int N>
__device__ __forceinline__ void accumulators_to_a(uint32_t (&a)[N / 16][4], const float (&c)[N / 2]) {
    const auto& tiles = reinterpret_cast<const float(&)[N / 8][4]>(c);
#pragma unroll
    for (int kk = 0; kk < N / 16; ++kk) accumulators_to_a<T>(a[kk], tiles[2 * kk], tiles[2 * kk + 1]);
}

// The same for e4m3 A operands (k = 32: four bytes per register, m16n8k32's A layout): lane l's registers
// hold row l / 4 (a[0], a[2]) or l / 4 + 8 (a[1], a[3]), k-columns 4 (l % 4) + {0..3} (a[0], a[1]) and
// 16 more (a[2], a[3]), where its accumulators hold columns 2 (l % 4) + {0, 1} of each n8 tile. Rather than
// move bytes between lanes, each k-column is taken to be the key the lane holds there: k-column c of a
// 16-key half is key fp8_key_of_column(c). The other operand (V) is stored in that key order
// (sm90/fwd_fp8.cuh), so the product sums the same pairs.
__host__ __device__ constexpr int fp8_key_of_column(int c) { return 2 * (c / 4) + c % 2 + 8 * ((c / 2) % 2); }

template <int N>
__device__ __forceinline__ void accumulators_to_a_fp8(uint32_t (&a)[N / 32][4], const float (&c)[N / 2]) {
    const auto& tiles = reinterpret_cast<const float(&)[N / 8][4]>(c);
    auto pack4 = [](float x0, float x1, float x2, float x3) {
        const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(x0, x1), __NV_SATFINITE, __NV_E4M3);
        const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(x2, x3), __NV_SATFINITE, __NV_E4M3);
        return lo | hi << 16;
    };
#pragma unroll
    for (int kk = 0; kk < N / 32; ++kk) {
        const float(&t0)[4] = tiles[4 * kk], (&t1)[4] = tiles[4 * kk + 1];
        const float(&t2)[4] = tiles[4 * kk + 2], (&t3)[4] = tiles[4 * kk + 3];
        a[kk][0] = pack4(t0[0], t0[1], t1[0], t1[1]);
        a[kk][1] = pack4(t0[2], t0[3], t1[2], t1[3]);
        a[kk][2] = pack4(t2[0], t2[1], t3[0], t3[1]);
        a[kk][3] = pack4(t2[2], t2[3], t3[2], t3[3]);
    }
}

// Writes row half h of this thread's share of a 64 x N accumulator tile (row lane / 4 + 8 h of its warp's
// slice; columns 8 nt + 2 (lane % 4) and the next) times `factor` to out_row, columns < head_dim only.
template <typename T, int N>
__device__ __forceinline__ void store_accumulator_row(T* out_row, const float (&acc)[N / 2], int h, int lane,
                                                      int head_dim, float factor) {
#pragma unroll
    for (int nt = 0; nt < N / 8; ++nt) {
        const int col = nt * 8 + 2 * (lane % 4);
        if (col < head_dim)
            *reinterpret_cast<uint32_t*>(out_row + col) =
                pack2<T>(acc[nt * 4 + 2 * h] * factor, acc[nt * 4 + 2 * h + 1] * factor);
    }
}

}  // namespace fa2
