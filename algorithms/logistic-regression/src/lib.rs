//! Binary logistic regression: a GLM with the logit link and log loss,
//! trained by local mini-batch SGD epochs, with the weight delta as the
//! update. The label is a boolean, a two-level category, or an integer
//! declared `0..=1`. The model is one weight per encoded feature followed by
//! the bias; `evaluate` reports `log_loss` (loss) and `accuracy` (score), and
//! `predict` the class and both classes' probabilities.
#![deny(missing_docs)]

use c2ssi_guest_sdk::prelude::*;

/// The algorithm.
pub type LogisticRegression = Glm<Spec>;

/// Its name and link.
#[derive(Debug)]
pub struct Spec;

impl GlmAlgorithm for Spec {
    type Link = Logit;
    const NAME: &'static str = "logistic-regression";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Binary logistic regression with log loss, trained by local mini-batch SGD.";
    const LEARNING_RATE: f64 = 0.5;
}

c2ssi_guest_sdk::export_algorithm!(LogisticRegression);
