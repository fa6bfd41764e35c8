//! [`AttnOptions`]: every knob of the attention op, in one struct.

use candle_core::Tensor;

/// Options of [`crate::flash_attn`]. `AttnOptions::default()` is plain, non-causal softmax attention with
/// scale `1 / sqrt(head_dim)`.
///
/// # Semantics
/// For query row `i` and key `j` let `offset = seqlen_k - seqlen_q` and `d = j - (i + offset)`, the signed
/// distance from the bottom-right-aligned diagonal (as FlashAttention >= 2.1). The logit is
///
/// ```text
/// s = softmax_scale * q_i · k_j
/// s = softcap * tanh(s / softcap)            if softcap is set
/// s = s - alibi_slope[head] * |d|            if alibi_slopes is set
/// ```
///
/// and key `j` is visible to query `i` when `-window_left <= d <= window_right` (a bound that is `None` is
/// unbounded) and, when `causal`, `d <= 0`. A query row that sees no key (possible when `seqlen_q >
/// seqlen_k` with `causal`, or with a window) returns a row of zeros, and its log-sum-exp is `-inf`.
#[derive(Debug, Clone, Default)]
pub struct AttnOptions {
    /// Multiplies `q · k`; `None` means `1 / sqrt(head_dim)`. Must be finite.
    pub softmax_scale: Option<f32>,
    /// Query `i` sees keys `j <= i + seqlen_k - seqlen_q` (bottom-right aligned).
    pub causal: bool,
    /// Keys further than this many positions left of the diagonal are hidden (`None`: unbounded).
    /// Negative values move the bound right of the diagonal.
    pub window_left: Option<i64>,
    /// Keys further than this many positions right of the diagonal are hidden (`None`: unbounded).
    /// `causal` is the same as `Some(0)` here; negative values also hide the diagonal.
    pub window_right: Option<i64>,
    /// Caps scores smoothly at `±softcap` with `softcap * tanh(s / softcap)` (Gemma 2). Must be > 0.
    pub softcap: Option<f32>,
    /// ALiBi: one f32 slope per query head, shape `(heads_q,)`, on the same device as `q`.
    pub alibi_slopes: Option<Tensor>,
    /// Backward on CUDA only: accumulate dQ with f32 atomics inside the pass over key blocks (FA2's scheme)
    /// instead of a second pass over query blocks, on the mma.sync backward (A100, consumer GPUs): there it
    /// measured 2-5% faster at head_dim 64 from 2k tokens, up to 18% slower on short sequences (H100), and
    /// it takes an f32 buffer of q's size for the sums. On wgmma (H100/H200), dense batches at head_dim
    /// 65-128 from 2048 queries and keys run one pass on FlashAttention-3's schedule, dQ added by TMA bulk
    /// reductions into an f32 buffer of batch x heads_q x seqlen_q (rounded up to 64) x 128 floats
    /// (1.02-1.09x the deterministic passes in forward + backward, H100); everywhere else on wgmma it
    /// changes nothing and allocates nothing: the two deterministic passes run, which measured faster there
    /// (BENCHMARKS.md, "One-pass backward, tried" and "One-pass backward on FA3's schedule").
    /// The order of the adds varies, so dQ is not bitwise repeatable. Off by default: both
    /// backwards, CPU and CUDA, are deterministic.
    pub dq_atomics: bool,
    /// The split-KV decode only (`seqlen_q <= 16`, dense, KV-cache or paged calls): cut each sequence's keys
    /// into this many ranges (a thread block each on CUDA, a work item each on the CPU), merged by LSE.
    /// `None`: a heuristic from the GPU's SM count or the CPU's threads, batch, heads and length. 1 to 128;
    /// for tests and benchmarks.
    pub num_splits: Option<usize>,
}

impl AttnOptions {
    /// Plain attention with `causal` set.
    pub fn causal() -> Self {
        Self { causal: true, ..Self::default() }
    }

    pub fn with_softmax_scale(mut self, scale: f32) -> Self {
        self.softmax_scale = Some(scale);
        self
    }

    pub fn with_causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// Sliding window: keys at most `left` positions before and `right` after the diagonal.
    pub fn with_window(mut self, left: Option<i64>, right: Option<i64>) -> Self {
        self.window_left = left;
        self.window_right = right;
        self
    }

    pub fn with_softcap(mut self, softcap: f32) -> Self {
        self.softcap = Some(softcap);
        self
    }

    pub fn with_alibi_slopes(mut self, slopes: Tensor) -> Self {
        self.alibi_slopes = Some(slopes);
        self
    }

    pub fn with_dq_atomics(mut self, dq_atomics: bool) -> Self {
        self.dq_atomics = dq_atomics;
        self
    }

    pub fn with_num_splits(mut self, num_splits: usize) -> Self {
        self.num_splits = Some(num_splits);
        self
    }

    /// The right bound of the visible band once `causal` is folded in.
    pub(crate) fn effective_window_right(&self) -> Option<i64> {
        match (self.causal, self.window_right) {
            (true, Some(r)) => Some(r.min(0)),
            (true, None) => Some(0),
            (false, r) => r,
        }
    }
}
