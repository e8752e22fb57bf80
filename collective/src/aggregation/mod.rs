//! Combining a batch of updates: the aggregation rules, and central
//! differential privacy with its accountant. Pure functions; the aggregator
//! module calls them.

pub mod privacy;
pub mod rules;

use c2ssi_protocol::{AggregationRule, DpSpec};

pub use rules::{Aggregate, AggregationError, aggregate};

/// Applies `rule`, or with `dp`, the Gaussian mechanism: every update clipped
/// to `dp.clip_norm`, summed unweighted (each wallet counts once, so one
/// wallet moves the sum by at most the clipping norm), Gaussian noise of
/// `noise_multiplier * clip_norm` added to the sum, divided by the count.
/// With `dp`, only `mean` and `clipped-mean` are allowed: the sensitivity of
/// the other rules is not the clipping norm.
pub fn combine(
    rule: &AggregationRule,
    updates: &[Vec<f32>],
    weights: &[f64],
    previous: Option<&[f32]>,
    dp: Option<(&DpSpec, u64)>,
) -> Result<(Aggregate, Option<f64>), AggregationError> {
    let Some((dp, seed)) = dp else {
        return Ok((aggregate(rule, updates, weights, previous)?, None));
    };
    check_dp(rule, dp)?;
    if updates.is_empty() {
        return Err(AggregationError::Empty);
    }
    let d = updates[0].len();
    let mut sum = vec![0.0f64; d];
    for u in updates {
        if u.len() != d {
            return Err(AggregationError::Invalid(
                "updates of different lengths".into(),
            ));
        }
        for (s, x) in sum.iter_mut().zip(rules::clip(u, dp.clip_norm)) {
            *s += f64::from(x);
        }
    }
    let sigma = dp.noise_multiplier * dp.clip_norm;
    privacy::add_gaussian_noise(&mut sum, sigma, seed);
    let n = updates.len() as f64;
    Ok((
        Aggregate {
            update: sum.into_iter().map(|s| (s / n) as f32).collect(),
            report: format!(
                "Gaussian mechanism: {} updates clipped to norm {}, noise sigma {sigma} on the sum",
                updates.len(),
                dp.clip_norm
            ),
            contributors: updates.len(),
        },
        Some(sigma),
    ))
}

/// Checks that a rule and a privacy setting go together.
pub fn check_dp(rule: &AggregationRule, dp: &DpSpec) -> Result<(), AggregationError> {
    if !matches!(
        rule,
        AggregationRule::Mean | AggregationRule::ClippedMean { .. }
    ) {
        return Err(AggregationError::Invalid(format!(
            "differential privacy needs the mean or clipped-mean rule, not {rule}"
        )));
    }
    if !(dp.clip_norm.is_finite() && dp.clip_norm > 0.0) {
        return Err(AggregationError::Invalid(
            "the DP clipping norm must be positive".into(),
        ));
    }
    if !(dp.noise_multiplier.is_finite() && dp.noise_multiplier >= 0.0) {
        return Err(AggregationError::Invalid(
            "the noise multiplier must be non-negative".into(),
        ));
    }
    if !(dp.delta > 0.0 && dp.delta < 1.0) {
        return Err(AggregationError::Invalid(
            "delta must be within (0, 1)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dp_clips_each_update_and_refuses_robust_rules() {
        let dp = DpSpec {
            noise_multiplier: 0.0,
            clip_norm: 1.0,
            delta: 1e-5,
        };
        let updates = vec![vec![100.0f32, 0.0], vec![0.0, 0.5]];
        let (agg, sigma) = combine(
            &AggregationRule::Mean,
            &updates,
            &[1.0, 9.0],
            None,
            Some((&dp, 1)),
        )
        .unwrap();
        assert_eq!(agg.update, vec![0.5, 0.25], "clipped, unweighted");
        assert_eq!(sigma, Some(0.0));
        assert!(
            combine(
                &AggregationRule::Median,
                &updates,
                &[1.0, 1.0],
                None,
                Some((&dp, 1))
            )
            .is_err()
        );
    }
}
