//! The aggregation rules, one per file, as pure functions of a batch of
//! updates (every update the same length, each wallet counting once).
//! [`Rule::new`] checks a rule's parameters when it is built, so that an
//! impossible rule fails when a job starts, not in its first round. Sums run
//! in `f64`.
//!
//! Differential privacy is not a rule: the mechanism (`crate::mechanism`)
//! wraps the mean with clipping and noise.

mod centered_clipping;
mod clipped_mean;
mod mean;
mod median;
mod multi_krum;
mod trimmed_mean;

use c2ssi_protocol::AggregationRule;

pub use centered_clipping::CenteredClipping;
pub use clipped_mean::ClippedMean;
pub use mean::Mean;
pub use median::Median;
pub use multi_krum::MultiKrum;
pub use trimmed_mean::TrimmedMean;

/// Why a batch cannot be aggregated, or a rule cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregationError {
    /// No updates.
    #[error("the batch is empty")]
    Empty,
    /// Updates of different lengths.
    #[error("update {index} has {len} values, the first has {expected}")]
    Ragged {
        /// Which.
        index: usize,
        /// Its length.
        len: usize,
        /// The first's length.
        expected: usize,
    },
    /// A parameter outside its domain, or a batch the rule cannot take.
    #[error("{0}")]
    Invalid(String),
}

/// The combined update and what the rule did.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The combined update.
    pub update: Vec<f32>,
    /// What the rule did, in words.
    pub report: String,
    /// How many updates contributed (Multi-Krum selects some).
    pub contributors: usize,
}

/// A rule, checked when built.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// The plain mean (FedAvg with every wallet weighing one).
    Mean(Mean),
    /// The mean of updates clipped in norm.
    ClippedMean(ClippedMean),
    /// The coordinate-wise median.
    Median(Median),
    /// The coordinate-wise trimmed mean.
    TrimmedMean(TrimmedMean),
    /// Multi-Krum.
    MultiKrum(MultiKrum),
    /// Centered clipping.
    CenteredClipping(CenteredClipping),
}

impl Rule {
    /// Builds `rule`, checking its parameters.
    pub fn new(rule: &AggregationRule) -> Result<Rule, AggregationError> {
        Ok(match rule {
            AggregationRule::Mean => Rule::Mean(Mean),
            AggregationRule::ClippedMean { clip_norm } => {
                Rule::ClippedMean(ClippedMean::new(*clip_norm)?)
            }
            AggregationRule::Median => Rule::Median(Median),
            AggregationRule::TrimmedMean { trim } => Rule::TrimmedMean(TrimmedMean::new(*trim)?),
            AggregationRule::MultiKrum {
                byzantine,
                selected,
            } => Rule::MultiKrum(MultiKrum::new(*byzantine, *selected)),
            AggregationRule::CenteredClipping { radius, iterations } => {
                Rule::CenteredClipping(CenteredClipping::new(*radius, *iterations)?)
            }
        })
    }

    /// Whether this is the plain mean: the only rule whose sensitivity to
    /// one wallet is its clipping bound, so the only one noise can wrap.
    pub fn is_mean(&self) -> bool {
        matches!(self, Rule::Mean(_))
    }

    /// Applies the rule to a batch.
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        check(updates)?;
        match self {
            Rule::Mean(r) => r.aggregate(updates),
            Rule::ClippedMean(r) => r.aggregate(updates),
            Rule::Median(r) => r.aggregate(updates),
            Rule::TrimmedMean(r) => r.aggregate(updates),
            Rule::MultiKrum(r) => r.aggregate(updates),
            Rule::CenteredClipping(r) => r.aggregate(updates),
        }
    }
}

/// Applies `rule` to a batch: [`Rule::new`] then [`Rule::aggregate`].
pub fn aggregate(
    rule: &AggregationRule,
    updates: &[Vec<f32>],
) -> Result<Aggregate, AggregationError> {
    Rule::new(rule)?.aggregate(updates)
}

/// The common length of a batch's updates.
pub(crate) fn check(updates: &[Vec<f32>]) -> Result<usize, AggregationError> {
    let Some(first) = updates.first() else {
        return Err(AggregationError::Empty);
    };
    let d = first.len();
    for (index, u) in updates.iter().enumerate() {
        if u.len() != d {
            return Err(AggregationError::Ragged {
                index,
                len: u.len(),
                expected: d,
            });
        }
    }
    Ok(d)
}

/// The L2 norm.
pub fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// `v` scaled so that its L2 norm is at most `limit`. The scale leaves a
/// margin of one part in a million, so that rounding each coordinate to
/// `f32` cannot push the norm past `limit` (the noise is calibrated to it).
pub fn clip(v: &[f32], limit: f64) -> Vec<f32> {
    let n = norm(v);
    if n > limit && n > 0.0 {
        let s = (limit / n * (1.0 - 1e-6)) as f32;
        v.iter().map(|x| x * s).collect()
    } else {
        v.to_vec()
    }
}

/// The plain mean of a non-empty batch of equal-length updates.
pub(crate) fn mean_of(updates: &[Vec<f32>], d: usize) -> Vec<f32> {
    let mut acc = vec![0.0f64; d];
    for u in updates {
        for (a, &x) in acc.iter_mut().zip(u) {
            *a += f64::from(x);
        }
    }
    let n = updates.len() as f64;
    acc.into_iter().map(|a| (a / n) as f32).collect()
}

/// Squared Euclidean distance.
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum()
}

/// `combine` applied to each coordinate's sorted values.
pub(crate) fn coordinate_wise(
    updates: &[Vec<f32>],
    d: usize,
    mut combine: impl FnMut(&mut [f32]) -> f32,
) -> Vec<f32> {
    let mut column = vec![0.0f32; updates.len()];
    (0..d)
        .map(|j| {
            for (c, u) in column.iter_mut().zip(updates) {
                *c = u[j];
            }
            column.sort_unstable_by(f32::total_cmp);
            combine(&mut column)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch(max_len: usize) -> impl Strategy<Value = Vec<Vec<f32>>> {
        (1..max_len, 3usize..12).prop_flat_map(|(d, n)| {
            proptest::collection::vec(proptest::collection::vec(-10.0f32..10.0, d), n)
        })
    }

    fn rules() -> Vec<AggregationRule> {
        vec![
            AggregationRule::Mean,
            AggregationRule::ClippedMean { clip_norm: 5.0 },
            AggregationRule::Median,
            AggregationRule::TrimmedMean { trim: 0.2 },
            AggregationRule::MultiKrum {
                byzantine: Some(0),
                selected: None,
            },
            AggregationRule::CenteredClipping {
                radius: 2.0,
                iterations: 3,
            },
        ]
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + x.abs().max(y.abs())))
    }

    proptest! {
        #[test]
        fn clipping_never_leaves_a_norm_above_the_limit(
            v in proptest::collection::vec(-1e6f32..1e6, 1..200),
            limit in 1e-6f64..1e3,
        ) {
            let c = clip(&v, limit);
            prop_assert!(norm(&c) <= limit, "{} > {limit}", norm(&c));
        }

        #[test]
        fn every_rule_is_permutation_invariant(updates in batch(8), seed in any::<u64>()) {
            let n = updates.len();
            let mut order: Vec<usize> = (0..n).collect();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let shuffled: Vec<Vec<f32>> = order.iter().map(|&i| updates[i].clone()).collect();
            for rule in rules() {
                let a = aggregate(&rule, &updates).unwrap();
                let b = aggregate(&rule, &shuffled).unwrap();
                prop_assert!(close(&a.update, &b.update), "{rule}: {:?} vs {:?}", a.update, b.update);
            }
        }

        /// A bounded number of arbitrary outliers moves each robust rule by a
        /// bounded amount: the result stays within the honest updates' range
        /// (median, trimmed mean), among them (Multi-Krum), or within the
        /// radius budget of its starting center, the median (centered clipping).
        #[test]
        fn outliers_move_robust_rules_boundedly(
            honest in batch(6),
            outlier in prop_oneof![Just(1e6f32), Just(-1e6f32), -1e4f32..1e4],
        ) {
            let n = honest.len();
            let d = honest[0].len();
            let f = (n - 1) / 3; // fewer than a third of the batch
            let mut all = honest.clone();
            for k in 0..f {
                all.push(vec![outlier * (k as f32 + 1.0); d]);
            }
            let lo: Vec<f32> = (0..d).map(|j| honest.iter().map(|u| u[j]).fold(f32::MAX, f32::min)).collect();
            let hi: Vec<f32> = (0..d).map(|j| honest.iter().map(|u| u[j]).fold(f32::MIN, f32::max)).collect();
            let within = |v: &[f32]| v.iter().enumerate().all(|(j, x)| *x >= lo[j] - 1e-3 && *x <= hi[j] + 1e-3);

            let m = aggregate(&AggregationRule::Median, &all).unwrap();
            prop_assert!(within(&m.update), "median {:?}", m.update);
            let t = aggregate(&AggregationRule::TrimmedMean { trim: 0.34 }, &all).unwrap();
            prop_assert!(within(&t.update), "trimmed {:?}", t.update);
            if outlier.abs() >= 1e6 {
                let k = aggregate(&AggregationRule::MultiKrum { byzantine: Some(f as u32), selected: None }, &all).unwrap();
                prop_assert!(within(&k.update), "krum {:?}", k.update);
            }
            let radius = 1.5;
            let c = aggregate(&AggregationRule::CenteredClipping { radius, iterations: 4 }, &all).unwrap();
            let moved = squared_distance(&c.update, &m.update).sqrt();
            prop_assert!(moved <= 4.0 * radius + 1e-3, "centered clipping moved {moved} from the median");
            let cm = aggregate(&AggregationRule::ClippedMean { clip_norm: 2.0 }, &all).unwrap();
            prop_assert!(norm(&cm.update) <= 2.0 + 1e-3);
        }
    }

    #[test]
    fn a_single_outlier_moves_the_plain_mean_without_bound() {
        let mut updates = vec![vec![1.0f32, 1.0]; 9];
        updates.push(vec![1e6, 1e6]);
        let m = aggregate(&AggregationRule::Mean, &updates).unwrap();
        assert!(m.update[0] > 1e4);
        let med = aggregate(&AggregationRule::Median, &updates).unwrap();
        assert_eq!(med.update, vec![1.0, 1.0]);
    }

    #[test]
    fn bad_batches_and_bad_rules_are_refused_by_name() {
        assert_eq!(
            aggregate(&AggregationRule::Mean, &[]),
            Err(AggregationError::Empty)
        );
        let ragged = aggregate(&AggregationRule::Median, &[vec![1.0], vec![1.0, 2.0]]);
        assert_eq!(
            ragged.unwrap_err().to_string(),
            "update 1 has 2 values, the first has 1"
        );
        assert!(Rule::new(&AggregationRule::TrimmedMean { trim: 0.5 }).is_err());
        assert!(Rule::new(&AggregationRule::ClippedMean { clip_norm: 0.0 }).is_err());
        assert!(
            Rule::new(&AggregationRule::CenteredClipping {
                radius: f64::NAN,
                iterations: 1
            })
            .is_err()
        );
    }
}
