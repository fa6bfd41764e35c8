// Conversions between e4m3 and f32 / f16 / bf16 on the device, for src/fp8.rs (quantize_fp8, dequantize_fp8
// and the widening of flash_attn_fp8 off sm_90a). candle 0.11's CUDA casts to and from F8E4M3 look their
// kernels up under names candle-kernels does not define ("cast_f32_f8e4m3" for "cast_f32_f8_e4m3") and fail
// with "named symbol not found" (so does candle's copy of a strided e4m3 tensor), so the crate brings its
// own. Elementwise: dst[i] = src[i] x scale, rounded to nearest; into e4m3 saturated to its finite range
// (+-448), NaN kept. src is read in any layout of 4 dimensions, dst written contiguous.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#include "flash_api.h"

namespace {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__nv_fp8_e4m3 x) { return float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float(float x) { return x; }
template <> __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __nv_fp8_e4m3 from_float(float x) {
    __nv_fp8_e4m3 y;
    y.__x = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
    return y;
}

// Sizes and strides (elements) of the source, outermost first.
struct Layout4 {
    int64_t size[4], stride[4];
};

// STRIDED: the source is read through l (four 64-bit divisions per element); else it is contiguous.
template <typename Src, typename Dst, bool STRIDED>
__global__ void convert_kernel(const Src* src, Layout4 l, Dst* dst, int64_t n, float scale) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t offset = i;
        if (STRIDED) {
            int64_t rest = i;
            offset = 0;
#pragma unroll
            for (int d = 3; d >= 0; --d) {
                offset += (rest % l.size[d]) * l.stride[d];
                rest /= l.size[d];
            }
        }
        dst[i] = from_float<Dst>(to_float(src[offset]) * scale);
    }
}

template <typename Src, typename Dst>
cudaError_t launch(const void* src, const Layout4& l, void* dst, int64_t n, float scale, cudaStream_t stream) {
    const int threads = 256;
    const int64_t blocks = (n + threads - 1) / threads;
    const unsigned grid = unsigned(blocks < 65536 ? blocks : 65536);
    const bool contiguous = l.size[0] == 1 && l.size[1] == 1 && l.size[2] == 1 && l.stride[3] == 1;
    if (contiguous)
        convert_kernel<Src, Dst, false><<<grid, threads, 0, stream>>>(static_cast<const Src*>(src), l,
                                                                     static_cast<Dst*>(dst), n, scale);
    else
        convert_kernel<Src, Dst, true><<<grid, threads, 0, stream>>>(static_cast<const Src*>(src), l,
                                                                    static_cast<Dst*>(dst), n, scale);
    return cudaGetLastError();
}

// The element types, as src/cuda/fp8.rs numbers them.
enum ElemType { F32 = 0, F16 = 1, BF16 = 2, E4M3 = 3 };

template <typename Wide>
cudaError_t to_or_from_e4m3(bool to_e4m3, const void* src, const Layout4& l, void* dst, int64_t n, float scale,
                            cudaStream_t s) {
    return to_e4m3 ? launch<Wide, __nv_fp8_e4m3>(src, l, dst, n, scale, s)
                   : launch<__nv_fp8_e4m3, Wide>(src, l, dst, n, scale, s);
}

}  // namespace

// One of the two types must be e4m3, the other f32, f16 or bf16; sizes and strides: 4 of each, n their
// sizes' product.
extern "C" int candle_fa2_fp8_convert(const void* src, int src_type, const int64_t* sizes, const int64_t* strides,
                                      void* dst, int dst_type, int64_t n, float scale, void* stream) {
    if (n == 0) return cudaSuccess;
    if ((src_type == E4M3) == (dst_type == E4M3)) return cudaErrorInvalidValue;
    Layout4 l;
    int64_t count = 1;
    for (int d = 0; d < 4; ++d) {
        l.size[d] = sizes[d], l.stride[d] = strides[d];
        if (sizes[d] < 1) return cudaErrorInvalidValue;
        count *= sizes[d];
    }
    if (count != n) return cudaErrorInvalidValue;
    const bool to_e4m3 = dst_type == E4M3;
    const int wide = to_e4m3 ? src_type : dst_type;
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    switch (wide) {
        case F32: return to_or_from_e4m3<float>(to_e4m3, src, l, dst, n, scale, s);
        case F16: return to_or_from_e4m3<__half>(to_e4m3, src, l, dst, n, scale, s);
        case BF16: return to_or_from_e4m3<__nv_bfloat16>(to_e4m3, src, l, dst, n, scale, s);
        default: return cudaErrorInvalidValue;
    }
}
