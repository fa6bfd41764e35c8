// The one struct that crosses the Rust/CUDA boundary. Mirrored field for field by `FlashFwdParams` in
// src/cuda/ffi.rs, whose test checks size and offsets; change both together.
#pragma once
#include <stdint.h>

struct FlashFwdParams {
    // Device pointers. q: (batch, seqlen_q, heads_q, head_dim); k, v: (batch, seqlen_k, heads_kv, head_dim);
    // o like q; lse: (batch, heads_q, seqlen_q) f32; alibi_slopes: (heads_q,) f32 or null.
    const void* q;
    const void* k;
    const void* v;
    void* o;
    float* lse;
    const float* alibi_slopes;

    // Strides in elements (the last dimension is contiguous). 64-bit: batch strides of long sequences
    // overflow 32 bits.
    int64_t q_batch_stride, q_row_stride, q_head_stride;
    int64_t k_batch_stride, k_row_stride, k_head_stride;
    int64_t v_batch_stride, v_row_stride, v_head_stride;
    int64_t o_batch_stride, o_row_stride, o_head_stride;

    int32_t batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim;
    // heads_q / heads_kv: query head h reads KV head h / group_size (GQA, MQA) in place.
    int32_t group_size;

    // Key j is visible to query i when -window_left <= j - (i + seqlen_k - seqlen_q) <= window_right.
    // Unbounded sides arrive as seqlen_q + seqlen_k + 1, so one formula serves every mask.
    int32_t window_left, window_right;

    float softmax_scale;
    // softmax_scale * log2(e), folded on the host: the softmax runs in base 2 (exp2 is one SFU op).
    float scale_log2;
    // softcap > 0 caps scores with softcap * tanh(s / softcap); 0 disables it.
    float softcap;
    // 1 when logits must be formed explicitly (softcap, ALiBi, or a scale <= 0), 0 for the plain path.
    int32_t transform_logits;
    // 1: bf16, 0: f16.
    int32_t is_bf16;

    // ---- Batches of sequences of different lengths, and paged K/V (kernels/common/seq_view.cuh) ---------------
    // cu_seqlens_q: (batch + 1,) rising row offsets: sequence b owns rows [cu[b], cu[b+1]) of q and o, which
    // are then (total_q, heads_q, head_dim); seqlen_q is the longest sequence. Null: seqlen_q rows each at
    // q_batch_stride. cu_seqlens_k: the same for k and v (total_k rows), or, with block_table, only lengths.
    const uint32_t* cu_seqlens_q;
    const uint32_t* cu_seqlens_k;
    // (batch,) keys of each sequence (its first seqused_k[b]), before cu_seqlens_k; null: none.
    const uint32_t* seqused_k;
    // Paged K/V: k, v are (num_pages, page_size, heads_kv, head_dim), their batch strides the page strides;
    // key j of sequence b is row j % page_size of page block_table[b * block_table_stride + j / page_size].
    // seqlen_k is then at most (block-table columns) x page_size. Null: dense K/V.
    const uint32_t* block_table;
    int64_t block_table_stride;
    // LSE (and the backward's D) rows per head: seqlen_q, or total_q with cu_seqlens_q (the LSE is then
    // (heads_q, total_q)).
    int64_t lse_head_stride;
    int32_t total_q, total_k;  // rows of q and of k/v with cu_seqlens_q / cu_seqlens_k (bounds, never exceeded)
    int32_t page_size, num_pages;
};

// The backward pass: the forward's params (q, k, v, its output o and its lse, read) plus dO, the gradients
// and a scratch row vector. Mirrored by `FlashBwdParams` in src/cuda/ffi.rs.
struct FlashBwdParams {
    FlashFwdParams fwd;
    // dO like q; dq like q; dk, dv like k. Strides in elements, last dimension contiguous.
    const void* d_o;
    void* dq;
    void* dk;
    void* dv;
    // (batch, heads_q, seqlen_q) f32, written by the first kernel: D_i = dO_i · O_i.
    float* delta;
    // (batch, seqlen_q, heads_q, head_dim) f32: dQ accumulated with atomics; null unless dq_atomics.
    float* dq_accum;
    int64_t do_batch_stride, do_row_stride, do_head_stride;
    int64_t dq_batch_stride, dq_row_stride, dq_head_stride;
    int64_t dk_batch_stride, dk_row_stride, dk_head_stride;
    int64_t dv_batch_stride, dv_row_stride, dv_head_stride;
    // 0: two passes, each writing only rows it owns (bitwise repeatable); 1: one pass, dQ by f32 atomics.
    int32_t dq_atomics;
};

// The split-KV decode (kernels/sm80/flash_decode_kernel.cuh): the forward's params plus the splits' scratch.
// Mirrored by `FlashDecodeParams` in src/cuda/ffi.rs.
struct FlashDecodeParams {
    FlashFwdParams fwd;
    // num_splits > 1: (num_splits, LSE rows, head_dim) and (num_splits, LSE rows) f32, each split's
    // normalised O and its LSE, merged by the combine kernel. Null at 1.
    float* o_partial;
    float* lse_partial;
    // Key ranges per block; from the heuristic of candle_fa2_decode_num_splits unless the caller forces one.
    int32_t num_splits;
    int32_t reserved;  // keeps the size a multiple of 8 on every ABI
};

// The e4m3 forward (kernels/sm90/fwd_fp8.cuh): q, k, v of fwd are e4m3 (strides in elements = bytes), o is
// bf16; softmax_scale and scale_log2 already hold q's and k's descale factors. Mirrored by `FlashFp8Params`
// in src/cuda/ffi.rs.
struct FlashFp8Params {
    FlashFwdParams fwd;
    // Scratch for V^T: (batch, heads_kv, head_dim, v_keys) bytes, v_keys = seqlen_k rounded up to 16.
    void* v_transposed;
    float v_descale;  // multiplies O
    int32_t v_keys;
    // Per-head descales, or null: (batch, heads_q) factors of the logits (q's times k's) and (batch,
    // heads_kv) factors of O (v's), contiguous f32, on top of the per-tensor ones above.
    const float* qk_descale_heads;
    const float* v_descale_heads;
};

// Writes new tokens' keys or values into a paged cache (kernels/cache_write.cu). Mirrored by
// `CacheWriteParams` in src/cuda/ffi.rs. Strides in bytes: the copy does not depend on the dtype.
struct CacheWriteParams {
    const void* src;       // (tokens, heads, head_dim)
    void* cache;           // (num_pages, page_size, heads, head_dim)
    const int64_t* slots;  // (tokens,): page * page_size + row; negative: skipped
    int64_t src_row_stride, src_head_stride;
    int64_t cache_page_stride, cache_row_stride, cache_head_stride;
    int32_t tokens, heads;
    int32_t row_bytes;     // head_dim x element size, a multiple of 2 (strides too)
    int32_t page_size, num_pages;
    int32_t reserved;      // keeps the size a multiple of 8 on every ABI
};
