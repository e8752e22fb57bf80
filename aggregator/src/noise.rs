//! Where the aggregator's Gaussian noise comes from. A deployed aggregator
//! draws a fresh ChaCha20 key from the operating system's random generator
//! for every release; if the OS cannot give one, the release fails and
//! nothing is released (never a fixed or zero seed). Only the simulation
//! seeds the generator, so that its runs repeat bit for bit.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Normal};
use ring::rand::{SecureRandom, SystemRandom};

/// Why no noise could be drawn: the release must not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// The operating system's random generator failed.
    #[error("the operating system's random generator failed; nothing is released")]
    Unavailable,
    /// The standard deviation is not a finite, non-negative number.
    #[error("noise standard deviation {0} is not finite and non-negative; nothing is released")]
    BadSigma(String),
}

/// A source of Gaussian noise.
#[derive(Debug)]
pub struct NoiseSource {
    seeded: Option<ChaCha20Rng>,
}

impl NoiseSource {
    /// Fresh randomness from the operating system for every draw: the only
    /// source a deployed aggregator uses.
    pub fn os() -> NoiseSource {
        NoiseSource { seeded: None }
    }

    /// A generator seeded with `seed`: the simulation's, so that a run
    /// repeats. Anyone who knows the seed can remove the noise.
    pub fn seeded_for_simulation(seed: u64) -> NoiseSource {
        NoiseSource {
            seeded: Some(ChaCha20Rng::seed_from_u64(seed)),
        }
    }

    /// Whether the noise is predictable (seeded).
    pub fn is_seeded(&self) -> bool {
        self.seeded.is_some()
    }

    /// 32 fresh bytes: a round's shuffle key (bucketing), from the operating
    /// system, or from the seed in a simulation.
    pub fn key(&mut self) -> Result<[u8; 32], NoiseError> {
        let mut key = [0u8; 32];
        match &mut self.seeded {
            Some(rng) => rand::RngCore::fill_bytes(rng, &mut key),
            None => SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| NoiseError::Unavailable)?,
        }
        Ok(key)
    }

    /// Adds independent Gaussian noise of standard deviation `sigma` to
    /// every value.
    pub fn add_gaussian(&mut self, values: &mut [f64], sigma: f64) -> Result<(), NoiseError> {
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(NoiseError::BadSigma(sigma.to_string()));
        }
        let normal =
            Normal::new(0.0, sigma).map_err(|_| NoiseError::BadSigma(sigma.to_string()))?;
        let mut fresh;
        let rng = match &mut self.seeded {
            Some(rng) => rng,
            None => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| NoiseError::Unavailable)?;
                fresh = ChaCha20Rng::from_seed(key);
                &mut fresh
            }
        };
        for v in values {
            *v += normal.sample(rng);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_has_the_requested_spread() {
        let mut v = vec![0.0f64; 20_000];
        NoiseSource::os().add_gaussian(&mut v, 3.0).unwrap();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(
            mean.abs() < 0.1 && (var.sqrt() - 3.0).abs() < 0.1,
            "{mean} {var}"
        );
    }

    #[test]
    fn os_noise_differs_every_draw_and_seeded_noise_repeats() {
        let draw = |source: &mut NoiseSource| {
            let mut v = vec![0.0f64; 4];
            source.add_gaussian(&mut v, 1.0).unwrap();
            v
        };
        let mut os = NoiseSource::os();
        assert_ne!(draw(&mut os), draw(&mut os));
        assert_eq!(
            draw(&mut NoiseSource::seeded_for_simulation(7)),
            draw(&mut NoiseSource::seeded_for_simulation(7))
        );
    }

    #[test]
    fn a_bad_sigma_releases_nothing() {
        let mut v = vec![1.0f64; 2];
        for sigma in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(matches!(
                NoiseSource::os().add_gaussian(&mut v, sigma),
                Err(NoiseError::BadSigma(_))
            ));
        }
        assert_eq!(v, vec![1.0, 1.0], "nothing was added");
    }
}
