// Global -> shared tile copies shared by the forward and backward kernels.
#pragma once
#include <stdint.h>

#include "common/ptx.cuh"
#include "common/seq_view.cuh"

namespace fa2 {

// Global -> shared copies of ROWS x HEAD_DIM tiles by 16-byte cp.async. Each thread owns one 16-byte
// column chunk (COL_CHUNKS of them, ROW_THREADS * 8 columns apart, when there are fewer threads than chunks
// in a row: a warp alone at d512) and every ROWS_PER_PASS-th row from its first, fixed for the whole kernel, so a copy costs a
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
    static constexpr int CHUNKS_POW2 = CHUNKS <= 4 ? 4 : CHUNKS <= 8 ? 8 : CHUNKS <= 16 ? 16 : CHUNKS <= 32 ? 32 : 64;
    static constexpr int COL_CHUNKS = CHUNKS_POW2 > Tr::THREADS ? CHUNKS_POW2 / Tr::THREADS : 1;
    static constexpr int ROW_THREADS = CHUNKS_POW2 / COL_CHUNKS;  // threads that share a row
    static constexpr int ROWS_PER_PASS = Tr::THREADS / ROW_THREADS;
    static_assert(Tr::THREADS % ROW_THREADS == 0, "a pass covers whole rows");
    static_assert(COL_CHUNKS == 1 || CHUNKS == CHUNKS_POW2, "a thread's chunks are all inside HEAD_DIM");

    int row0, col;
    bool in_tile, col_valid;
    int valid_chunks;  // COL_CHUNKS > 1: how many of this thread's chunks lie inside head_dim

    // `thread`: this thread's index among the Tr::THREADS that copy (a warp's lane when a warp copies alone).
    __device__ __forceinline__ explicit TileLoader(int head_dim, int thread = int(threadIdx.x)) {
        row0 = thread / ROW_THREADS;
        col = (thread % ROW_THREADS) * 8;
        in_tile = col < Tr::HEAD_DIM;
        col_valid = col < head_dim;
        valid_chunks = 0;
        if constexpr (COL_CHUNKS > 1)
            valid_chunks = head_dim > col ? (head_dim - col + ROW_THREADS * 8 - 1) / (ROW_THREADS * 8) : 0;
    }

    // One row's chunks of this thread: dst/src point at its first chunk.
    template <bool VIA_L1>
    __device__ __forceinline__ void copy_row(T* dst, const T* src, bool row_valid) const {
        if constexpr (COL_CHUNKS == 1) {
            cp_async_16_via<VIA_L1>(dst, src, col_valid && row_valid);
        } else {
#pragma unroll
            for (int c = 0; c < COL_CHUNKS; ++c)
                cp_async_16_via<VIA_L1>(dst + c * ROW_THREADS * 8, src + c * ROW_THREADS * 8, row_valid && c < valid_chunks);
        }
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
            copy_row<VIA_L1>(dst + i * ROWS_PER_PASS * Tr::PITCH, src, row0 + i * ROWS_PER_PASS < rows_valid);
            src += pass_stride;
        }
    }

    // Keys [n0, n0 + ROWS) of a dense or paged K/V head; rows >= rows_valid and keys whose page is outside
    // the cache are zero-filled. Dense heads take the path above; paged ones read their rows' pages first.
    template <int ROWS, bool VIA_L1 = false>
    __device__ __forceinline__ void load(T* smem, const KvRows<T>& src, int n0, int rows_valid) const {
        if (!src.pages) return load<ROWS, VIA_L1>(smem, src.base + int64_t(n0) * src.row_stride, src.row_stride, rows_valid);
        uint32_t page[ROWS / ROWS_PER_PASS];
        pages<ROWS>(src, n0, rows_valid, page);
        load_pages<ROWS, VIA_L1>(smem, src, n0, page);
    }

    // The block-table entries of this thread's rows of keys [n0, n0 + ROWS) of a paged head (UINT32_MAX: not
    // copied). Only the reads, apart from their use in load_pages: a pipeline reads the next tile's entries
    // while it computes on this one, so that no copy waits for the block table.
    template <int ROWS>
    __device__ __forceinline__ void pages(const KvRows<T>& src, int n0, int rows_valid,
                                          uint32_t (&page)[ROWS / ROWS_PER_PASS]) const {
#pragma unroll
        for (int i = 0; i < ROWS / ROWS_PER_PASS; ++i) {
            const int r = row0 + i * ROWS_PER_PASS;
            page[i] = in_tile && r < rows_valid ? src.pages[src.page_index(n0 + r)] : UINT32_MAX;
        }
    }

    // The copy of keys [n0, n0 + ROWS) whose block-table entries `pages` read (K's entries serve V: the
    // same pages).
    template <int ROWS, bool VIA_L1 = false>
    __device__ __forceinline__ void load_pages(T* smem, const KvRows<T>& src, int n0,
                                               const uint32_t (&page)[ROWS / ROWS_PER_PASS]) const {
        int slot[ROWS / ROWS_PER_PASS];
        to_slots<ROWS>(src, n0, page, slot);
        load_slots<ROWS, VIA_L1>(smem, src, slot);
    }

    // Block-table entries (from `pages`) -> cache slots of this thread's rows of keys [n0, n0 + ROWS); -1
    // where nothing is copied.
    template <int ROWS>
    __device__ __forceinline__ void to_slots(const KvRows<T>& src, int n0, const uint32_t (&page)[ROWS / ROWS_PER_PASS],
                                             int (&slot)[ROWS / ROWS_PER_PASS]) const {
#pragma unroll
        for (int i = 0; i < ROWS / ROWS_PER_PASS; ++i) slot[i] = src.slot(n0 + row0 + i * ROWS_PER_PASS, page[i]);
    }

    // The copy of the rows at `slot` of a paged head: one 32 x 32 -> 64-bit multiply-add per row (a paged
    // cache's row stride is below 2^31, checked on the host).
    template <int ROWS, bool VIA_L1 = false>
    __device__ __forceinline__ void load_slots(T* smem, const KvRows<T>& src, const int (&slot)[ROWS / ROWS_PER_PASS]) const {
        if (!in_tile) return;
        T* dst = smem + row0 * Tr::PITCH + col;
        const T* base = src.base + col;
        const uint32_t stride = uint32_t(src.row_stride);
#pragma unroll
        for (int i = 0; i < ROWS / ROWS_PER_PASS; ++i)
            copy_row<VIA_L1>(dst + i * ROWS_PER_PASS * Tr::PITCH, base + uint64_t(uint32_t(max(slot[i], 0))) * stride,
                             slot[i] >= 0);
    }
};

}  // namespace fa2
