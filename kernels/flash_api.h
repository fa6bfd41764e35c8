// Host entry points of the kernels, one per (dtype, instantiated head_dim); defined in run_fwd.cuh,
// run_bwd.cuh and sm80/decode_configs.cuh, instantiated in generated/, and varlen_fill.cu.
#pragma once
#include <cuda_runtime.h>

#include "common/flash_params.h"

namespace fa2 {
// sm90a: run the Hopper (wgmma) kernels where the head_dim has one.
template <typename T, int HEAD_DIM>
cudaError_t run_fwd(const FlashFwdParams& p, cudaStream_t stream, bool sm90a);
template <typename T, int HEAD_DIM>
cudaError_t run_bwd(const FlashBwdParams& p, cudaStream_t stream, bool sm90a);
// The f32 elements of p.dq_accum that run_bwd reads and writes for these params (dq_atomics on mma.sync or
// the one-pass Hopper kernel), 0 where it uses none.
template <typename T, int HEAD_DIM>
int64_t bwd_dq_accum_elems(const FlashBwdParams& p, bool sm90a);
// The split-KV decode (generated/decode_hdim*.cu) and the split count its heuristic picks for these params.
template <typename T, int HEAD_DIM>
cudaError_t run_decode(const FlashDecodeParams& p, cudaStream_t stream);
template <typename T, int HEAD_DIM>
int decode_num_splits(const FlashFwdParams& p);
// The e4m3 forward on sm_90a (generated/fwd_fp8_hdim*.cu): head dims up to 128 and 256.
template <int HEAD_DIM>
cudaError_t run_fwd_fp8(const FlashFp8Params& p, cudaStream_t stream);
// Varlen calls: zeros and LSE -inf for the output rows no sequence owns (varlen_fill.cu), after the
// attention kernels.
cudaError_t fill_uncovered_rows(const FlashFwdParams& p, cudaStream_t stream);
}
