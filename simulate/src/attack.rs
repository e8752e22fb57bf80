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
}

impl Attack {
    /// The default strength of each attack.
    pub fn default_scale(self) -> f64 {
        match self {
            Attack::SignFlip => 4.0,
            Attack::Scale => 20.0,
            Attack::Noise => 1.0,
            Attack::Alie => 1.0,
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
    }
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
    }
}
