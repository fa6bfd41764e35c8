// What one forward thread block works on, shared by the mma.sync (flash_fwd_kernel.cuh) and wgmma
// (flash_fwd_sm90.cuh) forwards: its query rows, the key blocks any of them can see, the mask test, where
// its inputs and outputs live, and the output of rows that see no key (the band of visible keys:
// common/mask.cuh). `p` is the block's sequence view (seq_view.cuh): its seqlen_q and seqlen_k are the
// sequence's own.
#pragma once
#include <math.h>

#include "common/flash_params.h"
#include "common/mask.cuh"
#include "common/seq_view.cuh"

namespace fa2 {

template <typename T, int BLOCK_M, int BLOCK_N>
struct FwdBlock {
    int m0;          // first query row
    int rows_valid;  // rows of the block inside seqlen_q (<= 0: the block is past its sequence's end)
    int offset;      // seqlen_k - seqlen_q: bottom-right alignment of the diagonal
    int n_block_min, n_block_max;  // key blocks [min, max) hold every key a row of the block can see
    const T* q;      // row m0 of this head's queries
    KvRows<T> k, v;  // the keys and values of the KV head this head reads (GQA/MQA)
    T* o;            // row 0 of this head's output
    float* lse;      // row 0 of this head's log-sum-exp

    __device__ __forceinline__ FwdBlock(const FlashFwdParams& p, int m_block, int head)
        : k(key_rows<T>(p, head / p.group_size)), v(value_rows<T>(p, head / p.group_size)) {
        const Band band(p);
        m0 = m_block * BLOCK_M;
        rows_valid = min(BLOCK_M, p.seqlen_q - m0);
        offset = band.offset;
        const int key_lo = band.key_lo(m0);
        const int key_hi = band.key_hi(m0 + rows_valid - 1);
        n_block_min = key_lo / BLOCK_N;
        n_block_max = key_hi > key_lo ? (key_hi + BLOCK_N - 1) / BLOCK_N : n_block_min;
        q = reinterpret_cast<const T*>(p.q) + head * p.q_head_stride + int64_t(m0) * p.q_row_stride;
        o = reinterpret_cast<T*>(p.o) + head * p.o_head_stride;
        lse = p.lse + head * p.lse_head_stride;
    }

    // A variable-length batch's grid covers its longest sequence: blocks past this one's end do nothing.
    __device__ __forceinline__ bool past_end() const { return rows_valid <= 0; }

    // No row of the block sees a key (windows, or causal with seqlen_q > seqlen_k).
    __device__ __forceinline__ bool empty() const { return n_block_max == n_block_min; }

    // Whether the key block starting at n0 holds a (row, key) pair that is not visible.
    __device__ __forceinline__ bool needs_mask(const FlashFwdParams& p, int n0) const {
        return !Band(p, offset).all_visible(m0, m0 + rows_valid - 1, n0, n0 + BLOCK_N - 1);
    }

    __device__ __forceinline__ bool visible(const FlashFwdParams& p, int row, int col) const {
        return Band(p, offset).visible(row, col);
    }

    // A row without keys: zeros and LSE -inf. Called by the 4 lanes of the quad that owns the row (the
    // accumulator layout of mma.sync and wgmma alike), each writing every fourth column pair.
    __device__ __forceinline__ void write_empty_row(const FlashFwdParams& p, int row, int lane) const {
        if (row >= p.seqlen_q) return;
        for (int col = 2 * (lane % 4); col < p.head_dim; col += 8)
            *reinterpret_cast<uint32_t*>(o + row * p.o_row_stride + col) = 0u;
        if (lane % 4 == 0) lse[row] = -INFINITY;
    }
};

}  // namespace fa2
