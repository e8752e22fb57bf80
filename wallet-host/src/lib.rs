//! The individual's side of compute-to-ssi.
//!
//! - [`store`]: the encrypted wallet directory: keys and records under age,
//!   atomic writes, a lock against two writers.
//! - [`import`]: CSV, JSON and single rows into typed tables, every cell
//!   checked against its declared type.
//! - [`credentials`]: the verifiable credentials the wallet holds, about its
//!   `did:key`, presented when a collective requires one.
//! - [`agent`]: subscriptions, checking and running a collective's tasks in
//!   the sandbox of the `c2ssi-sandbox` crate, the access log and receipts.
//!
//! The `wallet` binary is the command line on top.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod agent;
pub mod credentials;
pub mod import;
pub mod store;
pub mod ui;
