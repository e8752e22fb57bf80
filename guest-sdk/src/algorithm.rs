//! The trait an algorithm author implements, and the checked entry points that
//! both the sandbox export and native callers (tests, benchmarks) go through,
//! so that the same code runs the same way in both.

use crate::error::{Error, Result};
use crate::params::{AlgorithmInfo, Param, Params};
use crate::table::{Column, ColumnSpec, Table};

/// A named number an algorithm reports.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metric {
    /// Its name (`loss`, `accuracy`).
    pub name: String,
    /// Its value.
    pub value: f64,
}

impl Metric {
    /// A named value.
    pub fn new(name: impl Into<String>, value: f64) -> Metric {
        Metric {
            name: name.into(),
            value,
        }
    }
}

/// What `evaluate` reports: each part named, so that no host guesses which
/// number to compare or plot.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evaluation {
    /// What training minimises (squared error, log loss): lower is better.
    pub loss: Metric,
    /// The headline measure of quality (R², accuracy): higher is better.
    pub score: Metric,
    /// Any further metrics.
    #[cfg_attr(feature = "serde", serde(default))]
    pub metrics: Vec<Metric>,
}

impl Evaluation {
    /// An evaluation with this loss and score and no further metrics.
    pub fn new(loss: Metric, score: Metric) -> Evaluation {
        Evaluation {
            loss,
            score,
            metrics: Vec::new(),
        }
    }

    /// Adds a further metric.
    pub fn metric(mut self, name: &str, value: f64) -> Evaluation {
        self.metrics.push(Metric::new(name, value));
        self
    }

    /// Every metric, loss and score first.
    pub fn all(&self) -> impl Iterator<Item = &Metric> {
        [&self.loss, &self.score].into_iter().chain(&self.metrics)
    }
}

/// What leaves a wallet after training.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Update {
    /// The change to every model parameter.
    pub delta: Vec<f32>,
    /// How many examples produced it.
    pub examples: u32,
    /// A few named metrics.
    pub metrics: Vec<Metric>,
}

impl Update {
    /// The update that takes `before` to `after`.
    pub fn between(before: &[f32], after: &[f32], examples: usize) -> Update {
        Update {
            delta: after.iter().zip(before).map(|(a, b)| a - b).collect(),
            examples: u32::try_from(examples).unwrap_or(u32::MAX),
            metrics: Vec::new(),
        }
    }

    /// Adds a metric.
    pub fn metric(mut self, name: &str, value: f64) -> Update {
        self.metrics.push(Metric::new(name, value));
        self
    }
}

/// A training algorithm over typed tables and `f32` parameter vectors.
///
/// Implement it in plain Rust, then export it with
/// [`export_algorithm!`](crate::export_algorithm). Parameters arrive checked
/// against [`Algorithm::info`]'s declarations with defaults filled in.
pub trait Algorithm {
    /// Name, version, description and the hyper-parameters taken.
    fn info() -> AlgorithmInfo;

    /// The initial model for `feature_count` encoded input features.
    fn init_model(params: &Params, feature_count: usize) -> Result<Vec<f32>>;

    /// Local training from `model` on `data`; `seed` makes it reproducible.
    fn train(model: &[f32], params: &Params, data: &Table, seed: u64) -> Result<Update>;

    /// The loss, the score and any further metrics of `model` on `data`,
    /// which holds the label.
    fn evaluate(model: &[f32], params: &Params, data: &Table) -> Result<Evaluation>;

    /// The predictions of `model` for every row of `data`, which need not
    /// hold the label; `label` is its declared type. The first column is the
    /// prediction, named like the label and in its own units (unscale with
    /// [`RangeScale::inverse`](crate::encode::RangeScale::inverse)); further
    /// columns are extras such as class probabilities. The default says the
    /// algorithm does not predict.
    fn predict(
        model: &[f32],
        params: &Params,
        data: &Table,
        label: &ColumnSpec,
    ) -> Result<Vec<Column>> {
        let _ = (model, params, data);
        Err(Error::new(format!(
            "{} does not predict (its author did not implement `predict`); label '{}'",
            Self::info().name,
            label.name
        )))
    }
}

/// `describe`, as the host sees it.
pub fn describe<A: Algorithm>() -> AlgorithmInfo {
    A::info()
}

/// `init-model`, as the host sees it: parameters checked first.
pub fn init_model<A: Algorithm>(params: Vec<Param>, feature_count: u32) -> Result<Vec<f32>> {
    let params = Params::resolve(&A::info().params, params)?;
    A::init_model(&params, feature_count as usize)
}

/// `train`, as the host sees it: parameters checked first, the model must not
/// be empty, and the update's delta must match the model's length.
pub fn train<A: Algorithm>(
    model: &[f32],
    params: Vec<Param>,
    data: &Table,
    seed: u64,
) -> Result<Update> {
    let params = Params::resolve(&A::info().params, params)?;
    if data.row_count == 0 {
        return Err(Error::new(format!("table '{}' has no rows", data.name)));
    }
    A::train(model, &params, data, seed)
}

/// `evaluate`, as the host sees it.
pub fn evaluate<A: Algorithm>(
    model: &[f32],
    params: Vec<Param>,
    data: &Table,
) -> Result<Evaluation> {
    let params = Params::resolve(&A::info().params, params)?;
    if data.row_count == 0 {
        return Err(Error::new(format!("table '{}' has no rows", data.name)));
    }
    A::evaluate(model, &params, data)
}

/// `predict`, as the host sees it: parameters checked first; the columns
/// returned must each hold one value per row and fit their declared types.
pub fn predict<A: Algorithm>(
    model: &[f32],
    params: Vec<Param>,
    data: &Table,
    label: &ColumnSpec,
) -> Result<Vec<Column>> {
    let params = Params::resolve(&A::info().params, params)?;
    let columns = A::predict(model, &params, data, label)?;
    if columns.is_empty() {
        return Err(Error::new("predict returned no column"));
    }
    Table::new("predictions", data.row_count, columns).map(|t| t.columns)
}

/// Checks that `model` has the `expected` number of parameters.
pub fn expect_model_len(model: &[f32], expected: usize) -> Result<()> {
    if model.len() != expected {
        return Err(Error::new(format!(
            "the model has {} parameters but these hyper-parameters and this table need {expected}",
            model.len()
        )));
    }
    Ok(())
}
