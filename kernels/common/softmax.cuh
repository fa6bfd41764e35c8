// FlashAttention's online softmax (base 2) over the rows of S a thread holds, one definition for the
// forward kernels (mma.sync and wgmma) and the decode kernel. The accumulator layout is mma.sync's C
// fragment, which wgmma's is too: row h of a 16-row slice (h = 0: lane / 4, h = 1: lane / 4 + 8) is
// elements 2h and 2h + 1 of each n8 tile, spread over the quad of 4 lanes that share lane / 4.
//
// Scores enter either raw, with `sl2` = softmax_scale * log2(e) folded into exp2's argument (one FFMA per
// score, FA2's trick), or as base-2 logits already (softcap, ALiBi: common/logits.cuh), with sl2 = 1.
#pragma once
#include <math.h>

#include "common/ptx.cuh"

namespace fa2 {

// One key block of row h: raises the running max `row_max` to the block's (over the quad), calls
// rescale(alpha) with alpha = 2^(old max sl2 - new max sl2), the factor by which the row's earlier sum and
// O must be multiplied, then turns each score x into P = 2^(x sl2 - max sl2) in place and returns this
// lane's share of the block's P (the quad is summed once, at the end). `s(nt, e)` is element e of n8 tile
// nt of the thread's fragments. While the max is -inf (no key seen), 0 stands in for it, so that every P
// and alpha is 0 rather than NaN.
template <int NT, typename Scores, typename Rescale>
__device__ __forceinline__ float online_softmax_row(Scores&& s, int h, float& row_max, float sl2, Rescale&& rescale) {
    float m = row_max;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) m = fmaxf(m, fmaxf(s(nt, 2 * h), s(nt, 2 * h + 1)));
    m = quad_max(m);
    const float m_scaled = m == -INFINITY ? 0.f : m * sl2;
    rescale(exp2f(row_max * sl2 - m_scaled));
    row_max = m;
    float sum = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const float pr = exp2f(fmaf(s(nt, 2 * h + e), sl2, -m_scaled));
            s(nt, 2 * h + e) = pr;
            sum += pr;
        }
    return sum;
}

// The end of a row, from its running max and its whole sum (the quad's and, in the decode, the warps'
// shares added): the factor that normalises its O, and its log-sum-exp in natural log. A row that saw no
// key (sum 0) gets O = 0 and LSE -inf.
struct RowEnd {
    float inv_sum, lse;
};
__device__ __forceinline__ RowEnd row_end(float row_max, float sl2, float sum) {
    return {sum > 0.f ? 1.f / sum : 0.f, sum > 0.f ? (row_max * sl2 + log2f(sum)) * LN2 : -INFINITY};
}

}  // namespace fa2
