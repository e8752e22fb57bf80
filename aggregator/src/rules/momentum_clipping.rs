//! Centered clipping with server momentum (Karimireddy, He and Jaggi 2021):
//! the center is the last aggregate this rule released for the job, and
//! each update is clipped as a momentum against it, once per round.
//!
//! The paper's workers keep a momentum `m_i = beta m_i' + (1 - beta) g_i`
//! and the server clips `m_i - v` around its last aggregate `v`. A wallet
//! here holds one person and is sampled afresh each round, so it has no
//! momentum of its own; its best stand-in for `m_i'` is the server's `v`,
//! which makes `m_i - v = (1 - beta) (x_i - v)`. The aggregate is then
//! `v + (1 - beta) mean_i clip(x_i - v, radius / (1 - beta))`: with no
//! update clipped, exactly the momentum `beta v + (1 - beta) mean_i x_i`.
//! One pass over the batch for the distances and one for the step, against
//! ten or more for centered clipping from the median.

use super::centered_clipping::{add_offsets, totals};
use super::{
    Aggregate, AggregationError, check, checked_radius, for_block_pairs, for_blocks, mean_block,
    parallel, squared_distance_to,
};

/// Centered clipping with server momentum, one step per round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentumClipping {
    radius: f64,
    beta: f64,
}

impl MomentumClipping {
    /// The rule; the radius must be positive and the momentum in `[0, 1)`.
    pub fn new(radius: f64, beta: f64) -> Result<MomentumClipping, AggregationError> {
        let radius = checked_radius(radius)?;
        if !(0.0..1.0).contains(&beta) {
            return Err(AggregationError::Invalid(format!(
                "momentum {beta} is not within [0, 1)"
            )));
        }
        Ok(MomentumClipping { radius, beta })
    }

    /// How far the step of `n` moves when one update moves by `change`,
    /// whatever the center: that update's term `(1 - beta) clip(x - v,
    /// radius / (1 - beta))` moves by at most `(1 - beta) change` and by at
    /// most `2 radius`, and the center does not depend on the batch.
    pub fn sensitivity(&self, n: usize, change: f64) -> f64 {
        ((1.0 - self.beta) * change).min(2.0 * self.radius) / n.max(1) as f64
    }

    /// The step from `center` (the last aggregate; none: the first round,
    /// from zero) over the batch.
    pub fn aggregate(
        &self,
        updates: &[Vec<f32>],
        center: Option<&[f32]>,
    ) -> Result<Aggregate, AggregationError> {
        let d = check(updates)?;
        let n = updates.len();
        let mut v: Vec<f64> = match center {
            None => vec![0.0; d],
            Some(c) if c.len() != d => {
                return Err(AggregationError::Invalid(format!(
                    "the last aggregate has {} values, the updates {d}",
                    c.len()
                )));
            }
            Some(c) => match c.iter().position(|x| !x.is_finite()) {
                Some(i) => {
                    return Err(AggregationError::Invalid(format!(
                        "value {i} of the last aggregate is not finite"
                    )));
                }
                None => c.iter().map(|&x| f64::from(x)).collect(),
            },
        };
        let go_parallel = parallel(n, d);
        // Blocks of coordinates, as the mean's: a block of the center stays
        // in cache while every update's slice of it streams in. Each block's
        // part of each update's squared distance is computed by one thread
        // and the parts are summed block after block, so no thread count
        // changes a distance.
        let block = mean_block(d);
        let mut parts = vec![0.0f64; d.div_ceil(block) * n];
        for_block_pairs(
            &mut v,
            block,
            &mut parts,
            n,
            go_parallel,
            || (),
            |(), start, v, parts| {
                for (p, u) in parts.iter_mut().zip(updates) {
                    *p = squared_distance_to(&u[start..start + v.len()], v);
                }
            },
        );
        let distances = totals(&parts, n);
        let reach = self.radius / (1.0 - self.beta);
        let mut clipped = 0;
        let weights: Vec<f64> = distances
            .iter()
            .map(|&s| {
                let length = s.sqrt();
                let scale = if length > reach {
                    clipped += 1;
                    reach / length
                } else {
                    1.0
                };
                (1.0 - self.beta) * scale / n as f64
            })
            .collect();
        for_blocks(
            &mut v,
            block,
            go_parallel,
            || vec![0.0f64; block],
            |step, start, v| {
                let step = &mut step[..v.len()];
                step.fill(0.0);
                add_offsets(step, updates, &weights, start, v);
                for (c, s) in v.iter_mut().zip(step.iter()) {
                    *c += s;
                }
            },
        );
        Ok(Aggregate {
            update: v.into_iter().map(|x| x as f32).collect(),
            report: format!(
                "centered clipping with momentum {} of {n} from {}, radius {}; {clipped} clipped",
                self.beta,
                if center.is_some() {
                    "the last aggregate"
                } else {
                    "zero (the job's first release)"
                },
                self.radius
            ),
            contributors: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::squared_distance;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// With nothing clipped, the rule is the momentum `beta v + (1 -
        /// beta) mean`; whatever is clipped, each update moves the result
        /// by at most `radius / n` from the center.
        #[test]
        fn it_is_the_momentum_of_the_mean_and_each_update_moves_it_at_most_radius_over_n(
            updates in prop::collection::vec(prop::collection::vec(-10.0f32..10.0, 7), 1..40),
            center in prop::collection::vec(-10.0f32..10.0, 7),
            beta in 0.0f64..0.99,
            radius in 0.01f64..10.0,
        ) {
            let n = updates.len();
            let wide = MomentumClipping::new(1e6, beta).unwrap();
            let got = wide.aggregate(&updates, Some(&center)).unwrap().update;
            for j in 0..7 {
                let mean = updates.iter().map(|u| f64::from(u[j])).sum::<f64>() / n as f64;
                let want = beta * f64::from(center[j]) + (1.0 - beta) * mean;
                prop_assert!((f64::from(got[j]) - want).abs() <= 1e-4 * (1.0 + want.abs()));
            }
            let rule = MomentumClipping::new(radius, beta).unwrap();
            let got = rule.aggregate(&updates, Some(&center)).unwrap().update;
            let moved = squared_distance(&got, &center).sqrt();
            prop_assert!(moved <= radius * (1.0 + 1e-5) + 1e-4, "{moved} > {radius}");
        }
    }

    #[test]
    fn thirty_percent_of_outliers_move_it_at_most_their_share_of_the_radius() {
        let mut updates = vec![vec![1.0f32, 1.0]; 7];
        updates.extend(vec![vec![-1e6f32, -1e6]; 3]);
        let center = [1.0f32, 1.0];
        let rule = MomentumClipping::new(0.05, 0.9).unwrap();
        let a = rule.aggregate(&updates, Some(&center)).unwrap();
        let moved = squared_distance(&a.update, &center).sqrt();
        assert!(moved <= 0.3 * 0.05 + 1e-6, "{moved}");
        assert!(a.report.contains("3 clipped"), "{}", a.report);
    }

    #[test]
    fn a_center_of_another_length_or_not_finite_is_refused() {
        let rule = MomentumClipping::new(0.1, 0.9).unwrap();
        let e = rule.aggregate(&[vec![1.0, 2.0]], Some(&[0.0])).unwrap_err();
        assert!(e.to_string().contains("1 values, the updates 2"), "{e}");
        let e = rule
            .aggregate(&[vec![1.0, 2.0]], Some(&[0.0, f32::NAN]))
            .unwrap_err();
        assert!(
            e.to_string().contains("value 1 of the last aggregate"),
            "{e}"
        );
        assert!(MomentumClipping::new(0.1, 1.0).is_err());
        assert!(MomentumClipping::new(0.0, 0.5).is_err());
    }
}
