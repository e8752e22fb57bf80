//! The messages between wallets, the collective, the aggregator and the
//! ledger. Each has a [`Header`] and travels as [`Signed`].
//!
//! [`Signed`]: crate::Signed

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use c2ssi_guest_sdk::{Metric, Param};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::manifest::ManifestDraft;
use crate::signing::{Header, Message, PublicKey, Signed};

macro_rules! message {
    ($($t:ty),* $(,)?) => {
        $(impl Message for $t {
            fn header(&self) -> &Header {
                &self.header
            }
        })*
    };
}

/// An operator asks a service to create a collective (signed by the
/// operator's key, which then authenticates its commands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateCollective {
    /// Purpose `create-collective`, empty collective id.
    pub header: Header,
    /// What the manifest should say.
    pub draft: ManifestDraft,
}

/// An operator's command to its collective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorCommand {
    /// Purpose `operator-command`.
    pub header: Header,
    /// What to do.
    pub command: Command,
}

/// The operator's commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// Add budget.
    Deposit {
        /// How much.
        amount: Amount,
    },
    /// Allow an algorithm (its bytes travel beside the command).
    AddAlgorithm {
        /// SHA-256 of the component, hex.
        sha256: String,
    },
    /// Start a training job.
    StartJob(JobSpec),
    /// Stop a job after its current round.
    StopJob {
        /// The job.
        job_id: String,
    },
}

/// How the aggregator combines a batch of updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum AggregationRule {
    /// Mean weighted by examples.
    Mean,
    /// Each update's L2 norm clipped to `clip_norm`, then the weighted mean.
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
    /// Centered clipping around the previous round's aggregate, `iterations`
    /// times with radius `radius`.
    CenteredClipping {
        /// The clipping radius.
        radius: f64,
        /// Iterations.
        iterations: u32,
    },
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
        }
    }
}

impl FromStr for AggregationRule {
    type Err = String;

    /// `mean`, `clipped-mean[:NORM]`, `median`, `trimmed-mean[:FRACTION]`,
    /// `multi-krum[:BYZANTINE]`, `centered-clipping[:RADIUS[:ITERATIONS]]`.
    fn from_str(text: &str) -> Result<AggregationRule, String> {
        let parts: Vec<&str> = text.trim().split(':').collect();
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
            other => {
                return Err(format!(
                    "unknown rule '{other}' (known: mean, clipped-mean, median, trimmed-mean, \
                     multi-krum, centered-clipping)"
                ));
            }
        };
        Ok(rule)
    }
}

/// Central differential privacy for a job: each update clipped to
/// `clip_norm`, Gaussian noise of `noise_multiplier * clip_norm` added to
/// the sum of each batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpSpec {
    /// Noise standard deviation over the clipping norm.
    pub noise_multiplier: f64,
    /// Each update's L2 norm bound.
    pub clip_norm: f64,
    /// The delta of the reported (epsilon, delta).
    pub delta: f64,
}

/// A training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// SHA-256 of an allowed algorithm, hex.
    pub algorithm_sha256: String,
    /// The required table it trains on.
    pub table: String,
    /// Hyper-parameters.
    pub params: Vec<Param>,
    /// Rounds to run.
    pub rounds: u32,
    /// Wallets sampled per round.
    pub wallets_per_round: u32,
    /// The smallest batch released; at least the manifest's.
    pub min_batch: u32,
    /// How long a round waits for updates.
    pub round_deadline_ms: u64,
    /// The aggregation rule.
    pub rule: AggregationRule,
    /// The server's learning rate on the aggregate.
    pub server_lr: f64,
    /// The server's momentum.
    pub momentum: f64,
    /// The most this job may spend.
    pub budget: Amount,
    /// L2 clipping of each update in the wallet.
    pub clip_norm: Option<f64>,
    /// Central differential privacy.
    pub dp: Option<DpSpec>,
    /// Seed of the job's randomness (sampling, local training).
    pub seed: u64,
    /// The starting model; `None`: the algorithm's `init-model`.
    pub initial_model: Option<Vec<f32>>,
}

/// A wallet's subscription contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Purpose `subscription`.
    pub header: Header,
    /// The wallet's key: its id.
    pub wallet: PublicKey,
    /// SHA-256 of the signed manifest payload consented to, hex.
    pub manifest_digest: String,
    /// The terms in words, as shown to the person.
    pub consent: String,
}

/// A wallet withdrawing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unsubscription {
    /// Purpose `unsubscription`.
    pub header: Header,
    /// The wallet.
    pub wallet: PublicKey,
}

/// A wallet agent asking for work and for its receipts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckIn {
    /// Purpose `check-in`.
    pub header: Header,
    /// The wallet.
    pub wallet: PublicKey,
    /// Receipts with a ledger sequence number above this are wanted.
    pub receipts_after: u64,
}

/// The answer to a check-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckInResponse {
    /// A task, if the wallet was sampled for an open round.
    pub task: Option<Signed<Task>>,
    /// New receipts.
    pub receipts: Vec<Signed<Receipt>>,
    /// The manifest's current version (a wallet refreshes when it grew).
    pub manifest_version: u64,
    /// When to check in again.
    pub retry_after_ms: u64,
}

/// A task for one wallet, signed by the collective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Purpose `task`; expires at the round's deadline.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// The wallet it is for.
    pub wallet: PublicKey,
    /// SHA-256 of the algorithm, hex.
    pub algorithm_sha256: String,
    /// The required table to train on.
    pub table: String,
    /// Hyper-parameters.
    pub params: Vec<Param>,
    /// The current model.
    pub model: Vec<f32>,
    /// Seed for the local training.
    pub seed: u64,
    /// L2 clipping in the wallet.
    pub clip_norm: Option<f64>,
    /// Where to send the update: the collective's own URL when `None`.
    pub update_url: Option<String>,
}

/// A wallet's statement about its data for a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    /// SHA-256 of the requirements checked against, hex.
    pub requirements_digest: String,
    /// The table.
    pub table: String,
    /// Its rows.
    pub rows: u64,
    /// Whether everything required was present.
    pub present: bool,
    /// What was missing, when not.
    pub problems: Vec<String>,
}

/// What a wallet sends the aggregator, signed by the wallet; the update
/// itself is sealed to the aggregator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateEnvelope {
    /// Purpose `update`.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// The wallet.
    pub wallet: PublicKey,
    /// SHA-256 of the signed task payload, hex: which task this answers.
    pub task_digest: String,
    /// The wallet's statement about its data.
    pub attestation: Attestation,
    /// The sealed [`crate::UpdatePayload`], base64; empty when the data was not present.
    pub sealed: String,
}

/// A payment receipt, signed by the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Purpose `receipt`.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// Who was paid.
    pub wallet: PublicKey,
    /// How much.
    pub amount: Amount,
    /// The ledger entry.
    pub entry_seq: u64,
    /// Its hash, hex.
    pub entry_hash: String,
    /// The salt of the entry's payee commitment, hex.
    pub payee_salt: String,
}

/// Counts of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Envelopes received for the round.
    pub received: u32,
    /// Refused, by reason.
    pub rejected: BTreeMap<String, u32>,
    /// Combined into the aggregate.
    pub aggregated: u32,
}

/// What differential privacy cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpReport {
    /// Noise standard deviation added to the sum.
    pub sigma: f64,
    /// Epsilon spent by the job so far, at `delta`.
    pub epsilon: f64,
    /// The delta.
    pub delta: f64,
}

/// The aggregate of one round, signed by the aggregator. It never carries a
/// single wallet's update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    /// Purpose `batch-result`.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// The rule applied.
    pub rule: AggregationRule,
    /// The combined update.
    pub aggregate: Vec<f32>,
    /// Examples behind the aggregated updates.
    pub examples: u64,
    /// Counts.
    pub counts: BatchCounts,
    /// Each metric's mean over the aggregated updates.
    pub metrics: Vec<Metric>,
    /// What the rule did, in words.
    pub filter_report: String,
    /// Differential privacy, if on.
    pub dp: Option<DpReport>,
}

/// A wallet assigned to a round, and the digest of the task it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The wallet.
    pub wallet: PublicKey,
    /// Hex SHA-256 of its signed task.
    pub task_digest: String,
}

/// The collective asks an aggregator (in another process) to open a round
/// for the wallets it sent tasks to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenRound {
    /// Purpose `open-round`.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// The model's length: every update must have it.
    pub model_len: u32,
    /// Who may send an update, for which task.
    pub assigned: Vec<Assignment>,
}

/// The collective asks an aggregator (in another process) to close a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloseRound {
    /// Purpose `close-round`.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// How to aggregate.
    pub rule: AggregationRule,
    /// The smallest batch to release.
    pub min_batch: u32,
    /// The previous aggregate (for centered clipping).
    pub previous: Option<Vec<f32>>,
    /// Differential privacy.
    pub dp: Option<DpSpec>,
    /// Sampling rate of the round (for the privacy accountant).
    pub sampling_rate: f64,
    /// Rounds closed before this one (for the privacy accountant).
    pub rounds_before: u32,
}

/// An aggregator (in another process) reports an access for payment, with
/// the wallet's own signed envelope as evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessReport {
    /// Purpose `access-report`.
    pub header: Header,
    /// The wallet's envelope (its signature is checked again).
    pub envelope: Signed<UpdateEnvelope>,
}

/// The aggregator's answer to an update.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateResponse {
    /// Whether the envelope was taken.
    pub accepted: bool,
    /// Why not, in words.
    pub reason: Option<String>,
    /// The payment receipt, when the access was paid.
    pub receipt: Option<Signed<Receipt>>,
}

message!(
    CreateCollective,
    OperatorCommand,
    Subscription,
    Unsubscription,
    CheckIn,
    Task,
    UpdateEnvelope,
    Receipt,
    BatchResult,
    CloseRound,
    OpenRound,
    AccessReport,
);

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
        ] {
            assert_eq!(text.parse::<AggregationRule>().unwrap(), rule, "{text}");
        }
        assert!("trimmed-mean:0.5".parse::<AggregationRule>().is_err());
        assert!(
            "average"
                .parse::<AggregationRule>()
                .unwrap_err()
                .contains("unknown rule")
        );
    }
}
