//! Local mini-batch stochastic gradient descent, shared by the gradient-based
//! algorithms: hyper-parameters, a seeded shuffle, and the epoch loop.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::Result;
use crate::params::{ParamSpec, ParamValue, Params};

/// Hyper-parameters of local SGD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Step size.
    pub learning_rate: f32,
    /// Passes over the local data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// L2 penalty on the weights (not the biases).
    pub l2: f32,
}

impl SgdConfig {
    /// The declarations of `learning_rate`, `epochs`, `batch_size` and `l2`.
    pub fn specs(learning_rate: f64) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "learning_rate",
                "local SGD step size",
                ParamValue::Real(learning_rate),
            ),
            ParamSpec::optional(
                "epochs",
                "passes over the local data",
                ParamValue::Integer(1),
            ),
            ParamSpec::optional(
                "batch_size",
                "examples per local step",
                ParamValue::Integer(32),
            ),
            ParamSpec::optional("l2", "L2 penalty on the weights", ParamValue::Real(0.0)),
        ]
    }

    /// Reads the four parameters, checking their ranges.
    pub fn from_params(params: &Params) -> Result<SgdConfig> {
        Ok(SgdConfig {
            learning_rate: params.real_in("learning_rate", 0.0, 1e3)? as f32,
            epochs: params.integer_in("epochs", 1, 10_000)? as usize,
            batch_size: params.integer_in("batch_size", 1, 1 << 20)? as usize,
            l2: params.real_in("l2", 0.0, 1e3)? as f32,
        })
    }
}

/// Runs `config.epochs` epochs over `n` examples in a seeded random order.
///
/// For each mini-batch, `gradient(weights, batch, grad)` must *add* the summed
/// gradient of the loss over `batch` to `grad` (zeroed before each call); the
/// loop divides by the batch size, adds the L2 term for indexes where
/// `penalized(i)` holds, and steps.
pub fn run_epochs(
    weights: &mut [f32],
    n: usize,
    config: &SgdConfig,
    seed: u64,
    penalized: impl Fn(usize) -> bool,
    mut gradient: impl FnMut(&[f32], &[usize], &mut [f32]),
) {
    let mut rng = seeded_rng(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut grad = vec![0.0f32; weights.len()];
    for _ in 0..config.epochs {
        shuffle(&mut order, &mut rng);
        for batch in order.chunks(config.batch_size) {
            grad.iter_mut().for_each(|g| *g = 0.0);
            gradient(weights, batch, &mut grad);
            let scale = config.learning_rate / batch.len() as f32;
            for (i, (w, g)) in weights.iter_mut().zip(&grad).enumerate() {
                let decay = if penalized(i) { config.l2 * *w } else { 0.0 };
                *w -= scale * g + config.learning_rate * decay;
            }
        }
    }
}

/// A random generator that gives the same sequence for the same seed on every
/// platform (32-bit WebAssembly and 64-bit native alike), unlike `SmallRng`.
pub fn seeded_rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Fisher-Yates shuffle that draws `u64`s, so the permutation for a seed is the
/// same on every platform.
pub fn shuffle<T>(items: &mut [T], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i as u64) as usize;
        items.swap(i, j);
    }
}

/// The dot product of two equally long slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_fits_a_line_and_is_reproducible() {
        // y = 2x - 1 on x in [-1, 1]
        let xs: Vec<f32> = (0..50).map(|i| i as f32 / 25.0 - 1.0).collect();
        let ys: Vec<f32> = xs.iter().map(|x| 2.0 * x - 1.0).collect();
        let config = SgdConfig {
            learning_rate: 0.5,
            epochs: 200,
            batch_size: 8,
            l2: 0.0,
        };
        let fit = |seed| {
            let mut w = vec![0.0f32; 2];
            run_epochs(
                &mut w,
                xs.len(),
                &config,
                seed,
                |i| i == 0,
                |w, batch, g| {
                    for &i in batch {
                        let err = w[0] * xs[i] + w[1] - ys[i];
                        g[0] += err * xs[i];
                        g[1] += err;
                    }
                },
            );
            w
        };
        let w = fit(7);
        assert!(
            (w[0] - 2.0).abs() < 1e-3 && (w[1] + 1.0).abs() < 1e-3,
            "{w:?}"
        );
        assert_eq!(w, fit(7));
    }
}
