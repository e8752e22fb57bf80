//! The consumer's side of compute-to-ssi: a compute collective, as its
//! operator runs it from the `collective` command line. The consumer writes
//! the manifest and signs it with the collective's key, adds algorithms,
//! deposits budget, starts jobs and reads what the broker releases: the
//! number of subscribers, job status with noised statistics, model versions
//! and the ledger's totals. It holds no wallet key, no sample, no seed, no
//! single update: its code never touches the broker's database, the
//! aggregator or a wallet.
//!
//! - [`home`]: the collective's keys, in the consumer's own data directory;
//! - [`manifest_file`]: the manifest file an operator writes, and the signed
//!   manifest built from it with the broker's and aggregator's keys;
//! - [`operator`]: the operator's signed commands;
//! - [`ui`]: `collective ui`, the operator's dashboard;
//! - [`args`]: the training flags, defined once for `collective train` and
//!   the simulation.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod args;
pub mod home;
pub mod manifest_file;
pub mod model_file;
pub mod operator;
pub mod scaffold;
pub mod ui;
