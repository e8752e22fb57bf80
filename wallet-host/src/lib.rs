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
//! The `wallet` binary is the command line on top.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod import;
pub mod sandbox;
pub mod store;
