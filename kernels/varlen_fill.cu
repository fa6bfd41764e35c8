// Rows of a variable-length output that no sequence owns. The offsets are read on the device only, so the
// host cannot tell whether they cover q: rows before cu_seqlens_q[0], after the last sequence, or past
// max_seqlen_q inside a sequence are left by the attention kernels. This pass gives them what a row without
// keys gets (zeros, LSE -inf) instead of stale memory. One thread per row finds its sequence by binary
// search over the starts; with valid offsets it writes nothing, so its cost is a few reads of the offsets
// per row. (Decreasing offsets, which the binary search cannot order, may leave some rows unspecified; they
// are never read or written outside the tensors.)
#include <math.h>
#include <stdint.h>

#include "flash_api.h"
#include "common/seq_view.cuh"

namespace {

__global__ void fill_uncovered_rows_kernel(const FlashFwdParams p) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= p.total_q) return;
    // The last sequence b whose start is <= row.
    int lo = 0, hi = p.batch - 1, b = -1;
    while (lo <= hi) {
        const int mid = (lo + hi) / 2;
        if (fa2::cumulative_range(p.cu_seqlens_q, mid, p.total_q).x <= row) b = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    if (b >= 0) {
        const int2 r = fa2::cumulative_range(p.cu_seqlens_q, b, p.total_q);
        if (row < r.x + min(r.y - r.x, p.seqlen_q)) return;  // attended by sequence b's blocks
    }
    uint32_t* o = reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(p.o) + row * p.o_row_stride);
    for (int h = 0; h < p.heads_q; ++h) {
        for (int c = 0; c < p.head_dim / 2; ++c) o[h * p.o_head_stride / 2 + c] = 0u;
        p.lse[h * p.lse_head_stride + row] = -INFINITY;
    }
}

}  // namespace

namespace fa2 {

cudaError_t fill_uncovered_rows(const FlashFwdParams& p, cudaStream_t stream) {
    if (!p.cu_seqlens_q || p.total_q == 0) return cudaSuccess;
    constexpr int THREADS = 256;
    fill_uncovered_rows_kernel<<<(p.total_q + THREADS - 1) / THREADS, THREADS, 0, stream>>>(p);
    return cudaGetLastError();
}

}  // namespace fa2
