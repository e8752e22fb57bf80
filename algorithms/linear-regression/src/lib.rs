//! Linear regression: a GLM with the identity link (least squares on the
//! label scaled by its declared range), trained by local mini-batch SGD
//! epochs, with the weight delta as the update. The model is one weight per
//! encoded feature followed by the bias, in the label's scaled units;
//! `evaluate` reports `mse` (loss), `r2` (score) and `mae` in the label's
//! own units, and `predict` answers in them.
#![deny(missing_docs)]

use c2ssi_guest_sdk::prelude::*;

/// The algorithm.
pub type LinearRegression = Glm<Spec>;

/// Its name and link.
#[derive(Debug)]
pub struct Spec;

impl GlmAlgorithm for Spec {
    type Link = Identity;
    const NAME: &'static str = "linear-regression";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Linear regression with squared loss, trained by local mini-batch SGD.";
    const LEARNING_RATE: f64 = 0.1;
}

c2ssi_guest_sdk::export_algorithm!(LinearRegression);
