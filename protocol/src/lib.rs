//! The compute-to-ssi wire protocol, shared by wallets, the collective's
//! service, its aggregator and its ledger.
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
mod error;
mod ledger;
mod manifest;
mod messages;
pub mod privacy;
mod seal;
mod signing;

pub use amount::{Amount, MICROS};
pub use error::ProtocolError;
pub use ledger::{
    ChainError, EntryKind, LedgerEntry, LedgerSummary, entry_hash, genesis_hash, payee_commitment,
    verify_chain,
};
pub use manifest::{
    AllowedAlgorithm, DataRequirements, Manifest, ManifestDraft, TableRequirement,
    check_requirement, collective_id,
};
pub use messages::{
    AccessReport, AggregationRule, Assignment, Attestation, BatchCounts, BatchResult, CheckIn,
    CheckInResponse, CloseRound, Command, CreateCollective, DpReport, DpSpec, JobSpec, OpenRound,
    OperatorCommand, Receipt, Subscription, Task, Unsubscription, UpdateEnvelope, UpdateResponse,
};
pub use seal::{Outcome, UpdatePayload};
pub use signing::{
    Header, Message, PublicKey, Purpose, Signed, Signer, SigningKey, canonical_json, new_nonce,
    now_ms, sha256,
};
