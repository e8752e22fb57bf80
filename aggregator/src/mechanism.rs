//! What the aggregator releases from a batch, under the manifest's privacy
//! terms.
//!
//! Each wallet's [`Contribution`] is its update clipped (again) to the
//! manifest's norm and its declared metrics as fractions of their ranges;
//! a failed run counts as a zero update with every metric at the middle of
//! its range, so that a failure changes nothing the consumer can see beyond
//! what any update could.
//!
//! With noise, the release is the Gaussian mechanism on the sum of the
//! contributions laid out by [`Sensitivity`]: updates, scaled metrics and a
//! constant per wallet for the count, noise of `z * sensitivity` on every
//! coordinate, then the noised sums divided by the number of wallets the
//! round assigned (public: the broker's sample size, which no algorithm can
//! steer), as DP-FedAvg does with its fixed denominator. The noised count is
//! released beside it. Only the plain mean can be wrapped this way. Without
//! noise, the job's rule combines the clipped updates and counts are exact.
//!
//! [`Sensitivity`]: c2ssi_protocol::privacy::Sensitivity

use c2ssi_guest_sdk::Metric;
use c2ssi_protocol::{NoiseReport, Outcome, PrivacyTerms, UpdatePayload};

use crate::noise::{NoiseError, NoiseSource};
use crate::rules::{AggregationError, Rule, clip};

/// One wallet's share of a batch, as the aggregator holds it until the
/// round closes.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// The update, clipped to the manifest's norm.
    pub delta: Vec<f32>,
    /// Each declared metric, in declaration order, as a fraction of its range.
    pub metrics: Vec<f64>,
}

/// Why an update cannot be a contribution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid update: {0}")]
pub struct InvalidUpdate(pub String);

impl Contribution {
    /// The contribution of a failed run: a zero update, every metric at the
    /// middle of its range.
    pub fn failed(terms: &PrivacyTerms, model_len: usize) -> Contribution {
        Contribution {
            delta: vec![0.0; model_len],
            metrics: vec![0.5; terms.metrics.len()],
        }
    }

    /// The contribution of an opened payload: its length and values
    /// checked, clipped to the norm, the declared metrics clamped (one the
    /// algorithm did not report counts as the middle of its range), every
    /// other metric dropped.
    pub fn from_payload(
        payload: &UpdatePayload,
        terms: &PrivacyTerms,
        model_len: usize,
    ) -> Result<Contribution, InvalidUpdate> {
        if payload.outcome == Outcome::Failed {
            return Ok(Contribution::failed(terms, model_len));
        }
        if payload.delta.len() != model_len {
            return Err(InvalidUpdate(format!(
                "{} values for a model of {model_len}",
                payload.delta.len()
            )));
        }
        if let Some(i) = payload.delta.iter().position(|v| !v.is_finite()) {
            return Err(InvalidUpdate(format!("value {i} is not finite")));
        }
        let metrics = terms
            .metrics
            .iter()
            .map(|bound| {
                payload
                    .metrics
                    .iter()
                    .find(|m| m.name == bound.name)
                    .map_or(0.5, |m| bound.normalize(m.value))
            })
            .collect();
        Ok(Contribution {
            delta: clip(&payload.delta, terms.clip_norm),
            metrics,
        })
    }
}

/// What a round releases.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// The combined update.
    pub aggregate: Vec<f32>,
    /// How many updates were combined (noised with noise).
    pub updates: f64,
    /// The declared metrics' means (noised with noise).
    pub metrics: Vec<Metric>,
    /// What was done, in words; it never states an exact count under noise.
    pub report: String,
    /// The noise, when there is some.
    pub noise: Option<NoiseReport>,
}

/// Why nothing is released.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// Fewer than k contributions.
    #[error("fewer than k = {min_batch} updates: nothing is released")]
    TooFew {
        /// k.
        min_batch: u32,
    },
    /// A robust rule cannot be wrapped in noise.
    #[error(
        "the terms add noise, which only the mean rule can take (its sensitivity is the \
         clipping norm); the job asks for {0}: nothing is released"
    )]
    RuleNeedsNoNoise(String),
    /// No noise could be drawn.
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// The rule failed.
    #[error("aggregation failed: {0}")]
    Aggregation(#[from] AggregationError),
}

/// Releases a batch under `terms`; `assigned` is how many wallets the
/// round assigned (the noised sums' denominator); `center` is where a rule
/// that keeps a momentum starts (see [`Rule::aggregate_from`]).
pub fn release(
    rule: &Rule,
    rule_name: &str,
    terms: &PrivacyTerms,
    batch: &[Contribution],
    assigned: usize,
    center: Option<&[f32]>,
    noise: &mut NoiseSource,
) -> Result<Release, ReleaseError> {
    if batch.len() < terms.min_batch as usize || batch.is_empty() {
        return Err(ReleaseError::TooFew {
            min_batch: terms.min_batch,
        });
    }
    if terms.has_noise() {
        if !rule.is_mean() {
            return Err(ReleaseError::RuleNeedsNoNoise(rule_name.to_string()));
        }
        noised_mean(terms, batch, assigned, noise)
    } else {
        exact(rule, terms, batch, center)
    }
}

impl Contribution {
    /// The contribution as the Gaussian mechanism sees it: the update, each
    /// metric times its scale, and the count's scale; its L2 norm is at most
    /// the terms' sensitivity.
    pub fn laid_out(&self, terms: &PrivacyTerms) -> Vec<f64> {
        let s = terms.sensitivity();
        let mut out: Vec<f64> = self.delta.iter().map(|&x| f64::from(x)).collect();
        out.extend(self.metrics.iter().map(|m| s.metric_scale * m));
        out.push(s.count_scale);
        out
    }
}

/// The Gaussian mechanism's raw release: the sum of the batch's laid-out
/// contributions with noise of the terms' sigma on every coordinate (none
/// when the terms add none).
pub fn noised_sums(
    terms: &PrivacyTerms,
    batch: &[Contribution],
    noise: &mut NoiseSource,
) -> Result<Vec<f64>, ReleaseError> {
    let Some(first) = batch.first() else {
        return Err(ReleaseError::TooFew {
            min_batch: terms.min_batch,
        });
    };
    let width = first.delta.len() + terms.metrics.len() + 1;
    let mut sums = vec![0.0f64; width];
    for c in batch {
        let x = c.laid_out(terms);
        if x.len() != width {
            return Err(ReleaseError::Aggregation(AggregationError::Invalid(
                "contributions of different shapes".into(),
            )));
        }
        for (acc, v) in sums.iter_mut().zip(x) {
            *acc += v;
        }
    }
    // Terms without noise give the exact sums (the audit plays its game on
    // them too). Terms that call for noise never release with none: a
    // standard deviation that is zero, subnormal or not finite stops it.
    if !terms.has_noise() {
        return Ok(sums);
    }
    let sigma = terms.sigma();
    if !(sigma.is_normal() && sigma > 0.0) {
        return Err(NoiseError::BadSigma(sigma.to_string()).into());
    }
    noise.add_gaussian(&mut sums, sigma)?;
    Ok(sums)
}

fn noised_mean(
    terms: &PrivacyTerms,
    batch: &[Contribution],
    assigned: usize,
    noise: &mut NoiseSource,
) -> Result<Release, ReleaseError> {
    let d = batch[0].delta.len();
    let j = terms.metrics.len();
    let s = terms.sensitivity();
    let sums = noised_sums(terms, batch, noise)?;
    let sigma = terms.sigma();
    let count = (sums[d + j] / s.count_scale).max(0.0);
    let denominator = (assigned.max(batch.len()) as f64).max(f64::from(terms.min_batch));
    let aggregate = sums[..d].iter().map(|v| (v / denominator) as f32).collect();
    let metrics = terms
        .metrics
        .iter()
        .zip(&sums[d..d + j])
        .map(|(bound, sum)| {
            Metric::new(
                &bound.name,
                bound.denormalize(sum / s.metric_scale / denominator),
            )
        })
        .collect();
    Ok(Release {
        aggregate,
        updates: count,
        metrics,
        report: format!(
            "Gaussian mechanism: the sum of updates clipped to norm {}, noise sigma {sigma:.6} \
             on every coordinate, divided by the {denominator} wallets assigned",
            terms.clip_norm
        ),
        noise: Some(NoiseReport {
            noise_multiplier: terms.noise_multiplier,
            sigma,
        }),
    })
}

fn exact(
    rule: &Rule,
    terms: &PrivacyTerms,
    batch: &[Contribution],
    center: Option<&[f32]>,
) -> Result<Release, ReleaseError> {
    let deltas: Vec<Vec<f32>> = batch.iter().map(|c| c.delta.clone()).collect();
    let combined = rule.aggregate_from(&deltas, center)?;
    let n = batch.len() as f64;
    let metrics = terms
        .metrics
        .iter()
        .enumerate()
        .map(|(i, bound)| {
            let mean = batch.iter().map(|c| c.metrics[i]).sum::<f64>() / n;
            Metric::new(&bound.name, bound.denormalize(mean))
        })
        .collect();
    Ok(Release {
        aggregate: combined.update,
        updates: combined.contributors as f64,
        metrics,
        report: format!("{} (no noise: exact)", combined.report),
        noise: None,
    })
}

#[cfg(test)]
mod tests {
    use c2ssi_protocol::MetricBound;

    use super::*;

    fn terms(noise: f64) -> PrivacyTerms {
        PrivacyTerms::with_noise(
            3,
            1.0,
            1e-5,
            1,
            noise,
            vec![MetricBound {
                name: "loss".into(),
                min: 0.0,
                max: 10.0,
            }],
        )
        .unwrap()
    }

    fn payload(delta: Vec<f32>, loss: f64) -> UpdatePayload {
        UpdatePayload {
            outcome: Outcome::Trained,
            delta,
            metrics: vec![Metric::new("loss", loss), Metric::new("secret", 42.0)],
        }
    }

    #[test]
    fn contributions_are_clipped_clamped_and_failures_are_zero() {
        let t = terms(1.0);
        let c = Contribution::from_payload(&payload(vec![30.0, 40.0], 99.0), &t, 2).unwrap();
        assert!((c.delta[0] - 0.6).abs() < 1e-6 && (c.delta[1] - 0.8).abs() < 1e-6);
        assert_eq!(c.metrics, vec![1.0], "clamped, and 'secret' is dropped");
        let failed = UpdatePayload {
            outcome: Outcome::Failed,
            delta: Vec::new(),
            metrics: Vec::new(),
        };
        assert_eq!(
            Contribution::from_payload(&failed, &t, 2).unwrap(),
            Contribution::failed(&t, 2)
        );
        assert!(Contribution::from_payload(&payload(vec![1.0], 1.0), &t, 2).is_err());
        assert!(Contribution::from_payload(&payload(vec![f32::NAN, 0.0], 1.0), &t, 2).is_err());
    }

    #[test]
    fn without_noise_the_release_is_exact_and_needs_k() {
        let t = terms(0.0);
        let batch: Vec<Contribution> = [2.0, 4.0, 6.0]
            .iter()
            .map(|&l| Contribution::from_payload(&payload(vec![0.1, 0.2], l), &t, 2).unwrap())
            .collect();
        let mut noise = NoiseSource::os();
        let r = release(
            &Rule::Mean(crate::rules::Mean),
            "mean",
            &t,
            &batch,
            200,
            None,
            &mut noise,
        )
        .unwrap();
        assert_eq!(r.updates, 3.0);
        assert!((r.metrics[0].value - 4.0).abs() < 1e-9);
        assert!(r.noise.is_none());
        assert!(matches!(
            release(
                &Rule::Mean(crate::rules::Mean),
                "mean",
                &t,
                &batch[..2],
                200,
                None,
                &mut noise
            ),
            Err(ReleaseError::TooFew { min_batch: 3 })
        ));
    }

    #[test]
    fn with_noise_only_the_mean_is_released_and_it_is_unbiased() {
        let t = terms(1.0);
        let batch: Vec<Contribution> = (0..200)
            .map(|_| Contribution::from_payload(&payload(vec![0.5, -0.5], 5.0), &t, 2).unwrap())
            .collect();
        let mut noise = NoiseSource::seeded_for_simulation(1);
        let median = Rule::new(&c2ssi_protocol::AggregationRule::Median).unwrap();
        assert!(matches!(
            release(&median, "median", &t, &batch, 200, None, &mut noise),
            Err(ReleaseError::RuleNeedsNoNoise(_))
        ));
        let mut sum = [0.0f64; 2];
        let mut count = 0.0;
        let runs = 400;
        for _ in 0..runs {
            let r = release(
                &Rule::Mean(crate::rules::Mean),
                "mean",
                &t,
                &batch,
                200,
                None,
                &mut noise,
            )
            .unwrap();
            sum[0] += f64::from(r.aggregate[0]);
            sum[1] += f64::from(r.aggregate[1]);
            count += r.updates;
            assert!(
                !r.report.contains("contributed"),
                "no exact count: {}",
                r.report
            );
        }
        assert!((sum[0] / f64::from(runs) - 0.5).abs() < 0.02, "{sum:?}");
        assert!((sum[1] / f64::from(runs) + 0.5).abs() < 0.02, "{sum:?}");
        assert!((count / f64::from(runs) - 200.0).abs() < 1.0, "{count}");
    }
}
