//! Wallets that tamper with their update before sending it, as the seed
//! warns a wallet owner might: the attacks the robust rules are measured against.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// An attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// Send `-scale` times the honest update.
    SignFlip,
    /// Send `scale` times the honest update.
    Scale,
    /// Send Gaussian noise of standard deviation `scale` per coordinate.
    Noise,
    /// "A Little Is Enough" (Baruch et al. 2019): the colluding attackers
    /// send `mean - z * std` of their honest updates, coordinate-wise, with
    /// `z` chosen from the batch size to stay inside the spread of honest updates.
    Alie,
    /// Inner-product manipulation (Xie, Koyejo and Gupta 2020): the
    /// colluding attackers send `-scale` times the mean of their honest
    /// updates, a small vector whose inner product with the true gradient
    /// is negative.
    Ipm,
    /// Min-max (Shejwalkar and Houmansadr 2021, AGR-agnostic): the mean of
    /// the attackers' honest updates moved against their standard deviation
    /// as far as keeps its largest distance to any of them within the
    /// largest distance between two of them.
    MinMax,
    /// Min-sum (Shejwalkar and Houmansadr 2021): like min-max, with the sum
    /// of squared distances to the honest updates bounded by the largest
    /// such sum of one honest update.
    MinSum,
}

impl Attack {
    /// The default strength of each attack.
    pub fn default_scale(self) -> f64 {
        match self {
            Attack::SignFlip => 4.0,
            Attack::Scale => 20.0,
            Attack::Noise => 1.0,
            Attack::Alie => 1.0,
            Attack::Ipm => 0.1,
            Attack::MinMax | Attack::MinSum => 10.0,
        }
    }
}

/// The inverse of the standard normal CDF (Acklam's rational approximation,
/// relative error below 1.2e-9). Written here: no well-kept crate we already
/// depend on provides it.
// The coefficients are kept exactly as Acklam published them.
#[allow(clippy::excessive_precision)]
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// The updates the attackers send instead of `honest` (their own honest
/// updates, in the same order). `batch` is the number of wallets in the round.
pub fn tamper(
    attack: Attack,
    honest: &[Vec<f32>],
    scale: f64,
    batch: usize,
    seed: u64,
) -> Vec<Vec<f32>> {
    let s = scale as f32;
    match attack {
        Attack::SignFlip => honest
            .iter()
            .map(|u| u.iter().map(|x| -s * x).collect())
            .collect(),
        Attack::Scale => honest
            .iter()
            .map(|u| u.iter().map(|x| s * x).collect())
            .collect(),
        Attack::Noise => {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let Ok(normal) = Normal::new(0.0f64, scale) else {
                return honest.to_vec();
            };
            honest
                .iter()
                .map(|u| u.iter().map(|_| normal.sample(&mut rng) as f32).collect())
                .collect()
        }
        Attack::Alie => {
            let Some(first) = honest.first() else {
                return Vec::new();
            };
            let f = honest.len();
            let n = batch.max(f + 1);
            // Baruch et al.: s = floor(n/2 + 1) - f supporters are needed.
            let supporters = (n / 2 + 1).saturating_sub(f);
            let z = normal_quantile((n - supporters) as f64 / n as f64) * scale;
            let d = first.len();
            let mut malicious = vec![0.0f32; d];
            for (j, m) in malicious.iter_mut().enumerate() {
                let mean = honest.iter().map(|u| f64::from(u[j])).sum::<f64>() / f as f64;
                let var = honest
                    .iter()
                    .map(|u| (f64::from(u[j]) - mean).powi(2))
                    .sum::<f64>()
                    / f as f64;
                *m = (mean - z * var.sqrt()) as f32;
            }
            vec![malicious; f]
        }
        Attack::Ipm => {
            let Some(first) = honest.first() else {
                return Vec::new();
            };
            let (mean, _) = moments(honest, first.len());
            let malicious: Vec<f32> = mean.iter().map(|m| (-scale * m) as f32).collect();
            vec![malicious; honest.len()]
        }
        Attack::MinMax | Attack::MinSum => {
            let Some(first) = honest.first() else {
                return Vec::new();
            };
            let (mean, std) = moments(honest, first.len());
            let at = |gamma: f64| -> Vec<f64> {
                mean.iter().zip(&std).map(|(m, s)| m - gamma * s).collect()
            };
            let distance = |a: &[f64], b: &[f32]| -> f64 {
                a.iter()
                    .zip(b)
                    .map(|(x, &y)| (x - f64::from(y)).powi(2))
                    .sum::<f64>()
            };
            let as_f64 = |u: &[f32]| -> Vec<f64> { u.iter().map(|&x| f64::from(x)).collect() };
            // The bound: the honest updates' own largest spread.
            let per_update: Vec<(f64, f64)> = honest
                .iter()
                .map(|u| {
                    let u64s = as_f64(u);
                    let d: Vec<f64> = honest.iter().map(|v| distance(&u64s, v)).collect();
                    (d.iter().copied().fold(0.0, f64::max), d.iter().sum())
                })
                .collect();
            let min_max = attack == Attack::MinMax;
            let bound = per_update
                .iter()
                .map(|&(max, sum)| if min_max { max } else { sum })
                .fold(0.0, f64::max);
            let score = |m: &[f64]| -> f64 {
                let distances = honest.iter().map(|u| distance(m, u));
                if min_max {
                    distances.fold(0.0, f64::max)
                } else {
                    distances.sum()
                }
            };
            // The authors' search for the largest gamma within the bound,
            // starting from `scale`.
            let (mut gamma, mut step, mut good) = (scale, scale / 2.0, 0.0);
            while (good - gamma).abs() > 1e-5 * scale.max(1e-12) {
                if score(&at(gamma)) <= bound {
                    good = gamma;
                    gamma += step;
                } else {
                    gamma -= step;
                }
                step /= 2.0;
            }
            let malicious: Vec<f32> = at(good).into_iter().map(|x| x as f32).collect();
            vec![malicious; honest.len()]
        }
    }
}

/// The coordinate-wise mean and standard deviation of `updates`.
fn moments(updates: &[Vec<f32>], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = updates.len().max(1) as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| updates.iter().map(|u| f64::from(u[j])).sum::<f64>() / n)
        .collect();
    let std = (0..d)
        .map(|j| {
            (updates
                .iter()
                .map(|u| (f64::from(u[j]) - mean[j]).powi(2))
                .sum::<f64>()
                / n)
                .sqrt()
        })
        .collect();
    (mean, std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_right() {
        assert!(normal_quantile(0.5).abs() < 1e-9);
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile(0.01) + 2.326348).abs() < 1e-5);
    }

    #[test]
    fn attacks_do_what_they_say() {
        let honest = vec![vec![1.0f32, -2.0], vec![3.0, 0.0]];
        assert_eq!(
            tamper(Attack::SignFlip, &honest, 2.0, 10, 0)[0],
            vec![-2.0, 4.0]
        );
        assert_eq!(
            tamper(Attack::Scale, &honest, 3.0, 10, 0)[1],
            vec![9.0, 0.0]
        );
        let alie = tamper(Attack::Alie, &honest, 1.0, 10, 0);
        assert_eq!(alie.len(), 2);
        assert_eq!(alie[0], alie[1], "the colluders send one vector");
        assert!(alie[0][0] < 2.0, "below the mean");
        let ipm = tamper(Attack::Ipm, &honest, 0.5, 10, 0);
        assert_eq!(ipm, vec![vec![-1.0, 0.5]; 2]);
    }

    #[test]
    fn min_max_and_min_sum_stay_within_the_honest_spread_at_its_edge() {
        let honest: Vec<Vec<f32>> = (0..8)
            .map(|i| vec![1.0 + 0.1 * i as f32, -1.0 + 0.05 * (i % 3) as f32, 0.5])
            .collect();
        let d2 = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
        };
        let max_pair = honest
            .iter()
            .flat_map(|a| honest.iter().map(|b| d2(a, b)))
            .fold(0.0, f64::max);
        let m = &tamper(Attack::MinMax, &honest, 10.0, 20, 0)[0];
        let worst = honest.iter().map(|u| d2(m, u)).fold(0.0, f64::max);
        assert!(worst <= max_pair * (1.0 + 1e-4), "{worst} > {max_pair}");
        assert!(
            worst >= 0.9 * max_pair,
            "not pushed to the edge: {worst} of {max_pair}"
        );
        let max_sum = honest
            .iter()
            .map(|a| honest.iter().map(|b| d2(a, b)).sum::<f64>())
            .fold(0.0, f64::max);
        let m = &tamper(Attack::MinSum, &honest, 10.0, 20, 0)[0];
        let sum: f64 = honest.iter().map(|u| d2(m, u)).sum();
        assert!(
            sum <= max_sum * (1.0 + 1e-4) && sum >= 0.9 * max_sum,
            "{sum} vs {max_sum}"
        );
        // Moved against the deviation: the first coordinate (spread 0.23) goes down.
        assert!(m[0] < 1.35);
    }
}
