//! What the aggregator releases from a batch, under the manifest's privacy
//! terms.
//!
//! Each wallet's [`Contribution`] is its update clipped (again) to the
//! manifest's norm and its declared metrics as fractions of their ranges;
//! a failed run counts as a zero update with every metric at the middle of
//! its range, so that a failure changes nothing the consumer can see beyond
//! what any update could.
//!
//! With noise, the release is the Gaussian mechanism around the job's rule,
//! whichever it is. One wallet's share is laid out by [`Sensitivity`]: its
//! update, its scaled metrics and a constant for the count. For the plain
//! mean that is the sum of the contributions, noise of `z * sensitivity` on
//! every coordinate, then the noised sums divided by the number of wallets
//! the round assigned (public: the broker's sample size, which no algorithm
//! can steer), as DP-FedAvg does with its fixed denominator. Any other rule
//! runs on every assigned wallet's update (a missing one as the zero update,
//! so that the count it sees is public too), in an order that the round's
//! key and the wallets' keys set, never the updates; its result is scaled so
//! that one wallet moves it by at most the clipping norm, by the bound the
//! rule declares ([`Rule::sensitivity`]), and takes the same noise beside the
//! same metric and count sums. One wallet then moves the whole released
//! vector by at most the same `sensitivity` as under the mean, so the
//! privacy accounting is the rule's no matter: only the noise on the model
//! grows, by the ratio of the rule's bound to the mean's, which the release
//! reports. The noised count is released beside it. Without noise, the
//! job's rule combines the clipped updates and counts are exact.
//!
//! [`Sensitivity`]: c2ssi_protocol::privacy::Sensitivity

use std::collections::HashMap;

use c2ssi_guest_sdk::Metric;
use c2ssi_protocol::{NoiseReport, Outcome, PrivacyTerms, PublicKey, UpdatePayload};
use ring::hmac;

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
    /// The rule declares no bound on one wallet's influence, so no noise
    /// can be calibrated to it.
    #[error(
        "the terms add noise, and rule {0} declares no bound on how far one wallet moves its \
         result: nothing is released"
    )]
    NoSensitivityBound(String),
    /// No noise could be drawn.
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// The rule failed.
    #[error("aggregation failed: {0}")]
    Aggregation(#[from] AggregationError),
}

/// A round's batch as the mechanism takes it.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Each contribution with the wallet that sent it, in any order.
    pub contributions: &'a [(PublicKey, Contribution)],
    /// Every wallet the round assigned (public: the broker's sample).
    pub assigned: &'a [PublicKey],
    /// The round's secret key, which orders the wallets where a rule's
    /// result depends on order (bucketing).
    pub shuffle_key: [u8; 32],
}

impl Batch<'_> {
    /// Every assigned wallet's update (`d` values; a missing one as the
    /// zero update) in an order that the round's key and the wallets' keys
    /// set: one wallet's update cannot move another's place, which is what
    /// bounds an order-dependent rule's sensitivity (bucketing).
    fn in_keyed_order(&self, d: usize) -> Vec<Vec<f32>> {
        let given: HashMap<PublicKey, &Contribution> =
            self.contributions.iter().map(|(w, c)| (*w, c)).collect();
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.shuffle_key);
        let mut wallets: Vec<(hmac::Tag, PublicKey)> = self
            .assigned
            .iter()
            .chain(given.keys())
            .map(|w| (hmac::sign(&key, &w.0), *w))
            .collect();
        wallets.sort_unstable_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()).then(a.1.cmp(&b.1)));
        wallets.dedup_by(|a, b| a.1 == b.1);
        let zero = vec![0.0f32; d];
        wallets
            .iter()
            .map(|(_, w)| {
                given
                    .get(w)
                    .map_or_else(|| zero.clone(), |c| c.delta.clone())
            })
            .collect()
    }
}

/// Releases a batch under `terms`; `center` is where a rule that keeps a
/// momentum starts (see [`Rule::aggregate_from`]).
pub fn release(
    rule: &Rule,
    rule_name: &str,
    terms: &PrivacyTerms,
    batch: Batch<'_>,
    center: Option<&[f32]>,
    noise: &mut NoiseSource,
) -> Result<Release, ReleaseError> {
    let contributions: Vec<&Contribution> = batch.contributions.iter().map(|(_, c)| c).collect();
    if contributions.len() < terms.min_batch as usize || contributions.is_empty() {
        return Err(ReleaseError::TooFew {
            min_batch: terms.min_batch,
        });
    }
    let rule = rule.clone().with_shuffle_key(batch.shuffle_key);
    if !terms.has_noise() {
        exact(&rule, terms, &contributions, center)
    } else if rule.is_mean() {
        noised_mean(terms, &contributions, batch.assigned.len(), noise)
    } else {
        noised_rule(&rule.for_noise(), rule_name, terms, batch, center, noise)
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
pub fn noised_sums<C: std::borrow::Borrow<Contribution>>(
    terms: &PrivacyTerms,
    batch: &[C],
    noise: &mut NoiseSource,
) -> Result<Vec<f64>, ReleaseError> {
    let Some(first) = batch.first() else {
        return Err(ReleaseError::TooFew {
            min_batch: terms.min_batch,
        });
    };
    let width = first.borrow().delta.len() + terms.metrics.len() + 1;
    let mut sums = vec![0.0f64; width];
    for c in batch {
        let x = c.borrow().laid_out(terms);
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
    // them too).
    if !terms.has_noise() {
        return Ok(sums);
    }
    add_noise(terms, &mut sums, noise)?;
    Ok(sums)
}

/// Adds the terms' noise to every value. Terms that call for noise never
/// release with none: a standard deviation that is zero, subnormal or not
/// finite stops it.
fn add_noise(
    terms: &PrivacyTerms,
    values: &mut [f64],
    noise: &mut NoiseSource,
) -> Result<(), ReleaseError> {
    let sigma = terms.sigma();
    if !(sigma.is_normal() && sigma > 0.0) {
        return Err(NoiseError::BadSigma(sigma.to_string()).into());
    }
    noise.add_gaussian(values, sigma)?;
    Ok(())
}

/// The noised means of the declared metrics, from their noised sums.
fn noised_metrics(terms: &PrivacyTerms, sums: &[f64], denominator: f64) -> Vec<Metric> {
    let s = terms.sensitivity();
    terms
        .metrics
        .iter()
        .zip(sums)
        .map(|(bound, sum)| {
            Metric::new(
                &bound.name,
                bound.denormalize(sum / s.metric_scale / denominator),
            )
        })
        .collect()
}

/// The Gaussian mechanism around any rule but the mean (see the module's
/// documentation).
fn noised_rule(
    rule: &Rule,
    rule_name: &str,
    terms: &PrivacyTerms,
    batch: Batch<'_>,
    center: Option<&[f32]>,
    noise: &mut NoiseSource,
) -> Result<Release, ReleaseError> {
    let Some((_, first)) = batch.contributions.first() else {
        return Err(ReleaseError::TooFew {
            min_batch: terms.min_batch,
        });
    };
    let d = first.delta.len();
    let j = terms.metrics.len();
    let s = terms.sensitivity();
    let updates = batch.in_keyed_order(d);
    let n = updates.len();
    // Scaled so that one wallet moves it by at most as much as it moves the
    // sum of updates: the clipping norm when its update is replaced by the
    // zero update (absent), twice that when replaced by any other (the
    // accounting covers both, see `Sensitivity`). A margin of one part in
    // ten thousand over the declared bounds covers the rules' rounding to
    // `f32` (the property test allows the same).
    let c = terms.clip_norm;
    let absent = rule.sensitivity(n, c, c);
    let replaced = rule.sensitivity(n, c, 2.0 * c);
    let scale = (c / absent).min(2.0 * c / replaced) / (1.0 + 1e-4);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ReleaseError::NoSensitivityBound(rule_name.to_string()));
    }
    let combined = rule.aggregate_from(&updates, center)?;
    drop(updates);
    let mut values: Vec<f64> = combined
        .update
        .iter()
        .map(|&x| scale * f64::from(x))
        .collect();
    values.resize(d + j + 1, 0.0);
    for (_, c) in batch.contributions {
        for (v, m) in values[d..d + j].iter_mut().zip(&c.metrics) {
            *v += s.metric_scale * m;
        }
        values[d + j] += s.count_scale;
    }
    add_noise(terms, &mut values, noise)?;
    let denominator = (n as f64).max(f64::from(terms.min_batch));
    let sigma = terms.sigma();
    Ok(Release {
        aggregate: values[..d].iter().map(|v| (v / scale) as f32).collect(),
        updates: (values[d + j] / s.count_scale).max(0.0),
        metrics: noised_metrics(terms, &values[d..d + j], denominator),
        report: format!(
            "Gaussian mechanism around {rule_name}: {} on all {n} wallets assigned (a missing \
             one as the zero update); one wallet moves it by at most {absent:.4e} (absent) or \
             {replaced:.4e} (replaced), so the noise on it is {:.1}x the mean's: sigma {:.6} on \
             every coordinate",
            combined.report,
            n as f64 / scale,
            sigma / scale,
        ),
        noise: Some(NoiseReport {
            noise_multiplier: terms.noise_multiplier,
            sigma,
        }),
    })
}

fn noised_mean(
    terms: &PrivacyTerms,
    batch: &[&Contribution],
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
    let metrics = noised_metrics(terms, &sums[d..d + j], denominator);
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
    batch: &[&Contribution],
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

    /// The wallet with number `i`.
    fn wallet(i: usize) -> PublicKey {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        PublicKey(k)
    }

    /// `batch` as sent by wallets 0, 1, ..., with `assigned` wallets assigned.
    fn keyed(
        batch: &[Contribution],
        assigned: usize,
    ) -> (Vec<(PublicKey, Contribution)>, Vec<PublicKey>) {
        (
            batch
                .iter()
                .enumerate()
                .map(|(i, c)| (wallet(i), c.clone()))
                .collect(),
            (0..assigned.max(batch.len())).map(wallet).collect(),
        )
    }

    fn release_of(
        rule: &Rule,
        t: &PrivacyTerms,
        batch: &[Contribution],
        assigned: usize,
        noise: &mut NoiseSource,
    ) -> Result<Release, ReleaseError> {
        let (contributions, assigned) = keyed(batch, assigned);
        release(
            rule,
            &format!("{rule:?}"),
            t,
            Batch {
                contributions: &contributions,
                assigned: &assigned,
                shuffle_key: [3; 32],
            },
            None,
            noise,
        )
    }

    fn mean() -> Rule {
        Rule::Mean(crate::rules::Mean)
    }

    /// The order an order-dependent rule (bucketing) sees is the wallets'
    /// and the round's, never the updates': changing one wallet's update,
    /// or dropping it, changes that wallet's slot only. Ordered by content
    /// (say by the first value), one update moved from the smallest to the
    /// largest would shift every other wallet by a slot, and with it every
    /// bucket.
    #[test]
    fn one_update_moves_no_other_wallet_s_place() {
        let t = terms(1.0);
        let contribution =
            |v: f32| Contribution::from_payload(&payload(vec![v, -v], 1.0), &t, 2).unwrap();
        let batch: Vec<Contribution> = (0..40).map(|i| contribution(i as f32 / 400.0)).collect();
        let order = |batch: &[Contribution], shuffle_key: [u8; 32]| {
            let (contributions, assigned) = keyed(batch, 50);
            Batch {
                contributions: &contributions,
                assigned: &assigned,
                shuffle_key,
            }
            .in_keyed_order(2)
        };
        let before = order(&batch, [3; 32]);
        assert_eq!(before.len(), 50, "every assigned wallet has a slot");
        assert_eq!(
            before.iter().filter(|u| u[0] == 0.0).count(),
            11,
            "the ten missing wallets and wallet 0 are zero"
        );
        for (changed, to) in [(0, 0.09), (39, -0.09), (17, 0.0)] {
            let mut neighbour = batch.clone();
            neighbour[changed] = contribution(to);
            let after = order(&neighbour, [3; 32]);
            let moved: Vec<usize> = (0..50).filter(|&k| before[k] != after[k]).collect();
            assert_eq!(
                moved.len(),
                1,
                "wallet {changed} set to {to}: slots {moved:?} changed"
            );
        }
        let mut dropped = batch.clone();
        dropped.pop();
        let after = order(&dropped, [3; 32]);
        let moved = (0..50).filter(|&k| before[k] != after[k]).count();
        assert_eq!(
            moved, 1,
            "a wallet that sent nothing keeps its slot, as zero"
        );
        // Another round's key, another order.
        assert_ne!(order(&batch, [4; 32]), before);
    }

    #[test]
    fn without_noise_the_release_is_exact_and_needs_k() {
        let t = terms(0.0);
        let batch: Vec<Contribution> = [2.0, 4.0, 6.0]
            .iter()
            .map(|&l| Contribution::from_payload(&payload(vec![0.1, 0.2], l), &t, 2).unwrap())
            .collect();
        let mut noise = NoiseSource::os();
        let r = release_of(&mean(), &t, &batch, 200, &mut noise).unwrap();
        assert_eq!(r.updates, 3.0);
        assert!((r.metrics[0].value - 4.0).abs() < 1e-9);
        assert!(r.noise.is_none());
        assert!(matches!(
            release_of(&mean(), &t, &batch[..2], 200, &mut noise),
            Err(ReleaseError::TooFew { min_batch: 3 })
        ));
    }

    #[test]
    fn with_noise_every_rule_is_released_and_the_mean_is_unbiased() {
        let t = terms(1.0);
        let batch: Vec<Contribution> = (0..200)
            .map(|_| Contribution::from_payload(&payload(vec![0.5, -0.5], 5.0), &t, 2).unwrap())
            .collect();
        let mut noise = NoiseSource::seeded_for_simulation(1);
        for rule in [
            "median",
            "trimmed-mean:0.1",
            "multi-krum",
            "centered-clipping:0.5:3",
            "centered-clipping-momentum:0.1:0.9",
            "bucketing:4:median",
        ] {
            let built = Rule::new(&rule.parse().unwrap()).unwrap();
            let r = release_of(&built, &t, &batch, 200, &mut noise).unwrap();
            assert!(
                r.report.starts_with("Gaussian mechanism around"),
                "{}",
                r.report
            );
            assert!(r.report.contains("x the mean's"), "{}", r.report);
            assert!(r.noise.is_some() && r.aggregate.iter().all(|x| x.is_finite()));
            assert!(
                (r.updates - 200.0).abs() < 50.0,
                "{rule}: count {}",
                r.updates
            );
        }
        let mut sum = [0.0f64; 2];
        let mut count = 0.0;
        let runs = 400;
        for _ in 0..runs {
            let r = release_of(&mean(), &t, &batch, 200, &mut noise).unwrap();
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

    /// The attack on the wrapper: a consumer who knows every update but one
    /// wallet's, and who took part, builds the batch where that wallet's
    /// update moves the rule the most, then guesses which of two updates
    /// (+C or -C on one coordinate) the wallet sent, with the best test
    /// there is (the likelihood ratio: the release's aggregate against the
    /// midpoint). The batches: for the median ten updates at +C and ten at
    /// -C, so that the target's sign is the median's; for the trimmed mean
    /// four at +C, four at -C and zeros; for centered clipping with
    /// momentum the others at the center. Its advantage (true-positive rate
    /// minus false-positive rate) stays within what one Gaussian release at
    /// noise multiplier z allows, `2 Phi(1 / (2 z)) - 1`, and comes close to
    /// it, so the noise is no larger than it needs to be. With the noise the
    /// mean would get (sigma / n, what a wrapper that ignores the rule
    /// adds) the same attack beats the promise, and reads the wallet nearly
    /// always under the median. Centered clipping with momentum needs less
    /// noise than the mean: its step moves by at most `(1 - beta)` as much.
    #[test]
    fn one_wallet_is_hidden_as_well_under_any_rule_as_the_terms_promise() {
        use c2ssi_protocol::AggregationRule;
        use statrs::distribution::{ContinuousCDF, Normal};
        let z = 1.0;
        let t = PrivacyTerms::with_noise(3, 1.0, 1e-5, 1, z, Vec::new()).unwrap();
        let at = |x: f32| Contribution {
            delta: vec![x, 0.0],
            metrics: Vec::new(),
        };
        let c = 0.999_99f32;
        let median: Vec<Contribution> = (0..20).map(|i| at(if i < 10 { c } else { -c })).collect();
        let trimmed: Vec<Contribution> = (0..20)
            .map(|i| {
                at(if i < 4 {
                    c
                } else if i < 8 {
                    -c
                } else {
                    0.0
                })
            })
            .collect();
        let centered: Vec<Contribution> = (0..20).map(|_| at(0.0)).collect();
        let cases: [(AggregationRule, &[Contribution]); 3] = [
            (AggregationRule::Median, &median),
            (AggregationRule::TrimmedMean { trim: 0.2 }, &trimmed),
            (
                AggregationRule::CenteredClippingMomentum {
                    radius: 1.0,
                    beta: 0.5,
                },
                &centered,
            ),
        ];
        let normal = Normal::new(0.0, 1.0).unwrap();
        let allowed = 2.0 * normal.cdf(1.0 / (2.0 * z)) - 1.0;
        let trials = 3000;
        let mut noise = NoiseSource::seeded_for_simulation(9);
        for (rule, others) in cases {
            let built = Rule::new(&rule).unwrap();
            let n = others.len() + 1;
            let world = |x: f32| {
                let mut batch = others.to_vec();
                batch.push(at(x));
                batch
            };
            let (low, high) = (world(-c), world(c));
            // What the attacker computes from the rule itself: both exact
            // results, and the noise on the released aggregate.
            let exact = |batch: &[Contribution]| {
                let deltas: Vec<Vec<f32>> = batch.iter().map(|b| b.delta.clone()).collect();
                f64::from(built.aggregate(&deltas).unwrap().update[0])
            };
            let (from, to) = (exact(&low), exact(&high));
            let absent = built.sensitivity(n, 1.0, 1.0);
            let replaced = built.sensitivity(n, 1.0, 2.0);
            let scale = (1.0 / absent).min(2.0 / replaced) / (1.0 + 1e-4);
            let sigma = t.sigma() / scale;
            let mut said_high = [0usize; 2];
            for (k, batch) in [&low, &high].into_iter().enumerate() {
                for _ in 0..trials {
                    let r = release_of(&built, &t, batch, n, &mut noise).unwrap();
                    if f64::from(r.aggregate[0]) > (from + to) / 2.0 {
                        said_high[k] += 1;
                    }
                }
            }
            let advantage = (said_high[1] as f64 - said_high[0] as f64) / f64::from(trials);
            // Four standard errors of the difference of two rates.
            let slack = 4.0 * (0.5 / f64::from(trials)).sqrt();
            assert!(
                advantage <= allowed + slack,
                "{rule}: advantage {advantage:.3} over the {allowed:.3} z = {z} allows"
            );
            assert!(
                advantage >= allowed - slack,
                "{rule}: advantage {advantage:.3}, far below {allowed:.3}: the noise is larger \
                 than it needs to be, or the batch is not the worst case"
            );
            // Where the rule needs more noise than the mean, the mean's
            // noise on its result would break the promise.
            let mean_sigma = t.sigma() / n as f64;
            let naive = 2.0 * normal.cdf((to - from).abs() / (2.0 * mean_sigma)) - 1.0;
            if sigma > mean_sigma {
                assert!(
                    naive > allowed + slack,
                    "{rule}: the mean's noise would allow only {naive:.3}"
                );
            }
            if rule == AggregationRule::Median {
                assert!(
                    naive > 0.99,
                    "the median under the mean's noise: {naive:.3}"
                );
            }
        }
    }
}
