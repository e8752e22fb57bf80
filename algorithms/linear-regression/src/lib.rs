//! Linear regression: squared loss, local mini-batch SGD epochs, and the
//! weight delta as the update. The model is one weight per encoded feature
//! followed by the bias, in the label's scaled units.
#![deny(missing_docs)]

use c2ssi_guest_sdk::prelude::*;

/// The algorithm.
#[derive(Debug)]
pub struct LinearRegression;

struct Data {
    x: Vec<f32>,
    y: Vec<f32>,
    d: usize,
    /// Squared half-width of the label's range: scaled squared error times
    /// this is squared error in the label's own units.
    unit: f64,
}

fn prepare(params: &Params, table: &Table) -> Result<Data> {
    let schema = table.schema();
    let label = params.text("label")?;
    let features = select_features(&schema, params.text_list("features")?, Some(label));
    let encoder = FeatureEncoder::new(&schema, &features)?;
    let target = RegressionTarget::new(&schema, label)?;
    let half = target.scale().half_width();
    Ok(Data {
        x: encoder.encode(table)?,
        y: target.encode(table)?,
        d: encoder.width(),
        unit: half * half,
    })
}

/// Mean squared error and mean absolute error, in the label's own units.
fn errors(w: &[f32], data: &Data) -> (f64, f64) {
    let n = data.y.len();
    let (mut se, mut ae) = (0.0f64, 0.0f64);
    for (score, y) in glm_scores(&data.x, data.d, w).iter().zip(&data.y) {
        let e = f64::from(score - y);
        se += e * e;
        ae += e.abs();
    }
    let n = n.max(1) as f64;
    (se / n * data.unit, ae / n * data.unit.sqrt())
}

impl Algorithm for LinearRegression {
    fn info() -> AlgorithmInfo {
        let mut info = AlgorithmInfo::new(
            "linear-regression",
            env!("CARGO_PKG_VERSION"),
            "Linear regression with squared loss, trained by local mini-batch SGD.",
        )
        .param(ParamSpec::label())
        .param(ParamSpec::features());
        info.params.extend(SgdConfig::specs(0.1));
        info
    }

    fn init_model(_params: &Params, feature_count: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; feature_count + 1])
    }

    fn train(model: &[f32], params: &Params, table: &Table, seed: u64) -> Result<Update> {
        let config = SgdConfig::from_params(params)?;
        let data = prepare(params, table)?;
        expect_model_len(model, data.d + 1)?;
        let (mse_before, _) = errors(model, &data);
        let mut w = model.to_vec();
        let d = data.d;
        run_epochs(
            &mut w,
            data.y.len(),
            &config,
            seed,
            |i| i < d,
            |w, batch, g| {
                glm_gradient(&data.x, d, w, batch, g, |i, score| score - data.y[i]);
            },
        );
        let (mse_after, _) = errors(&w, &data);
        Ok(Update::between(model, &w, data.y.len())
            .metric("mse_before", mse_before)
            .metric("mse_after", mse_after))
    }

    fn evaluate(model: &[f32], params: &Params, table: &Table) -> Result<Vec<Metric>> {
        let data = prepare(params, table)?;
        expect_model_len(model, data.d + 1)?;
        let (mse, mae) = errors(model, &data);
        Ok(vec![Metric::new("mse", mse), Metric::new("mae", mae)])
    }
}

c2ssi_guest_sdk::export_algorithm!(LinearRegression);
