//! Multi-class softmax regression by federated block-Newton steps, for a
//! fit that reaches the regularized maximum likelihood (linfa's
//! `MultiLogisticRegression` objective) instead of approaching it by
//! gradient steps.
//!
//! The full Hessian of `K` classes over `p` columns has `(K p)^2 / 2`
//! values (211,575 for the 10 digits of 64 pixels), too many for every
//! wallet to send every round. This algorithm keeps only its diagonal
//! blocks, one `p x p` block per class, `D_k = mean q_k (1 - q_k) z z^T`
//! (`K p^2 / 2` values: 21,450 for the digits), and steps each class by its
//! own block: `w_k' = w_k - rate (D_k + l2 I)^-1 (g_k + l2 w_k)`, the bias
//! not penalized, eigenvalues below `l2` raised to it.
//!
//! Why the step converges: for every row, `2 D - H` is `diag(q (1 - 2q)) +
//! q q^T`, whose diagonal `q_k (1 - q_k)` equals the sum of its row's
//! off-diagonal terms `q_j q_k`; a symmetric diagonally dominant matrix
//! with a non-negative diagonal is positive semi-definite. So `0 <= H <=
//! 2 D`, the iteration's error contracts by `|1 - rate lambda|` with
//! `lambda` in `[0, 2]`, and any `rate` below 1 keeps it from swinging
//! between two classes (at `lambda = 2`, a row torn evenly between two
//! classes, the full step would overshoot by its own length). The fixed
//! point is the penalized optimum whatever the rate; the rate sets only
//! the speed. The default, 0.7, is the rate of the ten-seed measurement in
//! `docs/CONVERGENCE.md`, which also compares other rates.
//!
//! As in `logistic-newton`, every wallet first takes the step the model's
//! statistics give (the same for every wallet), then sends `w' - w` and its
//! own statistics at `w'` in place of the model's, so the mean of the
//! updates is the next model: the server must apply it as it is
//! (`--momentum 0 --lr-schedule constant`). `kappa` keeps the statistics'
//! share of an update within `update_norm`; the step itself is not bounded,
//! so this algorithm is for runs without noise.
#![deny(missing_docs)]

use c2ssi_guest_sdk::glm::{self, Link, Softmax};
use c2ssi_guest_sdk::normal::{self, add_outer, upper_len};
use c2ssi_guest_sdk::prelude::*;

/// The algorithm.
#[derive(Debug)]
pub struct SoftmaxNewton;

/// A table as this algorithm reads it.
type Encoded = normal::Design<Softmax>;

fn encode(params: &Params, schema: &[ColumnSpec], table: &Table) -> Result<Encoded> {
    normal::Design::new(params, schema, table)
}

/// The model's length for `k` classes over `p` columns: the weights (class
/// by class, `p` each, the bias last), then each class's Hessian block
/// (upper triangle), then the gradient (class by class).
fn model_len(k: usize, p: usize) -> usize {
    k * (p + upper_len(p) + p)
}

/// The scale that keeps the statistics' share of an update within
/// `update_norm`. Over all blocks `|D_i| <= |z|^2 sqrt(sum q_k^2 (1 -
/// q_k)^2) <= p / 2` and `|g_i| = |q - e_y| |z| <= sqrt(2 p)`, for `p`
/// columns in `[-1, 1]`; each difference from the mean is at most twice
/// that.
fn kappa(p: usize, update_norm: f64) -> f64 {
    let p = p as f64;
    let (h, g) = (p, 2.0 * (2.0 * p).sqrt());
    update_norm / (h * h + g * g).sqrt()
}

/// The hyper-parameters the step needs.
struct Settings {
    classes: usize,
    l2: f64,
    rate: f64,
    scale: f64,
}

fn settings(params: &Params, p: usize) -> Result<Settings> {
    Ok(Settings {
        classes: Softmax::outputs(params)?,
        l2: params.real_in("l2", 1e-9, 1e3)?,
        rate: params.real_in("rate", 1e-3, 1.0)?,
        scale: kappa(p, params.real_in("update_norm", 1e-9, 1e9)?),
    })
}

/// The weights after the block-Newton step the model's statistics give
/// (the model's own weights while it has none).
fn stepped(model: &[f32], p: usize, s: &Settings) -> Result<Vec<f64>> {
    let k = s.classes;
    expect_model_len(model, model_len(k, p))?;
    let w: Vec<f64> = model[..k * p].iter().map(|&v| f64::from(v)).collect();
    let stats: Vec<f64> = model[k * p..]
        .iter()
        .map(|&v| f64::from(v) / s.scale)
        .collect();
    let (blocks, g) = stats.split_at(k * upper_len(p));
    let mut out = Vec::with_capacity(k * p);
    for ((wk, hk), gk) in w
        .chunks_exact(p)
        .zip(blocks.chunks_exact(upper_len(p)))
        .zip(g.chunks_exact(p))
    {
        out.extend(normal::newton_step(wk, hk, gk, s.l2, s.rate)?);
    }
    Ok(out)
}

/// The softmax of one row's scores, in `f64`.
fn probabilities(z: &[f64], w: &[f64], q: &mut [f64]) {
    let p = z.len();
    for (qk, wk) in q.iter_mut().zip(w.chunks_exact(p)) {
        *qk = z.iter().zip(wk).map(|(a, b)| a * b).sum();
    }
    let max = q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in q.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    q.iter_mut().for_each(|v| *v /= sum);
}

/// Each class's mean Hessian block (upper triangle), then the mean
/// gradient, of the cross-entropy at `w` over the rows of `data`.
fn statistics(data: &Encoded, classes: usize, targets: &[f32], w: &[f64]) -> Vec<f64> {
    let (p, k) = (data.p, classes);
    let mut s = vec![0.0f64; k * (upper_len(p) + p)];
    let n = targets.len().max(1) as f64;
    let (blocks, g) = s.split_at_mut(k * upper_len(p));
    let mut q = vec![0.0; k];
    for (z, &y) in data.z.chunks_exact(p).zip(targets) {
        probabilities(z, w, &mut q);
        for (c, ((hc, gc), &qc)) in blocks
            .chunks_exact_mut(upper_len(p))
            .zip(g.chunks_exact_mut(p))
            .zip(&q)
            .enumerate()
        {
            add_outer(hc, z, qc * (1.0 - qc) / n);
            let residual = qc - f64::from(u8::from(c == y as usize));
            for (gi, zi) in gc.iter_mut().zip(z) {
                *gi += residual * zi / n;
            }
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

impl Algorithm for SoftmaxNewton {
    fn info() -> AlgorithmInfo {
        let mut info = AlgorithmInfo::new(
            "softmax-newton",
            env!("CARGO_PKG_VERSION"),
            "Multi-class softmax regression by federated block-Newton steps: each wallet \
             sends its share of the gradient and of each class's Hessian block, and the next \
             round steps by them (for runs without noise, with server learning rate 1, no \
             momentum and a constant rate: momentum overshoots the steps).",
        )
        .param(ParamSpec::label())
        .param(ParamSpec::features());
        for spec in Softmax::params() {
            info = info.param(spec);
        }
        info.param(ParamSpec::optional(
            "l2",
            "L2 penalty on the features' weights, per example (linfa's alpha over the \
             number of examples), and the least eigenvalue the step allows",
            ParamValue::Real(1e-3),
        ))
        .param(ParamSpec::optional(
            "rate",
            "the share of each block-Newton step taken, from 0.001 to 1: below 1 keeps rows torn \
             between two classes from making the steps swing",
            ParamValue::Real(0.7),
        ))
        .param(ParamSpec::optional(
            "update_norm",
            "the largest norm of the statistics' share of an update",
            ParamValue::Real(0.1),
        ))
    }

    fn init_model(params: &Params, feature_count: usize) -> Result<Vec<f32>> {
        let s = settings(params, feature_count + 1)?;
        Ok(vec![0.0; model_len(s.classes, feature_count + 1)])
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
            |w| statistics(&data, s.classes, &targets, w),
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

c2ssi_guest_sdk::export_algorithm!(SoftmaxNewton);

#[cfg(test)]
mod tests {
    use c2ssi_guest_sdk::{Column, ColumnData, Param, ParamValue};
    use linfa::Dataset;
    use linfa::traits::Fit;
    use linfa_linalg::eigh::Eigh;
    use ndarray::{Array1, Array2};

    use super::*;

    /// `rows` rows of two features in [-1, 1] and a three-level category
    /// drawn from a softmax model of them, from `seed`.
    fn table(rows: usize, seed: u64) -> Table {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let levels = ["a", "b", "c"];
        let mut x = vec![Vec::new(); 2];
        let mut y = Vec::new();
        for _ in 0..rows {
            let v: Vec<f64> = (0..2).map(|_| next() * 2.0 - 1.0).collect();
            let scores = [2.0 * v[0], -1.5 * v[0] + 2.0 * v[1], 0.5 - v[1]];
            let total: f64 = scores.iter().map(|s| s.exp()).sum();
            let mut u = next() * total;
            let mut class = 2;
            for (c, s) in scores.iter().enumerate() {
                u -= s.exp();
                if u < 0.0 {
                    class = c;
                    break;
                }
            }
            y.push(class as u32);
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
            ty: ColumnType::Category {
                levels: levels.iter().map(|l| l.to_string()).collect(),
            },
            data: ColumnData::Category(y),
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
                    ColumnData::Category(v) => ColumnData::Category(v[rows.clone()].to_vec()),
                    other => other.clone(),
                },
                ..c.clone()
            })
            .collect();
        Table::new("t", n, columns).unwrap()
    }

    /// Three wallets of 100 rows each, every round all three, their
    /// updates averaged and added as the plain mean does: after enough
    /// rounds the model gives the class probabilities of linfa's
    /// multinomial logistic regression on all 300 rows with the same
    /// penalty (`alpha = l2 n`), which fits the whole Hessian by another
    /// method.
    #[test]
    fn rounds_of_every_wallet_reach_the_regularized_maximum_likelihood() {
        let all = table(300, 7);
        let l2 = 0.01;
        let p = Params::resolve(
            &SoftmaxNewton::info().params,
            vec![
                Param::new("label", ParamValue::Text("y".into())),
                Param::new("classes", ParamValue::Integer(3)),
                Param::new("l2", ParamValue::Real(l2)),
            ],
        )
        .unwrap();
        let mut model = SoftmaxNewton::init_model(&p, 2).unwrap();
        let wallets = [
            part(&all, 0..100),
            part(&all, 100..200),
            part(&all, 200..300),
        ];
        for _ in 0..40 {
            let deltas: Vec<Vec<f32>> = wallets
                .iter()
                .map(|w| SoftmaxNewton::train(&model, &p, w, 1).unwrap().delta)
                .collect();
            for (k, m) in model.iter_mut().enumerate() {
                *m += deltas.iter().map(|d| d[k]).sum::<f32>() / 3.0;
            }
        }
        let label = all.column("y").unwrap().spec();
        let ours = SoftmaxNewton::predict(&model, &p, &all, &label).unwrap();

        let x = Array2::from_shape_fn((300, 2), |(i, j)| {
            all.column(&format!("x{j}")).unwrap().value_f64(i).unwrap()
        });
        let y: Array1<usize> = match &all.column("y").unwrap().data {
            ColumnData::Category(v) => v.iter().map(|&c| c as usize).collect(),
            _ => unreachable!("a category label"),
        };
        let fit = linfa_logistic::MultiLogisticRegression::default()
            .alpha(l2 * 300.0)
            .max_iterations(1000)
            .gradient_tolerance(1e-10)
            .fit(&Dataset::new(x.clone(), y))
            .unwrap();
        let theirs = fit.predict_probabilities(&x);
        // After the predicted class come the classes' probabilities, in
        // the label's order.
        for c in 0..3 {
            let mine = &ours[1 + c];
            for i in 0..300 {
                let a = mine.value_f64(i).unwrap();
                assert!(
                    (a - theirs[[i, c]]).abs() < 2e-3,
                    "row {i}, class {c}: {a} vs {}",
                    theirs[[i, c]]
                );
            }
        }
    }

    /// `2 D - H` is positive semi-definite for any probabilities: the
    /// claim the module's convergence argument rests on, checked on the
    /// matrix of one row over random and lopsided probabilities.
    #[test]
    fn twice_the_block_diagonal_bounds_the_softmax_hessian() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for trial in 0..200usize {
            let k = 2 + trial % 9;
            let mut q: Vec<f64> = (0..k)
                .map(|_| next().powi(1 + (trial % 5) as i32))
                .collect();
            let total: f64 = q.iter().sum();
            q.iter_mut().for_each(|v| *v /= total);
            // M = 2 diag(q - q^2) - (diag(q) - q q^T), packed.
            let mut m = vec![0.0; upper_len(k)];
            let mut at = 0;
            for i in 0..k {
                for j in i..k {
                    m[at] = if i == j {
                        q[i] - 2.0 * q[i] * q[i] + q[i] * q[i]
                    } else {
                        q[i] * q[j]
                    };
                    at += 1;
                }
            }
            let dense = Array2::from_shape_fn((k, k), |(i, j)| {
                let (a, b) = (i.min(j), i.max(j));
                m[a * k - a * (a + 1) / 2 + b]
            });
            let (values, _) = dense.eigh().unwrap();
            let least = values.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(least > -1e-12, "q = {q:?}: least eigenvalue {least}");
        }
    }
}
