//! The coordinate-wise median (the mean of the two middle values for an
//! even count).

use super::select::select;
use super::{Aggregate, AggregationError, check, coordinate_wise, value};

/// The coordinate-wise median.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Median;

/// The coordinate-wise median of a batch.
pub(crate) fn median(updates: &[Vec<f32>]) -> Result<Vec<f32>, AggregationError> {
    let d = check(updates)?;
    Ok(coordinate_wise(updates, d, median_of_keys))
}

/// The median of one coordinate's values, given as keys in any order: the
/// middle one selected (not sorted) for an odd count; for an even count the
/// mean, in `f64`, of the middle one and the largest below it.
pub(crate) fn median_of_keys(column: &mut [i32]) -> f32 {
    let n = column.len();
    let middle = select(column, n / 2);
    if n % 2 == 1 {
        value(middle)
    } else {
        let lower = column[..n / 2].iter().copied().max().unwrap_or(middle);
        ((f64::from(value(lower)) + f64::from(value(middle))) / 2.0) as f32
    }
}

impl Median {
    /// How far the median moves when one update moves by `change`: each
    /// order statistic of a coordinate moves by at most as much as the one
    /// value that changed, so the medians (or the means of the two middle
    /// values) move by at most `change` in L2, whatever the batch's size.
    pub fn sensitivity(&self, change: f64) -> f64 {
        change
    }

    /// The median of the batch.
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        Ok(Aggregate {
            update: median(updates)?,
            report: format!("coordinate-wise median of {}", updates.len()),
            contributors: updates.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_batches() {
        let odd = Median
            .aggregate(&[vec![1.0], vec![9.0], vec![2.0]])
            .unwrap();
        assert_eq!(odd.update, vec![2.0]);
        let even = Median
            .aggregate(&[vec![1.0], vec![9.0], vec![2.0], vec![4.0]])
            .unwrap();
        assert_eq!(even.update, vec![3.0]);
    }
}
