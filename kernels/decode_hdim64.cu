// The split-KV decode at head_dim 64, both dtypes (kernels/decode_configs.cuh).
#include "decode_configs.cuh"

template cudaError_t fa2::run_decode<__nv_bfloat16, 64>(const FlashDecodeParams&, cudaStream_t);
template cudaError_t fa2::run_decode<__half, 64>(const FlashDecodeParams&, cudaStream_t);
template int fa2::decode_num_splits<__nv_bfloat16, 64>(const FlashFwdParams&);
template int fa2::decode_num_splits<__half, 64>(const FlashFwdParams&);
