// Standalone check of the sm_90a building blocks of kernels/sm90/flash_fwd_sm90.cuh on one warpgroup: the
// swizzled tile loader, the shared-memory descriptors and both wgmma forms (S = Q K^T from shared memory,
// O = P V with P in registers and V MN-major), against a host product. Built and run by scripts/gpu_run.sh
// (`wgmma` mode) on a Hopper GPU; prints the largest error of each product and exits 1 when one is wrong.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "sm90/flash_fwd_sm90.cuh"

using T = __nv_bfloat16;
constexpr int D = 128, N = 128;  // Q: 64 x D, K and V: N x D
using Tr = fa2::Sm90Traits<T, D, 1, N>;

__global__ void products(const T* q, const T* k, const T* v, float* s_out, float* o_out) {
    extern __shared__ __align__(1024) unsigned char buf[];
    const uint32_t base = (fa2::smem_addr(buf) + 1023) & ~1023u;
    const uint32_t sq = base, sk = base + 64 * D * 2, sv = sk + N * D * 2;
    const fa2::SwizzledTileLoader<Tr> loader(D);
    loader.load<64>(sq, q, D, 64);
    loader.load<N>(sk, k, D, N);
    loader.load<N>(sv, v, D, N);
    fa2::cp_async_commit();
    fa2::cp_async_wait<0>();
    fa2::fence_proxy_async_shared();
    __syncthreads();
    float s[N / 2] = {};
    fa2::wgmma_fence();
    for (int kk = 0; kk < D / 16; ++kk)
        fa2::Wgmma<T, N>::ss(s, fa2::swizzle128_desc(sq + (kk / 4) * 64 * 128 + (kk % 4) * 32, 16),
                             fa2::swizzle128_desc(sk + (kk / 4) * N * 128 + (kk % 4) * 32, 16), kk > 0);
    fa2::wgmma_commit();
    fa2::wgmma_wait<0>();
    fa2::fence_registers(s);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int nt = 0; nt < N / 8; ++nt)
        for (int e = 0; e < 4; ++e)
            s_out[(warp * 16 + lane / 4 + (e / 2) * 8) * N + nt * 8 + 2 * (lane % 4) + e % 2] = s[nt * 4 + e];
    // O = S' V with S' = S rounded to T (the kernel's P).
    uint32_t a[N / 16][4];
    for (int kk = 0; kk < N / 16; ++kk)
        for (int r = 0; r < 4; ++r) {
            const int nt = 2 * kk + r / 2;
            a[kk][r] = fa2::pack2<T>(s[nt * 4 + 2 * (r % 2)], s[nt * 4 + 2 * (r % 2) + 1]);
        }
    float o[D / 2] = {};
    fa2::wgmma_fence();
    for (int kk = 0; kk < N / 16; ++kk) fa2::Wgmma<T, D>::rs(o, a[kk], fa2::swizzle128_desc(sv + kk * 16 * 128, N * 128), 1);
    fa2::wgmma_commit();
    fa2::wgmma_wait<0>();
    fa2::fence_registers(o);
    for (int dt = 0; dt < D / 8; ++dt)
        for (int e = 0; e < 4; ++e)
            o_out[(warp * 16 + lane / 4 + (e / 2) * 8) * D + dt * 8 + 2 * (lane % 4) + e % 2] = o[dt * 4 + e];
}

int main() {
    std::vector<T> hq(64 * D), hk(N * D), hv(N * D);
    srand(1);
    auto rnd = [] { return T(float(rand() % 17 - 8) / 8.f); };  // exact in bf16
    for (auto& x : hq) x = rnd();
    for (auto& x : hk) x = rnd();
    for (auto& x : hv) x = rnd();
    T *q, *k, *v;
    float *s, *o;
    cudaMalloc(&q, hq.size() * 2), cudaMalloc(&k, hk.size() * 2), cudaMalloc(&v, hv.size() * 2);
    cudaMalloc(&s, 64 * N * 4), cudaMalloc(&o, 64 * D * 4);
    cudaMemcpy(q, hq.data(), hq.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(k, hk.data(), hk.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(v, hv.data(), hv.size() * 2, cudaMemcpyHostToDevice);
    const int smem = (64 + 2 * N) * D * 2 + 1024;
    cudaFuncSetAttribute(products, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    products<<<1, 128, smem>>>(q, k, v, s, o);
    cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) return printf("launch: %s\n", cudaGetErrorString(err)), 1;
    std::vector<float> hs(64 * N), ho(64 * D);
    cudaMemcpy(hs.data(), s, hs.size() * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(ho.data(), o, ho.size() * 4, cudaMemcpyDeviceToHost);
    double es = 0, eo = 0;
    for (int i = 0; i < 64; ++i)
        for (int j = 0; j < N; ++j) {
            double ref = 0;
            for (int d = 0; d < D; ++d) ref += double(float(hq[i * D + d])) * float(hk[j * D + d]);
            es = fmax(es, fabs(ref - hs[i * N + j]));
        }
    for (int i = 0; i < 64; ++i)
        for (int d = 0; d < D; ++d) {
            double ref = 0;
            for (int j = 0; j < N; ++j) ref += double(float(T(hs[i * N + j]))) * float(hv[j * D + d]);
            eo = fmax(eo, fabs(ref - ho[i * D + d]) / (1 + fabs(ref)));
        }
    printf("wgmma layout: S = Q K^T max abs error %.3g, O = P V max rel error %.3g\n", es, eo);
    return es < 1e-3 && eo < 1e-3 ? 0 : 1;
}
