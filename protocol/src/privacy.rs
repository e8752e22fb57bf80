//! Privacy terms and the accountant that prices them, shared by the broker,
//! the aggregator and the wallet so that all three compute the same epsilon.
//!
//! The mechanism is the Gaussian mechanism on the sum of the batch's
//! contributions, one per wallet: the wallet's update clipped to the
//! clipping norm `C`, its declared metrics clamped to their ranges and
//! scaled, and a constant for the count. Noise of standard deviation
//! `noise_multiplier * sensitivity` is added to every coordinate of the sum,
//! with the [`Sensitivity`] the larger of what adding or removing one wallet
//! and what replacing one wallet's data can change.
//!
//! One release is then `rho`-zCDP with `rho = 1 / (2 z^2)` for the wallets
//! in the batch, whoever else is in it: its Rényi divergence at order `a` is
//! `a * rho` (Mironov 2017). Compositions add `rho`, so a wallet's whole
//! history is one number per collective. A job lets one wallet into at most
//! `rounds_per_wallet` releases, which the wallet counts and enforces itself,
//! so a job costs it at most `rounds_per_wallet * rho`. Converting to
//! `(epsilon, delta)` uses the bound of Balle et al. (2020):
//! `epsilon = a rho + ln((a - 1) / a) - (ln delta + ln a) / (a - 1)`,
//! minimized over the order `a`.
//!
//! Nothing here assumes that the broker's sample of wallets stays secret:
//! no amplification by subsampling is claimed, and the sensitivity covers
//! replacing a wallet's data as well as adding or removing the wallet, so
//! the figures hold even if the broker tells the consumer who was in every
//! round.
//!
//! Written here because no maintained Rust crate provides an RDP or zCDP
//! accountant; the formulas are short and each is tested against a known value.

use serde::{Deserialize, Serialize};

/// The noise multiplier below which terms count as "no noise".
const NO_NOISE: f64 = 0.0;
/// The most rounds per wallet a job may allow (the accountant stays exact far beyond).
pub const MAX_ROUNDS_PER_WALLET: u32 = 100_000;
/// The most metrics a manifest may declare.
pub const MAX_DECLARED_METRICS: usize = 16;
/// The smallest clipping norm: below it, sums of contributions lose their
/// precision before noise does.
pub const MIN_CLIP_NORM: f64 = 1e-6;
/// The largest clipping norm.
pub const MAX_CLIP_NORM: f64 = 1e6;
/// The smallest noise multiplier other than none.
pub const MIN_NOISE_MULTIPLIER: f64 = 1e-3;
/// The largest noise multiplier.
pub const MAX_NOISE_MULTIPLIER: f64 = 1e6;

/// A metric that may leave the wallet, and the range it is clamped to there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricBound {
    /// The metric's name, as the algorithm reports it (`mse_before`).
    pub name: String,
    /// The low end of its range.
    pub min: f64,
    /// The high end of its range.
    pub max: f64,
}

impl MetricBound {
    /// `value` clamped to the range, as a fraction of it in `[0, 1]`. A
    /// value that is not finite, or a fraction that is not, counts as the
    /// middle of the range.
    pub fn normalize(&self, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.5;
        }
        let fraction = (value.clamp(self.min, self.max) - self.min) / (self.max - self.min);
        if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.5
        }
    }

    /// A fraction of the range back in the metric's own units.
    pub fn denormalize(&self, fraction: f64) -> f64 {
        self.min + (self.max - self.min) * fraction.clamp(0.0, 1.0)
    }
}

/// What a collective promises about privacy, in its signed manifest. The
/// wallet enforces the clipping, the metrics and the rounds per job; the
/// aggregator enforces k and the noise; the accountant prices them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacyTerms {
    /// The fewest updates the aggregator combines into a release (k).
    pub min_batch: u32,
    /// The L2 bound every wallet clips its update to (C).
    pub clip_norm: f64,
    /// Noise standard deviation over the contribution's sensitivity (z);
    /// zero: no noise, and no privacy guarantee.
    pub noise_multiplier: f64,
    /// The delta of every (epsilon, delta) stated.
    pub delta: f64,
    /// The most rounds of one job that one wallet takes part in.
    pub rounds_per_wallet: u32,
    /// Epsilon of one whole job for one wallet, at `delta`, as the
    /// accountant computes it from the terms; `None` without noise.
    pub epsilon: Option<f64>,
    /// The metrics that may leave a wallet, with their ranges; every other
    /// metric an algorithm reports stays in the wallet.
    #[serde(default)]
    pub metrics: Vec<MetricBound>,
}

/// How terms can be wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TermsError {
    /// A field outside its domain.
    #[error("privacy terms: {field} {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The stated epsilon is smaller than the accountant's.
    #[error(
        "privacy terms: epsilon {stated} is understated; noise multiplier {noise_multiplier} \
         over {rounds} rounds per wallet gives {computed} at delta {delta}"
    )]
    Understated {
        /// Stated.
        stated: f64,
        /// Computed.
        computed: f64,
        /// z.
        noise_multiplier: f64,
        /// R.
        rounds: u32,
        /// delta.
        delta: f64,
    },
    /// Epsilon stated without noise, or noise without epsilon.
    #[error("privacy terms: {0}")]
    Inconsistent(String),
}

fn field(field: &'static str, problem: impl Into<String>) -> TermsError {
    TermsError::Field {
        field,
        problem: problem.into(),
    }
}

/// The epsilon one job may cost a wallet under the default terms.
pub const DEFAULT_EPSILON: f64 = 2.0;

/// The default terms of a collective that states none: k = 10, updates
/// clipped to norm 1, delta 1e-5, ten rounds per wallet per job, and the
/// noise that makes a whole job cost a wallet epsilon 2.
pub fn default_terms() -> PrivacyTerms {
    PrivacyTerms::with_epsilon(10, 1.0, 1e-5, 10, DEFAULT_EPSILON, Vec::new())
        .unwrap_or_else(|_| unreachable!("the default terms are valid"))
}

impl PrivacyTerms {
    /// Terms with the smallest noise multiplier that keeps a whole job at
    /// or below `epsilon`.
    pub fn with_epsilon(
        min_batch: u32,
        clip_norm: f64,
        delta: f64,
        rounds_per_wallet: u32,
        epsilon: f64,
        metrics: Vec<MetricBound>,
    ) -> Result<PrivacyTerms, TermsError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(field("epsilon", format!("{epsilon} must be positive")));
        }
        let mut terms = PrivacyTerms {
            min_batch,
            clip_norm,
            noise_multiplier: 1.0,
            delta,
            rounds_per_wallet,
            epsilon: None,
            metrics,
        };
        terms.check_fields()?;
        terms.noise_multiplier = noise_for_epsilon(epsilon, rounds_per_wallet, delta);
        terms.epsilon = Some(terms.job_epsilon_computed());
        Ok(terms)
    }

    /// Terms with the given noise multiplier, and the epsilon it gives.
    pub fn with_noise(
        min_batch: u32,
        clip_norm: f64,
        delta: f64,
        rounds_per_wallet: u32,
        noise_multiplier: f64,
        metrics: Vec<MetricBound>,
    ) -> Result<PrivacyTerms, TermsError> {
        let mut terms = PrivacyTerms {
            min_batch,
            clip_norm,
            noise_multiplier,
            delta,
            rounds_per_wallet,
            epsilon: None,
            metrics,
        };
        terms.check_fields()?;
        if terms.has_noise() {
            terms.epsilon = Some(terms.job_epsilon_computed());
        }
        Ok(terms)
    }

    /// Whether the aggregator adds noise (and a guarantee exists).
    pub fn has_noise(&self) -> bool {
        self.noise_multiplier > NO_NOISE
    }

    fn check_fields(&self) -> Result<(), TermsError> {
        if self.min_batch < 2 {
            return Err(field(
                "min_batch (k)",
                "must be at least 2: a batch of one is one wallet's update",
            ));
        }
        if !(MIN_CLIP_NORM..=MAX_CLIP_NORM).contains(&self.clip_norm) {
            return Err(field(
                "clip_norm",
                format!(
                    "{} must be within {MIN_CLIP_NORM:e} and {MAX_CLIP_NORM:e}",
                    self.clip_norm
                ),
            ));
        }
        if !(self.noise_multiplier == 0.0
            || (MIN_NOISE_MULTIPLIER..=MAX_NOISE_MULTIPLIER).contains(&self.noise_multiplier))
        {
            return Err(field(
                "noise_multiplier",
                format!(
                    "{} must be 0 (no noise) or within {MIN_NOISE_MULTIPLIER:e} and \
                     {MAX_NOISE_MULTIPLIER:e}",
                    self.noise_multiplier
                ),
            ));
        }
        if !(self.delta > 0.0 && self.delta < 1e-2) {
            return Err(field(
                "delta",
                format!("{} must be within (0, 0.01)", self.delta),
            ));
        }
        if self.rounds_per_wallet == 0 || self.rounds_per_wallet > MAX_ROUNDS_PER_WALLET {
            return Err(field(
                "rounds_per_wallet",
                format!(
                    "{} must be within 1..={MAX_ROUNDS_PER_WALLET}",
                    self.rounds_per_wallet
                ),
            ));
        }
        if self.metrics.len() > MAX_DECLARED_METRICS {
            return Err(field(
                "metrics",
                format!(
                    "{} declared; at most {MAX_DECLARED_METRICS}",
                    self.metrics.len()
                ),
            ));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            if m.name.is_empty() || m.name.len() > 64 {
                return Err(field(
                    "metrics",
                    format!("metric {} has no valid name", i + 1),
                ));
            }
            if self.metrics[..i].iter().any(|o| o.name == m.name) {
                return Err(field("metrics", format!("'{}' is declared twice", m.name)));
            }
            let finite_width = m.min.is_finite()
                && m.max.is_finite()
                && m.min < m.max
                && (m.max - m.min).is_normal();
            if !finite_width {
                return Err(field(
                    "metrics",
                    format!(
                        "'{}' needs a finite range with min < max and a finite width",
                        m.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks every field, and that the stated epsilon is the accountant's
    /// (or more): terms that understate their cost are refused everywhere.
    pub fn check(&self) -> Result<(), TermsError> {
        self.check_fields()?;
        match (self.has_noise(), self.epsilon) {
            (false, Some(_)) => Err(TermsError::Inconsistent(
                "an epsilon is stated but no noise is added".into(),
            )),
            (true, None) => Err(TermsError::Inconsistent(
                "noise is added but no epsilon is stated".into(),
            )),
            (false, None) => Ok(()),
            (true, Some(stated)) => {
                let computed = self.job_epsilon_computed();
                if !(stated.is_finite() && stated >= computed * (1.0 - 1e-9)) {
                    return Err(TermsError::Understated {
                        stated,
                        computed,
                        noise_multiplier: self.noise_multiplier,
                        rounds: self.rounds_per_wallet,
                        delta: self.delta,
                    });
                }
                Ok(())
            }
        }
    }

    /// The zCDP cost `rho` of one release for one wallet; infinite without noise.
    pub fn rho_per_round(&self) -> f64 {
        if self.has_noise() {
            rho_of(self.noise_multiplier)
        } else {
            f64::INFINITY
        }
    }

    /// Epsilon, at the terms' delta, after one wallet took part in
    /// `participations` releases; infinite without noise.
    pub fn epsilon_after(&self, participations: u32) -> f64 {
        if participations == 0 {
            return 0.0;
        }
        epsilon_of_rho(f64::from(participations) * self.rho_per_round(), self.delta)
    }

    fn job_epsilon_computed(&self) -> f64 {
        self.epsilon_after(self.rounds_per_wallet)
    }

    /// The contribution layout these terms fix.
    pub fn sensitivity(&self) -> Sensitivity {
        Sensitivity::new(self.clip_norm, self.metrics.len())
    }

    /// The noise standard deviation added to each coordinate of the sum.
    pub fn sigma(&self) -> f64 {
        self.noise_multiplier * self.sensitivity().total
    }

    /// What a person reads before consenting: one line per term.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "only aggregates of at least {} wallets are released",
            self.min_batch
        )];
        lines.push(format!(
            "your update is clipped in your wallet to norm {}",
            self.clip_norm
        ));
        match self.epsilon {
            Some(eps) if self.has_noise() => {
                lines.push(format!(
                    "noise multiplier {:.4}; you take part in at most {} round(s) of a job",
                    self.noise_multiplier, self.rounds_per_wallet
                ));
                lines.push(format!(
                    "one job costs you at most epsilon {eps:.3} at delta {:e}",
                    self.delta
                ));
            }
            _ => lines.push(
                "NO NOISE: aggregates are released exactly; there is no privacy guarantee".into(),
            ),
        }
        if self.metrics.is_empty() {
            lines.push("no metric leaves your wallet".into());
        } else {
            for m in &self.metrics {
                lines.push(format!(
                    "metric '{}' leaves your wallet clamped to [{}, {}], noised",
                    m.name, m.min, m.max
                ));
            }
        }
        lines
    }
}

/// How one wallet's contribution to a release is laid out: its update
/// clipped to `delta_norm`, each declared metric as a fraction of its range
/// times `metric_scale`, and `count_scale` for the count. `total` is the
/// sensitivity of the sum the noise is scaled to: the larger of what adding
/// or removing one wallet can change (`sqrt(C^2 + metrics * metric_scale^2 +
/// count_scale^2)`) and what replacing one wallet's data by any other can
/// (`sqrt((2C)^2 + metrics * metric_scale^2)`: the count cancels). So the
/// epsilon stated holds also against an adversary who knows who took part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sensitivity {
    /// The update's L2 bound (C).
    pub delta_norm: f64,
    /// Each metric's weight: the metrics together are at most C / 2.
    pub metric_scale: f64,
    /// The count's weight: C / 2.
    pub count_scale: f64,
    /// The sensitivity of the sum.
    pub total: f64,
}

impl Sensitivity {
    /// The layout for clipping norm `clip_norm` and `metrics` declared metrics.
    pub fn new(clip_norm: f64, metrics: usize) -> Sensitivity {
        let metric_scale = if metrics == 0 {
            0.0
        } else {
            clip_norm / (2.0 * (metrics as f64).sqrt())
        };
        let count_scale = clip_norm / 2.0;
        // Written as C times a factor, so that no square underflows.
        let metric_share = if metrics == 0 { 0.0 } else { 0.25 };
        let add_remove = (1.0 + metric_share + 0.25f64).sqrt();
        let replace = (4.0 + metric_share).sqrt();
        Sensitivity {
            delta_norm: clip_norm,
            metric_scale,
            count_scale,
            total: clip_norm * add_remove.max(replace),
        }
    }
}

/// The zCDP cost of one Gaussian release with noise multiplier `z`.
pub fn rho_of(z: f64) -> f64 {
    1.0 / (2.0 * z * z)
}

/// The Rényi orders the conversion tries.
fn orders() -> impl Iterator<Item = f64> {
    (0..400)
        .map(|i| 1.0 + 0.05 * f64::from(i + 1))
        .chain((21..=256).map(f64::from))
        .chain([320.0, 384.0, 512.0, 768.0, 1024.0, 2048.0, 4096.0])
}

/// Epsilon at `delta` of a mechanism whose Rényi divergence at every order
/// `a` is at most `a * rho` (Balle et al. 2020, Proposition 12).
pub fn epsilon_of_rho(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    if !rho.is_finite() {
        return f64::INFINITY;
    }
    orders()
        .map(|a| a * rho + ((a - 1.0) / a).ln() - (delta.ln() + a.ln()) / (a - 1.0))
        .filter(|e| e.is_finite())
        .fold(f64::INFINITY, f64::min)
        .max(0.0)
}

/// The smallest noise multiplier (to 1e-4 relative) for which `rounds`
/// releases cost at most `epsilon` at `delta`.
pub fn noise_for_epsilon(epsilon: f64, rounds: u32, delta: f64) -> f64 {
    let cost = |z: f64| epsilon_of_rho(f64::from(rounds) * rho_of(z), delta);
    let (mut lo, mut hi) = (1e-3f64, 1e6f64);
    if cost(hi) > epsilon {
        return hi;
    }
    while hi / lo > 1.0 + 1e-6 {
        let mid = (lo * hi).sqrt();
        if cost(mid) <= epsilon {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    // Round up to four significant digits so that the stated terms read
    // cleanly and still meet the target.
    let scale = 10f64.powi(3 - hi.log10().floor() as i32);
    (hi * scale).ceil() / scale
}

/// The most accuracy an attacker can have guessing one binary attribute of
/// one wallet, from a uniform prior, against a mechanism that is
/// `(epsilon, delta)`-DP for that wallet: `e^eps / (1 + e^eps) + delta`.
pub fn attribute_inference_bound(epsilon: f64, delta: f64) -> f64 {
    if !epsilon.is_finite() {
        return 1.0;
    }
    (epsilon.exp() / (1.0 + epsilon.exp()) + delta).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gaussian_mechanism_matches_known_epsilons() {
        // The analytic Gaussian mechanism (Balle and Wang 2018) gives
        // epsilon 1 at delta 1e-5 for sigma of about 3.73; RDP with the
        // improved conversion is within a few percent above it.
        let eps = epsilon_of_rho(rho_of(3.73), 1e-5);
        assert!((1.0..1.15).contains(&eps), "{eps}");
        // The classic calibration sqrt(2 ln(1.25/delta)) / eps is an upper bound.
        let classic = (2.0f64 * (1.25f64 / 1e-5).ln()).sqrt() / 1.0;
        assert!(epsilon_of_rho(rho_of(classic), 1e-5) < 1.0);
    }

    #[test]
    fn composition_adds_rho_and_epsilon_grows_sublinearly() {
        let one = epsilon_of_rho(rho_of(2.0), 1e-5);
        let ten = epsilon_of_rho(10.0 * rho_of(2.0), 1e-5);
        assert!(ten > one && ten < 10.0 * one, "{one} {ten}");
        assert_eq!(epsilon_of_rho(0.0, 1e-5), 0.0);
        assert_eq!(epsilon_of_rho(f64::INFINITY, 1e-5), f64::INFINITY);
    }

    #[test]
    fn calibration_meets_the_target_and_is_tight() {
        for (eps, rounds) in [(0.5, 1), (1.0, 1), (2.0, 1), (2.0, 10), (8.0, 60)] {
            let z = noise_for_epsilon(eps, rounds, 1e-5);
            let cost = epsilon_of_rho(f64::from(rounds) * rho_of(z), 1e-5);
            assert!(cost <= eps, "{eps} {rounds}: z {z} costs {cost}");
            let cheaper = epsilon_of_rho(f64::from(rounds) * rho_of(z * 0.995), 1e-5);
            assert!(cheaper > eps, "{eps} {rounds}: z {z} is not the smallest");
        }
    }

    #[test]
    fn terms_that_understate_their_cost_are_refused() {
        let terms = default_terms();
        terms.check().unwrap();
        assert!(terms.epsilon.unwrap() <= 2.0);
        let mut lying = terms.clone();
        lying.epsilon = Some(0.5);
        assert!(matches!(lying.check(), Err(TermsError::Understated { .. })));
        let mut conservative = terms.clone();
        conservative.epsilon = Some(3.0);
        conservative.check().unwrap();
        let mut silent = terms.clone();
        silent.noise_multiplier = 0.0;
        assert!(matches!(silent.check(), Err(TermsError::Inconsistent(_))));
        let none = PrivacyTerms::with_noise(5, 1.0, 1e-5, 3, 0.0, Vec::new()).unwrap();
        none.check().unwrap();
        assert!(!none.has_noise() && none.epsilon.is_none());
        assert_eq!(none.epsilon_after(1), f64::INFINITY);
    }

    #[test]
    fn the_contribution_is_bounded_by_its_sensitivity() {
        let s = Sensitivity::new(2.0, 4);
        // Adding a wallet: its update at norm 2, every metric at the top of
        // its range, the count.
        let added =
            (4.0 + 4.0 * s.metric_scale * s.metric_scale + s.count_scale * s.count_scale).sqrt();
        // Replacing one: the update from -C to +C, every metric from 0 to 1.
        let replaced = (16.0 + 4.0 * s.metric_scale * s.metric_scale).sqrt();
        assert!(added <= s.total + 1e-12 && replaced <= s.total + 1e-12);
        assert!((s.total - replaced).abs() < 1e-12);
        assert!((Sensitivity::new(1.0, 0).total - 2.0).abs() < 1e-12);
        // No square underflows: the noise never vanishes with the norm.
        assert!(Sensitivity::new(1e-6, 3).total > 0.0);
    }

    #[test]
    fn metrics_are_clamped_into_their_range() {
        let m = MetricBound {
            name: "mse".into(),
            min: 0.0,
            max: 10.0,
        };
        assert_eq!(m.normalize(-3.0), 0.0);
        assert_eq!(m.normalize(25.0), 1.0);
        assert_eq!(m.normalize(f64::NAN), 0.5);
        assert_eq!(m.denormalize(m.normalize(4.0)), 4.0);
    }

    #[test]
    fn the_inference_bound_is_the_dp_bound() {
        assert!((attribute_inference_bound(0.0, 0.0) - 0.5).abs() < 1e-12);
        assert!(attribute_inference_bound(2.0, 1e-5) < 0.881);
        assert_eq!(attribute_inference_bound(f64::INFINITY, 0.0), 1.0);
    }
}
