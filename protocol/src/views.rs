//! What the broker shows of a collective to anyone who asks (the consumer
//! foremost): counts, job status, released model versions with their
//! provenance, the ledger's totals. None of these types has a field for a
//! wallet's key, a task's seed, a single update or a single metric.

use c2ssi_guest_sdk::Metric;
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::consumer::JobSpec;
use crate::rounds::{BatchCounts, NoiseReport};
use crate::rule::AggregationRule;
use crate::signing::sha256;

/// A collective at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectiveSummary {
    /// Its id.
    pub collective_id: String,
    /// Its manifest's current version.
    pub manifest_version: u64,
    /// SHA-256 of the current signed manifest, hex.
    pub manifest_digest: String,
    /// Wallets subscribed.
    pub subscribers: u64,
    /// Of them, those that consented to the current version (only they get tasks).
    pub consented_to_current: u64,
    /// The budget.
    pub balance: Balance,
    /// Jobs started.
    pub jobs: u64,
}

/// Deposits and payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// All deposits.
    pub deposited: Amount,
    /// All payments.
    pub paid: Amount,
    /// What is left.
    pub balance: Amount,
}

/// What the broker did with a submitted manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionOutcome {
    /// The collective.
    pub collective_id: String,
    /// The version now current.
    pub version: u64,
    /// Its digest, hex.
    pub digest: String,
    /// The privacy audit of each new component.
    pub audits: Vec<AuditSummary>,
}

/// What a privacy audit of an algorithm found (see the `c2ssi-audit` crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditSummary {
    /// The component, by SHA-256.
    pub sha256: String,
    /// Canary-game trials played.
    pub trials: u32,
    /// Epsilon the accountant allows one release (one round).
    pub accountant_epsilon: Option<f64>,
    /// The empirical lower bound on one release's epsilon (95% confidence).
    pub empirical_epsilon: f64,
    /// Fraction of synthetic records whose update reached the clipping norm.
    pub at_clip_bound: f64,
    /// Whether every record's update reached the clipping norm: a sign of
    /// encoding rather than learning.
    pub flagged_encoding: bool,
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Rounds are running.
    Running,
    /// All rounds ran.
    Completed,
    /// The consumer stopped it.
    Stopped,
    /// The budget (the job's or the collective's) is spent.
    BudgetExhausted,
    /// It cannot go on.
    Failed,
}

impl JobState {
    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Stopped => "stopped",
            JobState::BudgetExhausted => "budget-exhausted",
            JobState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<JobState> {
        Some(match text {
            "running" => JobState::Running,
            "completed" => JobState::Completed,
            "stopped" => JobState::Stopped,
            "budget-exhausted" => JobState::BudgetExhausted,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }
}

/// A round's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundStatus {
    /// Tasks are out.
    Open,
    /// A batch was released and applied.
    Released,
    /// Nothing was released (fewer than k updates, or the aggregator
    /// released nothing, or lost the round).
    NothingReleased,
}

impl RoundStatus {
    /// The status's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundStatus::Open => "open",
            RoundStatus::Released => "released",
            RoundStatus::NothingReleased => "nothing-released",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<RoundStatus> {
        Some(match text {
            "open" => RoundStatus::Open,
            "released" => RoundStatus::Released,
            "nothing-released" => RoundStatus::NothingReleased,
            _ => return None,
        })
    }
}

/// A round, as anyone may know it: the size of the sample and what was
/// released, never which wallets took part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSummary {
    /// The round.
    pub round: u32,
    /// Its state.
    pub status: RoundStatus,
    /// Wallets sampled (the broker's choice: the job's size, the live
    /// wallets and the budget).
    pub sampled: u32,
    /// Updates combined, as released (noised with noise).
    pub updates: Option<f64>,
    /// The declared metrics' means, as released.
    pub metrics: Vec<Metric>,
    /// Exact counts by kind, released only without noise.
    pub counts: Option<BatchCounts>,
    /// What the aggregator did, or why nothing was released.
    pub report: String,
    /// The model version it produced.
    pub model_hash: Option<String>,
}

/// A job, as its status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Its id.
    pub id: String,
    /// The collective.
    pub collective_id: String,
    /// Its state.
    pub state: JobState,
    /// Why it ended, when it did.
    pub reason: Option<String>,
    /// What it runs.
    pub spec: JobSpec,
    /// Rounds that released a batch.
    pub rounds_done: u32,
    /// The next round to open.
    pub next_round: u32,
    /// What it has paid.
    pub spent: Amount,
    /// The current model version.
    pub model_hash: String,
    /// Epsilon the job has cost any one wallet so far, at the terms' delta
    /// (`None` without noise: no guarantee).
    pub epsilon_spent: Option<f64>,
    /// Epsilon the whole job may cost one wallet: the manifest's.
    pub epsilon_bound: Option<f64>,
    /// The delta of both.
    pub delta: f64,
    /// Every round.
    pub rounds: Vec<RoundSummary>,
}

/// Where a model version came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The job.
    pub job_id: String,
    /// The round that produced it (0: the initial model).
    pub round: u32,
    /// The version it was derived from.
    pub parent: Option<String>,
    /// The algorithm.
    pub algorithm_sha256: String,
    /// The manifest whose terms the release followed, hex.
    pub manifest_digest: String,
    /// Updates combined, as released.
    pub updates: f64,
    /// The declared metrics' means, as released.
    pub metrics: Vec<Metric>,
    /// The noise of the release.
    pub noise: Option<NoiseReport>,
    /// What the aggregator did.
    pub report: String,
    /// The rule.
    pub rule: Option<AggregationRule>,
    /// The server learning rate applied.
    pub server_lr: f64,
    /// The server momentum applied.
    pub momentum: f64,
}

/// A stored model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Its content address.
    pub hash: String,
    /// Its parameters.
    pub params: Vec<f32>,
    /// Where it came from.
    pub provenance: Provenance,
    /// When it was stored.
    pub created_ms: u64,
}

/// A version without its parameters, for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Its content address.
    pub hash: String,
    /// Its number of parameters.
    pub parameters: usize,
    /// Where it came from.
    pub provenance: Provenance,
    /// When it was stored.
    pub created_ms: u64,
}

/// The content address of a parameter vector: SHA-256 over a domain tag and
/// the little-endian `f32`s, hex.
pub fn model_hash(params: &[f32]) -> String {
    let mut bytes = b"c2ssi-model/1\0".to_vec();
    for p in params {
        bytes.extend_from_slice(&p.to_le_bytes());
    }
    hex::encode(sha256(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_address_content_and_states_round_trip() {
        assert_eq!(model_hash(&[1.0, 2.0]), model_hash(&[1.0, 2.0]));
        assert_ne!(model_hash(&[1.0, 2.0]), model_hash(&[2.0, 1.0]));
        for s in [
            JobState::Running,
            JobState::Completed,
            JobState::Stopped,
            JobState::BudgetExhausted,
            JobState::Failed,
        ] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        for s in [
            RoundStatus::Open,
            RoundStatus::Released,
            RoundStatus::NothingReleased,
        ] {
            assert_eq!(RoundStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobState::parse("runnin"), None);
    }
}
