//! Hostile algorithm components for the sandbox's tests.
//!
//! Each file in `examples/` is one component (a `cdylib`) that implements the
//! algorithm world honestly except for one thing: it loops forever, allocates
//! 3 GiB, recurses without end, panics, imports sockets, the filesystem or
//! HTTP, returns an update of the wrong length or with a NaN, or floods
//! stdout. [`hostile_algorithm!`] writes the honest parts.
#![deny(missing_docs)]

pub use c2ssi_guest_sdk as sdk;

/// Declares an algorithm named `$name` whose `train` runs `$body` with
/// `$model: &[f32]`, `$table: &Table` and `$seed: u64` in scope, and exports
/// it. Everything else behaves: no parameters, a zero model of
/// `feature_count + 1` parameters, and an empty evaluation.
#[macro_export]
macro_rules! hostile_algorithm {
    ($name:literal, |$model:ident, $table:ident, $seed:ident| $body:block) => {
        /// The hostile algorithm.
        #[derive(Debug)]
        pub struct Hostile;

        impl $crate::sdk::Algorithm for Hostile {
            fn info() -> $crate::sdk::AlgorithmInfo {
                $crate::sdk::AlgorithmInfo::new($name, "0.0.0", "a hostile test component")
            }

            fn init_model(
                _params: &$crate::sdk::Params,
                feature_count: usize,
            ) -> $crate::sdk::Result<Vec<f32>> {
                Ok(vec![0.0; feature_count + 1])
            }

            #[allow(unused_variables, unreachable_code)]
            fn train(
                $model: &[f32],
                _params: &$crate::sdk::Params,
                $table: &$crate::sdk::Table,
                $seed: u64,
            ) -> $crate::sdk::Result<$crate::sdk::Update> {
                $body
            }

            fn evaluate(
                _model: &[f32],
                _params: &$crate::sdk::Params,
                _table: &$crate::sdk::Table,
            ) -> $crate::sdk::Result<Vec<$crate::sdk::Metric>> {
                Ok(Vec::new())
            }
        }

        $crate::sdk::export_algorithm!(Hostile);
    };
}

/// The honest update for `model`: all zeros, one example.
pub fn zero_update(model: &[f32]) -> sdk::Update {
    sdk::Update {
        delta: vec![0.0; model.len()],
        examples: 1,
        metrics: Vec::new(),
    }
}
