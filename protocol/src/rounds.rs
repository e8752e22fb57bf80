//! What the broker and the aggregator exchange about rounds: the broker
//! opens and closes rounds with messages signed by its key (which the
//! manifest names), the aggregator releases signed batch results and reports
//! each access for payment.

use std::collections::BTreeMap;

use c2ssi_guest_sdk::Metric;
use serde::{Deserialize, Serialize};

use crate::rule::AggregationRule;
use crate::signing::{Header, PublicKey, Signed};
use crate::wallet::UpdateEnvelope;

/// The keys a broker publishes (`GET /keys`), for a consumer to name in its
/// manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BrokerKeys {
    /// Signs tasks, round control, ledger entries and receipts.
    pub broker_key: PublicKey,
    /// The aggregator the broker sends rounds to.
    pub aggregator: AggregatorIdentity,
}

/// An aggregator's public keys (`GET /key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AggregatorIdentity {
    /// Signs batch results and access reports.
    pub public_key: PublicKey,
    /// The age recipient updates are sealed to.
    pub recipient: String,
    /// Where wallets send their updates.
    pub url: String,
}

/// A wallet assigned to a round, and the digest of the task it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    /// The wallet.
    pub wallet: PublicKey,
    /// Hex SHA-256 of its signed task.
    pub task_digest: String,
}

/// The broker asks the aggregator to open a round for the wallets it sent
/// tasks to. The terms come from the manifest the digest names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenRound {
    /// Purpose `open-round`.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// SHA-256 of the signed manifest the tasks were issued under, hex.
    pub manifest_digest: String,
    /// The model's length: every update must have it.
    pub model_len: u32,
    /// Who may send an update, for which task.
    pub assigned: Vec<Assignment>,
}

/// The broker asks the aggregator to close a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CloseRound {
    /// Purpose `close-round`.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// The job's aggregation rule; with noise, wrapped in the Gaussian
    /// mechanism calibrated to the rule's sensitivity.
    pub rule: AggregationRule,
    /// For a rule that keeps a momentum: the last aggregate it released for
    /// the job (none before the first). Every other rule ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<Vec<f32>>,
}

/// The broker asks how far an open round is. Only the broker that opened
/// the round may ask: how many wallets have answered, and when, is for the
/// broker to close the round early, not for the consumer to watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProgressQuery {
    /// Purpose `round-progress`.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
}

/// A round's progress, the answer to a [`ProgressQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoundProgress {
    /// Whether the round is open.
    pub open: bool,
    /// Assigned wallets that answered.
    pub answered: usize,
    /// Assigned wallets.
    pub assigned: usize,
}

/// Exact counts of a round's envelopes, released only without noise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchCounts {
    /// Envelopes received.
    pub received: u32,
    /// Refused or unused, by reason.
    pub rejected: BTreeMap<String, u32>,
    /// Combined into the aggregate.
    pub aggregated: u32,
}

/// The noise of a release.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoiseReport {
    /// The noise multiplier of the manifest.
    pub noise_multiplier: f64,
    /// The standard deviation added to each coordinate of the sum.
    pub sigma: f64,
}

/// One round's release, signed by the aggregator. It never carries a single
/// wallet's update, metric or failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResult {
    /// Purpose `batch-result`.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// The manifest whose terms were applied.
    pub manifest_digest: String,
    /// The rule applied.
    pub rule: AggregationRule,
    /// The combined update.
    pub aggregate: Vec<f32>,
    /// How many updates were combined: noised when [`BatchResult::noise`]
    /// is there, exact otherwise.
    pub updates: f64,
    /// Each declared metric's mean over the batch (noised likewise).
    pub metrics: Vec<Metric>,
    /// Exact counts by kind: only without noise.
    pub counts: Option<BatchCounts>,
    /// What the rule (or the mechanism) did, in words.
    pub report: String,
    /// The noise, when there is some.
    pub noise: Option<NoiseReport>,
}

/// How closing a round went, on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum CloseOutcome {
    /// The signed batch result.
    Released {
        /// It.
        result: Signed<BatchResult>,
    },
    /// Fewer than k updates: nothing is released.
    TooFew {
        /// k.
        min_batch: u32,
    },
    /// The round was not open (the aggregator restarted, say).
    NotOpen,
    /// Nothing is released: the rule does not fit the terms, or no noise
    /// could be drawn.
    Failed {
        /// Why.
        reason: String,
    },
}

/// The aggregator reports an access for payment, with the wallet's own
/// signed envelope as evidence.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessReport {
    /// Purpose `access-report`.
    pub header: Header,
    /// The wallet's envelope (its signature is checked again).
    pub envelope: Signed<UpdateEnvelope>,
}
