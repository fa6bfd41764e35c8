// What the kernels' launchers ask of the device before choosing kernels and tiles: whether it runs the sm_90a
// code, the shared memory a block may have.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>

namespace fa2 {

// A run-time switch (DEVELOP.md, "Run-time switches"): the value of environment variable `name` as an
// integer, `unset` where it is not set. Callers read it once, into a static.
inline int env_switch(const char* name, int unset) {
    const char* env = getenv(name);
    return env && env[0] ? atoi(env) : unset;
}

// The shared memory sm_86/89/120 GPUs (RTX 30xx-50xx, L4, L40S) let a block opt in to: 99 KB. Every kernel
// has tiles within it, chosen where the device gives less than the default tiles need.
constexpr int CONSUMER_SMEM_BYTES = 99 * 1024;

// What the launchers ask the driver once per device: `query(device)` gives the value, > 0, or 0 when it cannot
// be asked (then nothing is cached and the next call asks again); `cache` is the caller's static array.
constexpr int MAX_DEVICES = 64;
template <typename Query>
int64_t once_per_device(std::atomic<int64_t> (&cache)[MAX_DEVICES], Query query) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return 0;
    if (dev < MAX_DEVICES && cache[dev].load(std::memory_order_relaxed) > 0) return cache[dev].load(std::memory_order_relaxed);
    const int64_t value = query(dev);
    if (dev < MAX_DEVICES && value > 0) cache[dev].store(value, std::memory_order_relaxed);
    return value;
}

// Whether this build carries sm_90a machine code: build.rs defines CANDLE_FA2_HAS_SM90A where it adds that
// target. A PTX-only build (CANDLE_FA2_PTX_ONLY) has only compute_80 PTX; its launchers do not instantiate the
// Hopper kernels, whose bodies trap outside sm_90a code.
#if defined(CANDLE_FA2_HAS_SM90A)
constexpr bool SM90A_BUILT = true;
#else
constexpr bool SM90A_BUILT = false;
#endif

// Whether the current device runs this build's sm_90a code: the build has it and the device is compute
// capability 9.0 exactly (H100, H200). Every other device runs the sm_80 machine code or JIT-compiles the
// compute_80 PTX (sm_100, sm_120), where neither wgmma nor griddepcontrol (PDL) exists. False when the device
// cannot be asked.
inline bool device_runs_sm90a_code() {
    if constexpr (!SM90A_BUILT) return false;
    static std::atomic<int64_t> cached[MAX_DEVICES];  // 2: compute capability 9.0, 1: another
    return once_per_device(cached, [](int dev) -> int64_t {
        int major = 0, minor = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
            return 0;
        return major == 9 && minor == 0 ? 2 : 1;
    }) == 2;
}

// The shared memory a block of the current device may opt in to (cudaDevAttrMaxSharedMemoryPerBlockOptin);
// CANDLE_FA2_MAX_SMEM=BYTES caps it, so that the configurations of GPUs with less (99 KB on sm_86/89/120)
// can be run and tested on an A100 or H100. 0 when the device cannot be queried (callers then keep their
// default tiles).
inline int smem_optin() {
    static std::atomic<int64_t> cached[MAX_DEVICES];
    static const int cap = [] {
        const char* env = getenv("CANDLE_FA2_MAX_SMEM");
        return env ? atoi(env) : 0;
    }();
    return int(once_per_device(cached, [](int dev) {
        int bytes = 0;
        if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) return 0;
        return cap > 0 ? std::min(bytes, cap) : bytes;
    }));
}

// Whether the current device lets a block have `bytes` of shared memory (true when it cannot be asked: the
// launch then reports the device's answer).
inline bool smem_fits(int bytes) {
    const int optin = smem_optin();
    return optin <= 0 || bytes <= optin;
}

}  // namespace fa2
