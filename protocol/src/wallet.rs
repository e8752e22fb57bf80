//! What a wallet exchanges with the broker (subscriptions, check-ins,
//! tasks, receipts) and with the aggregator (update envelopes), and the
//! typed answers it gets.

use c2ssi_guest_sdk::Param;
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::signing::{Header, PublicKey, Signed};

/// A wallet's subscription contract: consent to one version of a manifest.
/// A wallet consents again, with a new one, to every later version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscription {
    /// Purpose `subscription`.
    pub header: Header,
    /// The wallet's key: its id.
    pub wallet: PublicKey,
    /// SHA-256 of the signed manifest payload consented to, hex.
    pub manifest_digest: String,
    /// The terms in words, as shown to the person.
    pub consent: String,
    /// The verifiable credentials presented, as issued (JSON objects), when
    /// the manifest requires one. Each is about this wallet's `did:key`; the
    /// wallet's signature over the subscription (fresh header, nonce) proves
    /// it holds that key, so the subscription is the presentation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<serde_json::Value>,
}

/// A wallet withdrawing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unsubscription {
    /// Purpose `unsubscription`.
    pub header: Header,
    /// The wallet.
    pub wallet: PublicKey,
}

/// A wallet agent asking for work and for its receipts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckIn {
    /// Purpose `check-in`.
    pub header: Header,
    /// The wallet.
    pub wallet: PublicKey,
    /// Receipts with a ledger sequence number above this are wanted.
    pub receipts_after: u64,
}

/// The answer to a check-in.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckInResponse {
    /// A task, if the wallet was sampled for an open round.
    pub task: Option<Signed<Task>>,
    /// New receipts.
    pub receipts: Vec<Signed<Receipt>>,
    /// The manifest's current version (a wallet fetches a newer one and
    /// asks its owner before it runs anything under it).
    pub manifest_version: u64,
    /// When to check in again.
    pub retry_after_ms: u64,
}

/// A task for one wallet, signed by the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// Purpose `task`; expires at the round's deadline.
    pub header: Header,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// The wallet it is for.
    pub wallet: PublicKey,
    /// SHA-256 of the signed manifest the task is issued under, hex: the
    /// wallet runs it only if that is the version its owner consented to.
    pub manifest_digest: String,
    /// SHA-256 of the algorithm, hex.
    pub algorithm_sha256: String,
    /// The required table to train on.
    pub table: String,
    /// Hyper-parameters.
    pub params: Vec<Param>,
    /// The current model.
    pub model: Vec<f32>,
    /// Seed of the local training, drawn by the broker for this task alone.
    pub seed: u64,
    /// The aggregator's URL, where the update goes.
    pub update_url: String,
}

/// A wallet's statement about its data for a task: whether the required
/// data was there, and nothing more (how many rows the owner has, or what
/// was missing, stays in the wallet's own log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attestation {
    /// SHA-256 of the requirements checked against, hex.
    pub requirements_digest: String,
    /// The table.
    pub table: String,
    /// Whether everything required was present.
    pub present: bool,
}

/// What a wallet sends the aggregator, signed by the wallet; the update
/// itself is sealed to the aggregator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// SHA-256 of the signed manifest whose terms the wallet applied, hex.
    pub manifest_digest: String,
    /// The wallet's statement about its data.
    pub attestation: Attestation,
    /// The sealed [`crate::UpdatePayload`], base64; empty when the data was not present.
    pub sealed: String,
}

/// A payment receipt, signed by the broker's ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Why an envelope was not taken at all (and not paid).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Refusal {
    /// The envelope's signature does not verify, or is not its wallet's.
    BadSignature,
    /// The envelope is for another collective.
    WrongCollective,
    /// The round is not open.
    RoundNotOpen,
    /// The wallet has no task in the round.
    NotAssigned,
    /// The envelope answers another task.
    WrongTask,
    /// The wallet applied other terms than the round's manifest.
    WrongTerms,
    /// The wallet already sent an update for the round.
    Duplicate,
    /// The sealed update does not open with the aggregator's key. An
    /// honest wallet never sends one: it is not paid.
    Undecryptable,
    /// The update is malformed (wrong length, values not finite, a
    /// payload that does not decode). An honest wallet checks what the
    /// algorithm returned and sends a failure instead: it is not paid.
    InvalidUpdate,
}

impl Refusal {
    /// A short, stable name.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::BadSignature => "bad-signature",
            Refusal::WrongCollective => "wrong-collective",
            Refusal::RoundNotOpen => "round-not-open",
            Refusal::NotAssigned => "not-assigned",
            Refusal::WrongTask => "wrong-task",
            Refusal::WrongTerms => "wrong-terms",
            Refusal::Duplicate => "duplicate",
            Refusal::Undecryptable => "undecryptable",
            Refusal::InvalidUpdate => "invalid-update",
        }
    }

    /// The HTTP status the aggregator answers with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Duplicate => 409,
            Refusal::RoundNotOpen => 410,
            _ => 422,
        }
    }
}

/// Why an envelope that was taken (its access happened) adds nothing to the
/// batch.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Unused {
    /// The wallet attested that the required data was missing.
    DataMissing,
    /// The algorithm failed in the wallet (counted only without noise;
    /// with noise a failure is a zero update, indistinguishable).
    AlgorithmFailed,
    /// The round had closed when the envelope came: its batch is released
    /// already. The access happened, so it is paid all the same (payment
    /// never depends on timing, which an algorithm can steer).
    Late,
}

impl Unused {
    /// A short, stable name.
    pub fn name(self) -> &'static str {
        match self {
            Unused::DataMissing => "data-missing",
            Unused::AlgorithmFailed => "algorithm-failed",
            Unused::Late => "late",
        }
    }
}

/// What the aggregator did with an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", content = "reason", rename_all = "kebab-case")]
pub enum UpdateOutcome {
    /// Taken into the round's batch.
    Taken,
    /// Taken (the access happened) but adds nothing to the batch.
    Unused(Unused),
    /// Not taken.
    Refused(Refusal),
}

impl UpdateOutcome {
    /// Whether the envelope was taken (into the batch or not).
    pub fn taken(self) -> bool {
        !matches!(self, UpdateOutcome::Refused(_))
    }
}

/// The aggregator's answer to an update.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdateResponse {
    /// What happened to it.
    pub outcome: UpdateOutcome,
    /// The payment receipt, when the access was paid.
    pub receipt: Option<Signed<Receipt>>,
    /// More, in words, for the owner's log.
    pub message: Option<String>,
}
