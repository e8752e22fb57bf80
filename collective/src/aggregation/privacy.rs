//! Central differential privacy: Gaussian noise on the clipped sum of a
//! batch, and a Rényi-DP accountant for the subsampled Gaussian mechanism.
//!
//! The accountant follows Mironov, Talwar and Zhang, "Rényi Differential
//! Privacy of the Sampled Gaussian Mechanism" (2019), for integer orders:
//!
//! ```text
//! A(a) = sum_{k=0..a} C(a, k) (1-q)^(a-k) q^k exp((k^2 - k) / (2 sigma^2))
//! RDP(a) = ln A(a) / (a - 1)
//! ```
//!
//! composed over rounds by addition and converted to (epsilon, delta) with
//! the bound of Balle et al. (2020):
//! `eps = T RDP(a) + ln((a-1)/a) - (ln delta + ln a) / (a - 1)`, minimized over `a`.
//! Computed in log space throughout. Written here because no maintained Rust
//! crate provides a subsampled-Gaussian RDP accountant.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The Rényi orders the accountant tries.
fn orders() -> impl Iterator<Item = u32> {
    (2..=64)
        .chain((72..=256).step_by(8))
        .chain([320, 384, 512, 768, 1024])
}

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

fn ln_binomial(n: u32, k: u32) -> f64 {
    fn ln_factorial(n: u32) -> f64 {
        (2..=n).map(|i| f64::from(i).ln()).sum()
    }
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// RDP of one round of the sampled Gaussian mechanism at integer order `alpha`.
pub fn rdp_one_round(q: f64, sigma: f64, alpha: u32) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    let a = f64::from(alpha);
    if q >= 1.0 {
        return a / (2.0 * sigma * sigma);
    }
    let mut log_a = f64::NEG_INFINITY;
    for k in 0..=alpha {
        let kf = f64::from(k);
        let term = ln_binomial(alpha, k)
            + (a - kf) * (1.0 - q).ln()
            + kf * q.ln()
            + (kf * kf - kf) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, term);
    }
    log_a / (a - 1.0)
}

/// Epsilon at `delta` after `rounds` rounds with sampling rate `q` and noise
/// multiplier `sigma`.
pub fn epsilon(q: f64, sigma: f64, rounds: u32, delta: f64) -> f64 {
    if rounds == 0 || q <= 0.0 {
        return 0.0;
    }
    if sigma <= 0.0 {
        return f64::INFINITY;
    }
    orders()
        .map(|alpha| {
            let a = f64::from(alpha);
            let rdp = f64::from(rounds) * rdp_one_round(q.min(1.0), sigma, alpha);
            rdp + ((a - 1.0) / a).ln() - (delta.ln() + a.ln()) / (a - 1.0)
        })
        .filter(|e| e.is_finite())
        .fold(f64::INFINITY, f64::min)
        .max(0.0)
}

/// Adds Gaussian noise of standard deviation `sigma` to every coordinate,
/// from a generator seeded with `seed`.
pub fn add_gaussian_noise(values: &mut [f64], sigma: f64, seed: u64) {
    let Ok(normal) = Normal::new(0.0, sigma) else {
        return;
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for v in values {
        *v += normal.sample(&mut rng);
    }
}

/// A seed for the noise that nobody outside the aggregator can predict.
pub fn noise_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_batch_matches_the_gaussian_mechanism() {
        // Without sampling, RDP(a) = a / (2 sigma^2) exactly.
        assert!((rdp_one_round(1.0, 2.0, 10) - 10.0 / 8.0).abs() < 1e-12);
        // And the subsampled formula tends to it as q -> 1.
        assert!((rdp_one_round(0.999_999, 2.0, 10) - 1.25).abs() < 1e-3);
    }

    #[test]
    fn epsilon_for_a_known_dp_sgd_setting() {
        // MNIST DP-SGD (Abadi et al.): q = 256/60000, sigma = 1.1, 60 epochs,
        // delta = 1e-5 is reported at epsilon about 3 by RDP accountants.
        let q = 256.0 / 60_000.0;
        let steps = (60.0 * 60_000.0 / 256.0) as u32;
        let eps = epsilon(q, 1.1, steps, 1e-5);
        assert!((2.5..3.5).contains(&eps), "epsilon {eps}");
    }

    #[test]
    fn epsilon_grows_with_rounds_and_falls_with_noise() {
        let base = epsilon(0.1, 1.0, 10, 1e-5);
        assert!(epsilon(0.1, 1.0, 100, 1e-5) > base);
        assert!(epsilon(0.1, 2.0, 10, 1e-5) < base);
        assert!(epsilon(0.2, 1.0, 10, 1e-5) > base);
        assert_eq!(epsilon(0.1, 1.0, 0, 1e-5), 0.0);
    }

    #[test]
    fn noise_has_the_requested_spread() {
        let mut v = vec![0.0f64; 20_000];
        add_gaussian_noise(&mut v, 3.0, 7);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(
            mean.abs() < 0.1 && (var.sqrt() - 3.0).abs() < 0.1,
            "{mean} {var}"
        );
    }
}
