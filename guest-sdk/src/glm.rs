//! Generalized linear models: the training, evaluation and prediction that
//! linear, logistic and softmax regression share, with the link function
//! (and the loss it implies) as the only difference.
//!
//! A GLM scores each row linearly, once per output: `s_k = w_k . x + b_k`,
//! over the features as [`FeatureEncoder`] encodes them. A [`Link`] says what
//! the scores mean: [`Identity`] (least squares on the label scaled to
//! `[-1, 1]`), [`Logit`] (two classes, log loss) or [`Softmax`] (several
//! classes, cross-entropy). [`Glm`] turns a link into an [`Algorithm`]:
//! local mini-batch SGD from [`run_epochs`], the update as the weight delta,
//! [`Evaluation`] with the link's loss and score, and predictions in the
//! label's own units. The model holds, for each output in turn, one weight
//! per encoded feature and then the output's bias.
//!
//! An algorithm crate names itself and picks a link:
//!
//! ```
//! use c2ssi_guest_sdk::glm::{Glm, GlmAlgorithm, Identity};
//!
//! /// The algorithm.
//! pub type LinearRegression = Glm<Spec>;
//!
//! /// Its name and link.
//! #[derive(Debug)]
//! pub struct Spec;
//!
//! impl GlmAlgorithm for Spec {
//!     type Link = Identity;
//!     const NAME: &'static str = "linear-regression";
//!     const VERSION: &'static str = "1.0.0";
//!     const DESCRIPTION: &'static str = "Least squares by local mini-batch SGD.";
//!     const LEARNING_RATE: f64 = 0.1;
//! }
//! // c2ssi_guest_sdk::export_algorithm!(LinearRegression);
//! ```

use std::marker::PhantomData;

use crate::algorithm::{Algorithm, Evaluation, Metric, Update, expect_model_len};
use crate::encode::{
    ClassTarget, FeatureEncoder, RegressionTarget, prediction_schema, select_features,
};
use crate::error::{Error, Result};
use crate::params::{AlgorithmInfo, ParamKind, ParamSpec, Params};
use crate::sgd::{SgdConfig, axpy, dot, glm_gradient, glm_scores, run_epochs};
use crate::table::{Column, ColumnSpec, Table};

/// What the scores of a GLM mean: how the label becomes a target, the
/// gradient and value of the loss, the score, and the predictions.
pub trait Link: Sized {
    /// The loss's name in evaluations and updates (`mse`, `log_loss`).
    const LOSS: &'static str;
    /// The score's name in evaluations and updates (`r2`, `accuracy`).
    const SCORE: &'static str;

    /// Hyper-parameters of the link beyond `label`, `features` and SGD's.
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }

    /// Scores per row, from the hyper-parameters alone (`init-model` has no
    /// table).
    fn outputs(params: &Params) -> Result<usize> {
        let _ = params;
        Ok(1)
    }

    /// The link for the column `label` of `schema`, checked against `params`.
    fn new(schema: &[ColumnSpec], label: &str, params: &Params) -> Result<Self>;

    /// The label's values as targets: in scaled units, or a class index.
    fn targets(&self, table: &Table) -> Result<Vec<f32>>;

    /// Replaces one row's scores by the loss's gradient with respect to them.
    fn gradient(&self, scores: &mut [f32], target: f32);

    /// One row's loss.
    fn loss(&self, scores: &[f32], target: f32) -> f64;

    /// The factor that takes the mean loss into the label's own units.
    fn loss_unit(&self) -> f64 {
        1.0
    }

    /// The score over all rows (`scores` row-major, [`Link::outputs`] per
    /// row): higher is better.
    fn score(&self, scores: &[f32], targets: &[f32]) -> f64;

    /// Further metrics over all rows.
    fn metrics(&self, scores: &[f32], targets: &[f32]) -> Vec<Metric> {
        let _ = (scores, targets);
        Vec::new()
    }

    /// The prediction columns: the label's, then any extras.
    fn predict(&self, scores: &[f32]) -> Vec<Column>;
}

/// What an algorithm crate says about its GLM: its name, its link and its
/// default learning rate.
pub trait GlmAlgorithm {
    /// The link.
    type Link: Link;
    /// The algorithm's name.
    const NAME: &'static str;
    /// Its version (`env!("CARGO_PKG_VERSION")`).
    const VERSION: &'static str;
    /// A sentence on what it does.
    const DESCRIPTION: &'static str;
    /// The default of `learning_rate`.
    const LEARNING_RATE: f64;
}

/// The [`Algorithm`] of a GLM; see the module's documentation.
#[derive(Debug)]
pub struct Glm<A>(PhantomData<A>);

/// The linear scores of every row, `outputs` per row, row-major.
pub fn scores(x: &[f32], d: usize, outputs: usize, w: &[f32]) -> Vec<f32> {
    if outputs == 1 {
        return glm_scores(x, d, w);
    }
    let n = x.len().checked_div(d).unwrap_or(0);
    let mut out = vec![0.0f32; n * outputs];
    for (row, s) in x.chunks_exact(d.max(1)).zip(out.chunks_exact_mut(outputs)) {
        row_scores(w, row, s);
    }
    out
}

/// One row's scores into `s`, one per output.
fn row_scores(w: &[f32], x: &[f32], s: &mut [f32]) {
    let stride = x.len() + 1;
    for (k, sk) in s.iter_mut().enumerate() {
        let wk = &w[k * stride..(k + 1) * stride];
        *sk = dot(&wk[..x.len()], x) + wk[x.len()];
    }
}

/// The evaluation of `scores` against `targets` under `link`.
pub fn evaluation<L: Link>(link: &L, scores: &[f32], targets: &[f32]) -> Evaluation {
    let outputs = scores.len().checked_div(targets.len()).unwrap_or(1).max(1);
    let total: f64 = scores
        .chunks_exact(outputs)
        .zip(targets)
        .map(|(s, &y)| link.loss(s, y))
        .sum();
    let loss = total / targets.len().max(1) as f64 * link.loss_unit();
    Evaluation {
        loss: Metric::new(L::LOSS, loss),
        score: Metric::new(L::SCORE, link.score(scores, targets)),
        metrics: link.metrics(scores, targets),
    }
}

/// A table ready for a GLM: the link, the encoded features and their width.
struct Encoded<L> {
    link: L,
    x: Vec<f32>,
    d: usize,
    outputs: usize,
}

impl<L: Link> Encoded<L> {
    fn new(params: &Params, schema: &[ColumnSpec], table: &Table) -> Result<Encoded<L>> {
        let label = params.text("label")?;
        let features = select_features(schema, params.text_list("features")?, Some(label));
        let encoder = FeatureEncoder::new(schema, &features)?;
        Ok(Encoded {
            link: L::new(schema, label, params)?,
            x: encoder.encode(table)?,
            d: encoder.width(),
            outputs: L::outputs(params)?,
        })
    }

    fn model_len(&self) -> usize {
        self.outputs * (self.d + 1)
    }

    fn scores(&self, w: &[f32]) -> Vec<f32> {
        scores(&self.x, self.d, self.outputs, w)
    }
}

impl<A: GlmAlgorithm> Algorithm for Glm<A> {
    fn info() -> AlgorithmInfo {
        let mut info = AlgorithmInfo::new(A::NAME, A::VERSION, A::DESCRIPTION)
            .param(ParamSpec::label())
            .param(ParamSpec::features());
        info.params.extend(A::Link::params());
        info.params.extend(SgdConfig::specs(A::LEARNING_RATE));
        info
    }

    fn init_model(params: &Params, feature_count: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; A::Link::outputs(params)? * (feature_count + 1)])
    }

    fn train(model: &[f32], params: &Params, table: &Table, seed: u64) -> Result<Update> {
        let config = SgdConfig::from_params(params)?;
        let data = Encoded::<A::Link>::new(params, &table.schema(), table)?;
        let y = data.link.targets(table)?;
        expect_model_len(model, data.model_len())?;
        let before = evaluation(&data.link, &data.scores(model), &y);
        let mut w = model.to_vec();
        let (d, outputs, link) = (data.d, data.outputs, &data.link);
        let stride = d + 1;
        if outputs == 1 {
            run_epochs(
                &mut w,
                y.len(),
                &config,
                seed,
                |i| i % stride != d,
                |w, batch, g| {
                    glm_gradient(&data.x, d, w, batch, g, |i, score| {
                        let mut s = [score];
                        link.gradient(&mut s, y[i]);
                        s[0]
                    });
                },
            );
        } else {
            let mut s = vec![0.0f32; outputs];
            run_epochs(
                &mut w,
                y.len(),
                &config,
                seed,
                |i| i % stride != d,
                |w, batch, g| {
                    for &i in batch {
                        let x = &data.x[i * d..(i + 1) * d];
                        row_scores(w, x, &mut s);
                        link.gradient(&mut s, y[i]);
                        for (k, &err) in s.iter().enumerate() {
                            let gk = &mut g[k * stride..(k + 1) * stride];
                            axpy(&mut gk[..d], err, x);
                            gk[d] += err;
                        }
                    }
                },
            );
        }
        let after = evaluation(&data.link, &data.scores(&w), &y);
        Ok(Update::between(model, &w, y.len())
            .metric(&format!("{}_before", after.loss.name), before.loss.value)
            .metric(&format!("{}_after", after.loss.name), after.loss.value)
            .metric(&format!("{}_after", after.score.name), after.score.value))
    }

    fn evaluate(model: &[f32], params: &Params, table: &Table) -> Result<Evaluation> {
        let data = Encoded::<A::Link>::new(params, &table.schema(), table)?;
        let y = data.link.targets(table)?;
        expect_model_len(model, data.model_len())?;
        Ok(evaluation(&data.link, &data.scores(model), &y))
    }

    fn predict(
        model: &[f32],
        params: &Params,
        table: &Table,
        label: &ColumnSpec,
    ) -> Result<Vec<Column>> {
        let schema = prediction_schema(table, label, params.text("label")?)?;
        let data = Encoded::<A::Link>::new(params, &schema, table)?;
        expect_model_len(model, data.model_len())?;
        Ok(data.link.predict(&data.scores(model)))
    }
}

/// Least squares on a numeric label scaled by its declared range: the
/// identity link. Loss `mse` and metric `mae` in the label's own units,
/// score `r2`; predictions in the label's own units.
#[derive(Debug, Clone)]
pub struct Identity {
    target: RegressionTarget,
}

impl Link for Identity {
    const LOSS: &'static str = "mse";
    const SCORE: &'static str = "r2";

    fn new(schema: &[ColumnSpec], label: &str, _params: &Params) -> Result<Identity> {
        Ok(Identity {
            target: RegressionTarget::new(schema, label)?,
        })
    }

    fn targets(&self, table: &Table) -> Result<Vec<f32>> {
        self.target.encode(table)
    }

    fn gradient(&self, scores: &mut [f32], target: f32) {
        scores[0] -= target;
    }

    fn loss(&self, scores: &[f32], target: f32) -> f64 {
        let e = f64::from(scores[0] - target);
        e * e
    }

    fn loss_unit(&self) -> f64 {
        let half = self.target.scale().half_width();
        half * half
    }

    /// `1 - SSE / SST`; 0 when the targets do not vary.
    fn score(&self, scores: &[f32], targets: &[f32]) -> f64 {
        let n = targets.len().max(1) as f64;
        let mean = targets.iter().map(|&y| f64::from(y)).sum::<f64>() / n;
        let (mut sse, mut sst) = (0.0f64, 0.0f64);
        for (&s, &y) in scores.iter().zip(targets) {
            sse += f64::from(s - y).powi(2);
            sst += (f64::from(y) - mean).powi(2);
        }
        if sst > 0.0 { 1.0 - sse / sst } else { 0.0 }
    }

    fn metrics(&self, scores: &[f32], targets: &[f32]) -> Vec<Metric> {
        let n = targets.len().max(1) as f64;
        let ae: f64 = scores
            .iter()
            .zip(targets)
            .map(|(&s, &y)| f64::from(s - y).abs())
            .sum();
        vec![Metric::new(
            "mae",
            ae / n * self.target.scale().half_width(),
        )]
    }

    fn predict(&self, scores: &[f32]) -> Vec<Column> {
        vec![self.target.column(scores)]
    }
}

/// Two classes through the logistic function: loss `log_loss`, score
/// `accuracy`; predictions are the class and each class's probability. The
/// label is a boolean, a two-level category or an integer declared `0..=1`.
#[derive(Debug, Clone)]
pub struct Logit {
    target: ClassTarget,
}

/// Each row's class index, as a target.
fn class_indices(target: &ClassTarget, table: &Table) -> Result<Vec<f32>> {
    Ok(target
        .encode(table)?
        .into_iter()
        .map(|c| c as f32)
        .collect())
}

/// The logistic function.
#[inline]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl Link for Logit {
    const LOSS: &'static str = "log_loss";
    const SCORE: &'static str = "accuracy";

    fn new(schema: &[ColumnSpec], label: &str, _params: &Params) -> Result<Logit> {
        let target = ClassTarget::new(schema, label)?;
        if target.classes() != 2 {
            return Err(Error::new(format!(
                "label column '{label}' has {} classes; logistic regression needs 2 \
                 (use softmax-regression)",
                target.classes()
            )));
        }
        Ok(Logit { target })
    }

    fn targets(&self, table: &Table) -> Result<Vec<f32>> {
        class_indices(&self.target, table)
    }

    fn gradient(&self, scores: &mut [f32], target: f32) {
        scores[0] = sigmoid(scores[0]) - target;
    }

    /// `log(1 + e^z) - y z`, computed without overflow.
    fn loss(&self, scores: &[f32], target: f32) -> f64 {
        let (z, y) = (f64::from(scores[0]), f64::from(target));
        z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z
    }

    fn score(&self, scores: &[f32], targets: &[f32]) -> f64 {
        let correct = scores
            .iter()
            .zip(targets)
            .filter(|&(&z, &y)| (z >= 0.0) == (y >= 0.5))
            .count();
        correct as f64 / targets.len().max(1) as f64
    }

    fn predict(&self, scores: &[f32]) -> Vec<Column> {
        let classes: Vec<usize> = scores.iter().map(|&z| usize::from(z >= 0.0)).collect();
        let p: Vec<f32> = scores
            .iter()
            .flat_map(|&z| {
                let p1 = sigmoid(z);
                [1.0 - p1, p1]
            })
            .collect();
        let mut columns = vec![self.target.column(&classes)];
        columns.extend(self.target.probability_columns(&p));
        columns
    }
}

/// Several classes through the softmax: loss `cross_entropy`, score
/// `accuracy`; predictions are the most probable class and each class's
/// probability. The label is a category, a boolean or an integer with a
/// declared range; the hyper-parameter `classes` must say how many.
#[derive(Debug, Clone)]
pub struct Softmax {
    target: ClassTarget,
}

/// The softmax of `s`, in place.
fn softmax(s: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in s.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in s.iter_mut() {
        *v /= sum;
    }
}

/// The index of the first largest value.
fn argmax(s: &[f32]) -> usize {
    s.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (k, &v)| if v > b.1 { (k, v) } else { b },
        )
        .0
}

impl Link for Softmax {
    const LOSS: &'static str = "cross_entropy";
    const SCORE: &'static str = "accuracy";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::required(
            "classes",
            ParamKind::Integer,
            "number of classes the label declares (its levels, or its integer range)",
        )]
    }

    fn outputs(params: &Params) -> Result<usize> {
        Ok(params.integer_in("classes", 2, 1024)? as usize)
    }

    fn new(schema: &[ColumnSpec], label: &str, params: &Params) -> Result<Softmax> {
        let target = ClassTarget::new(schema, label)?;
        let declared = params.integer("classes")?;
        if declared != target.classes() as i64 {
            return Err(Error::new(format!(
                "hyper-parameter 'classes' is {declared} but the label declares {} classes",
                target.classes()
            )));
        }
        Ok(Softmax { target })
    }

    fn targets(&self, table: &Table) -> Result<Vec<f32>> {
        class_indices(&self.target, table)
    }

    fn gradient(&self, scores: &mut [f32], target: f32) {
        softmax(scores);
        scores[target as usize] -= 1.0;
    }

    fn loss(&self, scores: &[f32], target: f32) -> f64 {
        let mut p = scores.to_vec();
        softmax(&mut p);
        -f64::from(p[target as usize].max(1e-12)).ln()
    }

    fn score(&self, scores: &[f32], targets: &[f32]) -> f64 {
        let k = self.target.classes();
        let correct = scores
            .chunks_exact(k)
            .zip(targets)
            .filter(|&(s, &y)| argmax(s) == y as usize)
            .count();
        correct as f64 / targets.len().max(1) as f64
    }

    fn predict(&self, scores: &[f32]) -> Vec<Column> {
        let k = self.target.classes();
        let mut p = scores.to_vec();
        p.chunks_exact_mut(k).for_each(softmax);
        let classes: Vec<usize> = p.chunks_exact(k).map(argmax).collect();
        let mut columns = vec![self.target.column(&classes)];
        columns.extend(self.target.probability_columns(&p));
        columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Param, ParamValue};
    use crate::table::{ColumnData, ColumnType};

    struct Lin;
    impl GlmAlgorithm for Lin {
        type Link = Identity;
        const NAME: &'static str = "lin";
        const VERSION: &'static str = "0.0.0";
        const DESCRIPTION: &'static str = "test";
        const LEARNING_RATE: f64 = 0.5;
    }

    struct Soft;
    impl GlmAlgorithm for Soft {
        type Link = Softmax;
        const NAME: &'static str = "soft";
        const VERSION: &'static str = "0.0.0";
        const DESCRIPTION: &'static str = "test";
        const LEARNING_RATE: f64 = 0.5;
    }

    /// y = 10 + 20 x on x in 0..=1, label declared 0..=40.
    fn line() -> Table {
        let x: Vec<f64> = (0..40).map(|i| f64::from(i) / 39.0).collect();
        let y = x.iter().map(|x| 10.0 + 20.0 * x).collect();
        Table::new(
            "t",
            40,
            vec![
                Column {
                    name: "x".into(),
                    ty: ColumnType::Real {
                        min: Some(0.0),
                        max: Some(1.0),
                    },
                    data: ColumnData::Real(x),
                },
                Column {
                    name: "y".into(),
                    ty: ColumnType::Real {
                        min: Some(0.0),
                        max: Some(40.0),
                    },
                    data: ColumnData::Real(y),
                },
            ],
        )
        .unwrap()
    }

    fn params(extra: &[(&str, ParamValue)]) -> Vec<Param> {
        let mut p = vec![Param::new("label", ParamValue::Text("y".into()))];
        p.extend(extra.iter().map(|(n, v)| Param::new(*n, v.clone())));
        p
    }

    #[test]
    fn least_squares_learns_a_line_and_predicts_in_label_units() {
        let table = line();
        let given = params(&[("epochs", ParamValue::Integer(400))]);
        let mut model = crate::init_model::<Glm<Lin>>(given.clone(), 1).unwrap();
        let update = crate::train::<Glm<Lin>>(&model, given.clone(), &table, 7).unwrap();
        for (w, d) in model.iter_mut().zip(&update.delta) {
            *w += d;
        }
        let e = crate::evaluate::<Glm<Lin>>(&model, given.clone(), &table).unwrap();
        assert_eq!((e.loss.name.as_str(), e.score.name.as_str()), ("mse", "r2"));
        assert!(e.loss.value < 0.5, "{e:?}");
        assert!(e.score.value > 0.99, "{e:?}");
        let names: Vec<&str> = update.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["mse_before", "mse_after", "r2_after"]);

        // Without the label column: predictions unscaled to the label's units.
        let features = table.project(&["x".into()]).unwrap();
        let label = table.column("y").unwrap().spec();
        let p = crate::predict::<Glm<Lin>>(&model, given, &features, &label).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "y");
        let ColumnData::Real(values) = &p[0].data else {
            panic!("{p:?}")
        };
        assert!((values[0] - 10.0).abs() < 1.0, "{values:?}");
        assert!((values[39] - 30.0).abs() < 1.0, "{values:?}");
    }

    #[test]
    fn predict_refuses_a_label_other_than_the_models() {
        let table = line();
        let other = ColumnSpec {
            name: "z".into(),
            ty: ColumnType::Real {
                min: None,
                max: None,
            },
        };
        let e = crate::predict::<Glm<Lin>>(&[0.0, 0.0], params(&[]), &table, &other).unwrap_err();
        assert!(e.to_string().contains("'label' is 'y'"), "{e}");
    }

    #[test]
    fn softmax_predicts_levels_with_probabilities_that_sum_to_one() {
        let levels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let table = Table::new(
            "t",
            6,
            vec![
                Column {
                    name: "x".into(),
                    ty: ColumnType::Real {
                        min: Some(0.0),
                        max: Some(2.0),
                    },
                    data: ColumnData::Real(vec![0.0, 0.1, 1.0, 1.1, 2.0, 1.9]),
                },
                Column {
                    name: "y".into(),
                    ty: ColumnType::Category {
                        levels: levels.clone(),
                    },
                    data: ColumnData::Category(vec![0, 0, 1, 1, 2, 2]),
                },
            ],
        )
        .unwrap();
        let given = params(&[
            ("classes", ParamValue::Integer(3)),
            ("epochs", ParamValue::Integer(300)),
        ]);
        let mut model = crate::init_model::<Glm<Soft>>(given.clone(), 1).unwrap();
        let update = crate::train::<Glm<Soft>>(&model, given.clone(), &table, 1).unwrap();
        for (w, d) in model.iter_mut().zip(&update.delta) {
            *w += d;
        }
        let label = table.column("y").unwrap().spec();
        let p = crate::predict::<Glm<Soft>>(&model, given, &table, &label).unwrap();
        let names: Vec<&str> = p.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["y", "p_a", "p_b", "p_c"]);
        assert_eq!(p[0].ty, ColumnType::Category { levels });
        assert_eq!(p[0].data, ColumnData::Category(vec![0, 0, 1, 1, 2, 2]));
        for row in 0..6 {
            let sum: f64 = p[1..].iter().map(|c| c.value_f64(row).unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-5, "row {row}: {sum}");
        }
    }
}
