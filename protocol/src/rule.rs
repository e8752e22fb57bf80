//! The aggregation rule a job asks for (its anomaly filter), as it travels
//! and as an operator types it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the aggregator combines a batch of updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum AggregationRule {
    /// The plain mean, every wallet weighing one: the only rule that
    /// noise can wrap.
    Mean,
    /// Each update's L2 norm clipped to `clip_norm`, then the mean.
    ClippedMean {
        /// The clipping norm.
        clip_norm: f64,
    },
    /// Coordinate-wise median.
    Median,
    /// Coordinate-wise mean after dropping the `trim` fraction at each end.
    TrimmedMean {
        /// Fraction dropped at each end, in `[0, 0.5)`.
        trim: f64,
    },
    /// Multi-Krum: the `selected` updates with the smallest Krum scores
    /// (sum of squared distances to their `n - byzantine - 2` nearest), averaged.
    MultiKrum {
        /// Assumed number of Byzantine updates; `None`: 30% of the batch.
        byzantine: Option<u32>,
        /// How many to average; `None`: `n - byzantine`.
        selected: Option<u32>,
    },
    /// Centered clipping from the batch's median, `iterations` times with
    /// radius `radius`.
    CenteredClipping {
        /// The clipping radius.
        radius: f64,
        /// Iterations.
        iterations: u32,
    },
    /// Centered clipping with server momentum (Karimireddy, He and Jaggi
    /// 2021, one clipping step per round): each update becomes a momentum
    /// `beta c + (1 - beta) x` against the center `c`, the last aggregate
    /// this rule released for the job, and the aggregate is
    /// `c + mean_i clip(m_i - c, radius)`. The rule is the job's momentum,
    /// so the server optimizer's must be 0.
    CenteredClippingMomentum {
        /// The clipping radius of a momentum's offset from the center.
        radius: f64,
        /// The momentum, in `[0, 1)`.
        beta: f64,
    },
    /// Bucketing (Karimireddy, He and Jaggi 2022) in front of another rule:
    /// the batch shuffled by a key the aggregator draws each round, averaged
    /// in buckets of `size`, and the bucket means handed to `inner`.
    Bucketing {
        /// Updates per bucket, at least 1.
        size: u32,
        /// The rule applied to the bucket means (not itself bucketing).
        #[schema(no_recursion)]
        inner: Box<AggregationRule>,
    },
}

impl AggregationRule {
    /// Whether the rule keeps the job's momentum itself (and so needs the
    /// last aggregate it released, and a server momentum of 0).
    pub fn keeps_momentum(&self) -> bool {
        match self {
            AggregationRule::CenteredClippingMomentum { .. } => true,
            AggregationRule::Bucketing { inner, .. } => inner.keeps_momentum(),
            _ => false,
        }
    }

    /// Checks the rule's parameters, as the aggregator does when it builds it.
    pub fn check(&self) -> Result<(), String> {
        let positive = |x: f64, what: &str| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                Err(format!("{what} {x} must be positive"))
            }
        };
        match self {
            AggregationRule::Mean | AggregationRule::Median => Ok(()),
            AggregationRule::ClippedMean { clip_norm } => positive(*clip_norm, "clipping norm"),
            AggregationRule::TrimmedMean { trim } => {
                if (0.0..0.5).contains(trim) {
                    Ok(())
                } else {
                    Err(format!("trim fraction {trim} is not within [0, 0.5)"))
                }
            }
            AggregationRule::MultiKrum { .. } => Ok(()),
            AggregationRule::CenteredClipping { radius, .. } => positive(*radius, "radius"),
            AggregationRule::CenteredClippingMomentum { radius, beta } => {
                positive(*radius, "radius")?;
                if (0.0..1.0).contains(beta) {
                    Ok(())
                } else {
                    Err(format!("momentum {beta} is not within [0, 1)"))
                }
            }
            AggregationRule::Bucketing { size, inner } => {
                if *size == 0 {
                    return Err("a bucket holds at least one update".into());
                }
                if matches!(**inner, AggregationRule::Bucketing { .. }) {
                    return Err("bucketing cannot wrap bucketing".into());
                }
                inner.check()
            }
        }
    }
}

impl fmt::Display for AggregationRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregationRule::Mean => f.write_str("mean"),
            AggregationRule::ClippedMean { clip_norm } => write!(f, "clipped-mean:{clip_norm}"),
            AggregationRule::Median => f.write_str("median"),
            AggregationRule::TrimmedMean { trim } => write!(f, "trimmed-mean:{trim}"),
            AggregationRule::MultiKrum { byzantine, .. } => match byzantine {
                Some(b) => write!(f, "multi-krum:{b}"),
                None => f.write_str("multi-krum"),
            },
            AggregationRule::CenteredClipping { radius, iterations } => {
                write!(f, "centered-clipping:{radius}:{iterations}")
            }
            AggregationRule::CenteredClippingMomentum { radius, beta } => {
                write!(f, "centered-clipping-momentum:{radius}:{beta}")
            }
            AggregationRule::Bucketing { size, inner } => write!(f, "bucketing:{size}:{inner}"),
        }
    }
}

impl FromStr for AggregationRule {
    type Err = String;

    /// `mean`, `clipped-mean[:NORM]`, `median`, `trimmed-mean[:FRACTION]`,
    /// `multi-krum[:BYZANTINE]`, `centered-clipping[:RADIUS[:ITERATIONS]]`,
    /// `centered-clipping-momentum[:RADIUS[:BETA]]`, `bucketing:SIZE:RULE`.
    fn from_str(text: &str) -> Result<AggregationRule, String> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        if parts[0] == "bucketing" {
            let (Some(size), true) = (parts.get(1), parts.len() > 2) else {
                return Err("bucketing needs a size and a rule: bucketing:SIZE:RULE".into());
            };
            let size: u32 = size
                .parse()
                .map_err(|_| format!("'{size}' is not a bucket size"))?;
            let rule = AggregationRule::Bucketing {
                size,
                inner: Box::new(parts[2..].join(":").parse()?),
            };
            rule.check()?;
            return Ok(rule);
        }
        let number = |i: usize, default: f64, what: &str| -> Result<f64, String> {
            match parts.get(i) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| format!("'{v}' is not a valid {what}")),
            }
        };
        let count = |i: usize| -> Result<Option<u32>, String> {
            parts
                .get(i)
                .map(|v| v.parse().map_err(|_| format!("'{v}' is not a count")))
                .transpose()
        };
        let rule = match parts[0] {
            "mean" => AggregationRule::Mean,
            "clipped-mean" | "clip" => AggregationRule::ClippedMean {
                clip_norm: number(1, 1.0, "clipping norm")?,
            },
            "median" => AggregationRule::Median,
            "trimmed-mean" => {
                let trim = number(1, 0.2, "trim fraction")?;
                if trim >= 0.5 {
                    return Err("the trim fraction must be below 0.5".into());
                }
                AggregationRule::TrimmedMean { trim }
            }
            "multi-krum" | "krum" => AggregationRule::MultiKrum {
                byzantine: count(1)?,
                selected: None,
            },
            "centered-clipping" => AggregationRule::CenteredClipping {
                radius: number(1, 1.0, "radius")?,
                iterations: count(2)?.unwrap_or(10),
            },
            "centered-clipping-momentum" => AggregationRule::CenteredClippingMomentum {
                radius: number(1, 0.1, "radius")?,
                beta: number(2, 0.9, "momentum")?,
            },
            other => {
                return Err(format!(
                    "unknown rule '{other}' (known: mean, clipped-mean, median, trimmed-mean, \
                     multi-krum, centered-clipping, centered-clipping-momentum, bucketing)"
                ));
            }
        };
        rule.check()?;
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_from_the_command_line() {
        for (text, rule) in [
            ("mean", AggregationRule::Mean),
            ("median", AggregationRule::Median),
            (
                "trimmed-mean:0.1",
                AggregationRule::TrimmedMean { trim: 0.1 },
            ),
            (
                "multi-krum:3",
                AggregationRule::MultiKrum {
                    byzantine: Some(3),
                    selected: None,
                },
            ),
            (
                "centered-clipping:0.5:5",
                AggregationRule::CenteredClipping {
                    radius: 0.5,
                    iterations: 5,
                },
            ),
            (
                "clipped-mean:2",
                AggregationRule::ClippedMean { clip_norm: 2.0 },
            ),
            (
                "centered-clipping-momentum:0.01:0.8",
                AggregationRule::CenteredClippingMomentum {
                    radius: 0.01,
                    beta: 0.8,
                },
            ),
            (
                "centered-clipping-momentum",
                AggregationRule::CenteredClippingMomentum {
                    radius: 0.1,
                    beta: 0.9,
                },
            ),
        ] {
            assert_eq!(text.parse::<AggregationRule>().unwrap(), rule, "{text}");
        }
        let bucketed: AggregationRule = "bucketing:2:centered-clipping:0.5:5".parse().unwrap();
        assert_eq!(
            bucketed,
            AggregationRule::Bucketing {
                size: 2,
                inner: Box::new(AggregationRule::CenteredClipping {
                    radius: 0.5,
                    iterations: 5
                })
            }
        );
        assert_eq!(bucketed.to_string(), "bucketing:2:centered-clipping:0.5:5");
        let json = serde_json::to_string(&bucketed).unwrap();
        assert_eq!(
            serde_json::from_str::<AggregationRule>(&json).unwrap(),
            bucketed
        );
        assert!("bucketing:0:median".parse::<AggregationRule>().is_err());
        assert!("bucketing:2".parse::<AggregationRule>().is_err());
        assert!(
            "bucketing:2:bucketing:2:median"
                .parse::<AggregationRule>()
                .is_err()
        );
        assert!("trimmed-mean:0.5".parse::<AggregationRule>().is_err());
        assert!(
            "centered-clipping-momentum:0.1:1"
                .parse::<AggregationRule>()
                .unwrap_err()
                .contains("momentum 1")
        );
        assert!(
            "bucketing:2:centered-clipping-momentum"
                .parse::<AggregationRule>()
                .unwrap()
                .keeps_momentum()
        );
        assert!(
            !"centered-clipping"
                .parse::<AggregationRule>()
                .unwrap()
                .keeps_momentum()
        );
        assert!(
            "average"
                .parse::<AggregationRule>()
                .unwrap_err()
                .contains("unknown rule")
        );
    }
}

/// Property-based fuzzing of aggregation rules as operators type them.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use c2ssi_fuzzing::config;

    proptest! {
        #![proptest_config(config())]

        /// Whatever parses prints to text that parses to the same rule.
        #[test]
        fn rules_parse_to_what_they_print(text in prop_oneof![
            ".*",
            "(bucketing:[0-9]{1,2}:)?(mean|clipped-mean|clip|median|trimmed-mean|multi-krum|krum|centered-clipping|centered-clipping-momentum)(:[-0-9.e+a-z]{0,8}){0,3}",
        ]) {
            if let Ok(rule) = text.parse::<AggregationRule>() {
                let _ = rule.check();
                prop_assert_eq!(rule.to_string().parse::<AggregationRule>(), Ok(rule));
            }
        }
    }
}
