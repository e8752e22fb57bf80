//! The clipped mean: each update's L2 norm clipped, then the plain mean.

use super::{Aggregate, AggregationError, check, clip, mean_of, norm};

/// The mean of updates clipped to `clip_norm`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClippedMean {
    clip_norm: f64,
}

impl ClippedMean {
    /// A clipped mean; the norm must be positive.
    pub fn new(clip_norm: f64) -> Result<ClippedMean, AggregationError> {
        if !(clip_norm.is_finite() && clip_norm > 0.0) {
            return Err(AggregationError::Invalid(format!(
                "clipping norm {clip_norm} must be positive"
            )));
        }
        Ok(ClippedMean { clip_norm })
    }

    /// The mean of the clipped batch.
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        let d = check(updates)?;
        let n = updates.len();
        let clipped: Vec<Vec<f32>> = updates.iter().map(|u| clip(u, self.clip_norm)).collect();
        let count = updates.iter().filter(|u| norm(u) > self.clip_norm).count();
        Ok(Aggregate {
            update: mean_of(&clipped, d),
            report: format!(
                "{count} of {n} updates clipped to norm {}, then the mean",
                self.clip_norm
            ),
            contributors: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_updates_are_shortened_to_the_norm() {
        let r = ClippedMean::new(1.0).unwrap();
        let m = r.aggregate(&[vec![3.0, 4.0], vec![0.0, 0.0]]).unwrap();
        assert!((m.update[0] - 0.3).abs() < 1e-6 && (m.update[1] - 0.4).abs() < 1e-6);
        assert!(m.report.starts_with("1 of 2"));
    }
}
