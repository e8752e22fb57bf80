//! The centralized baseline: the same model class fitted by linfa on all the
//! training people's data pooled, as if it had left the wallets, and scored
//! on the same held-out people with the same encoding.

use c2ssi_guest_sdk::encode::{ClassTarget, FeatureEncoder};
use c2ssi_guest_sdk::{ColumnSpec, Table};
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
    /// The metric's name, as the algorithms' `evaluate` reports it.
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
