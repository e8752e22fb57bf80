//! The guest SDK of compute-to-ssi: what an algorithm author depends on.
//!
//! An algorithm is a plain Rust type that implements [`Algorithm`] over typed
//! [`Table`]s and `f32` parameter vectors; [`export_algorithm!`] exports it as
//! the `c2ssi:algorithm` WebAssembly world. The numeric core has no WIT in it,
//! so the same crate builds natively for tests and benchmarks and for
//! `wasm32-wasip2` for the sandbox:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p linear-regression
//! ```
//!
//! Hosts use this crate without the `export` feature for the typed table and
//! the feature encoding, so that both sides encode data the same way.
#![deny(missing_docs)]

// The generated bindings name this crate by its path, also from inside it.
#[allow(unused_extern_crates)]
extern crate self as c2ssi_guest_sdk;

mod algorithm;
pub mod encode;
mod error;
mod params;
pub mod sgd;
mod table;

#[cfg(feature = "export")]
pub mod export;

pub use algorithm::{
    Algorithm, Metric, Update, describe, evaluate, expect_model_len, init_model, train,
};
pub use error::{Error, Result};
pub use params::{AlgorithmInfo, FEATURES, LABEL, Param, ParamKind, ParamSpec, ParamValue, Params};
pub use table::{Column, ColumnData, ColumnSpec, ColumnType, Table};

/// The line prefix under which the SDK writes a guest's panic message to
/// stderr, where the host's capture finds it.
pub const PANIC_MARKER: &str = "c2ssi-guest-panic: ";

/// Everything an algorithm's `lib.rs` usually needs.
pub mod prelude {
    pub use crate::encode::{ClassTarget, FeatureEncoder, RegressionTarget, select_features};
    pub use crate::sgd::{SgdConfig, dot, run_epochs};
    pub use crate::{
        Algorithm, AlgorithmInfo, Error, Metric, ParamKind, ParamSpec, ParamValue, Params, Result,
        Table, Update, expect_model_len,
    };
}
