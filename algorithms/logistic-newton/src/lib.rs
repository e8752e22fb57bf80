//! Binary logistic regression by federated Newton steps, for a fit that
//! reaches the regularized maximum likelihood in a few rounds instead of
//! approaching it by gradient steps.
//!
//! The model holds the weights `w` (one per encoded feature, then the bias)
//! and, times a scale `kappa`, the mean Hessian `H` (upper triangle) and
//! mean gradient `g` of the log loss at `w`, over the wallets of the last
//! round. Every wallet first takes the same Newton step from the model,
//! `w' = w - (H + l2 I)^-1 (g + l2 w)` (the bias not penalized; eigenvalues
//! below `l2` raised to it), then sends `w' - w` (the same for every
//! wallet, since it depends on the model only) and its own Hessian and
//! gradient at `w'` in place of the model's. Under the plain mean the next
//! model is `w'` with the round's mean Hessian and gradient there, so the
//! next round steps again: Newton's method with one round of lag, exact
//! when every wallet takes part. `evaluate` and `predict` use the step the
//! kept statistics give, so the last round's are not wasted.
//!
//! The server must apply the mean as it is: learning rate 1, no momentum, a
//! constant rate (`--momentum 0 --lr-schedule constant`). Momentum repeats
//! every step and the fit diverges (measured: accuracy 0.11 on the breast
//! cancer CSV with FedAvgM 0.9).
//!
//! `kappa` keeps the statistics' share of an update within `update_norm`
//! (`|H_i| <= p / 4` and `|g_i| <= sqrt(p)` for `p` columns in `[-1, 1]`);
//! the step `w' - w` is not bounded, so this algorithm is for runs without
//! noise, where the clipping norm is no constraint.
#![deny(missing_docs)]

use c2ssi_guest_sdk::glm::{self, sigmoid};
use c2ssi_guest_sdk::normal::{self, add_outer, upper_len};
use c2ssi_guest_sdk::prelude::*;

/// The algorithm.
#[derive(Debug)]
pub struct LogisticNewton;

/// A table as this algorithm reads it.
type Encoded = normal::Design<Logit>;

fn encode(params: &Params, schema: &[ColumnSpec], table: &Table) -> Result<Encoded> {
    normal::Design::new(params, schema, table)
}

/// The model's length for `p` columns: `w`, then `H`'s upper triangle, then `g`.
fn model_len(p: usize) -> usize {
    p + upper_len(p) + p
}

/// The scale that keeps the statistics' share of an update within
/// `update_norm`: each of `H_i - H` and `g_i - g` at most twice its bound.
fn kappa(p: usize, update_norm: f64) -> f64 {
    let p = p as f64;
    let (h, g) = (2.0 * p / 4.0, 2.0 * p.sqrt());
    update_norm / (h * h + g * g).sqrt()
}

/// The hyper-parameters the step needs.
struct Settings {
    l2: f64,
    scale: f64,
}

fn settings(params: &Params, p: usize) -> Result<Settings> {
    Ok(Settings {
        l2: params.real_in("l2", 1e-9, 1e3)?,
        scale: kappa(p, params.real_in("update_norm", 1e-9, 1e9)?),
    })
}

/// The weights after the Newton step the model's statistics give (the
/// model's own weights while it has none).
fn stepped(model: &[f32], p: usize, s: &Settings) -> Result<Vec<f64>> {
    expect_model_len(model, model_len(p))?;
    let w: Vec<f64> = model[..p].iter().map(|&v| f64::from(v)).collect();
    let stats: Vec<f64> = model[p..].iter().map(|&v| f64::from(v) / s.scale).collect();
    let (h, g) = stats.split_at(upper_len(p));
    normal::newton_step(&w, h, g, s.l2, 1.0)
}

/// The mean Hessian (upper triangle) and gradient of the log loss at `w`
/// over the rows of `data`.
fn statistics(data: &Encoded, targets: &[f32], w: &[f64]) -> Vec<f64> {
    let p = data.p;
    let mut s = vec![0.0f64; upper_len(p) + p];
    let n = targets.len().max(1) as f64;
    let (h, g) = s.split_at_mut(upper_len(p));
    for (z, &y) in data.z.chunks_exact(p).zip(targets) {
        let score: f64 = z.iter().zip(w).map(|(a, b)| a * b).sum();
        let q = f64::from(sigmoid(score as f32));
        add_outer(h, z, q * (1.0 - q) / n);
        for (gi, zi) in g.iter_mut().zip(z) {
            *gi += (q - f64::from(y)) * zi / n;
        }
    }
    s
}

fn evaluation(
    model: &[f32],
    params: &Params,
    data: &Encoded,
    targets: &[f32],
) -> Result<Evaluation> {
    let w = stepped(model, data.p, &settings(params, data.p)?)?;
    Ok(glm::evaluation(&data.link, &data.scores(&w), targets))
}

impl Algorithm for LogisticNewton {
    fn info() -> AlgorithmInfo {
        AlgorithmInfo::new(
            "logistic-newton",
            env!("CARGO_PKG_VERSION"),
            "Binary logistic regression by federated Newton steps: each wallet sends its \
             share of the gradient and the Hessian, and the next round steps by them (for \
             runs without noise, with server learning rate 1, no momentum and a constant \
             rate: momentum overshoots the steps).",
        )
        .param(ParamSpec::label())
        .param(ParamSpec::features())
        .param(ParamSpec::optional(
            "l2",
            "L2 penalty on the features' weights, per example (linfa's alpha over the \
             number of examples), and the least eigenvalue the step allows",
            ParamValue::Real(1e-3),
        ))
        .param(ParamSpec::optional(
            "update_norm",
            "the largest norm of the statistics' share of an update",
            ParamValue::Real(0.1),
        ))
    }

    fn init_model(params: &Params, feature_count: usize) -> Result<Vec<f32>> {
        settings(params, feature_count + 1)?;
        Ok(vec![0.0; model_len(feature_count + 1)])
    }

    fn train(model: &[f32], params: &Params, table: &Table, _seed: u64) -> Result<Update> {
        let data = encode(params, &table.schema(), table)?;
        let targets = data.link.targets(table)?;
        let p = data.p;
        let s = settings(params, p)?;
        normal::newton_update(
            model,
            &data,
            &targets,
            table.row_count,
            s.scale,
            |m| stepped(m, p, &s),
            |w| statistics(&data, &targets, w),
        )
    }

    fn evaluate(model: &[f32], params: &Params, table: &Table) -> Result<Evaluation> {
        let data = encode(params, &table.schema(), table)?;
        let targets = data.link.targets(table)?;
        evaluation(model, params, &data, &targets)
    }

    fn predict(
        model: &[f32],
        params: &Params,
        table: &Table,
        label: &ColumnSpec,
    ) -> Result<Vec<Column>> {
        let schema = prediction_schema(table, label, params.text("label")?)?;
        let data = encode(params, &schema, table)?;
        let w = stepped(model, data.p, &settings(params, data.p)?)?;
        Ok(data.link.predict(&data.scores(&w)))
    }
}

c2ssi_guest_sdk::export_algorithm!(LogisticNewton);

#[cfg(test)]
mod tests {
    use c2ssi_guest_sdk::{Column, ColumnData, Param, ParamValue};
    use linfa::Dataset;
    use linfa::traits::Fit;
    use ndarray::{Array1, Array2};

    use super::*;

    /// `rows` rows of three features in [-1, 1] and a boolean label drawn
    /// from a logistic model of them, from `seed`.
    fn table(rows: usize, seed: u64) -> Table {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut x = vec![Vec::new(); 3];
        let mut y = Vec::new();
        for _ in 0..rows {
            let v: Vec<f64> = (0..3).map(|_| next() * 2.0 - 1.0).collect();
            let logit = 3.0 * v[0] - 2.0 * v[1] + 0.5 * v[2] + 0.3;
            y.push(next() < 1.0 / (1.0 + (-logit).exp()));
            for (c, vi) in x.iter_mut().zip(v) {
                c.push(vi);
            }
        }
        let mut columns: Vec<Column> = x
            .into_iter()
            .enumerate()
            .map(|(j, v)| Column {
                name: format!("x{j}"),
                ty: ColumnType::Real {
                    min: Some(-1.0),
                    max: Some(1.0),
                },
                data: ColumnData::Real(v),
            })
            .collect();
        columns.push(Column {
            name: "y".into(),
            ty: ColumnType::Boolean,
            data: ColumnData::Boolean(y),
        });
        Table::new("t", rows, columns).unwrap()
    }

    fn part(t: &Table, rows: std::ops::Range<usize>) -> Table {
        let n = rows.len();
        let columns = t
            .columns
            .iter()
            .map(|c| Column {
                data: match &c.data {
                    ColumnData::Real(v) => ColumnData::Real(v[rows.clone()].to_vec()),
                    ColumnData::Boolean(v) => ColumnData::Boolean(v[rows.clone()].to_vec()),
                    other => other.clone(),
                },
                ..c.clone()
            })
            .collect();
        Table::new("t", n, columns).unwrap()
    }

    /// Two wallets of 150 rows each, every round both, their updates
    /// averaged and added as the plain mean does: after eight rounds the
    /// model gives the probabilities of linfa's logistic regression on all
    /// 300 rows with the same penalty (`alpha = l2 n`), which fits by
    /// another method.
    #[test]
    fn rounds_of_every_wallet_reach_the_regularized_maximum_likelihood() {
        let all = table(300, 5);
        let l2 = 0.01;
        let p = Params::resolve(
            &LogisticNewton::info().params,
            vec![
                Param::new("label", ParamValue::Text("y".into())),
                Param::new("l2", ParamValue::Real(l2)),
            ],
        )
        .unwrap();
        let mut model = LogisticNewton::init_model(&p, 3).unwrap();
        let wallets = [part(&all, 0..150), part(&all, 150..300)];
        for _ in 0..8 {
            let deltas: Vec<Vec<f32>> = wallets
                .iter()
                .map(|w| LogisticNewton::train(&model, &p, w, 1).unwrap().delta)
                .collect();
            for (k, m) in model.iter_mut().enumerate() {
                *m += (deltas[0][k] + deltas[1][k]) / 2.0;
            }
        }
        let label = all.column("y").unwrap().spec();
        let ours = LogisticNewton::predict(&model, &p, &all, &label).unwrap();

        let x = Array2::from_shape_fn((300, 3), |(i, j)| {
            all.column(&format!("x{j}")).unwrap().value_f64(i).unwrap()
        });
        let y: Array1<bool> = match &all.column("y").unwrap().data {
            ColumnData::Boolean(v) => v.iter().copied().collect(),
            _ => unreachable!("a boolean label"),
        };
        let fit = linfa_logistic::LogisticRegression::default()
            .alpha(l2 * 300.0)
            .max_iterations(500)
            .fit(&Dataset::new(x.clone(), y))
            .unwrap();
        let theirs = fit.predict_probabilities(&x);
        // The last column is the probability of `true`.
        let mine = ours.last().unwrap();
        for i in 0..300 {
            let a = mine.value_f64(i).unwrap();
            assert!(
                (a - theirs[i]).abs() < 2e-3,
                "row {i}: {a} vs {}",
                theirs[i]
            );
        }
    }
}
