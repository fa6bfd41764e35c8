// One instantiation per translation unit, so nvcc compiles them in parallel.
#include "bwd_configs.cuh"

template cudaError_t fa2::run_bwd<__nv_bfloat16, 96>(const FlashBwdParams&, cudaStream_t, bool);
