//! Which attention a model runs: this crate's op or candle's softmax-matmul attention. The examples take it
//! as `--attn flash|naive`, so one binary compares the two on the same weights and prompt.

use std::{fmt, str::FromStr};

use candle_core::{Result, Tensor};

use crate::AttnOptions;

/// The attention implementation a model layer calls; both have the contract of [`crate::flash_attn`]
/// (q (b, sq, hq, d), k/v (b, sk, hkv, d), GQA in place, every option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttnImpl {
    /// [`crate::flash_attn`]: FlashAttention-2, linear memory.
    #[default]
    Flash,
    /// [`crate::naive::attention`]: scores materialised per head, as candle-transformers' models do; when an
    /// input tracks gradients (training), [`crate::naive::attention_differentiable`].
    Naive,
}

impl AttnImpl {
    /// Both variants are differentiable: the fused softmax of [`crate::naive::attention`] records no
    /// backward (q and k would silently get no gradient), so `Naive` switches to the differentiable
    /// softmax when autograd is recording, and keeps the fused one, the baseline candle's models run, otherwise.
    pub fn run(self, q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<Tensor> {
        match self {
            Self::Flash => crate::flash_attn(q, k, v, opts),
            Self::Naive if q.track_op() || k.track_op() || v.track_op() => {
                crate::naive::attention_differentiable(q, k, v, opts)
            }
            Self::Naive => crate::naive::attention(q, k, v, opts),
        }
    }
}

impl FromStr for AttnImpl {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "flash" => Ok(Self::Flash),
            "naive" => Ok(Self::Naive),
            other => Err(format!("unknown attention '{other}': expected flash or naive")),
        }
    }
}

impl fmt::Display for AttnImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flash => "flash",
            Self::Naive => "naive",
        })
    }
}
