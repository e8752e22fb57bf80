//! The centralized baseline: the same model class fitted by linfa on all the
//! training people's data pooled, as if it had left the wallets, and scored
//! on the same held-out people with the same encoding.

use c2ssi_guest_sdk::encode::{ClassTarget, FeatureEncoder};
use c2ssi_guest_sdk::{Column, ColumnData, ColumnSpec, ColumnType, Table};
use linfa::prelude::*;
use linfa_linear::LinearRegression;
use linfa_logistic::{LogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2};

use crate::error::{Result, SimError};

/// What is predicted, and so which metric compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A number: mean squared error, lower is better.
    Regression,
    /// Two classes: accuracy, higher is better.
    Binary,
    /// Several classes: accuracy, higher is better.
    Multiclass,
}

impl Problem {
    /// The problem that an algorithm's prediction of `label` answers, by the
    /// prediction's type: a real column is a regression; anything else are
    /// classes, two of them binary.
    pub fn of_prediction(prediction: &Column, schema: &[ColumnSpec], label: &str) -> Problem {
        match prediction.ty {
            ColumnType::Real { .. } => Problem::Regression,
            _ => match ClassTarget::new(schema, label) {
                Ok(target) if target.classes() == 2 => Problem::Binary,
                _ => Problem::Multiclass,
            },
        }
    }

    /// The metric of `prediction` against `truth`, row by row: mean squared
    /// error, or the fraction of rows predicted right (categories compared
    /// by level name, so a prediction's own level list cannot cheat).
    pub fn measure(self, prediction: &Column, truth: &Column) -> f64 {
        let n = truth.data.len();
        if prediction.data.len() != n || n == 0 {
            return f64::NAN;
        }
        match self {
            Problem::Regression => {
                (0..n)
                    .map(|row| {
                        let e = prediction.value_f64(row).unwrap_or(f64::NAN)
                            - truth.value_f64(row).unwrap_or(f64::NAN);
                        e * e
                    })
                    .sum::<f64>()
                    / n as f64
            }
            Problem::Binary | Problem::Multiclass => {
                let right = (0..n)
                    .filter(|&row| match (level(prediction, row), level(truth, row)) {
                        (Some(a), Some(b)) => a == b,
                        (None, None) => prediction.value_f64(row) == truth.value_f64(row),
                        _ => false,
                    })
                    .count();
                right as f64 / n as f64
            }
        }
    }

    /// The metric's name: `mse` or `accuracy`.
    pub fn metric(self) -> &'static str {
        match self {
            Problem::Regression => "mse",
            Problem::Binary | Problem::Multiclass => "accuracy",
        }
    }

    /// Whether a lower value is better.
    pub fn lower_is_better(self) -> bool {
        self == Problem::Regression
    }
}

/// A category cell's level name; `None` for other columns.
fn level(column: &Column, row: usize) -> Option<&str> {
    match (&column.ty, &column.data) {
        (ColumnType::Category { levels }, ColumnData::Category(codes)) => {
            Some(levels.get(*codes.get(row)? as usize)?.as_str())
        }
        _ => None,
    }
}

fn matrix(encoder: &FeatureEncoder, table: &Table) -> Result<Array2<f64>> {
    let x = encoder
        .encode(table)
        .map_err(|e| SimError::Invalid(e.to_string()))?;
    Array2::from_shape_vec(
        (table.row_count, encoder.width()),
        x.into_iter().map(f64::from).collect(),
    )
    .map_err(|e| SimError::Internal(e.to_string()))
}

/// The centralized fit's held-out metric.
pub fn centralized(
    problem: Problem,
    schema: &[ColumnSpec],
    features: &[String],
    label: &str,
    train: &Table,
    test: &Table,
) -> Result<(f64, &'static str)> {
    let encoder =
        FeatureEncoder::new(schema, features).map_err(|e| SimError::Invalid(e.to_string()))?;
    let (xtr, xte) = (matrix(&encoder, train)?, matrix(&encoder, test)?);
    let fail = |e: String| SimError::Internal(format!("the centralized linfa fit failed: {e}"));
    match problem {
        Problem::Regression => {
            let ytr: Array1<f64> = Array1::from(
                train
                    .column(label)
                    .and_then(|c| c.numeric_values())
                    .map_err(|e| fail(e.to_string()))?,
            );
            let yte: Array1<f64> = Array1::from(
                test.column(label)
                    .and_then(|c| c.numeric_values())
                    .map_err(|e| fail(e.to_string()))?,
            );
            let model = LinearRegression::new()
                .fit(&Dataset::new(xtr, ytr))
                .map_err(|e| fail(e.to_string()))?;
            let predicted = model.predict(&xte);
            let mse = (&predicted - &yte)
                .mapv(|e| e * e)
                .mean()
                .unwrap_or(f64::NAN);
            Ok((mse, "linfa-linear least squares"))
        }
        Problem::Binary | Problem::Multiclass => {
            let target =
                ClassTarget::new(schema, label).map_err(|e| SimError::Invalid(e.to_string()))?;
            let ytr = Array1::from(target.encode(train).map_err(|e| fail(e.to_string()))?);
            let yte = Array1::from(target.encode(test).map_err(|e| fail(e.to_string()))?);
            let predicted: Array1<usize> = if problem == Problem::Binary {
                LogisticRegression::default()
                    .max_iterations(200)
                    .fit(&Dataset::new(xtr, ytr))
                    .map_err(|e| fail(e.to_string()))?
                    .predict(&xte)
            } else {
                MultiLogisticRegression::default()
                    .max_iterations(200)
                    .fit(&Dataset::new(xtr, ytr))
                    .map_err(|e| fail(e.to_string()))?
                    .predict(&xte)
            };
            let correct = predicted.iter().zip(&yte).filter(|(a, b)| a == b).count();
            Ok((correct as f64 / yte.len().max(1) as f64, "linfa-logistic"))
        }
    }
}
