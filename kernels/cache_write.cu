// Writes new tokens' keys or values into their pages of a paged K/V cache (vLLM's reshape_and_cache): token
// t's rows go to slot slots[t], row slot % page_size of page slot / page_size. A negative slot is skipped
// (padding tokens); so is a slot past the cache, which the host cannot see without a read-back. One block
// per token, each thread 4-byte words of its heads' rows: the copy is bandwidth-bound and dtype-free.
#include <stdint.h>

#include "flash_api.h"

__global__ void cache_write_kernel(const CacheWriteParams p) {
    const int t = blockIdx.x;
    const int64_t slot = p.slots[t];
    if (slot < 0 || slot >= int64_t(p.num_pages) * p.page_size) return;
    const int64_t page = slot / p.page_size, row = slot % p.page_size;
    const char* src = static_cast<const char*>(p.src) + t * p.src_row_stride;
    char* dst = static_cast<char*>(p.cache) + page * p.cache_page_stride + row * p.cache_row_stride;
    const int words = p.row_bytes / 4;
    for (int w = threadIdx.x; w < p.heads * words; w += blockDim.x) {
        const int h = w / words, c = (w % words) * 4;
        *reinterpret_cast<uint32_t*>(dst + h * p.cache_head_stride + c) =
            *reinterpret_cast<const uint32_t*>(src + h * p.src_head_stride + c);
    }
}

extern "C" int candle_fa2_write_cache(const CacheWriteParams* params, void* stream) {
    const CacheWriteParams& p = *params;
    if (p.tokens == 0) return cudaSuccess;
    if (p.row_bytes % 4 != 0 || p.page_size < 1) return cudaErrorInvalidValue;
    const int threads = p.heads * (p.row_bytes / 4) >= 256 ? 256 : 128;
    cache_write_kernel<<<p.tokens, threads, 0, static_cast<cudaStream_t>(stream)>>>(p);
    return cudaGetLastError();
}
