//! Binary logistic regression: log loss, local mini-batch SGD epochs, and the
//! weight delta as the update. The label is a boolean, a two-level category,
//! or an integer declared `0..=1`. The model is one weight per encoded feature
//! followed by the bias.
#![deny(missing_docs)]

use c2ssi_guest_sdk::prelude::*;

/// The algorithm.
#[derive(Debug)]
pub struct LogisticRegression;

struct Data {
    x: Vec<f32>,
    y: Vec<f32>,
    d: usize,
}

fn prepare(params: &Params, table: &Table) -> Result<Data> {
    let schema = table.schema();
    let label = params.text("label")?;
    let features = select_features(&schema, params.text_list("features")?, Some(label));
    let encoder = FeatureEncoder::new(&schema, &features)?;
    let target = ClassTarget::new(&schema, label)?;
    if target.classes() != 2 {
        return Err(Error::new(format!(
            "label column '{label}' has {} classes; logistic regression needs 2 \
             (use softmax-regression)",
            target.classes()
        )));
    }
    Ok(Data {
        x: encoder.encode(table)?,
        y: target
            .encode(table)?
            .into_iter()
            .map(|c| c as f32)
            .collect(),
        d: encoder.width(),
    })
}

#[inline]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Mean log loss and accuracy.
fn scores(w: &[f32], data: &Data) -> (f64, f64) {
    let n = data.y.len();
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for (z, y) in glm_scores(&data.x, data.d, w).iter().zip(&data.y) {
        let (z, y) = (f64::from(*z), f64::from(*y));
        // log(1 + e^z) - y z, computed without overflow.
        loss += z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z;
        if (z >= 0.0) == (y >= 0.5) {
            correct += 1;
        }
    }
    let n = n.max(1) as f64;
    (loss / n, correct as f64 / n)
}

impl Algorithm for LogisticRegression {
    fn info() -> AlgorithmInfo {
        let mut info = AlgorithmInfo::new(
            "logistic-regression",
            env!("CARGO_PKG_VERSION"),
            "Binary logistic regression with log loss, trained by local mini-batch SGD.",
        )
        .param(ParamSpec::label())
        .param(ParamSpec::features());
        info.params.extend(SgdConfig::specs(0.5));
        info
    }

    fn init_model(_params: &Params, feature_count: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; feature_count + 1])
    }

    fn train(model: &[f32], params: &Params, table: &Table, seed: u64) -> Result<Update> {
        let config = SgdConfig::from_params(params)?;
        let data = prepare(params, table)?;
        expect_model_len(model, data.d + 1)?;
        let (loss_before, _) = scores(model, &data);
        let mut w = model.to_vec();
        let d = data.d;
        run_epochs(
            &mut w,
            data.y.len(),
            &config,
            seed,
            |i| i < d,
            |w, batch, g| {
                glm_gradient(&data.x, d, w, batch, g, |i, score| {
                    sigmoid(score) - data.y[i]
                });
            },
        );
        let (loss_after, accuracy) = scores(&w, &data);
        Ok(Update::between(model, &w, data.y.len())
            .metric("log_loss_before", loss_before)
            .metric("log_loss_after", loss_after)
            .metric("accuracy_after", accuracy))
    }

    fn evaluate(model: &[f32], params: &Params, table: &Table) -> Result<Vec<Metric>> {
        let data = prepare(params, table)?;
        expect_model_len(model, data.d + 1)?;
        let (loss, accuracy) = scores(model, &data);
        Ok(vec![
            Metric::new("log_loss", loss),
            Metric::new("accuracy", accuracy),
        ])
    }
}

c2ssi_guest_sdk::export_algorithm!(LogisticRegression);
