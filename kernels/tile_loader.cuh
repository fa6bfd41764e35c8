// Global -> shared tile copies shared by the forward and backward kernels.
#pragma once
#include <stdint.h>

#include "ptx.cuh"

namespace fa2 {

// Global -> shared copies of ROWS x HEAD_DIM tiles by 16-byte cp.async. Each thread owns one 16-byte
// column chunk and every ROWS_PER_PASS-th row from its first, fixed for the whole kernel, so a copy costs a
// pointer increment and a row predicate per chunk (v1 recomputed row, column and a 64-bit address per
// chunk: about 20 instructions each, a quarter of the main loop's instructions at d128). Rows >= rows_valid
// and columns >= head_dim are zero-filled (nothing is read), so partial blocks need no padded copies and
// smaller head dims contribute nothing. Tr provides T, HEAD_DIM, THREADS and PITCH (row pitch in elements).
template <typename Tr>
struct TileLoader {
    using T = typename Tr::T;
    // Chunks per row, rounded up to a power of two so that a pass covers whole rows; threads whose chunk
    // falls past HEAD_DIM idle (head dims 96, 160, 192, 224).
    static constexpr int CHUNKS = Tr::HEAD_DIM / 8;
    static constexpr int CHUNKS_POW2 = CHUNKS <= 4 ? 4 : CHUNKS <= 8 ? 8 : CHUNKS <= 16 ? 16 : 32;
    static constexpr int ROWS_PER_PASS = Tr::THREADS / CHUNKS_POW2;
    static_assert(Tr::THREADS % CHUNKS_POW2 == 0, "a pass covers whole rows");

    int row0, col;
    bool in_tile, col_valid;

    __device__ __forceinline__ explicit TileLoader(int head_dim) {
        row0 = threadIdx.x / CHUNKS_POW2;
        col = (threadIdx.x % CHUNKS_POW2) * 8;
        in_tile = col < Tr::HEAD_DIM;
        col_valid = col < head_dim;
    }

    // VIA_L1: copy through L1 (cp.async.ca) rather than around it (see cp_async_16_via).
    template <int ROWS, bool VIA_L1 = false>
    __device__ __forceinline__ void load(T* smem, const T* gmem, int64_t row_stride, int rows_valid) const {
        static_assert(ROWS % ROWS_PER_PASS == 0, "tile rows are whole passes");
        if (!in_tile) return;
        const T* src = gmem + row0 * row_stride + col;
        T* dst = smem + row0 * Tr::PITCH + col;
        const int64_t pass_stride = ROWS_PER_PASS * row_stride;
#pragma unroll
        for (int i = 0; i < ROWS / ROWS_PER_PASS; ++i) {
            // An invalid chunk reads nothing (src-size 0), so its address need not be inside the tensor.
            cp_async_16_via<VIA_L1>(dst + i * ROWS_PER_PASS * Tr::PITCH, src,
                                    col_valid && row0 + i * ROWS_PER_PASS < rows_valid);
            src += pass_stride;
        }
    }
};

}  // namespace fa2
