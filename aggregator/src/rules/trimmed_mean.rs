//! The coordinate-wise trimmed mean: each coordinate's mean after dropping
//! `floor(trim * n)` values at each end.

use super::select::select_two;
use super::{Aggregate, AggregationError, check, coordinate_wise, value};

/// The coordinate-wise trimmed mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrimmedMean {
    trim: f64,
}

/// How many values the trimmed mean drops at each end of `n`.
pub(super) fn trimmed_count(n: usize, trim: f64) -> usize {
    let k = (trim * n as f64).floor() as usize;
    k.min(n.saturating_sub(1) / 2)
}

/// The mean of one coordinate's values, given as keys in any order, without
/// the `k` smallest and the `k` largest: both ends are partitioned off by
/// selection (not sorted), then the middle is summed in `f64` in the order
/// the selection leaves it, in four running sums. `2 * k` must be below the
/// count.
pub(super) fn trimmed_mean_of_keys(column: &mut [i32], k: usize) -> f32 {
    let n = column.len();
    let kept = if k == 0 {
        &column[..]
    } else {
        // The k smallest before position k, the k largest after n - k - 1.
        select_two(column, k, n - k - 1);
        &column[k..n - k]
    };
    // Four running sums (by position modulo 4), added in a fixed order:
    // a quarter of the latency of one.
    let mut lanes = [0.0f64; 4];
    let mut fours = kept.chunks_exact(4);
    for four in &mut fours {
        for (l, &x) in lanes.iter_mut().zip(four) {
            *l += f64::from(value(x));
        }
    }
    let mut sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for &x in fours.remainder() {
        sum += f64::from(value(x));
    }
    (sum / kept.len() as f64) as f32
}

impl TrimmedMean {
    /// A trimmed mean; the fraction must be within `[0, 0.5)`.
    pub fn new(trim: f64) -> Result<TrimmedMean, AggregationError> {
        if !(0.0..0.5).contains(&trim) {
            return Err(AggregationError::Invalid(format!(
                "trim fraction {trim} is not within [0, 0.5)"
            )));
        }
        Ok(TrimmedMean { trim })
    }

    /// How far the trimmed mean of `n` moves when one update moves by
    /// `change`: sorting is non-expansive in L1, so the sum of a
    /// coordinate's kept values moves by at most as much as the one value
    /// that changed, and the mean of the `n - 2k` kept by that over `n - 2k`.
    pub fn sensitivity(&self, n: usize, change: f64) -> f64 {
        let k = trimmed_count(n, self.trim);
        change / n.saturating_sub(2 * k).max(1) as f64
    }

    /// The trimmed mean of the batch.
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        let d = check(updates)?;
        let n = updates.len();
        let k = trimmed_count(n, self.trim);
        Ok(Aggregate {
            update: coordinate_wise(updates, d, |column| trimmed_mean_of_keys(column, k)),
            report: format!("coordinate-wise mean of {n} after dropping {k} at each end"),
            contributors: n - 2 * k,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extremes_are_dropped() {
        let r = TrimmedMean::new(0.25).unwrap();
        let m = r
            .aggregate(&[vec![-100.0], vec![1.0], vec![3.0], vec![100.0]])
            .unwrap();
        assert_eq!(m.update, vec![2.0]);
        assert_eq!(m.contributors, 2);
        assert_eq!(trimmed_count(3, 0.49), 1);
        assert_eq!(trimmed_count(1, 0.4), 0);
    }
}
