//! The plain mean: FedAvg with every wallet weighing one, so that a claimed
//! example count buys no weight.

use super::{Aggregate, AggregationError, check, mean_of};

/// The plain mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mean;

impl Mean {
    /// How far the mean of `n` moves when one update moves by `change`.
    pub fn sensitivity(&self, n: usize, change: f64) -> f64 {
        change / n.max(1) as f64
    }

    /// The mean of the batch.
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        let d = check(updates)?;
        Ok(Aggregate {
            update: mean_of(updates, d),
            report: format!(
                "mean of {} updates, each wallet weighing one",
                updates.len()
            ),
            contributors: updates.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_update_weighs_one() {
        let m = Mean.aggregate(&[vec![0.0, 2.0], vec![10.0, 4.0]]).unwrap();
        assert_eq!(m.update, vec![5.0, 3.0]);
        assert_eq!(m.contributors, 2);
    }
}
