//! What the broker shows of a collective to anyone who asks (the consumer
//! foremost): counts, job status, released model versions with their
//! provenance, the ledger's totals. None of these types has a field for a
//! wallet's key, a task's seed, a single update or a single metric.

use c2ssi_guest_sdk::Metric;
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::consumer::JobSpec;
use crate::optimizer::ServerOptimizer;
use crate::rounds::{BatchCounts, NoiseReport};
use crate::rule::AggregationRule;
use crate::signing::sha256;

/// A collective at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// A collective's number of subscribers at a moment: after the last change
/// of the minute that starts at `time_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubscriberCount {
    /// The minute, in ms since the epoch.
    pub time_ms: u64,
    /// Wallets subscribed.
    pub subscribers: u64,
}

/// Deposits and payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Balance {
    /// All deposits.
    pub deposited: Amount,
    /// All payments.
    pub paid: Amount,
    /// What is left.
    pub balance: Amount,
}

/// What the broker did with a submitted manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Whether every record's update reached the clipping norm and ignored
    /// the model: a sign of encoding rather than learning.
    pub flagged_encoding: bool,
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The server learning rate applied (the schedule's, for this round).
    pub server_lr: f64,
    /// The server momentum applied.
    pub momentum: f64,
    /// The server optimizer applied: FedAvgM when absent.
    #[serde(default, skip_serializing_if = "ServerOptimizer::is_fed_avg_m")]
    pub optimizer: ServerOptimizer,
}

/// A stored model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Property-based fuzzing of what clients decode of the broker's views:
/// the stored state names, and the JSON of a job's status and of a model
/// version, arbitrary and mutated.
#[cfg(test)]
mod fuzz {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;
    use c2ssi_fuzzing::{config, json_mutations, mutate, mutate_json, mutations};

    /// A real job status and model version, as JSON.
    static VIEWS: LazyLock<(serde_json::Value, serde_json::Value)> = LazyLock::new(|| {
        let provenance = Provenance {
            job_id: "j".into(),
            round: 2,
            parent: Some("ab".repeat(32)),
            algorithm_sha256: "cd".repeat(32),
            manifest_digest: "ef".repeat(32),
            updates: 11.5,
            metrics: vec![Metric::new("mse", 0.25)],
            noise: None,
            report: "released".into(),
            rule: Some(AggregationRule::TrimmedMean { trim: 0.1 }),
            server_lr: 1.0,
            momentum: 0.9,
            optimizer: ServerOptimizer::FedAvgM,
        };
        let status = JobStatus {
            id: "j".into(),
            collective_id: "c".into(),
            state: JobState::Running,
            reason: None,
            spec: JobSpec {
                algorithm_sha256: "cd".repeat(32),
                table: "t".into(),
                params: Vec::new(),
                rounds: 3,
                wallets_per_round: 20,
                round_deadline_ms: 60_000,
                rule: AggregationRule::Mean,
                server_lr: 1.0,
                momentum: 0.0,
                optimizer: ServerOptimizer::FED_ADAM,
                schedule: crate::LrSchedule::Cosine { floor: 0.1 },
                budget: Amount(1000),
                initial_model: Some(vec![0.0, 1.0]),
            },
            rounds_done: 1,
            next_round: 2,
            spent: Amount(200),
            model_hash: model_hash(&[0.0, 1.0]),
            epsilon_spent: Some(0.5),
            epsilon_bound: Some(2.0),
            delta: 1e-5,
            rounds: vec![RoundSummary {
                round: 1,
                status: RoundStatus::Released,
                sampled: 20,
                updates: Some(12.3),
                metrics: vec![Metric::new("mse", 0.3)],
                counts: None,
                report: "ok".into(),
                model_hash: Some(model_hash(&[0.0, 1.0])),
            }],
        };
        let version = ModelVersion {
            hash: model_hash(&[0.0, 1.0]),
            params: vec![0.0, 1.0],
            provenance,
            created_ms: 5,
        };
        (
            serde_json::to_value(&status).expect("the status serializes"),
            serde_json::to_value(&version).expect("the version serializes"),
        )
    });

    fn decode(bytes: &[u8]) {
        if let Ok(status) = serde_json::from_slice::<JobStatus>(bytes) {
            let _ = status.state.as_str();
            let _ = status.spec.rule.check();
            let _ = status.spec.rule.to_string();
        }
        if let Ok(version) = serde_json::from_slice::<ModelVersion>(bytes) {
            let _ = model_hash(&version.params);
        }
        let _ = serde_json::from_slice::<CollectiveSummary>(bytes);
        let _ = serde_json::from_slice::<ModelSummary>(bytes);
        let _ = serde_json::from_slice::<SubmissionOutcome>(bytes);
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn state_names_parse_only_to_themselves(text in prop_oneof![
            ".*",
            "(running|completed|stopped|budget-exhausted|failed|open|released|nothing-released)",
        ]) {
            if let Some(state) = JobState::parse(&text) {
                prop_assert_eq!(state.as_str(), text.as_str());
            }
            if let Some(status) = RoundStatus::parse(&text) {
                prop_assert_eq!(status.as_str(), text.as_str());
            }
        }

        #[test]
        fn arbitrary_bytes_decode_as_views_or_not_at_all(bytes in proptest::collection::vec(any::<u8>(), 0..300), text in ".*") {
            decode(&bytes);
            decode(text.as_bytes());
        }

        #[test]
        fn mutated_views_decode_or_not_at_all(
            bytes in mutations(),
            json in json_mutations(),
            which in any::<bool>(),
        ) {
            let value = if which { &VIEWS.0 } else { &VIEWS.1 };
            decode(&mutate(&serde_json::to_vec(value).expect("JSON serializes"), &bytes));
            decode(&serde_json::to_vec(&mutate_json(value, &json)).expect("JSON serializes"));
        }
    }
}
