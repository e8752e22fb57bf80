#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

// The generated bindings name this crate by its path, also from inside it.
#[allow(unused_extern_crates)]
extern crate self as c2ssi_guest_sdk;

mod algorithm;
pub mod encode;
mod error;
pub mod glm;
#[cfg(feature = "linalg")]
pub mod normal;
mod params;
pub mod sgd;
mod table;

#[cfg(feature = "export")]
pub mod export;

pub use algorithm::{
    Algorithm, Evaluation, Metric, Update, describe, evaluate, expect_model_len, init_model,
    predict, train,
};
pub use error::{Error, Result};
pub use params::{AlgorithmInfo, FEATURES, LABEL, Param, ParamKind, ParamSpec, ParamValue, Params};
pub use table::{
    Column, ColumnData, ColumnSpec, ColumnType, MAX_TABLE_NAME, Table, check_schema,
    valid_table_name,
};

/// The line prefix under which the SDK writes a guest's panic message to
/// stderr, where the host's capture finds it.
pub const PANIC_MARKER: &str = "c2ssi-guest-panic: ";

/// Everything an algorithm's `lib.rs` usually needs.
pub mod prelude {
    pub use crate::encode::{
        ClassTarget, FeatureEncoder, RangeScale, RegressionTarget, prediction_schema,
        select_features,
    };
    pub use crate::glm::{Glm, GlmAlgorithm, Identity, Link, Logit, Softmax};
    pub use crate::sgd::{SgdConfig, axpy, dot, glm_gradient, glm_scores, run_epochs};
    pub use crate::{
        Algorithm, AlgorithmInfo, Column, ColumnData, ColumnSpec, ColumnType, Error, Evaluation,
        Metric, ParamKind, ParamSpec, ParamValue, Params, Result, Table, Update, expect_model_len,
    };
}
