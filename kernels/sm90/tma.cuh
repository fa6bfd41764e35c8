// Hopper's asynchronous copy machinery (sm_90a), the building blocks of a warp-specialised pipeline: the
// tensor memory accelerator (TMA), which copies a whole tile between global and shared memory from one
// thread's request, the mbarriers that count its bytes in, and the register reallocation (setmaxnreg) that
// lets a producer warpgroup give its registers to the consumers.
//
// Host side: tensor maps of the (batch, rows, heads, head_dim) tensors the kernels read, one box being 128
// bytes of each row (one 128-byte swizzle panel, sm90_common.cuh) of box_rows rows of one head, written into shared
// memory in the same 128-byte swizzle the wgmma descriptors read. Rows and columns outside the tensor arrive
// as zeros, so partial tiles need no predicate.
#pragma once
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace fa2 {

// ---- Device: mbarriers, TMA loads, register reallocation. -------------------------------------------------
// Empty outside sm_90a code, as the wgmma wrappers (their kernels trap there).

__device__ __forceinline__ void mbarrier_init(uint32_t bar, int arrivals) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
#endif
}

// Makes the initialised mbarriers visible to the async proxy (TMA) before any thread uses them; a
// __syncthreads() after it publishes them to the block.
__device__ __forceinline__ void fence_mbarrier_init() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// One arrival that also announces `bytes` more to come from TMA copies that complete on this barrier: the
// phase ends when every arrival and every byte is in.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
#endif
}

__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#endif
}

// Waits until the phase of parity `parity` (0 for the first, then alternating) has completed.
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile(
        "{\n.reg .pred ready;\nmbarrier_wait_again:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 ready, [%0], %1;\n"
        "@!ready bra mbarrier_wait_again;\n}\n" ::"r"(bar),
        "r"(parity)
        : "memory");
#endif
}

// Box (c0, c1, c2, c3) of a 4-d tensor map (elements; c0 the contiguous dimension) into shared memory at
// `dst` (1024-byte aligned for the 128-byte swizzle), completing `bytes` of barrier `bar`'s transaction count.
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1, int c2,
                                            int c3) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
        "[%6];\n" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
        : "memory");
#endif
}

// The registers each thread of the calling warpgroup holds from here on (a multiple of 8, 24-256); every
// warp of the warpgroup must call it. `inc` waits until the registers others gave back are free.
template <int REGS>
__device__ __forceinline__ void setmaxnreg_dec() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
#endif
}
template <int REGS>
__device__ __forceinline__ void setmaxnreg_inc() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
#endif
}

// ---- Host: tensor maps. -----------------------------------------------------------------------------------

// cuTensorMapEncodeTiled from the driver, found through the runtime (no link against libcuda): null when
// the driver lacks it.
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
inline EncodeTiledFn encode_tiled_fn() {
    static const EncodeTiledFn fn = [] {
        void* f = nullptr;
        cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
        const cudaError_t err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                                 cudaEnableDefault, &found);
#else
        const cudaError_t err = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault, &found);
#endif
        return err == cudaSuccess && found == cudaDriverEntryPointSuccess ? reinterpret_cast<EncodeTiledFn>(f)
                                                                          : nullptr;
    }();
    return fn;
}

// Tensor map of a (batch, rows, heads, cols) tensor of ELEM_BYTES-byte elements at `base` (strides in
// elements, cols contiguous), boxes of one 128-byte swizzle panel (64 16-bit or 128 8-bit columns) x
// box_rows rows. False where TMA cannot address it (a base not 16-byte aligned, a stride not a multiple of
// 16 bytes, a driver without TMA): the caller then takes a kernel that copies with cp.async.
template <int ELEM_BYTES = 2>
inline bool encode_rows_map(CUtensorMap* map, const void* base, int batch, int rows, int heads, int cols,
                            int64_t batch_stride, int64_t row_stride, int64_t head_stride, int box_rows) {
    static_assert(ELEM_BYTES == 1 || ELEM_BYTES == 2, "8- and 16-bit tensors");
    const EncodeTiledFn encode = encode_tiled_fn();
    if (!encode || reinterpret_cast<uintptr_t>(base) % 16 != 0) return false;
    // A dimension of size 1 is never stepped over: its stride may be anything in the caller's layout, and
    // any multiple of 16 bytes stands in for it.
    const int64_t strides[3] = {row_stride, head_stride, batch_stride};
    const int sizes[3] = {rows, heads, batch};
    cuuint64_t dims[4] = {cuuint64_t(cols), cuuint64_t(rows), cuuint64_t(heads), cuuint64_t(batch)};
    cuuint64_t stride_bytes[3];
    for (int i = 0; i < 3; ++i) {
        const int64_t bytes = sizes[i] == 1 ? 16 : strides[i] * ELEM_BYTES;
        if (bytes <= 0 || bytes % 16 != 0) return false;
        stride_bytes[i] = cuuint64_t(bytes);
    }
    const cuuint32_t box[4] = {128 / ELEM_BYTES, cuuint32_t(box_rows), 1, 1};
    const cuuint32_t element_strides[4] = {1, 1, 1, 1};
    const CUtensorMapDataType type = ELEM_BYTES == 1 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_UINT16;
    return encode(map, type, 4, const_cast<void*>(base), dims, stride_bytes, box, element_strides,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace fa2
