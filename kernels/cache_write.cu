// Writes new tokens' keys or values into their pages of a paged K/V cache (vLLM's reshape_and_cache): token
// t's rows go to slot slots[t], row slot % page_size of page slot / page_size. A negative slot is skipped
// (padding tokens); so is a slot past the cache, which the host cannot see without a read-back. One block
// per token, each thread words of its heads' rows: the copy is bandwidth-bound and dtype-free. Words of 4
// bytes where every row, stride and pointer allows, else of 2 (f16/bf16 rows of an odd head_dim).
#include <stdint.h>

#include "flash_api.h"

template <typename Word>
__global__ void cache_write_kernel(const CacheWriteParams p) {
    const int t = blockIdx.x;
    const int64_t slot = p.slots[t];
    if (slot < 0 || slot >= int64_t(p.num_pages) * p.page_size) return;
    const int64_t page = slot / p.page_size, row = slot % p.page_size;
    const char* src = static_cast<const char*>(p.src) + t * p.src_row_stride;
    char* dst = static_cast<char*>(p.cache) + page * p.cache_page_stride + row * p.cache_row_stride;
    constexpr int BYTES = int(sizeof(Word));
    const int words = p.row_bytes / BYTES;
    for (int w = threadIdx.x; w < p.heads * words; w += blockDim.x) {
        const int h = w / words, c = (w % words) * BYTES;
        *reinterpret_cast<Word*>(dst + h * p.cache_head_stride + c) =
            *reinterpret_cast<const Word*>(src + h * p.src_head_stride + c);
    }
}

// Whether every byte offset the copy forms is a multiple of `bytes`.
static bool aligned_to(const CacheWriteParams& p, int64_t bytes) {
    const int64_t all = int64_t(reinterpret_cast<uintptr_t>(p.src)) | int64_t(reinterpret_cast<uintptr_t>(p.cache)) |
                        p.src_row_stride | p.src_head_stride | p.cache_page_stride | p.cache_row_stride |
                        p.cache_head_stride | p.row_bytes;
    return all % bytes == 0;
}

extern "C" int candle_fa2_write_cache(const CacheWriteParams* params, void* stream) {
    const CacheWriteParams& p = *params;
    if (p.tokens == 0) return cudaSuccess;
    if (!aligned_to(p, 2) || p.page_size < 1) return cudaErrorInvalidValue;
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (aligned_to(p, 4)) {
        const int threads = p.heads * (p.row_bytes / 4) >= 256 ? 256 : 128;
        cache_write_kernel<uint32_t><<<p.tokens, threads, 0, s>>>(p);
    } else {
        const int threads = p.heads * (p.row_bytes / 2) >= 256 ? 256 : 128;
        cache_write_kernel<uint16_t><<<p.tokens, threads, 0, s>>>(p);
    }
    return cudaGetLastError();
}
