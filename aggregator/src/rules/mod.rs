//! The aggregation rules, one per file, as pure functions of a batch of
//! updates (every update the same length, each wallet counting once).
//! [`Rule::new`] checks a rule's parameters when it is built, so that an
//! impossible rule fails when a job starts, not in its first round. Sums run
//! in `f64`.
//!
//! Differential privacy is not a rule: the mechanism (`crate::mechanism`)
//! wraps any rule with noise calibrated to what the rule declares of itself,
//! [`Rule::sensitivity`]: how far its result can move when one wallet's
//! update changes. Each rule's file proves its own bound; a property test
//! below checks every bound on random batches.

mod bucketing;
mod centered_clipping;
mod clipped_mean;
mod mean;
mod median;
mod momentum_clipping;
mod multi_krum;
#[cfg(test)]
mod reference;
mod select;
mod trimmed_mean;

use c2ssi_protocol::AggregationRule;
use rayon::prelude::*;

pub use bucketing::Bucketing;
pub use centered_clipping::CenteredClipping;
pub use clipped_mean::ClippedMean;
pub use mean::Mean;
pub use median::Median;
pub use momentum_clipping::MomentumClipping;
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
    /// Centered clipping with server momentum, from the last aggregate.
    MomentumClipping(MomentumClipping),
    /// Bucketing in front of another rule.
    Bucketing(Bucketing),
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
            } => Rule::MultiKrum(MultiKrum::new(*byzantine, *selected)?),
            AggregationRule::CenteredClipping { radius, iterations } => {
                Rule::CenteredClipping(CenteredClipping::new(*radius, *iterations)?)
            }
            AggregationRule::CenteredClippingMomentum { radius, beta } => {
                Rule::MomentumClipping(MomentumClipping::new(*radius, *beta)?)
            }
            AggregationRule::Bucketing { size, inner } => {
                Rule::Bucketing(Bucketing::new(*size, Rule::new(inner)?)?)
            }
        })
    }

    /// The same rule, shuffling with `key` where it shuffles (bucketing):
    /// the aggregator gives each round a fresh key.
    pub fn with_shuffle_key(self, key: [u8; 32]) -> Rule {
        match self {
            Rule::Bucketing(b) => Rule::Bucketing(b.with_key(key)),
            other => other,
        }
    }

    /// Whether this is the plain mean, which the mechanism computes from
    /// its noised sums directly (the same release as the general wrapper's
    /// with the mean's sensitivity, without computing the mean twice).
    pub fn is_mean(&self) -> bool {
        matches!(self, Rule::Mean(_))
    }

    /// The same rule as noise must wrap it: bucketing fills its buckets in
    /// the batch's order, which the mechanism shuffles by wallet, so that
    /// one wallet's update cannot move the others between buckets.
    pub fn for_noise(self) -> Rule {
        match self {
            Rule::Bucketing(b) => Rule::Bucketing(b.in_batch_order()),
            other => other,
        }
    }

    /// An upper bound on how far the rule's result moves, in L2, between
    /// two batches of `n` updates of norm at most `norm` that differ in one
    /// update, whose two versions lie at most `change` apart (a wallet's
    /// update against the zero update: `change = norm`). It holds for any
    /// center a rule that keeps a momentum is given. Infinite where no bound
    /// is known (bucketing by content: use [`Rule::for_noise`]).
    pub fn sensitivity(&self, n: usize, norm: f64, change: f64) -> f64 {
        match self {
            Rule::Mean(r) => r.sensitivity(n, change),
            Rule::ClippedMean(r) => r.sensitivity(n, change),
            Rule::Median(r) => r.sensitivity(change),
            Rule::TrimmedMean(r) => r.sensitivity(n, change),
            Rule::MultiKrum(r) => r.sensitivity(n, norm, change),
            Rule::CenteredClipping(r) => r.sensitivity(n, change),
            Rule::MomentumClipping(r) => r.sensitivity(n, change),
            Rule::Bucketing(r) => r.sensitivity(n, norm, change),
        }
    }

    /// Applies the rule to a batch (a rule that keeps a momentum starts from
    /// zero: see [`Rule::aggregate_from`]).
    pub fn aggregate(&self, updates: &[Vec<f32>]) -> Result<Aggregate, AggregationError> {
        self.aggregate_from(updates, None)
    }

    /// Applies the rule to a batch; a rule that keeps a momentum starts from
    /// `center`, the last aggregate it released for the job (none: zero).
    /// Every other rule ignores it.
    pub fn aggregate_from(
        &self,
        updates: &[Vec<f32>],
        center: Option<&[f32]>,
    ) -> Result<Aggregate, AggregationError> {
        check(updates)?;
        match self {
            Rule::Mean(r) => r.aggregate(updates),
            Rule::ClippedMean(r) => r.aggregate(updates),
            Rule::Median(r) => r.aggregate(updates),
            Rule::TrimmedMean(r) => r.aggregate(updates),
            Rule::MultiKrum(r) => r.aggregate(updates),
            Rule::CenteredClipping(r) => r.aggregate(updates),
            Rule::MomentumClipping(r) => r.aggregate(updates, center),
            Rule::Bucketing(r) => r.aggregate(updates, center),
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

/// A clipping radius, checked: finite and positive.
pub(crate) fn checked_radius(radius: f64) -> Result<f64, AggregationError> {
    if radius.is_finite() && radius > 0.0 {
        Ok(radius)
    } else {
        Err(AggregationError::Invalid(format!(
            "radius {radius} must be positive"
        )))
    }
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

/// Below this many values (updates times coordinates) a rule runs on the
/// calling thread: waking the pool would cost more than it saves.
const PARALLEL_WORK: usize = 1 << 16;

/// Whether work of `n` updates of `d` values is worth both cores.
pub(crate) fn parallel(n: usize, d: usize) -> bool {
    n.saturating_mul(d) >= PARALLEL_WORK
}

/// Coordinates per block of the plain mean of `d` coordinates: at most 4,096
/// (32 KiB of `f64` accumulators, which stay in cache while every update's
/// slice of the block streams in from memory, long enough for the hardware
/// prefetcher), and at least 8 blocks where `d` allows, so that both cores
/// have work. Any blocking gives the same result.
pub(crate) fn mean_block(d: usize) -> usize {
    (d / 8).next_multiple_of(64).clamp(256, 4096)
}

/// Coordinates per block of the coordinate-wise rules for a batch of `n`:
/// the block transposed (`n` values per coordinate, 4 bytes each) stays
/// within 128 KiB, at most 256 and at least 8 coordinates. It depends on the
/// batch only, never on the number of threads, so that sums over
/// coordinates (centered clipping's distances) come out the same however
/// many threads run.
pub(crate) fn column_block(n: usize) -> usize {
    (32_768 / n.max(1)).clamp(8, 256)
}

/// Runs `body(state, start, chunk)` on each chunk of `block` values of `out`
/// (`start` is the chunk's first index), on both cores when `parallel`.
/// Each chunk is computed on its own by one thread, so the result does not
/// depend on how many threads there are.
pub(crate) fn for_blocks<T: Send, S>(
    out: &mut [T],
    block: usize,
    parallel: bool,
    init: impl Fn() -> S + Sync + Send,
    body: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) {
    if parallel {
        out.par_chunks_mut(block)
            .enumerate()
            .for_each_init(init, |state, (b, chunk)| body(state, b * block, chunk));
    } else {
        let mut state = init();
        for (b, chunk) in out.chunks_mut(block).enumerate() {
            body(&mut state, b * block, chunk);
        }
    }
}

/// Runs `body(state, start, a_chunk, b_chunk)` on each chunk of `block_a`
/// values of `a` together with the matching chunk of `block_b` values of
/// `b` (`start` is the first index into `a`), on both cores when
/// `parallel`, each pair computed on its own by one thread as in
/// [`for_blocks`].
pub(crate) fn for_block_pairs<A: Send, B: Send, S>(
    a: &mut [A],
    block_a: usize,
    b: &mut [B],
    block_b: usize,
    parallel: bool,
    init: impl Fn() -> S + Sync + Send,
    body: impl Fn(&mut S, usize, &mut [A], &mut [B]) + Sync + Send,
) {
    if parallel {
        a.par_chunks_mut(block_a)
            .zip(b.par_chunks_mut(block_b))
            .enumerate()
            .for_each_init(init, |state, (k, (x, y))| body(state, k * block_a, x, y));
    } else {
        let mut state = init();
        for (k, (x, y)) in a.chunks_mut(block_a).zip(b.chunks_mut(block_b)).enumerate() {
            body(&mut state, k * block_a, x, y);
        }
    }
}

/// The plain mean of a non-empty batch of equal-length updates: for each
/// coordinate, the `f64` sum in the batch's order, divided by the count.
pub(crate) fn mean_of<U: AsRef<[f32]> + Sync>(updates: &[U], d: usize) -> Vec<f32> {
    weighted_mean_of(updates, None, d)
}

/// The mean of `scales[i] * updates[i]` (each product rounded to `f32`, as
/// [`clip`] rounds it), or of the updates themselves without `scales`.
/// Blocks of coordinates run in parallel; each coordinate's sum runs over
/// the updates in order, as a plain loop would, so the result is the same
/// bit for bit.
pub(crate) fn weighted_mean_of<U: AsRef<[f32]> + Sync>(
    updates: &[U],
    scales: Option<&[f32]>,
    d: usize,
) -> Vec<f32> {
    let n = updates.len() as f64;
    let block = mean_block(d);
    let mut out = vec![0.0f32; d];
    for_blocks(
        &mut out,
        block,
        parallel(updates.len(), d),
        || vec![0.0f64; block],
        |acc, start, chunk| {
            let acc = &mut acc[..chunk.len()];
            let end = start + chunk.len();
            acc.fill(0.0);
            match scales {
                None => add_rows(acc, updates, start, end),
                Some(scales) => {
                    for (u, &s) in updates.iter().zip(scales) {
                        for (a, &x) in acc.iter_mut().zip(&u.as_ref()[start..end]) {
                            *a += f64::from(x * s);
                        }
                    }
                }
            }
            for (o, a) in chunk.iter_mut().zip(acc.iter()) {
                *o = (a / n) as f32;
            }
        },
    );
    out
}

/// Adds each update's values `start..end` to `acc`, the updates in order,
/// four at a time (fewer loads and stores of `acc`, the same sums).
fn add_rows<U: AsRef<[f32]>>(acc: &mut [f64], updates: &[U], start: usize, end: usize) {
    let mut quads = updates.chunks_exact(4);
    for q in &mut quads {
        let (a, b) = (&q[0].as_ref()[start..end], &q[1].as_ref()[start..end]);
        let (c, e) = (&q[2].as_ref()[start..end], &q[3].as_ref()[start..end]);
        for ((((s, &x0), &x1), &x2), &x3) in acc.iter_mut().zip(a).zip(b).zip(c).zip(e) {
            let mut t = *s;
            t += f64::from(x0);
            t += f64::from(x1);
            t += f64::from(x2);
            t += f64::from(x3);
            *s = t;
        }
    }
    for u in quads.remainder() {
        for (s, &x) in acc.iter_mut().zip(&u.as_ref()[start..end]) {
            *s += f64::from(x);
        }
    }
}

/// Squared Euclidean distance, summed in order (the tests' reference).
#[cfg(test)]
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum()
}

/// Squared Euclidean distance from `x` to `c`, in eight running sums (one
/// per coordinate modulo 8) added in a fixed order: a fixed result for the
/// same inputs, computed at the speed of memory.
pub(crate) fn squared_distance_to(x: &[f32], c: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut xs = x.chunks_exact(8);
    let mut cs = c.chunks_exact(8);
    for (x8, c8) in (&mut xs).zip(&mut cs) {
        for ((l, &x), &c) in lanes.iter_mut().zip(x8).zip(c8) {
            let d = f64::from(x) - c;
            *l += d * d;
        }
    }
    let mut tail = 0.0f64;
    for (&x, &c) in xs.remainder().iter().zip(cs.remainder()) {
        let d = f64::from(x) - c;
        tail += d * d;
    }
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
        + tail
}

/// `x` as an `i32` whose integer order is [`f32::total_cmp`]'s order, so
/// that selection compares integers.
#[inline]
pub(crate) fn key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ ((((b >> 31) as u32) >> 1) as i32)
}

/// The `f32` of a [`key`] (the map is its own inverse).
#[inline]
pub(crate) fn value(k: i32) -> f32 {
    f32::from_bits((k ^ ((((k >> 31) as u32) >> 1) as i32)) as u32)
}

/// `combine` applied to each coordinate's values, as [`key`]s in no
/// particular order (`combine` selects what it needs). Blocks of
/// [`column_block`] coordinates are transposed across all updates at once,
/// then combined, in parallel.
pub(crate) fn coordinate_wise(
    updates: &[Vec<f32>],
    d: usize,
    combine: impl Fn(&mut [i32]) -> f32 + Sync + Send,
) -> Vec<f32> {
    let n = updates.len();
    let block = column_block(n);
    let mut out = vec![0.0f32; d];
    for_blocks(
        &mut out,
        block,
        parallel(n, d),
        || vec![0i32; n * block],
        |columns, start, chunk| combine_block(updates, start, columns, chunk, &combine),
    );
    out
}

/// Fills `out` with `combine` of the values of coordinates `start..start +
/// out.len()`, transposed into `columns` (one run of `n` keys per
/// coordinate).
pub(crate) fn combine_block(
    updates: &[Vec<f32>],
    start: usize,
    columns: &mut [i32],
    out: &mut [f32],
    combine: &impl Fn(&mut [i32]) -> f32,
) {
    let n = updates.len();
    let w = out.len();
    let columns = &mut columns[..n * w];
    // Eight updates at a time, so that each column receives eight
    // consecutive keys (a part of one cache line) per visit.
    let mut eights = updates.chunks_exact(8);
    let mut first = 0;
    for rows in &mut eights {
        let rows: [&[f32]; 8] = std::array::from_fn(|t| &rows[t][start..start + w]);
        for (c, column) in columns.chunks_exact_mut(n).enumerate() {
            for (slot, row) in column[first..first + 8].iter_mut().zip(rows) {
                *slot = key(row[c]);
            }
        }
        first += 8;
    }
    for u in eights.remainder() {
        for (column, &x) in columns.chunks_exact_mut(n).zip(&u[start..start + w]) {
            column[first] = key(x);
        }
        first += 1;
    }
    for (o, column) in out.iter_mut().zip(columns.chunks_exact_mut(n)) {
        *o = combine(column);
    }
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
            AggregationRule::Bucketing {
                size: 2,
                inner: Box::new(AggregationRule::Median),
            },
            AggregationRule::Bucketing {
                size: 3,
                inner: Box::new(AggregationRule::CenteredClipping {
                    radius: 2.0,
                    iterations: 3,
                }),
            },
            AggregationRule::CenteredClippingMomentum {
                radius: 2.0,
                beta: 0.5,
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
            // Buckets of two: fewer than a third of the updates spoil fewer
            // than half of the buckets, whatever the shuffle.
            let b = Rule::new(&AggregationRule::Bucketing { size: 2, inner: Box::new(AggregationRule::Median) })
                .unwrap()
                .with_shuffle_key([outlier.to_bits() as u8; 32])
                .aggregate(&all)
                .unwrap();
            prop_assert!(within(&b.update), "bucketed median {:?}", b.update);
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Every rule's declared sensitivity bounds how far its result moves
        /// when one update of a clipped batch is replaced, by the zero update
        /// (a wallet absent) or by any other update of norm at most the
        /// bound. The updates cluster around a point, as a converging
        /// model's do, or spread at random; the batch has a worst case for
        /// the median among them: two halves at opposite corners.
        #[test]
        fn every_rule_moves_at_most_its_declared_sensitivity(
            (n, d, seed) in (3usize..30, 1usize..24, any::<u64>()),
            which in any::<prop::sample::Index>(),
            to_zero in any::<bool>(),
            shape in 0u8..3,
        ) {
            use rand::{Rng, SeedableRng};
            let bound = 1.0f64;
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
            let draw = |rng: &mut rand_xoshiro::Xoshiro256PlusPlus| -> Vec<f32> {
                let v: Vec<f32> = match shape {
                    0 => (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                    1 => (0..d).map(|j| 0.3 + 0.01 * j as f32 + rng.random_range(-0.05f32..0.05)).collect(),
                    _ => {
                        let s = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                        vec![s / (d as f32).sqrt(); d]
                    }
                };
                clip(&v, bound)
            };
            let updates: Vec<Vec<f32>> = (0..n).map(|_| draw(&mut rng)).collect();
            let center: Vec<f32> = draw(&mut rng);
            let i = which.index(n);
            let mut other = updates.clone();
            other[i] = if to_zero { vec![0.0; d] } else { draw(&mut rng) };
            let change = squared_distance(&updates[i], &other[i]).sqrt();
            let mut all = rules();
            all.push(AggregationRule::MultiKrum { byzantine: Some(1), selected: Some(2) });
            all.push(AggregationRule::Bucketing { size: 3, inner: Box::new(AggregationRule::TrimmedMean { trim: 0.2 }) });
            for rule in all {
                let built = Rule::new(&rule).unwrap().with_shuffle_key([7; 32]).for_noise();
                let a = built.aggregate_from(&updates, Some(&center)).unwrap().update;
                let b = built.aggregate_from(&other, Some(&center)).unwrap().update;
                let moved = squared_distance(&a, &b).sqrt();
                let declared = built.sensitivity(n, bound, change);
                prop_assert!(
                    moved <= declared * (1.0 + 1e-4) + 1e-5,
                    "{rule}: moved {moved}, declared {declared} (n {n}, change {change})"
                );
            }
        }
    }

    #[test]
    fn bucketing_by_content_declares_no_bound() {
        let rule = Rule::new(&AggregationRule::Bucketing {
            size: 2,
            inner: Box::new(AggregationRule::Mean),
        })
        .unwrap();
        assert_eq!(rule.sensitivity(10, 1.0, 1.0), f64::INFINITY);
        assert!(rule.for_noise().sensitivity(10, 1.0, 1.0) <= 0.2 + 1e-12);
    }

    /// A batch of `n` updates of `d` values drawn uniformly from [-10, 10).
    fn random_batch(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|_| (0..d).map(|_| rng.random_range(-10.0f32..10.0)).collect())
            .collect()
    }

    /// Batch sizes from tiny to several blocks of coordinates and past the
    /// threshold where rules run in parallel.
    fn sizes() -> impl Strategy<Value = (usize, usize, u64)> {
        (
            1usize..40,
            prop_oneof![1usize..40, 200usize..3000],
            any::<u64>(),
        )
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Equal, or as close as two roundings to `f32` of nearly equal `f64`
    /// sums can be.
    fn within_rounding(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x == y || (x - y).abs() <= 2.0 * f32::EPSILON * x.abs().max(y.abs()) + 1e-12
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// The mean, the clipped mean and the median compute what the plain
        /// loops compute, in the same order: the same bits. The trimmed mean
        /// sums the kept values in another order: the same up to rounding.
        #[test]
        fn fast_rules_match_the_straightforward_ones(
            (n, d, seed) in sizes(),
            trim in 0.0f64..0.5,
            clip_norm in 1.0f64..300.0,
        ) {
            let updates = random_batch(n, d, seed);
            let mean = Mean.aggregate(&updates).unwrap();
            prop_assert_eq!(bits(&mean.update), bits(&reference::mean_of(&updates, d)));
            let clipped = ClippedMean::new(clip_norm).unwrap().aggregate(&updates).unwrap();
            let (expected, count) = reference::clipped_mean(&updates, clip_norm);
            prop_assert_eq!(bits(&clipped.update), bits(&expected));
            prop_assert!(clipped.report.starts_with(&format!("{count} of {n}")), "{}", clipped.report);
            let median = Median.aggregate(&updates).unwrap();
            prop_assert_eq!(bits(&median.update), bits(&reference::median(&updates)));
            let trimmed = TrimmedMean::new(trim).unwrap().aggregate(&updates).unwrap();
            let expected = reference::trimmed_mean(&updates, trim);
            prop_assert!(within_rounding(&trimmed.update, &expected), "{:?} vs {:?}", trimmed.update, expected);
        }

        /// Krum's scores through the Gram matrix are the pairwise ones up to
        /// rounding, and where no two scores are nearly tied Multi-Krum
        /// picks the same updates in the same order, so its mean is the
        /// same bits.
        #[test]
        fn krum_through_the_gram_matrix_matches_pairwise_distances(
            (n, d, seed) in (3usize..45, prop_oneof![1usize..40, 200usize..3000], any::<u64>()),
            byzantine_share in 0.0f64..1.0,
            selected_share in 0.0f64..1.0,
        ) {
            let updates = random_batch(n, d, seed);
            let f = (byzantine_share * ((n - 3) / 2) as f64) as usize;
            let m = 1 + (selected_share * (n - 1) as f64) as usize;
            let expected = reference::krum_scores(&updates, f);
            let distances = multi_krum::squared_distances(&updates, d).unwrap();
            let fast = multi_krum::scores(&distances, n, n - f - 2);
            for ((a, i), (b, j)) in fast.iter().zip(&expected) {
                prop_assert_eq!(i, j);
                prop_assert!((a - b).abs() <= 1e-9 * (1.0 + b), "score {a} vs {b}");
            }
            let mut sorted: Vec<f64> = expected.iter().map(|s| s.0).collect();
            sorted.sort_unstable_by(f64::total_cmp);
            prop_assume!(sorted.windows(2).all(|w| w[1] - w[0] > 1e-6 * (1.0 + w[1])));
            let chosen = reference::krum_select(&updates, f, m);
            prop_assert_eq!(&multi_krum::select(&updates, f, m).unwrap(), &chosen);
            let rule = MultiKrum::new(Some(f as u32), Some(m as u32)).unwrap();
            let picked: Vec<Vec<f32>> = chosen.iter().map(|&i| updates[i].clone()).collect();
            prop_assert_eq!(
                bits(&rule.aggregate(&updates).unwrap().update),
                bits(&reference::mean_of(&picked, d))
            );
        }

        /// Centered clipping sums each distance in blocks: the same up to
        /// rounding, and the same count outside the radius.
        #[test]
        fn centered_clipping_matches_the_straightforward_one(
            (n, d, seed) in sizes(),
            radius in 0.5f64..200.0,
            iterations in 0u32..5,
        ) {
            let updates = random_batch(n, d, seed);
            let fast = CenteredClipping::new(radius, iterations).unwrap().aggregate(&updates).unwrap();
            let (expected, outside) = reference::centered_clipping(&updates, radius, iterations);
            prop_assert!(within_rounding(&fast.update, &expected), "{:?} vs {:?}", fast.update, expected);
            prop_assert!(fast.report.contains(&format!("; {outside} outside")), "{}", fast.report);
        }
    }

    /// Every rule gives the same bits on one thread, on the default pool and
    /// on three threads, on batches large enough to run in parallel.
    #[test]
    fn results_do_not_depend_on_the_number_of_threads() {
        let pool = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
        };
        let (one, three) = (pool(1), pool(3));
        let mut rules = rules();
        rules.push(AggregationRule::MultiKrum {
            byzantine: Some(5),
            selected: Some(1),
        });
        for (n, d, seed) in [(40, 3000, 1), (7, 20_000, 2), (150, 600, 3), (1001, 70, 4)] {
            let updates = random_batch(n, d, seed);
            for rule in &rules {
                let default = aggregate(rule, &updates).unwrap();
                let single = one.install(|| aggregate(rule, &updates)).unwrap();
                let triple = three.install(|| aggregate(rule, &updates)).unwrap();
                assert_eq!(
                    bits(&single.update),
                    bits(&default.update),
                    "{rule}, n = {n}"
                );
                assert_eq!(
                    bits(&triple.update),
                    bits(&default.update),
                    "{rule}, n = {n}"
                );
                assert_eq!(single.report, default.report);
            }
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
