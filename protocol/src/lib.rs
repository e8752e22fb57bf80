//! The compute-to-ssi wire protocol, shared by the wallet, the consumer, the
//! broker and the aggregator: signed messages, the manifest and its privacy
//! terms with the accountant that prices them, sealed updates and the ledger.
//!
//! Every message has a [`Header`] (collective id, purpose, expiry, nonce), is
//! serialized canonically and travels as [`Signed`]: the exact signed bytes,
//! the signer and an Ed25519 signature (ring). Updates are sealed to the
//! aggregator with age. Ledger entries are hash-chained and signed, and
//! [`verify_chain`] finds any edited, removed or reordered entry.
//!
//! The crate depends on no server machinery, so wallets use it as it is.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod amount;
mod api;
mod consumer;
mod error;
mod ledger;
mod manifest;
pub mod model_file;
mod optimizer;
pub mod privacy;
pub mod request;
mod rounds;
mod rule;
mod seal;
mod signing;
mod views;
mod wallet;

pub use amount::{Amount, MICROS};
pub use api::{ErrorBody, ErrorCode, ErrorDetail};
pub use consumer::{Command, CommandOutcome, JobSpec, ManifestSubmission, OperatorCommand};
pub use error::ProtocolError;
pub use ledger::{
    ChainError, EntryKind, LedgerEntry, LedgerSummary, entry_hash, genesis_hash, payee_commitment,
    verify_chain,
};
pub use manifest::{
    AllowedAlgorithm, Change, CredentialRequirement, DataRequirements, Manifest, TableRequirement,
    check_requirement, collective_id, open_manifest,
};
pub use optimizer::{LrSchedule, ServerOptimizer};
pub use privacy::{MetricBound, PrivacyTerms};
pub use rounds::{
    AccessReport, AggregatorIdentity, Assignment, BatchCounts, BatchResult, BrokerKeys,
    CloseOutcome, CloseRound, NoiseReport, OpenRound, ProgressQuery, RoundProgress,
};
pub use rule::AggregationRule;
pub use seal::{Outcome, UpdatePayload};
pub use signing::{
    Header, Message, PublicKey, Purpose, Signed, Signer, SigningKey, canonical_json, derive_seed,
    ed25519_pkcs8_from_seed, new_nonce, now_ms, sha256, write_secret,
};
pub use views::{
    AuditSummary, Balance, CollectiveSummary, JobState, JobStatus, ModelSummary, ModelVersion,
    Provenance, RoundStatus, RoundSummary, SubmissionOutcome, SubscriberCount, model_hash,
};
pub use wallet::{
    Attestation, CheckIn, CheckInResponse, Receipt, Refusal, Subscription, Task, Unsubscription,
    Unused, UpdateEnvelope, UpdateOutcome, UpdateResponse,
};

/// Implements [`Message`] for body types whose header is the field `header`.
macro_rules! message {
    ($($t:ty),* $(,)?) => {
        $(impl Message for $t {
            fn header(&self) -> &Header {
                &self.header
            }
        })*
    };
}

message!(
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
    ProgressQuery,
    AccessReport,
);
