//! An extreme learning machine (ELM) for regression, with linfa inside the
//! sandbox.
//!
//! The hidden layer (`hidden_units` tanh units) is random and fixed: every
//! wallet draws the same weights from `hidden_seed`, so it is not part of the
//! model. Only the output layer is learned. A wallet fits it in closed form on
//! the residual `r` of the current model, so the update is the proximal step
//!
//! ```text
//! argmin_d ||r - [H 1] d||^2 / 2n + penalty ||d_H||^2 / 2
//! ```
//!
//! (the bias is not penalized): even a wallet with a single row moves the
//! model only as far as its evidence allows. The ridge problem is solved as
//! ordinary least squares on the augmented system `[H 1; sqrt(n penalty) I 0]`
//! by linfa-linear, inside the sandbox. The model is the output weights
//! followed by the output bias, in the label's scaled units. Its output layer
//! is a GLM with the identity link: `evaluate` and `predict` are the SDK's
//! ([`Identity`]: `mse` as loss, `r2` as score, `mae`, predictions in the
//! label's own units) over the hidden layer's activations.
#![deny(missing_docs)]

use c2ssi_guest_sdk::glm;
use c2ssi_guest_sdk::prelude::*;
use linfa::Dataset;
use linfa::traits::Fit;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2, s};
use rand::Rng;

/// The algorithm.
#[derive(Debug)]
pub struct ElmRidge;

struct Data {
    /// Hidden-layer activations, `n x hidden`.
    h: Array2<f64>,
    link: Identity,
}

fn hidden_layer(d: usize, hidden: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = c2ssi_guest_sdk::sgd::seeded_rng(seed);
    let scale = 1.0 / (d as f64).sqrt();
    let w = (0..hidden * d)
        .map(|_| rng.random_range(-1.0..1.0) * scale)
        .collect();
    let b = (0..hidden).map(|_| rng.random_range(-1.0..1.0)).collect();
    (w, b)
}

/// The hidden layer's activations for `table`, whose columns `schema`
/// declares (with the label, which the table need not hold).
fn prepare(params: &Params, schema: &[ColumnSpec], table: &Table) -> Result<Data> {
    let label = params.text("label")?;
    let features = select_features(schema, params.text_list("features")?, Some(label));
    let encoder = FeatureEncoder::new(schema, &features)?;
    let link = Identity::new(schema, label, params)?;
    let hidden = hidden_units(params)?;
    let seed = params.integer("hidden_seed")? as u64;
    let x = encoder.encode(table)?;
    let d = encoder.width();
    let n = table.row_count;
    let (w, b) = hidden_layer(d, hidden, seed);
    let mut h = Array2::<f64>::zeros((n, hidden));
    for i in 0..n {
        let row = &x[i * d..(i + 1) * d];
        for j in 0..hidden {
            let wj = &w[j * d..(j + 1) * d];
            let z: f64 = wj.iter().zip(row).map(|(a, &b)| a * f64::from(b)).sum();
            h[[i, j]] = (z + b[j]).tanh();
        }
    }
    Ok(Data { h, link })
}

fn hidden_units(params: &Params) -> Result<usize> {
    Ok(params.integer_in("hidden_units", 1, 4096)? as usize)
}

fn predictions(model: &[f32], data: &Data) -> Array1<f64> {
    let k = data.h.ncols();
    let beta: Array1<f64> = model[..k].iter().map(|&v| f64::from(v)).collect();
    data.h.dot(&beta) + f64::from(model[k])
}

/// The model's scores in scaled units, as the GLM link takes them.
fn scores(model: &[f32], data: &Data) -> Vec<f32> {
    predictions(model, data).iter().map(|&p| p as f32).collect()
}

impl Algorithm for ElmRidge {
    fn info() -> AlgorithmInfo {
        AlgorithmInfo::new(
            "elm-ridge",
            env!("CARGO_PKG_VERSION"),
            "Extreme learning machine for regression; the output layer is fitted in closed \
             form (ridge, by linfa-linear least squares) on the residual of the current model.",
        )
        .param(ParamSpec::label())
        .param(ParamSpec::features())
        .param(ParamSpec::optional(
            "hidden_units",
            "random tanh units in the hidden layer",
            ParamValue::Integer(64),
        ))
        .param(ParamSpec::optional(
            "hidden_seed",
            "seed of the hidden layer's weights: the same on every wallet",
            ParamValue::Integer(42),
        ))
        .param(ParamSpec::optional(
            "penalty",
            "ridge penalty of the local fit, per example",
            ParamValue::Real(0.1),
        ))
    }

    fn init_model(params: &Params, _feature_count: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; hidden_units(params)? + 1])
    }

    fn train(model: &[f32], params: &Params, table: &Table, _seed: u64) -> Result<Update> {
        let penalty = params.real_in("penalty", 1e-9, 1e6)?;
        let data = prepare(params, &table.schema(), table)?;
        let targets = data.link.targets(table)?;
        expect_model_len(model, data.h.ncols() + 1)?;
        let before = glm::evaluation(&data.link, &scores(model, &data), &targets);
        let y: Array1<f64> = targets.iter().map(|&t| f64::from(t)).collect();
        let residual = &y - &predictions(model, &data);
        let (n, k) = data.h.dim();
        // [H 1] over [sqrt(n penalty) I 0]; targets [r; 0].
        let mut design = Array2::<f64>::zeros((n + k, k + 1));
        design.slice_mut(s![..n, ..k]).assign(&data.h);
        design.slice_mut(s![..n, k]).fill(1.0);
        let ridge = (n as f64 * penalty).sqrt();
        for j in 0..k {
            design[[n + j, j]] = ridge;
        }
        let mut augmented = Array1::<f64>::zeros(n + k);
        augmented.slice_mut(s![..n]).assign(&residual);
        let fit = LinearRegression::new()
            .with_intercept(false)
            .fit(&Dataset::new(design, augmented))
            .map_err(|e| Error::new(format!("linfa least-squares fit failed: {e}")))?;
        let step = fit.params();
        let mut after = model.to_vec();
        for (w, dw) in after.iter_mut().zip(step) {
            *w += *dw as f32;
        }
        let done = glm::evaluation(&data.link, &scores(&after, &data), &targets);
        Ok(Update::between(model, &after, table.row_count)
            .metric("mse_before", before.loss.value)
            .metric("mse_after", done.loss.value)
            .metric("r2_after", done.score.value))
    }

    fn evaluate(model: &[f32], params: &Params, table: &Table) -> Result<Evaluation> {
        let data = prepare(params, &table.schema(), table)?;
        let targets = data.link.targets(table)?;
        expect_model_len(model, data.h.ncols() + 1)?;
        Ok(glm::evaluation(&data.link, &scores(model, &data), &targets))
    }

    fn predict(
        model: &[f32],
        params: &Params,
        table: &Table,
        label: &ColumnSpec,
    ) -> Result<Vec<Column>> {
        let schema = prediction_schema(table, label, params.text("label")?)?;
        let data = prepare(params, &schema, table)?;
        expect_model_len(model, data.h.ncols() + 1)?;
        Ok(data.link.predict(&scores(model, &data)))
    }
}

c2ssi_guest_sdk::export_algorithm!(ElmRidge);
