//! Multi-class softmax regression: a GLM with the softmax link and
//! cross-entropy, trained by local mini-batch SGD epochs, with the weight
//! delta as the update. The label is a category (a class per declared level),
//! a boolean, or an integer with a declared range (a class per value), and
//! the hyper-parameter `classes` says how many. The model holds, for each
//! class in turn, one weight per encoded feature and then the class's bias;
//! `evaluate` reports `cross_entropy` (loss) and `accuracy` (score), and
//! `predict` the most probable class and every class's probability.
#![deny(missing_docs)]

use c2ssi_guest_sdk::prelude::*;

/// The algorithm.
pub type SoftmaxRegression = Glm<Spec>;

/// Its name and link.
#[derive(Debug)]
pub struct Spec;

impl GlmAlgorithm for Spec {
    type Link = Softmax;
    const NAME: &'static str = "softmax-regression";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Multi-class softmax regression with cross-entropy, trained by local mini-batch SGD.";
    const LEARNING_RATE: f64 = 0.5;
}

c2ssi_guest_sdk::export_algorithm!(SoftmaxRegression);
