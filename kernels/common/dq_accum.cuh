// dQ accumulated in f32 (the dq_atomics mode: sm80/flash_bwd_kernel.cuh's KEYS_DQ pass by atomics,
// sm90/flash_bwd_sm90_onepass.cuh by bulk reductions): the pass adds each key block's partial dQ into
// bp.dq_accum, which is zeroed before it and converted to dQ after it. The atomics add into rows of
// (.., heads_q, head_dim) in f32; the bulk reductions into DqAccumTiles, where what one reduction adds is
// contiguous.
#pragma once
#include <cuda_runtime.h>

#include "common/flash_params.h"
#include "common/ptx.cuh"
#include "common/seq_view.cuh"

namespace fa2 {

// The one-pass Hopper kernel's dq_accum: per (sequence, query head, tile of ROWS queries) a block of ROWS x
// tile_cols f32 (tile_cols: the kernel's HEAD_DIM), as panels of PANEL_COLS columns, one per warpgroup, each
// added by one bulk reduction of 16 KB. In a panel, row r's 16-byte chunk c sits in slot c ^ (r % 8): the
// 8 rows of a warp's accumulator fragments then store to shared memory (where the panel is staged in the
// same order) without bank conflicts. Dense batches only (the kernel's TMA maps are).
struct DqAccumTiles {
    static constexpr int ROWS = 64, PANEL_COLS = 64, PANEL_FLOATS = ROWS * PANEL_COLS;

    __host__ __device__ static int q_tiles(const FlashFwdParams& p) { return (p.seqlen_q + ROWS - 1) / ROWS; }
    __host__ __device__ static int64_t elems(const FlashFwdParams& p, int tile_cols) {
        return int64_t(p.batch) * p.heads_q * q_tiles(p) * ROWS * tile_cols;
    }
    // The first float of panel `panel` of sequence b, query head h, query tile qt.
    __host__ __device__ static int64_t panel_offset(const FlashFwdParams& p, int tile_cols, int b, int h, int qt,
                                                    int panel) {
        return ((int64_t(b) * p.heads_q + h) * q_tiles(p) + qt) * ROWS * tile_cols + panel * PANEL_FLOATS;
    }
    // Where float (row, col) of a panel sits in it.
    __host__ __device__ static int in_panel(int row, int col) {
        return row * PANEL_COLS + (((col / 4) ^ (row % 8)) * 4) + col % 4;
    }
};

// dq = dq_accum * factor in T; a thread converts 4 columns of one dQ row, read from rows (tile_cols 0) or
// from their chunk of a DqAccumTiles panel of that width.
template <typename T>
__global__ void bwd_dq_convert_kernel(const FlashBwdParams bp, float factor, int tile_cols, int64_t n) {
    const FlashFwdParams& p = bp.fwd;
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
    if (i >= n) return;  // n is a multiple of 8 (head_dim is)
    const float* src = bp.dq_accum + i;
    if (tile_cols > 0) {
        const int col = int(i % p.head_dim);
        const int64_t row = i / p.head_dim;  // of (batch, seqlen_q, heads_q)
        const int h = int(row % p.heads_q);
        const int64_t position = row / p.heads_q;
        const int query = int(position % p.seqlen_q), b = int(position / p.seqlen_q);
        using Tiles = DqAccumTiles;
        src = bp.dq_accum + Tiles::panel_offset(p, tile_cols, b, h, query / Tiles::ROWS, col / Tiles::PANEL_COLS) +
              Tiles::in_panel(query % Tiles::ROWS, col % Tiles::PANEL_COLS);
    }
    const float4 x = *reinterpret_cast<const float4*>(src);
    uint2 out;
    out.x = pack2<T>(x.x * factor, x.y * factor);
    out.y = pack2<T>(x.z * factor, x.w * factor);
    *reinterpret_cast<uint2*>(reinterpret_cast<T*>(bp.dq) + i) = out;
}

// Runs `keys_dq_pass` (a callable launching the KEYS pass that adds into bp.dq_accum) between the zeroing
// and the conversion; tile_cols > 0: dq_accum is DqAccumTiles of that width, else rows. dQ gets the scale
// dz/ds unless the transformed dS has it already.
template <typename T, typename KeysDqPass>
cudaError_t run_with_dq_accum(const FlashBwdParams& bp, cudaStream_t stream, KeysDqPass keys_dq_pass,
                              int tile_cols = 0) {
    const FlashFwdParams& p = bp.fwd;
    const int64_t n = lse_rows(p) * p.head_dim;
    const int64_t accum = tile_cols > 0 ? DqAccumTiles::elems(p, tile_cols) : n;
    cudaError_t err = cudaMemsetAsync(bp.dq_accum, 0, accum * sizeof(float), stream);
    if (err == cudaSuccess) err = keys_dq_pass();
    if (err != cudaSuccess) return err;
    const float ds_factor = p.transform_logits ? 1.f : p.softmax_scale;
    constexpr int THREADS = 256;
    bwd_dq_convert_kernel<T>
        <<<unsigned((n / 4 + THREADS - 1) / THREADS), THREADS, 0, stream>>>(bp, ds_factor, tile_cols, n);
    return cudaGetLastError();
}

}  // namespace fa2
