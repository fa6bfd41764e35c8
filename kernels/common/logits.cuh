// The logit variants, one definition for every kernel that forms logits explicitly (the forward's
// transformed kernel, the backward, the decode): a score s = q . k of query row i and key j becomes
//     z = softcap * tanh(scale * s / softcap) - slope * |j - i - offset|
// in natural log, the softcap term where softcap > 0 (Gemma 2, Grok) and the ALiBi term where slopes are
// given (one per query head). The plain variant (z = scale * s) needs none of this: the forward kernels
// fold the scale into exp2's argument (common/softmax.cuh) and the backward into its own exp2.
#pragma once
#include <math.h>

#include "common/flash_params.h"

namespace fa2 {

struct Logits {
    float scale, softcap;
    const float* slopes;  // ALiBi, per query head; null: none

    __device__ __forceinline__ explicit Logits(const FlashFwdParams& p)
        : scale(p.softmax_scale), softcap(p.softcap), slopes(p.alibi_slopes) {}

    __device__ __forceinline__ float slope(int head) const { return slopes ? slopes[head] : 0.f; }

    // z of score s at distance dist = j - i - offset, for a head of ALiBi slope `slope`.
    __device__ __forceinline__ float operator()(float s, float slope, int dist) const {
        float z = s * scale;
        if (softcap > 0.f) z = softcap * tanhf(z / softcap);
        return z - slope * fabsf(float(dist));
    }

    // The same, and dz/ds (the backward's chain rule: dS = P (dP - D) dz/ds).
    __device__ __forceinline__ float operator()(float s, float slope, int dist, float& dz_ds) const {
        float z = s * scale;
        dz_ds = scale;
        if (softcap > 0.f) {
            const float t = tanhf(z / softcap);
            z = softcap * t;
            dz_ds *= 1.f - t * t;
        }
        return z - slope * fabsf(float(dist));
    }
};

}  // namespace fa2
