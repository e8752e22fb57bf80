//! Multi-class softmax regression: cross-entropy, local mini-batch SGD epochs,
//! and the weight delta as the update. The label is a category (a class per
//! declared level), a boolean, or an integer with a declared range (a class
//! per value). The model holds, for each class in turn, one weight per encoded
//! feature and then the class's bias.
#![deny(missing_docs)]

use c2ssi_guest_sdk::prelude::*;

/// The algorithm.
#[derive(Debug)]
pub struct SoftmaxRegression;

struct Data {
    x: Vec<f32>,
    y: Vec<usize>,
    d: usize,
    classes: usize,
}

fn prepare(params: &Params, table: &Table) -> Result<Data> {
    let schema = table.schema();
    let label = params.text("label")?;
    let features = select_features(&schema, params.text_list("features")?, Some(label));
    let encoder = FeatureEncoder::new(&schema, &features)?;
    let target = ClassTarget::new(&schema, label)?;
    Ok(Data {
        x: encoder.encode(table)?,
        y: target.encode(table)?,
        d: encoder.width(),
        classes: target.classes(),
    })
}

/// Class probabilities of one row into `p`.
fn probabilities(w: &[f32], x: &[f32], p: &mut [f32]) {
    let stride = x.len() + 1;
    for (k, pk) in p.iter_mut().enumerate() {
        let wk = &w[k * stride..(k + 1) * stride];
        *pk = dot(&wk[..x.len()], x) + wk[x.len()];
    }
    let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for pk in p.iter_mut() {
        *pk = (*pk - max).exp();
        sum += *pk;
    }
    for pk in p.iter_mut() {
        *pk /= sum;
    }
}

/// Mean cross-entropy and accuracy.
fn scores(w: &[f32], data: &Data) -> (f64, f64) {
    let mut p = vec![0.0f32; data.classes];
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for (i, &y) in data.y.iter().enumerate() {
        probabilities(w, &data.x[i * data.d..(i + 1) * data.d], &mut p);
        loss -= f64::from(p[y].max(1e-12)).ln();
        let best = p
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (k, &pk)| if pk > b.1 { (k, pk) } else { b },
            )
            .0;
        if best == y {
            correct += 1;
        }
    }
    let n = data.y.len().max(1) as f64;
    (loss / n, correct as f64 / n)
}

impl Algorithm for SoftmaxRegression {
    fn info() -> AlgorithmInfo {
        let mut info = AlgorithmInfo::new(
            "softmax-regression",
            env!("CARGO_PKG_VERSION"),
            "Multi-class softmax regression with cross-entropy, trained by local mini-batch SGD.",
        )
        .param(ParamSpec::label())
        .param(ParamSpec::features())
        .param(ParamSpec::required(
            "classes",
            ParamKind::Integer,
            "number of classes the label declares (its levels, or its integer range)",
        ));
        info.params.extend(SgdConfig::specs(0.5));
        info
    }

    fn init_model(params: &Params, feature_count: usize) -> Result<Vec<f32>> {
        let classes = params.integer_in("classes", 2, 1024)? as usize;
        Ok(vec![0.0; classes * (feature_count + 1)])
    }

    fn train(model: &[f32], params: &Params, table: &Table, seed: u64) -> Result<Update> {
        let config = SgdConfig::from_params(params)?;
        let data = prepare(params, table)?;
        check_classes(params, &data)?;
        let (d, classes) = (data.d, data.classes);
        let stride = d + 1;
        expect_model_len(model, classes * stride)?;
        let (loss_before, _) = scores(model, &data);
        let mut w = model.to_vec();
        let mut p = vec![0.0f32; classes];
        run_epochs(
            &mut w,
            data.y.len(),
            &config,
            seed,
            |i| i % stride != d,
            |w, batch, g| {
                for &i in batch {
                    let x = &data.x[i * d..(i + 1) * d];
                    probabilities(w, x, &mut p);
                    for (k, &pk) in p.iter().enumerate() {
                        let err = pk - f32::from(u8::from(k == data.y[i]));
                        let gk = &mut g[k * stride..(k + 1) * stride];
                        axpy(&mut gk[..d], err, x);
                        gk[d] += err;
                    }
                }
            },
        );
        let (loss_after, accuracy) = scores(&w, &data);
        Ok(Update::between(model, &w, data.y.len())
            .metric("cross_entropy_before", loss_before)
            .metric("cross_entropy_after", loss_after)
            .metric("accuracy_after", accuracy))
    }

    fn evaluate(model: &[f32], params: &Params, table: &Table) -> Result<Vec<Metric>> {
        let data = prepare(params, table)?;
        check_classes(params, &data)?;
        expect_model_len(model, data.classes * (data.d + 1))?;
        let (loss, accuracy) = scores(model, &data);
        Ok(vec![
            Metric::new("cross_entropy", loss),
            Metric::new("accuracy", accuracy),
        ])
    }
}

fn check_classes(params: &Params, data: &Data) -> Result<()> {
    let declared = params.integer("classes")?;
    if declared != data.classes as i64 {
        return Err(Error::new(format!(
            "hyper-parameter 'classes' is {declared} but the label declares {} classes",
            data.classes
        )));
    }
    Ok(())
}

c2ssi_guest_sdk::export_algorithm!(SoftmaxRegression);
