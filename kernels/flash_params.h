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

// The split-KV decode (kernels/flash_decode_kernel.cuh): the forward's params plus per-sequence key counts and
// the splits' scratch. Mirrored by `FlashDecodeParams` in src/cuda/ffi.rs.
struct FlashDecodeParams {
    FlashFwdParams fwd;
    // (batch,) u32: keys of each sequence (its first seqlens_k[b] rows of K/V; values above fwd.seqlen_k,
    // the cache's capacity, are clamped to it); null: every sequence has fwd.seqlen_k keys.
    const uint32_t* seqlens_k;
    // num_splits > 1: (num_splits, batch, heads_q, seqlen_q, head_dim) and (num_splits, batch, heads_q,
    // seqlen_q) f32, each split's normalised O and its LSE, merged by the combine kernel. Null at 1.
    float* o_partial;
    float* lse_partial;
    // Key ranges per block; from the heuristic of candle_fa2_decode_num_splits unless the caller forces one.
    int32_t num_splits;
    int32_t reserved;  // keeps the size a multiple of 8 on every ABI
};
