//! Row reductions in eight independent lanes. A float sum or max folded left to right is a serial chain
//! that LLVM may not reorder (it would change rounding), so such a loop stays scalar, and a loop that
//! also computes exp2 then stays scalar with it; eight accumulators let both vectorise.

const LANES: usize = 8;

/// The largest element (-inf for an empty slice); NaNs are skipped.
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    tail.iter().chain(&acc).fold(f32::NEG_INFINITY, |a, &x| if x > a { x } else { a })
}

/// The sum, accumulated in eight lanes.
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_and_sum_match_plain_folds() {
        for n in [0, 1, 7, 8, 9, 63, 64, 257] {
            let xs: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let want_max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(super::max(&xs), want_max, "n {n}");
            let want_sum: f64 = xs.iter().map(|&x| x as f64).sum();
            assert!((super::sum(&xs) as f64 - want_sum).abs() < 1e-4, "n {n}");
        }
    }
}
