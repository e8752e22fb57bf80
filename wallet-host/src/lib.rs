//! The individual's side of compute-to-ssi.
//!
//! - [`store`]: the encrypted wallet directory: keys and records under age,
//!   atomic writes, a lock against two writers.
//! - [`import`]: CSV, JSON and single rows into typed tables, every cell
//!   checked against its declared type.
//! - [`sandbox`]: runs a training algorithm (a WebAssembly component) on a
//!   typed table with fuel, deadline, memory, stack and output limits, and
//!   checks the update before anything leaves. The collective reuses it.
//!
//! - [`agent`]: subscriptions, checking and running a collective's tasks, the
//!   access log and receipts, and the HTTP client for a collective.
//!
//! The `wallet` binary is the command line on top.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod agent;
pub mod import;
pub mod sandbox;
pub mod store;
