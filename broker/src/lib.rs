//! The broker of compute-to-ssi (the seed's "Ocean" side): it keeps the
//! collectives' signed manifests and the components they allow, the
//! wallets' subscriptions, samples wallets and hands them tasks, drives the
//! aggregator round by round, applies what it releases, and keeps the
//! signed ledger that pays every access. It never sees a record or an
//! individual update; the consumer sees only what [`http`] shows.
//!
//! Each table belongs to one module, with its SQL:
//!
//! - [`registry`]: collectives and every version of their manifests;
//! - [`algorithms`]: components, and the privacy audit of each;
//! - [`subscriptions`]: consents, the credentials that admitted them, and
//!   check-ins ([`checkins`]: held in memory, written every second);
//!   [`status_lists`]: issuers' revocation lists; [`nonces`]: replays;
//! - [`distributor`]: samples, tasks and their seeds (from the OS generator);
//! - [`jobs`] and [`rounds`]; [`job_spec`]: the pure checks of a job;
//! - [`ledger`] and [`payments`]; [`models`]: the server optimizer and
//!   content-addressed versions; [`keys`]: the broker's signing key.
//!
//! [`access`] says who may make which request. [`broker`] composes them (each multi-table change in one transaction),
//! [`aggregator_link`] reaches the aggregator, [`runner`] drives jobs, and
//! [`http`] and [`service`] are the process. State lives in SQLite, or
//! in PostgreSQL that several brokers share ([`database`];
//! [`scratch_postgres`] starts a throwaway server for tests and benchmarks).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod access;
pub mod aggregator_link;
pub mod algorithms;
pub mod broker;
pub mod checkins;
pub mod database;
pub mod distributor;
pub mod error;
pub mod http;
pub mod job_spec;
pub mod jobs;
pub mod keys;
pub mod ledger;
pub mod models;
pub mod monitor;
pub mod nonces;
pub mod payments;
pub mod registry;
pub mod rounds;
pub mod runner;
pub mod scratch_postgres;
pub mod service;
pub mod status_lists;
pub mod subscriptions;

pub use broker::{Broker, BrokerConfig, RoundEnd, RoundStart};
pub use error::BrokerError;
