//! The whole compute-to-ssi loop in one process, on a real dataset: a
//! consumer, a broker, an aggregator and one wallet per person (in memory,
//! or encrypted on disk), over the same code paths as the real processes ([`run`]), with the HTTP
//! hops replaced by calls through the same checks ([`links`]).
//!
//! - [`data`]: the people (diabetes, wine quality, a synthetic logistic
//!   population, or a CSV), and the split into wallets and held-out people;
//! - [`baseline`]: the centralized linfa fit the federated model is compared with;
//! - [`attack`]: Byzantine wallets that tamper with their updates;
//! - [`chart`]: the curve, as SVG.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod attack;
pub mod baseline;
pub mod chart;
pub mod data;
pub mod error;
pub mod links;
mod run;

pub use run::{
    AlgorithmSource, PrivacySetting, Progress, Release, SimulateOptions, Summary, embedded,
    peak_memory_bytes, run,
};
