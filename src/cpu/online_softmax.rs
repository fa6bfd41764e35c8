//! The online softmax of one query row, shared by the tiled forward and the decode path: blocks of base-2
//! logits arrive one at a time; the row keeps its running maximum and sum, and its output accumulated so
//! far is rescaled only when the maximum grows.

use super::exp2::exp2;
use super::lanes;

#[derive(Debug, Clone, Copy)]
pub struct RowState {
    max: f32,
    sum: f32,
}

impl RowState {
    /// A row that has seen no key.
    pub const EMPTY: Self = Self { max: f32::NEG_INFINITY, sum: 0.0 };

    /// Turns a block of base-2 logits (`-inf` where masked) into the row's unnormalised probabilities in
    /// place, rescaling `o`, the output accumulated from the earlier blocks, if the maximum grows.
    #[inline(always)]
    pub fn absorb(&mut self, s: &mut [f32], o: &mut [f32]) {
        let new_max = self.max.max(lanes::max(s));
        if new_max == f32::NEG_INFINITY {
            // Nothing visible to this row yet: P is all zeros.
            s.fill(0.0);
            return;
        }
        s.iter_mut().for_each(|x| *x = exp2(*x - new_max));
        let sum = lanes::sum(s);
        if new_max > self.max {
            let alpha = exp2(self.max - new_max);
            self.sum *= alpha;
            o.iter_mut().for_each(|x| *x *= alpha);
            self.max = new_max;
        }
        self.sum += sum;
    }

    /// Divides the accumulated output by the row's sum and returns its natural-log LSE; a row that saw no
    /// key gets zeros and `-inf`.
    pub fn finish(&self, o: &mut [f32]) -> f32 {
        if self.sum > 0.0 {
            let inv = 1.0 / self.sum;
            o.iter_mut().for_each(|x| *x *= inv);
            (self.max + self.sum.log2()) * std::f32::consts::LN_2
        } else {
            o.fill(0.0);
            f32::NEG_INFINITY
        }
    }
}
