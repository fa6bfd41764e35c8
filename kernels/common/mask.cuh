// Which keys a query row sees, one definition for every kernel: the device side of `Band` in
// src/validate.rs. Key j is visible to query row i when j < seqlen_k and
//     -window_left <= j - i - offset <= window_right,    offset = seqlen_k - seqlen_q,
// the diagonal aligned bottom-right (causal: window_right = 0). A side the user left open is a window wider
// than any sequence (flash_params.h). `p` is a sequence's view (seq_view.cuh): its own seqlen_q, seqlen_k.
#pragma once

#include "common/flash_params.h"

namespace fa2 {

struct Band {
    int seqlen_k, offset, left, right;

    __host__ __device__ __forceinline__ explicit Band(const FlashFwdParams& p) : Band(p, p.seqlen_k - p.seqlen_q) {}
    // With the offset a block computed already (one register fewer to recompute it from).
    __host__ __device__ __forceinline__ Band(const FlashFwdParams& p, int offset)
        : seqlen_k(p.seqlen_k), offset(offset), left(p.window_left), right(p.window_right) {}

    __device__ __forceinline__ bool visible(int query, int key) const {
        const int dist = key - query - offset;
        return key < seqlen_k && dist >= -left && dist <= right;
    }

    // Keys [key_lo(first), key_hi(last)) hold every key that query rows [first, last] see (empty when
    // key_hi <= key_lo). On the host too: the forward's launcher weighs its tiles by them.
    __host__ __device__ __forceinline__ int key_lo(int first_query) const {
        return max(0, first_query + offset - left);
    }
    __host__ __device__ __forceinline__ int key_hi(int last_query) const {
        return min(seqlen_k, last_query + offset + right + 1);
    }
    // Query rows [query_lo(first), query_hi(last, seqlen_q)) hold every row that sees one of keys [first, last].
    __device__ __forceinline__ int query_lo(int first_key) const { return max(0, first_key - offset - right); }
    __device__ __forceinline__ int query_hi(int last_key, int seqlen_q) const {
        return min(seqlen_q, last_key - offset + left + 1);
    }

    // Whether every pair of the tile of query rows [q_first, q_last] and keys [k_first, k_last] is visible:
    // its corners decide. Tiles that are not take the mask; the others skip its index arithmetic.
    __device__ __forceinline__ bool all_visible(int q_first, int q_last, int k_first, int k_last) const {
        return k_last < seqlen_k && k_first - q_last - offset >= -left && k_last - q_first - offset <= right;
    }
};

}  // namespace fa2
