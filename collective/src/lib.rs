//! The consumer's side of compute-to-ssi.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod aggregation;
pub mod aggregator;
pub mod database;
pub mod distributor;
pub mod error;
pub mod ledger;
pub mod models;
pub mod registry;
