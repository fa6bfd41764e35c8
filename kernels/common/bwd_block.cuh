// What one backward thread block works on, shared by the mma.sync (flash_bwd_kernel.cuh) and wgmma
// (flash_bwd_sm90.cuh) backwards. "Rows" are what the block owns (keys in a KEYS pass, queries in a
// QUERIES pass), "columns" what streams past them, one (query head, column block) step at a time: a KEYS
// block of a GQA/MQA KV head visits the column blocks of every query head that reads it. `bp` is the block's
// sequence view (bwd_sequence_view below): pointers at its sequence, seqlen_q and seqlen_k its own.
#pragma once
#include <math.h>

#include "common/flash_params.h"
#include "common/mask.cuh"
#include "common/ptx.cuh"
#include "common/seq_view.cuh"

namespace fa2 {

// KEYS: dK and dV, grid over key blocks; KEYS_DQ: also dQ by f32 atomics (mma.sync only); QUERIES: dQ, grid
// over query blocks.
enum class BwdPass { KEYS, KEYS_DQ, QUERIES };

template <typename T, bool KEYS, int BLOCK_R, int BLOCK_C>
struct BwdBlock {
    int head_lo, heads;    // the query heads the block serves: one (QUERIES) or a KV head's group (KEYS)
    int kv_head;
    int n_rows, n_cols;    // seqlen_k, seqlen_q (KEYS) or seqlen_q, seqlen_k
    int r0, rows_valid;    // first owned row, owned rows inside n_rows
    int offset;            // seqlen_k - seqlen_q: bottom-right alignment of the diagonal
    int cb_lo, c_blocks;   // column blocks [cb_lo, cb_lo + c_blocks) hold every column a row can meet
    int steps;             // c_blocks x heads
    const T* k;            // key 0 of kv_head
    const T* v;

    __device__ __forceinline__ BwdBlock(const FlashBwdParams& bp, int r_block, int head_or_kv_head) {
        const FlashFwdParams& p = bp.fwd;
        head_lo = KEYS ? head_or_kv_head * p.group_size : head_or_kv_head;
        heads = KEYS ? p.group_size : 1;
        kv_head = KEYS ? head_or_kv_head : head_or_kv_head / p.group_size;
        n_rows = KEYS ? p.seqlen_k : p.seqlen_q;
        n_cols = KEYS ? p.seqlen_q : p.seqlen_k;
        r0 = r_block * BLOCK_R;
        rows_valid = min(BLOCK_R, n_rows - r0);
        const Band band(p);
        offset = band.offset;
        const int r_last = r0 + rows_valid - 1;
        const int c_lo = KEYS ? band.query_lo(r0) : band.key_lo(r0);
        const int c_hi = KEYS ? band.query_hi(r_last, n_cols) : band.key_hi(r_last);
        cb_lo = c_lo / BLOCK_C;
        c_blocks = c_hi > c_lo ? (c_hi + BLOCK_C - 1) / BLOCK_C - cb_lo : 0;
        steps = c_blocks * heads;
        k = reinterpret_cast<const T*>(p.k) + kv_head * p.k_head_stride;
        v = reinterpret_cast<const T*>(p.v) + kv_head * p.v_head_stride;
    }

    // A variable-length batch's grid covers its longest sequence: blocks past this one's end do nothing.
    __device__ __forceinline__ bool past_end() const { return rows_valid <= 0; }

    // Step s covers query head head_of(s) and the column block starting at c0_of(s).
    __device__ __forceinline__ int head_of(int s) const { return head_lo + s / c_blocks; }
    __device__ __forceinline__ int c0_of(int s) const { return (cb_lo + s % c_blocks) * BLOCK_C; }

    __device__ __forceinline__ const T* q_of(const FlashBwdParams& bp, int h) const {
        return reinterpret_cast<const T*>(bp.fwd.q) + h * bp.fwd.q_head_stride;
    }
    __device__ __forceinline__ const T* do_of(const FlashBwdParams& bp, int h) const {
        return reinterpret_cast<const T*>(bp.d_o) + h * bp.do_head_stride;
    }
    __device__ __forceinline__ const float* lse_of(const FlashBwdParams& bp, int h) const {
        return bp.fwd.lse + h * bp.fwd.lse_head_stride;
    }
    __device__ __forceinline__ const float* delta_of(const FlashBwdParams& bp, int h) const {
        return bp.delta + h * bp.fwd.lse_head_stride;
    }

    // Whether the tile of the owned rows against the column block at c0 needs a mask: unless every (query,
    // key) pair in it is visible (corners decide) and it ends inside seqlen_k, a zero-filled key past it
    // would get a nonzero P (and dS).
    __device__ __forceinline__ bool needs_mask(const FlashFwdParams& p, int c0) const {
        const int r_end = r0 + BLOCK_R - 1, c_end = c0 + BLOCK_C - 1;
        const int key_first = KEYS ? r0 : c0, key_last = KEYS ? r_end : c_end;
        const int query_first = KEYS ? c0 : r0, query_last = KEYS ? c_end : r_end;
        return !Band(p, offset).all_visible(query_first, query_last, key_first, key_last);
    }

    // Whether the score of owned row `row` and column `col` is visible.
    __device__ __forceinline__ bool visible(const FlashFwdParams& p, int row, int col) const {
        return Band(p, offset).visible(KEYS ? col : row, KEYS ? row : col);
    }
};

// Sequence b's backward params: the forward's view (seq_view.cuh) and dO, dQ, dK, dV, D and the dQ
// accumulator at the sequence's first row. Paged K/V has no backward (the host refuses it).
template <typename T>
__device__ __forceinline__ FlashBwdParams bwd_sequence_view(const FlashBwdParams& bp, int b) {
    FlashBwdParams s = bp;
    const FlashFwdParams& p = bp.fwd;
    s.fwd = sequence_view<T>(p, b);
    const int64_t dq_accum_row = int64_t(p.heads_q) * p.head_dim;
    if (p.cu_seqlens_q) {
        const int q0 = cumulative_range(p.cu_seqlens_q, b, p.total_q).x;
        s.d_o = advance<T>(bp.d_o, q0 * bp.do_row_stride);
        s.dq = advance<T>(bp.dq, q0 * bp.dq_row_stride);
        s.delta = bp.delta + q0;
        if (bp.dq_accum) s.dq_accum = bp.dq_accum + q0 * dq_accum_row;
    } else {
        s.d_o = advance<T>(bp.d_o, b * bp.do_batch_stride);
        s.dq = advance<T>(bp.dq, b * bp.dq_batch_stride);
        s.delta = bp.delta + int64_t(b) * p.heads_q * p.lse_head_stride;
        if (bp.dq_accum) s.dq_accum = bp.dq_accum + int64_t(b) * p.seqlen_q * dq_accum_row;
    }
    if (p.cu_seqlens_k) {
        const int k0 = cumulative_range(p.cu_seqlens_k, b, p.total_k).x;
        s.dk = advance<T>(bp.dk, k0 * bp.dk_row_stride);
        s.dv = advance<T>(bp.dv, k0 * bp.dv_row_stride);
    } else {
        s.dk = advance<T>(bp.dk, b * bp.dk_batch_stride);
        s.dv = advance<T>(bp.dv, b * bp.dv_batch_stride);
    }
    return s;
}

// The forward's LSE of one query in base 2; a row that saw no key (LSE -inf) gets +inf, so its P is
// exp2(x - inf) = 0 rather than NaN.
__device__ __forceinline__ float lse_base2(float lse) { return lse == -INFINITY ? INFINITY : lse * LOG2E; }

}  // namespace fa2
