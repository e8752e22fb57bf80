//! The server optimizer a job asks for (how each released aggregate moves the
//! model) and its learning-rate schedule, as they travel and as an operator
//! types them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the broker applies each released aggregate `a` (the mean model delta)
/// to the model `w`, with the job's server learning rate `lr`.
///
/// The adaptive optimizers are those of Reddi et al., "Adaptive Federated
/// Optimization" (ICLR 2021), Algorithm 2, without bias correction:
/// `m = b1 m + (1 - b1) a`; FedAdam `v = b2 v + (1 - b2) a^2`, FedYogi
/// `v = v - (1 - b2) a^2 sign(v - a^2)`; `w = w + lr m / (sqrt(v) + tau)`,
/// with `v` starting at `tau^2`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(tag = "name", deny_unknown_fields)]
pub enum ServerOptimizer {
    /// FedAvg with server momentum (FedAvgM): `v = momentum v + a;
    /// w = w + lr v`, with the job's `momentum`.
    #[default]
    #[serde(rename = "fedavgm")]
    FedAvgM,
    /// FedAdam.
    #[serde(rename = "fedadam")]
    FedAdam {
        /// First-moment decay, in `[0, 1)`.
        beta1: f64,
        /// Second-moment decay, in `[0, 1)`.
        beta2: f64,
        /// Adaptivity: the smallest denominator, positive.
        tau: f64,
    },
    /// FedYogi.
    #[serde(rename = "fedyogi")]
    FedYogi {
        /// First-moment decay, in `[0, 1)`.
        beta1: f64,
        /// Second-moment decay, in `[0, 1)`.
        beta2: f64,
        /// Adaptivity: the smallest denominator, positive.
        tau: f64,
    },
}

impl ServerOptimizer {
    /// FedAdam with the paper's decays and `tau`.
    pub const FED_ADAM: ServerOptimizer = ServerOptimizer::FedAdam {
        beta1: 0.9,
        beta2: 0.99,
        tau: 1e-3,
    };
    /// FedYogi with the paper's decays and `tau`.
    pub const FED_YOGI: ServerOptimizer = ServerOptimizer::FedYogi {
        beta1: 0.9,
        beta2: 0.99,
        tau: 1e-3,
    };

    /// Whether this is FedAvgM (the serialized form leaves it out).
    pub fn is_fed_avg_m(&self) -> bool {
        matches!(self, ServerOptimizer::FedAvgM)
    }

    /// How many state values it keeps per model parameter.
    pub fn state_per_parameter(&self) -> usize {
        match self {
            ServerOptimizer::FedAvgM => 1,
            ServerOptimizer::FedAdam { .. } | ServerOptimizer::FedYogi { .. } => 2,
        }
    }

    /// Checks the parameters, as the broker does before a job starts.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            ServerOptimizer::FedAvgM => Ok(()),
            ServerOptimizer::FedAdam { beta1, beta2, tau }
            | ServerOptimizer::FedYogi { beta1, beta2, tau } => {
                for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
                    if !(0.0..1.0).contains(&b) {
                        return Err(format!("{self}: {name} {b} is not within [0, 1)"));
                    }
                }
                if !(tau.is_finite() && tau > 0.0) {
                    return Err(format!("{self}: tau {tau} must be positive"));
                }
                Ok(())
            }
        }
    }

    /// One step: the new model and the new state (`state` empty: the first
    /// step). `momentum` is the job's, used by FedAvgM only. Arithmetic in
    /// `f64`, stored as `f32`.
    pub fn step(
        &self,
        model: &[f32],
        state: &[f32],
        aggregate: &[f32],
        lr: f64,
        momentum: f64,
    ) -> (Vec<f32>, Vec<f32>) {
        let d = model.len();
        let at = |i: usize, start: f32| state.get(i).copied().unwrap_or(start);
        match *self {
            ServerOptimizer::FedAvgM => {
                let velocity: Vec<f32> = aggregate
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| (momentum * f64::from(at(i, 0.0)) + f64::from(a)) as f32)
                    .collect();
                let model = model
                    .iter()
                    .zip(&velocity)
                    .map(|(&w, &v)| (f64::from(w) + lr * f64::from(v)) as f32)
                    .collect();
                (model, velocity)
            }
            ServerOptimizer::FedAdam { beta1, beta2, tau }
            | ServerOptimizer::FedYogi { beta1, beta2, tau } => {
                let yogi = matches!(self, ServerOptimizer::FedYogi { .. });
                let mut next = vec![0.0f32; 2 * d];
                let mut out = Vec::with_capacity(d);
                for (i, (&w, &a)) in model.iter().zip(aggregate).enumerate() {
                    let a = f64::from(a);
                    let m = beta1 * f64::from(at(i, 0.0)) + (1.0 - beta1) * a;
                    let v0 = f64::from(at(d + i, (tau * tau) as f32));
                    let a2 = a * a;
                    let v = if yogi {
                        v0 - (1.0 - beta2) * a2 * (v0 - a2).signum()
                    } else {
                        beta2 * v0 + (1.0 - beta2) * a2
                    };
                    let v = v.max(0.0);
                    next[i] = m as f32;
                    next[d + i] = v as f32;
                    out.push((f64::from(w) + lr * m / (v.sqrt() + tau)) as f32);
                }
                (out, next)
            }
        }
    }
}

impl fmt::Display for ServerOptimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerOptimizer::FedAvgM => f.write_str("fedavgm"),
            ServerOptimizer::FedAdam { beta1, beta2, tau } => {
                write!(f, "fedadam:{beta1}:{beta2}:{tau}")
            }
            ServerOptimizer::FedYogi { beta1, beta2, tau } => {
                write!(f, "fedyogi:{beta1}:{beta2}:{tau}")
            }
        }
    }
}

impl FromStr for ServerOptimizer {
    type Err = String;

    /// `fedavgm`, `fedadam[:BETA1[:BETA2[:TAU]]]`, `fedyogi[:BETA1[:BETA2[:TAU]]]`.
    fn from_str(text: &str) -> Result<ServerOptimizer, String> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        let number = |i: usize, default: f64, what: &str| -> Result<f64, String> {
            match parts.get(i) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("'{v}' is not a valid {what}")),
            }
        };
        let optimizer = match parts[0] {
            "fedavgm" | "fedavg" => {
                if parts.len() > 1 {
                    return Err("fedavgm takes no parameters (use --momentum)".into());
                }
                ServerOptimizer::FedAvgM
            }
            "fedadam" | "adam" => ServerOptimizer::FedAdam {
                beta1: number(1, 0.9, "beta1")?,
                beta2: number(2, 0.99, "beta2")?,
                tau: number(3, 1e-3, "tau")?,
            },
            "fedyogi" | "yogi" => ServerOptimizer::FedYogi {
                beta1: number(1, 0.9, "beta1")?,
                beta2: number(2, 0.99, "beta2")?,
                tau: number(3, 1e-3, "tau")?,
            },
            other => {
                return Err(format!(
                    "unknown server optimizer '{other}' (known: fedavgm, fedadam, fedyogi)"
                ));
            }
        };
        if parts.len() > 4 {
            return Err(format!("'{text}' has more than three parameters"));
        }
        optimizer.check()?;
        Ok(optimizer)
    }
}

/// How the server learning rate changes over a job's rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(tag = "name", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The same rate every round.
    #[default]
    Constant,
    /// Cosine decay from the rate at the first round towards `floor` times
    /// the rate, reached one round after the last (so that the last round,
    /// which is paid for, still moves the model): round `r` of `R` gets
    /// `lr (floor + (1 - floor) (1 + cos(pi (r - 1) / R)) / 2)`.
    Cosine {
        /// The fraction of the rate the decay tends to, in `[0, 1]`.
        floor: f64,
    },
}

impl LrSchedule {
    /// Whether this is the constant rate (the serialized form leaves it out).
    pub fn is_constant(&self) -> bool {
        matches!(self, LrSchedule::Constant)
    }

    /// Checks the parameters.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Cosine { floor } => {
                if (0.0..=1.0).contains(&floor) {
                    Ok(())
                } else {
                    Err(format!("cosine floor {floor} is not within [0, 1]"))
                }
            }
        }
    }

    /// The rate at `round` (1-based) of `rounds`, for base rate `lr`.
    pub fn rate(&self, lr: f64, round: u32, rounds: u32) -> f64 {
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine { floor } => {
                let rounds = rounds.max(1);
                let t = f64::from(round.clamp(1, rounds) - 1) / f64::from(rounds);
                lr * (floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
            }
        }
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrSchedule::Constant => f.write_str("constant"),
            LrSchedule::Cosine { floor } => write!(f, "cosine:{floor}"),
        }
    }
}

impl FromStr for LrSchedule {
    type Err = String;

    /// `constant`, `cosine[:FLOOR]`.
    fn from_str(text: &str) -> Result<LrSchedule, String> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        let schedule = match (parts[0], parts.get(1), parts.len()) {
            ("constant", None, 1) => LrSchedule::Constant,
            ("cosine", floor, 1 | 2) => LrSchedule::Cosine {
                floor: match floor {
                    None => 0.0,
                    Some(v) => v
                        .parse::<f64>()
                        .map_err(|_| format!("'{v}' is not a valid floor"))?,
                },
            },
            _ => {
                return Err(format!(
                    "unknown schedule '{text}' (known: constant, cosine[:FLOOR])"
                ));
            }
        };
        schedule.check()?;
        Ok(schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimizers_and_schedules_parse_print_and_check() {
        for text in ["fedavgm", "fedadam:0.9:0.99:0.001", "fedyogi:0.5:0.9:0.01"] {
            let o: ServerOptimizer = text.parse().unwrap();
            assert_eq!(o.to_string(), text);
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(serde_json::from_str::<ServerOptimizer>(&json).unwrap(), o);
        }
        assert_eq!(
            "adam".parse::<ServerOptimizer>().unwrap(),
            ServerOptimizer::FED_ADAM
        );
        assert!("fedadam:1.0".parse::<ServerOptimizer>().is_err());
        assert!("fedyogi:0.9:0.99:0".parse::<ServerOptimizer>().is_err());
        assert!("sgd".parse::<ServerOptimizer>().is_err());
        assert!("fedavgm:0.9".parse::<ServerOptimizer>().is_err());
        assert_eq!(
            "cosine:0.1".parse::<LrSchedule>().unwrap(),
            LrSchedule::Cosine { floor: 0.1 }
        );
        assert!("cosine:2".parse::<LrSchedule>().is_err());
        assert!("linear".parse::<LrSchedule>().is_err());
    }

    #[test]
    fn fedavgm_accumulates_momentum_and_scales_by_the_rate() {
        let o = ServerOptimizer::FedAvgM;
        let (w, v) = o.step(&[0.0, 1.0], &[], &[1.0, -1.0], 0.5, 0.9);
        assert_eq!((w.clone(), v.clone()), (vec![0.5, 0.5], vec![1.0, -1.0]));
        let (w, v) = o.step(&w, &v, &[1.0, -1.0], 0.5, 0.9);
        assert_eq!(v, vec![1.9, -1.9]);
        assert!((w[0] - 1.45).abs() < 1e-6);
    }

    #[test]
    fn adaptive_steps_are_about_the_rate_per_coordinate_whatever_the_scale() {
        // The first step of FedAdam moves each coordinate by about
        // lr * (1 - b1) / sqrt(1 - b2), whatever the aggregate's size.
        for o in [ServerOptimizer::FED_ADAM, ServerOptimizer::FED_YOGI] {
            let (w, state) = o.step(&[0.0, 0.0], &[], &[0.5, -10.0], 0.1, 0.0);
            assert_eq!(state.len(), 4);
            let expected = 0.1 * 0.1 / 0.01f64.sqrt();
            assert!(
                (f64::from(w[0]) - expected).abs() < 0.05 * expected,
                "{o}: {w:?}"
            );
            assert!(
                (f64::from(-w[1]) - expected).abs() < 0.01 * expected,
                "{o}: {w:?}"
            );
        }
    }

    #[test]
    fn the_cosine_schedule_runs_from_the_rate_to_its_floor() {
        let s = LrSchedule::Cosine { floor: 0.1 };
        assert_eq!(s.rate(2.0, 1, 10), 2.0);
        assert!((s.rate(2.0, 6, 10) - 1.1).abs() < 1e-12);
        let last = 2.0 * (0.1 + 0.9 * 0.5 * (1.0 + (0.9 * std::f64::consts::PI).cos()));
        assert!((s.rate(2.0, 10, 10) - last).abs() < 1e-12);
        assert!(
            s.rate(2.0, 10, 10) > 0.2,
            "the last round still moves the model"
        );
        assert_eq!(s.rate(2.0, 1, 1), 2.0);
        assert_eq!(LrSchedule::Constant.rate(2.0, 7, 11), 2.0);
    }
}
