//! The flags of a training job, defined once: `collective train` and the
//! simulation flatten [`TrainingArgs`] into their own (each with its own
//! rounds and sample size).

use anyhow::bail;
use c2ssi_guest_sdk::{Param, ParamValue};
use c2ssi_protocol::{AggregationRule, LrSchedule, ServerOptimizer};
use clap::Args;

/// How a job trains.
#[derive(Debug, Clone, Args)]
pub struct TrainingArgs {
    /// Hyper-parameters, as name=value (lists comma-separated)
    #[arg(long = "params", num_args = 1.., value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Aggregation rule: mean, clipped-mean[:NORM], median,
    /// trimmed-mean[:FRACTION], multi-krum[:F],
    /// centered-clipping[:RADIUS[:ITERATIONS]],
    /// centered-clipping-momentum[:RADIUS[:BETA]] (keeps the job's momentum:
    /// give --momentum 0), and bucketing:SIZE:RULE in front of any of them.
    /// With noise, the noise on the model grows with how far one wallet can
    /// move the rule: each release's report gives the ratio to the mean's
    #[arg(long, default_value = "mean")]
    pub filter: String,
    /// Server learning rate
    #[arg(long, default_value_t = 1.0)]
    pub server_lr: f64,
    /// Server momentum (FedAvgM's; the adaptive optimizers have their own
    /// beta1). 0.9 was chosen by measurement (docs/CONVERGENCE.md); give 0 for
    /// plain FedAvg, and for centered-clipping-momentum, which keeps its own
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Server optimizer: fedavgm (with --momentum),
    /// fedadam[:BETA1[:BETA2[:TAU]]] or fedyogi[:BETA1[:BETA2[:TAU]]]
    /// (Reddi et al. 2021; defaults 0.9, 0.99, 0.001)
    #[arg(long, default_value = "fedavgm")]
    pub optimizer: String,
    /// How the server learning rate changes over the rounds: cosine[:FLOOR]
    /// (decays from the rate towards FLOOR times it, reached one round after
    /// the last; chosen by measurement, see docs/CONVERGENCE.md) or constant
    #[arg(long, default_value = "cosine")]
    pub lr_schedule: String,
}

impl TrainingArgs {
    /// The rule, parsed.
    pub fn rule(&self) -> anyhow::Result<AggregationRule> {
        self.filter
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--filter: {e}"))
    }

    /// The server optimizer, parsed.
    pub fn optimizer(&self) -> anyhow::Result<ServerOptimizer> {
        self.optimizer
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--optimizer: {e}"))
    }

    /// The learning-rate schedule, parsed.
    pub fn schedule(&self) -> anyhow::Result<LrSchedule> {
        self.lr_schedule
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--lr-schedule: {e}"))
    }

    /// The hyper-parameters, parsed.
    pub fn params(&self) -> anyhow::Result<Vec<Param>> {
        self.params.iter().map(|p| parse_param(p)).collect()
    }
}

/// A hyper-parameter typed by its look; the algorithm's declaration decides
/// (an integer where a real is declared, a text where a list is, are accepted).
pub fn parse_param(text: &str) -> anyhow::Result<Param> {
    let Some((name, value)) = text.split_once('=') else {
        bail!("hyper-parameter '{text}' is not name=value");
    };
    let value = value.trim();
    let typed = if let Ok(i) = value.parse::<i64>() {
        ParamValue::Integer(i)
    } else if let Ok(x) = value
        .parse::<f64>()
        .map_err(|_| ())
        .and_then(|x| if x.is_finite() { Ok(x) } else { Err(()) })
    {
        ParamValue::Real(x)
    } else if value == "true" || value == "false" {
        ParamValue::Boolean(value == "true")
    } else if value.contains(',') {
        ParamValue::TextList(value.split(',').map(|s| s.trim().to_string()).collect())
    } else {
        ParamValue::Text(value.to_string())
    };
    Ok(Param::new(name.trim(), typed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_typed_by_their_look() {
        assert_eq!(
            parse_param("epochs=3").unwrap().value,
            ParamValue::Integer(3)
        );
        assert_eq!(
            parse_param("features=a,b").unwrap().value,
            ParamValue::TextList(vec!["a".into(), "b".into()])
        );
        assert!(parse_param("epochs").is_err());
    }
}
