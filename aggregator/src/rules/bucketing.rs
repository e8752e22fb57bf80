//! Bucketing (Karimireddy, He and Jaggi, "Byzantine-robust learning on
//! heterogeneous datasets via bucketing", ICLR 2022): the batch shuffled,
//! averaged in buckets, and the bucket means handed to a robust rule.
//!
//! With one person per wallet every update is one example's gradient, so
//! honest updates lie far apart and a robust rule cannot tell an attacker
//! from an unusual person. Averaging `s` updates per bucket shrinks the
//! honest spread by about `sqrt(s)` while at most `f` buckets hold an
//! attacker. The shuffle is keyed: an update's place is the HMAC-SHA-256 of
//! its bytes under a key the aggregator draws each round (the operating
//! system's generator; the simulation's seed), so that no wallet can choose
//! its bucket, and the result does not depend on the order updates arrived in.
//!
//! Under noise the buckets must not depend on what an update holds: one
//! person's update would then move others between buckets. There the
//! mechanism hands the batch already shuffled by wallet (see
//! [`Bucketing::in_batch_order`]) and buckets follow that order.

use ring::hmac;

use super::{Aggregate, AggregationError, Rule, check, mean_of};

/// Bucketing in front of another rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucketing {
    size: usize,
    inner: Box<Rule>,
    key: [u8; 32],
    in_batch_order: bool,
}

impl Bucketing {
    /// Buckets of `size` in front of `inner`, with the all-zero shuffle key
    /// until [`Bucketing::with_key`] gives the round's.
    pub fn new(size: u32, inner: Rule) -> Result<Bucketing, AggregationError> {
        if size == 0 {
            return Err(AggregationError::Invalid(
                "a bucket holds at least one update".into(),
            ));
        }
        if matches!(inner, Rule::Bucketing(_)) {
            return Err(AggregationError::Invalid(
                "bucketing cannot wrap bucketing".into(),
            ));
        }
        Ok(Bucketing {
            size: size as usize,
            inner: Box::new(inner),
            key: [0; 32],
            in_batch_order: false,
        })
    }

    /// The same rule shuffling with `key`.
    pub fn with_key(mut self, key: [u8; 32]) -> Bucketing {
        self.key = key;
        self
    }

    /// The same rule filling buckets in the batch's own order, which the
    /// caller has shuffled (the mechanism, by wallet, under the round's key).
    pub fn in_batch_order(mut self) -> Bucketing {
        self.in_batch_order = true;
        self
    }

    /// The number of buckets for `n` updates and the fewest updates in one.
    fn buckets(&self, n: usize) -> (usize, usize) {
        let buckets = n.div_ceil(self.size).max(1);
        (buckets, n / buckets)
    }

    /// How far the result for `n` updates of norm at most `norm` moves
    /// when one update moves by `change`, with buckets in the batch's order:
    /// one bucket mean moves by at most `change` over the fewest updates in
    /// a bucket, and the inner rule sees one of its inputs move that much.
    /// Buckets chosen by content have no such bound (one update reshuffles
    /// the others): infinite.
    pub fn sensitivity(&self, n: usize, norm: f64, change: f64) -> f64 {
        if !self.in_batch_order {
            return f64::INFINITY;
        }
        let (buckets, fewest) = self.buckets(n);
        self.inner
            .sensitivity(buckets, norm, change / fewest.max(1) as f64)
    }

    /// The batch in buckets, then the inner rule on the bucket means (from
    /// `center` where the inner rule keeps a momentum).
    pub fn aggregate(
        &self,
        updates: &[Vec<f32>],
        center: Option<&[f32]>,
    ) -> Result<Aggregate, AggregationError> {
        let d = check(updates)?;
        let n = updates.len();
        let order: Vec<usize> = if self.in_batch_order {
            (0..n).collect()
        } else {
            let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
            let mut tagged: Vec<(hmac::Tag, usize)> = updates
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    let bytes: Vec<u8> = u.iter().flat_map(|x| x.to_le_bytes()).collect();
                    (hmac::sign(&key, &bytes), i)
                })
                .collect();
            // Equal tags mean equal updates, whose order changes nothing.
            tagged.sort_unstable_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
            tagged.into_iter().map(|(_, i)| i).collect()
        };
        // ceil(n / size) buckets, as in the paper, their sizes differing by
        // at most one (no update alone in a short last bucket).
        let (buckets, _) = self.buckets(n);
        let means: Vec<Vec<f32>> = (0..buckets)
            .map(|k| {
                let members: Vec<&[f32]> = order[k * n / buckets..(k + 1) * n / buckets]
                    .iter()
                    .map(|&i| updates[i].as_slice())
                    .collect();
                mean_of(&members, d)
            })
            .collect();
        let inner = self.inner.aggregate_from(&means, center)?;
        Ok(Aggregate {
            update: inner.update,
            report: format!(
                "{n} updates shuffled into {buckets} buckets of up to {}, then {}",
                self.size, inner.report
            ),
            contributors: (inner.contributors * self.size).min(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Mean, Median};

    fn batch() -> Vec<Vec<f32>> {
        (0..10).map(|i| vec![i as f32, -(i as f32)]).collect()
    }

    #[test]
    fn buckets_of_the_mean_are_the_mean() {
        let b = Bucketing::new(2, Rule::Mean(Mean)).unwrap();
        let a = b.aggregate(&batch(), None).unwrap();
        assert!((a.update[0] - 4.5).abs() < 1e-6, "{:?}", a.update);
        assert!(a.report.starts_with("10 updates shuffled into 5 buckets"));
        // 10 in buckets of at most 3: four buckets of 2 or 3, none of 1.
        let b = Bucketing::new(3, Rule::Mean(Mean)).unwrap();
        assert!(
            b.aggregate(&batch(), None)
                .unwrap()
                .report
                .contains("into 4 buckets")
        );
    }

    #[test]
    fn the_key_decides_the_buckets_and_the_order_does_not() {
        let mut reversed = batch();
        reversed.reverse();
        let b = Bucketing::new(2, Rule::Median(Median)).unwrap();
        let one = b.clone().with_key([1; 32]);
        assert_eq!(
            one.aggregate(&batch(), None).unwrap(),
            one.aggregate(&reversed, None).unwrap()
        );
        let results: std::collections::BTreeSet<u32> = (0..20u8)
            .map(|k| {
                b.clone()
                    .with_key([k; 32])
                    .aggregate(&batch(), None)
                    .unwrap()
                    .update[0]
                    .to_bits()
            })
            .collect();
        assert!(results.len() > 1, "every key gave the same buckets");
    }

    #[test]
    fn impossible_buckets_are_refused() {
        assert!(Bucketing::new(0, Rule::Mean(Mean)).is_err());
        let inner = Rule::Bucketing(Bucketing::new(2, Rule::Mean(Mean)).unwrap());
        assert!(Bucketing::new(2, inner).is_err());
    }
}
