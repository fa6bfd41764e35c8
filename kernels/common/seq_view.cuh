// One sequence of a batch, as the kernels see it: every kernel starts from sequence_view(params, b), a copy
// of the params whose pointers already point at sequence b (dense batch, variable-length rows or pages) and
// whose seqlen_q / seqlen_k are that sequence's own. The kernel bodies then read one sequence's rows at
// row 0 and never look at the batch again: dense, varlen and paged calls share every line of them.
//
// Device-side lengths cannot be checked without a host read-back, so they are clamped here instead: a
// sequence never reaches outside q, o, k and v (total_q, total_k, the block table's columns), and a page
// number outside the cache reads as zeros (KvRows::row), never from outside.
#pragma once
#include <stdint.h>

#include "common/flash_params.h"

namespace fa2 {

// Where the rows of one K or V head live: dense (key j at base + j * row_stride) or paged. Pages are
// contiguous in the cache (page p's rows follow page p - 1's; the host checks page_stride == page_size x
// row_stride), so a key's place is one number, its slot page * page_size + row in page, at base + slot x
// row_stride.
template <typename T>
struct KvRows {
    const T* base;          // dense: key 0 of this sequence and head; paged: this head in slot 0
    int64_t row_stride;
    const uint32_t* pages;  // this sequence's block-table row; null: dense
    int page_size, num_pages;
    int page_shift;         // log2(page_size) when it is a power of two (shifts, not divisions), else -1

    __device__ __forceinline__ int page_index(int j) const { return page_shift >= 0 ? j >> page_shift : j / page_size; }
    __device__ __forceinline__ int in_page(int j) const {
        return page_shift >= 0 ? j & (page_size - 1) : j % page_size;
    }

    // The slot of key j (0 <= j < the sequence's seqlen_k) of a paged head whose page (its block-table
    // entry, read earlier) is `page`; -1 when that page is outside the cache (the copy then zero-fills the
    // row rather than read it).
    __device__ __forceinline__ int slot(int j, uint32_t page) const {
        return page < uint32_t(num_pages) ? int(page) * page_size + in_page(j) : -1;
    }

    // Key j, or null when its page is outside the cache.
    __device__ __forceinline__ const T* row(int j) const {
        if (!pages) return base + int64_t(j) * row_stride;
        const int s = slot(j, pages[page_index(j)]);
        return s < 0 ? nullptr : base + int64_t(s) * row_stride;
    }
};

template <typename T>
__device__ __forceinline__ const void* advance(const void* p, int64_t elements) {
    return reinterpret_cast<const T*>(p) + elements;
}
template <typename T>
__device__ __forceinline__ void* advance(void* p, int64_t elements) {
    return reinterpret_cast<T*>(p) + elements;
}

// Rows [lo, hi) of sequence b in a cumulative-offsets vector, clamped to [0, total).
__device__ __forceinline__ int2 cumulative_range(const uint32_t* cu, int b, int total) {
    const int lo = int(min(cu[b], uint32_t(total)));
    const int hi = int(min(max(cu[b + 1], uint32_t(lo)), uint32_t(total)));
    return make_int2(lo, hi);
}

// Sequence b's params: q, o and lse at its first row, k and v at its first key (or its block-table row),
// seqlen_q and seqlen_k its own (at most the call's).
template <typename T>
__device__ __forceinline__ FlashFwdParams sequence_view(const FlashFwdParams& p, int b) {
    FlashFwdParams s = p;
    if (p.cu_seqlens_q) {
        const int2 r = cumulative_range(p.cu_seqlens_q, b, p.total_q);
        s.seqlen_q = min(r.y - r.x, p.seqlen_q);
        s.q = advance<T>(p.q, r.x * p.q_row_stride);
        s.o = advance<T>(p.o, r.x * p.o_row_stride);
        s.lse = p.lse + r.x;
    } else {
        s.q = advance<T>(p.q, b * p.q_batch_stride);
        s.o = advance<T>(p.o, b * p.o_batch_stride);
        s.lse = p.lse + int64_t(b) * p.heads_q * p.lse_head_stride;
    }
    int keys = p.seqlen_k;
    if (p.block_table) {
        s.block_table = p.block_table + b * p.block_table_stride;
        if (p.cu_seqlens_k) {
            const int2 r = cumulative_range(p.cu_seqlens_k, b, INT32_MAX);
            keys = r.y - r.x;
        }
    } else if (p.cu_seqlens_k) {
        const int2 r = cumulative_range(p.cu_seqlens_k, b, p.total_k);
        keys = r.y - r.x;
        s.k = advance<T>(p.k, r.x * p.k_row_stride);
        s.v = advance<T>(p.v, r.x * p.v_row_stride);
    } else {
        s.k = advance<T>(p.k, b * p.k_batch_stride);
        s.v = advance<T>(p.v, b * p.v_batch_stride);
    }
    if (p.seqused_k) keys = int(min(p.seqused_k[b], uint32_t(INT32_MAX)));
    s.seqlen_k = min(keys, p.seqlen_k);
    return s;
}

// The rows of K and of V of KV head kv_head in sequence view s.
__device__ __forceinline__ int log2_if_power_of_two(int x) { return x > 0 && (x & (x - 1)) == 0 ? __ffs(x) - 1 : -1; }
template <typename T>
__device__ __forceinline__ KvRows<T> key_rows(const FlashFwdParams& s, int kv_head) {
    return {reinterpret_cast<const T*>(s.k) + kv_head * s.k_head_stride, s.k_row_stride, s.block_table, s.page_size,
            s.num_pages, log2_if_power_of_two(s.page_size)};
}
template <typename T>
__device__ __forceinline__ KvRows<T> value_rows(const FlashFwdParams& s, int kv_head) {
    return {reinterpret_cast<const T*>(s.v) + kv_head * s.v_head_stride, s.v_row_stride, s.block_table, s.page_size,
            s.num_pages, log2_if_power_of_two(s.page_size)};
}

// A dense batch: no varlen offsets, per-sequence key counts or block table (what TMA maps can describe).
__device__ __host__ __forceinline__ bool dense_batch(const FlashFwdParams& p) {
    return !p.cu_seqlens_q && !p.cu_seqlens_k && !p.seqused_k && !p.block_table;
}

// Rows of the LSE (batch x heads_q x seqlen_q, or heads_q x total_q).
__device__ __host__ __forceinline__ int64_t lse_rows(const FlashFwdParams& p) {
    return p.cu_seqlens_q ? int64_t(p.heads_q) * p.total_q : int64_t(p.batch) * p.heads_q * p.seqlen_q;
}

}  // namespace fa2
