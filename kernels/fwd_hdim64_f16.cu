// One instantiation per translation unit, so nvcc compiles them in parallel.
#include "fwd_configs.cuh"

template cudaError_t fa2::run_fwd<__half, 64>(const FlashFwdParams&, cudaStream_t, bool);
