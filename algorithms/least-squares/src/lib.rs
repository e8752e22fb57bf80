//! Linear regression by its sufficient statistics (the normal equations),
//! for data whose features are badly conditioned, where gradient steps need
//! thousands of rounds to reach the least-squares fit.
//!
//! With `z = [x; 1]` a row's encoded features and a constant, and `y` its
//! label scaled by its declared range, least squares needs only `A = mean z
//! z^T` and `b = mean z y`. The model holds them (the upper triangle of `A`,
//! then `b`) and a count of the rounds they average, all times a scale
//! `kappa`; `evaluate` and `predict` solve `(A + penalty I) w = b` (the bias
//! not penalized), with the eigenvalues of `A` kept at least `penalty` so
//! that noise cannot make the system indefinite.
//!
//! A wallet sends `kappa (s - S) / (c + 1)` for its own statistics `s`, the
//! model's `S` and round count `c`, and `kappa` for the count. Under the
//! plain mean with server learning rate 1 and no momentum the model becomes
//! `(c S + mean s) / (c + 1)`: the running mean of every round's statistics,
//! exact in one round when every wallet takes part. (Momentum or another
//! rate weighs the rounds otherwise; run it with `--momentum 0`.)
//!
//! `kappa` keeps every update within `update_norm`, which should be at most
//! the manifest's clipping norm: the encoded features and the scaled label
//! lie within `[-1, 1]`, so `|s|` and `|S|` are at most `p + sqrt(p)` for
//! `p` features and the constant, and no update is ever clipped (clipping
//! would weigh wallets unequally and bias the statistics).
#![deny(missing_docs)]

use c2ssi_guest_sdk::glm;
use c2ssi_guest_sdk::normal::{self, add_outer, upper_len};
use c2ssi_guest_sdk::prelude::*;

/// The algorithm.
#[derive(Debug)]
pub struct LeastSquares;

/// A table as this algorithm reads it.
type Encoded = normal::Design<Identity>;

fn encode(params: &Params, schema: &[ColumnSpec], table: &Table) -> Result<Encoded> {
    normal::Design::new(params, schema, table)
}

/// How many values the statistics of `p` columns take: the upper triangle
/// of `A`, then `b`.
fn statistics_len(p: usize) -> usize {
    upper_len(p) + p
}

/// The scale that keeps an update of `p` columns within `update_norm`:
/// each of `s - S` and the count at most `2 (p + sqrt(p))` and 1 before it.
fn kappa(p: usize, update_norm: f64) -> f64 {
    let bound = 2.0 * (p as f64 + (p as f64).sqrt());
    update_norm / (bound * bound + 1.0).sqrt()
}

fn update_norm(params: &Params) -> Result<f64> {
    params.real_in("update_norm", 1e-9, 1e9)
}

/// A wallet's statistics: the upper triangle of `mean z z^T`, then `mean z y`.
fn statistics(data: &Encoded, targets: &[f32]) -> Vec<f64> {
    let p = data.p;
    let mut s = vec![0.0f64; statistics_len(p)];
    let n = targets.len().max(1) as f64;
    let (a, b) = s.split_at_mut(upper_len(p));
    for (z, &y) in data.z.chunks_exact(p).zip(targets) {
        add_outer(a, z, 1.0 / n);
        for (bi, zi) in b.iter_mut().zip(z) {
            *bi += zi * f64::from(y) / n;
        }
    }
    s
}

/// The weights that solve the model's normal equations (kept times
/// `scale`), in scaled units: `penalty` added on the features' diagonal
/// (not the constant's), eigenvalues below `penalty` raised to it.
fn weights(model: &[f32], p: usize, scale: f64, penalty: f64) -> Result<Vec<f64>> {
    let m = statistics_len(p);
    expect_model_len(model, m + 1)?;
    let stats: Vec<f64> = model[..m].iter().map(|&v| f64::from(v) / scale).collect();
    let mut ridge = vec![penalty; p];
    ridge[p - 1] = 0.0;
    normal::solve(
        &stats[..upper_len(p)],
        &ridge,
        &stats[upper_len(p)..],
        penalty,
    )
}

/// The model's predictions for `data`, in scaled units.
fn scores(model: &[f32], data: &Encoded, params: &Params) -> Result<Vec<f32>> {
    let penalty = params.real_in("penalty", 0.0, 1e6)?;
    let scale = kappa(data.p, update_norm(params)?);
    Ok(data.scores(&weights(model, data.p, scale, penalty)?))
}

impl Algorithm for LeastSquares {
    fn info() -> AlgorithmInfo {
        AlgorithmInfo::new(
            "least-squares",
            env!("CARGO_PKG_VERSION"),
            "Linear regression by its sufficient statistics: each wallet sends its share of \
             the normal equations, the model solves them (exact in one round; run it with \
             server learning rate 1 and no momentum).",
        )
        .param(ParamSpec::label())
        .param(ParamSpec::features())
        .param(ParamSpec::optional(
            "penalty",
            "ridge penalty on the features' weights, and the least eigenvalue the solve \
             allows (raise it under noise)",
            ParamValue::Real(1e-6),
        ))
        .param(ParamSpec::optional(
            "update_norm",
            "the largest norm of an update: at most the manifest's clipping norm, so that \
             no update is clipped",
            ParamValue::Real(0.1),
        ))
    }

    fn init_model(params: &Params, feature_count: usize) -> Result<Vec<f32>> {
        update_norm(params)?;
        Ok(vec![0.0; statistics_len(feature_count + 1) + 1])
    }

    fn train(model: &[f32], params: &Params, table: &Table, _seed: u64) -> Result<Update> {
        let data = encode(params, &table.schema(), table)?;
        let targets = data.link.targets(table)?;
        let p = data.p;
        let m = statistics_len(p);
        expect_model_len(model, m + 1)?;
        let before = glm::evaluation(&data.link, &scores(model, &data, params)?, &targets);
        let scale = kappa(p, update_norm(params)?);
        let rounds = (f64::from(model[m]) / scale).max(0.0);
        let own = statistics(&data, &targets);
        let mut after = model.to_vec();
        for (k, s) in own.iter().enumerate() {
            let kept = f64::from(model[k]) / scale;
            after[k] = (f64::from(model[k]) + scale * (s - kept) / (rounds + 1.0)) as f32;
        }
        after[m] = (f64::from(model[m]) + scale) as f32;
        // The fit this wallet's data alone would give from here (what the
        // model becomes when it is the only one in the round).
        let done = glm::evaluation(&data.link, &scores(&after, &data, params)?, &targets);
        Ok(Update::between(model, &after, table.row_count)
            .metric("mse_before", before.loss.value)
            .metric("mse_after", done.loss.value))
    }

    fn evaluate(model: &[f32], params: &Params, table: &Table) -> Result<Evaluation> {
        let data = encode(params, &table.schema(), table)?;
        let targets = data.link.targets(table)?;
        Ok(glm::evaluation(
            &data.link,
            &scores(model, &data, params)?,
            &targets,
        ))
    }

    fn predict(
        model: &[f32],
        params: &Params,
        table: &Table,
        label: &ColumnSpec,
    ) -> Result<Vec<Column>> {
        let schema = prediction_schema(table, label, params.text("label")?)?;
        let data = encode(params, &schema, table)?;
        Ok(data.link.predict(&scores(model, &data, params)?))
    }
}

c2ssi_guest_sdk::export_algorithm!(LeastSquares);

#[cfg(test)]
mod tests {
    use c2ssi_guest_sdk::{Column, ColumnData, Param, ParamValue};
    use linfa::Dataset;
    use linfa::traits::{Fit, Predict};
    use ndarray::{Array1, Array2};

    use super::*;

    /// `rows` rows of three features in [-1, 1] (the third nearly the sum
    /// of the others: badly conditioned) and a noisy linear label in
    /// [-3, 3], from `seed`.
    fn table(rows: usize, seed: u64) -> Table {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let mut x = vec![Vec::new(); 3];
        let mut y = Vec::new();
        for _ in 0..rows {
            let (a, b) = (next(), next());
            let c = ((a + b) / 2.0 + 0.01 * next()).clamp(-1.0, 1.0);
            x[0].push(a);
            x[1].push(b);
            x[2].push(c);
            y.push((0.5 * a - 1.5 * b + c + 0.2 * next()).clamp(-3.0, 3.0));
        }
        let real = |lo: f64, hi: f64| ColumnType::Real {
            min: Some(lo),
            max: Some(hi),
        };
        let mut columns: Vec<Column> = x
            .into_iter()
            .enumerate()
            .map(|(j, v)| Column {
                name: format!("x{j}"),
                ty: real(-1.0, 1.0),
                data: ColumnData::Real(v),
            })
            .collect();
        columns.push(Column {
            name: "y".into(),
            ty: real(-3.0, 3.0),
            data: ColumnData::Real(y),
        });
        Table::new("t", rows, columns).unwrap()
    }

    fn params() -> Params {
        Params::resolve(
            &LeastSquares::info().params,
            vec![
                Param::new("label", ParamValue::Text("y".into())),
                Param::new("penalty", ParamValue::Real(0.0)),
            ],
        )
        .unwrap()
    }

    /// Rows `rows` of `t`.
    fn part(t: &Table, rows: std::ops::Range<usize>) -> Table {
        let n = rows.len();
        let columns = t
            .columns
            .iter()
            .map(|c| Column {
                data: ColumnData::Real(rows.clone().map(|i| c.value_f64(i).unwrap()).collect()),
                ..c.clone()
            })
            .collect();
        Table::new("t", n, columns).unwrap()
    }

    /// Four wallets of 40 rows, two per round, each round's updates
    /// averaged and added as the plain mean does: after two rounds the
    /// model predicts what ordinary least squares on all 160 rows predicts
    /// (linfa's fit, which solves it another way).
    #[test]
    fn two_rounds_of_two_wallets_give_the_least_squares_fit_of_all() {
        let all = table(160, 7);
        let p = params();
        let mut model = LeastSquares::init_model(&p, 3).unwrap();
        for round in 0..2 {
            let deltas: Vec<Vec<f32>> = (0..2)
                .map(|w| {
                    let start = (2 * round + w) * 40;
                    LeastSquares::train(&model, &p, &part(&all, start..start + 40), 1)
                        .unwrap()
                        .delta
                })
                .collect();
            for (k, m) in model.iter_mut().enumerate() {
                *m += (deltas[0][k] + deltas[1][k]) / 2.0;
            }
        }
        let label = all.column("y").unwrap().spec();
        let ours = LeastSquares::predict(&model, &p, &all, &label).unwrap();

        let x = Array2::from_shape_fn((160, 3), |(i, j)| {
            all.column(&format!("x{j}")).unwrap().value_f64(i).unwrap()
        });
        let y: Array1<f64> = (0..160)
            .map(|i| all.column("y").unwrap().value_f64(i).unwrap())
            .collect();
        let fit = linfa_linear::LinearRegression::new()
            .fit(&Dataset::new(x.clone(), y))
            .unwrap();
        let theirs = fit.predict(&x);
        for i in 0..160 {
            let a = ours[0].value_f64(i).unwrap();
            assert!(
                (a - theirs[i]).abs() < 1e-3,
                "row {i}: {a} vs {}",
                theirs[i]
            );
        }
    }

    /// No update is longer than `update_norm`, the largest label and
    /// features included, from any model the statistics can reach.
    #[test]
    fn updates_stay_within_the_declared_norm() {
        let p = params();
        let extreme = {
            let mut t = table(1, 3);
            for c in &mut t.columns {
                c.data = ColumnData::Real(vec![if c.name == "y" { -3.0 } else { 1.0 }]);
            }
            t
        };
        let opposite = {
            let mut t = extreme.clone();
            for c in &mut t.columns {
                c.data = ColumnData::Real(vec![if c.name == "y" { 3.0 } else { -1.0 }]);
            }
            t
        };
        let mut model = LeastSquares::init_model(&p, 3).unwrap();
        for t in [&extreme, &opposite, &extreme] {
            let u = LeastSquares::train(&model, &p, t, 1).unwrap();
            let norm = u
                .delta
                .iter()
                .map(|d| f64::from(*d).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(norm <= 0.1 * (1.0 + 1e-6), "norm {norm}");
            for (m, d) in model.iter_mut().zip(&u.delta) {
                *m += d;
            }
        }
    }
}
