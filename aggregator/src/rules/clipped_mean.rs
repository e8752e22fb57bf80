//! The clipped mean: each update's L2 norm clipped, then the plain mean.

use rayon::prelude::*;

use super::{Aggregate, AggregationError, check, norm, parallel, weighted_mean_of};

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

    /// How far the clipped mean of `n` moves when one update moves by
    /// `change`: clipping is a projection, so the clipped update moves by at
    /// most `change` and by at most the ball's diameter.
    pub fn sensitivity(&self, n: usize, change: f64) -> f64 {
        change.min(2.0 * self.clip_norm) / n.max(1) as f64
    }

    /// The mean of the clipped batch.
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        let d = check(updates)?;
        let n = updates.len();
        // Each update's scale as [`super::clip`] computes it (1 where it is
        // not clipped: multiplying by 1 leaves an `f32` as it is), so the
        // mean is the mean of the clipped updates, without copying them.
        let scale = |u: &Vec<f32>| {
            let length = norm(u);
            if length > self.clip_norm {
                (self.clip_norm / length * (1.0 - 1e-6)) as f32
            } else {
                1.0
            }
        };
        let scales: Vec<f32> = if parallel(n, d) {
            updates.par_iter().map(scale).collect()
        } else {
            updates.iter().map(scale).collect()
        };
        let count = scales.iter().filter(|&&s| s < 1.0).count();
        Ok(Aggregate {
            update: weighted_mean_of(updates, Some(&scales), d),
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
