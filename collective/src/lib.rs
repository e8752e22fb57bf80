//! The consumer's side of compute-to-ssi: a compute collective.
//!
//! - [`registry`]: collectives, signed manifests, allowed algorithms, subscriptions;
//! - [`distributor`]: which wallets get a task in a round;
//! - [`aggregator`]: a role of its own that opens sealed updates in memory,
//!   filters them ([`aggregation`]: the robust rules and differential privacy)
//!   and signs batch results, in the service or as its own process
//!   ([`aggregator_process`]);
//! - [`ledger`]: append-only, hash-chained, signed payments and records;
//! - [`models`]: the server optimizer and content-addressed model versions;
//! - [`coordinator`]: the operations of a service over all of these, and
//!   [`runner`]: the rounds of running jobs;
//! - [`http`] and [`service`]: the JSON API and the process around it;
//! - [`simulate`]: the whole loop in one process over a real dataset.
//!
//! State lives in SQLite ([`database`]). The wire protocol is the light
//! `c2ssi-protocol` crate, shared with wallets.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod aggregation;
pub mod aggregator;
pub mod aggregator_process;
pub mod coordinator;
pub mod database;
pub mod distributor;
pub mod error;
pub mod http;
pub mod ledger;
pub mod models;
pub mod registry;
pub mod runner;
pub mod service;
pub mod simulate;
