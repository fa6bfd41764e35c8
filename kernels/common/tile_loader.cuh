// Global -> shared tile copies shared by the forward and backward kernels.
#pragma once
#include <stdint.h>

#include "common/ptx.cuh"
#include "common/seq_view.cuh"

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
            cp_async_16_via<VIA_L1>(dst + i * ROWS_PER_PASS * Tr::PITCH, base + uint64_t(uint32_t(max(slot[i], 0))) * stride,
                                    col_valid && slot[i] >= 0);
    }
};

// The cache slots of the ROWS keys of a paged tile, each looked up once, by one thread, and shared through
// shared memory. A TileLoader thread copies ROWS / ROWS_PER_PASS rows, and every row is copied by
// CHUNKS_POW2 threads: when each of them read its rows' block-table entries and formed their slots itself,
// the paged decode ran 25% more instructions than the dense one and reached 83-89% of its speed
// (BENCHMARKS.md, serving v1). Two buffers: a tile's slots are published while the previous tile's are
// read; `publish` into buffer b must follow a barrier after the last `slots` from b, and precede a barrier
// before the next.
template <typename Tr, int ROWS>
struct SlotTable {
    using T = typename Tr::T;
    static constexpr int ROWS_PER_PASS = TileLoader<Tr>::ROWS_PER_PASS;
    static constexpr int PER_THREAD = ROWS / ROWS_PER_PASS;  // rows a copying thread copies
    static_assert(Tr::THREADS >= ROWS, "one thread per row looks the rows up");
    static_assert(ROWS % ROWS_PER_PASS == 0, "tile rows are whole passes");

    // [2][ROWS] ints (the owner reserves 2 * ROWS * 4 bytes); row r at (r % ROWS_PER_PASS) * PER_THREAD +
    // r / ROWS_PER_PASS, so that the rows of one copying thread are adjacent (vector loads).
    int* table;
    uint32_t page;  // the block-table entry of key n0 + threadIdx.x of the tile being looked up

    __device__ __forceinline__ explicit SlotTable(void* smem) : table(reinterpret_cast<int*>(smem)), page(UINT32_MAX) {}

    // Thread i < ROWS reads the block-table entry of key n0 + i (none for keys >= key_hi). Only the read:
    // `publish` uses it later, once it has landed.
    __device__ __forceinline__ void look_up(const KvRows<T>& src, int n0, int key_hi) {
        const int j = n0 + int(threadIdx.x);
        if (threadIdx.x < ROWS) page = j < key_hi ? src.pages[src.page_index(j)] : UINT32_MAX;
    }

    // The slots of the tile looked up last into buffer `buf` (-1: not copied, zero-filled).
    __device__ __forceinline__ void publish(const KvRows<T>& src, int n0, int buf) {
        const int r = int(threadIdx.x);
        if (r < ROWS) table[buf * ROWS + (r % ROWS_PER_PASS) * PER_THREAD + r / ROWS_PER_PASS] = src.slot(n0 + r, page);
    }

    // The slots of this thread's rows (TileLoader::load_slots' order) from buffer `buf`.
    __device__ __forceinline__ void slots(const TileLoader<Tr>& loader, int buf, int (&slot)[PER_THREAD]) const {
        const int* s = table + buf * ROWS + loader.row0 * PER_THREAD;
        if constexpr (PER_THREAD % 4 == 0) {
#pragma unroll
            for (int i = 0; i < PER_THREAD; i += 4) {
                const int4 v = *reinterpret_cast<const int4*>(s + i);
                slot[i] = v.x, slot[i + 1] = v.y, slot[i + 2] = v.z, slot[i + 3] = v.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < PER_THREAD; ++i) slot[i] = s[i];
        }
    }
};

}  // namespace fa2
