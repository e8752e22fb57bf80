//! The aggregator of compute-to-ssi: a role of its own, with its own keys
//! and process, that neither the consumer nor the broker can look into.
//!
//! - [`rules`]: the aggregation rules, one per file, checked when built;
//! - [`mechanism`]: what a batch releases under the manifest's privacy
//!   terms: contributions clipped and clamped, the Gaussian mechanism around
//!   any rule, calibrated to the bound the rule declares on one wallet;
//! - [`noise`]: Gaussian noise from the operating system's generator (a
//!   seeded one only for the simulation);
//! - [`monitor`]: `/metrics`, updates counted by outcome.
//! - [`round`]: the rounds: envelopes verified, opened in memory, refused by
//!   typed reason, released and forgotten;
//! - [`keys`]: its Ed25519 and age keys;
//! - [`process`]: the HTTP API of `aggregator serve`.
//!
//! It depends on the wire protocol and the HTTP plumbing only: no database,
//! no sandbox, nothing of the broker.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod keys;
pub mod mechanism;
pub mod monitor;
pub mod noise;
pub mod process;
pub mod round;
pub mod rules;

pub use keys::AggregatorKeys;
pub use noise::NoiseSource;
pub use round::{Accepted, Aggregator, CONTROL_VALIDITY_MS, Refused, RoundKey, RoundSpec};
