//! Checks on what a guest returns, before anything leaves the sandbox: the
//! update's length matches the model, every value is finite, metrics are few,
//! short-named and finite, the update's L2 norm is clipped when asked, and
//! what `describe` says is of bounded size, and predictions are a well-formed
//! table.

use c2ssi_guest_sdk::{AlgorithmInfo, Column, Metric, ParamValue, Table, Update};

use super::error::TaskError;
use super::limits::SandboxLimits;

/// An update that passed the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedUpdate {
    /// The update, clipped if it was asked for and needed.
    pub update: Update,
    /// Its L2 norm before clipping.
    pub norm: f64,
    /// Whether clipping scaled it down.
    pub clipped: bool,
}

/// The most bytes of a name (the algorithm's, its version, a parameter's).
pub const MAX_NAME_BYTES: usize = 128;
/// The most bytes of a description.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// The most hyper-parameters an algorithm declares.
pub const MAX_PARAMS: usize = 64;
/// The most bytes of a parameter's default value (a text, or a text list's
/// items together).
pub const MAX_DEFAULT_BYTES: usize = 4096;

/// The most columns `predict` may return: the prediction and one
/// probability per class, for the most classes a label may declare.
pub const MAX_PREDICTION_COLUMNS: usize = 1 + c2ssi_guest_sdk::encode::MAX_CLASSES;

/// Checks what `predict` returned: at least one column and at most
/// [`MAX_PREDICTION_COLUMNS`], the first named `label`, names of at most
/// [`MAX_NAME_BYTES`] and unique, category levels of at most
/// [`MAX_NAME_BYTES`] each, and `rows` values in every column, each fitting
/// the column's declared type (reals finite).
pub fn check_predictions(columns: &[Column], rows: usize, label: &str) -> Result<(), TaskError> {
    let invalid = |m: String| Err(TaskError::InvalidResult(format!("predict: {m}")));
    match columns.first() {
        None => return invalid("no column returned".into()),
        Some(first) if first.name != label => {
            return invalid(format!(
                "the first column is named '{}' but must be the label, '{label}'",
                first.name.chars().take(MAX_NAME_BYTES).collect::<String>()
            ));
        }
        Some(_) => {}
    }
    if columns.len() > MAX_PREDICTION_COLUMNS {
        return invalid(format!(
            "{} columns; at most {MAX_PREDICTION_COLUMNS} are allowed",
            columns.len()
        ));
    }
    for c in columns {
        if c.name.is_empty() || c.name.len() > MAX_NAME_BYTES {
            return invalid(format!(
                "a column name of {} bytes; names must have 1 to {MAX_NAME_BYTES} bytes",
                c.name.len()
            ));
        }
        if let c2ssi_guest_sdk::ColumnType::Category { levels } = &c.ty
            && (levels.len() > c2ssi_guest_sdk::encode::MAX_CLASSES
                || levels.iter().any(|l| l.len() > MAX_NAME_BYTES))
        {
            return invalid(format!(
                "column '{}' declares {} levels; at most {} of at most {MAX_NAME_BYTES} bytes \
                 each are allowed",
                c.name,
                levels.len(),
                c2ssi_guest_sdk::encode::MAX_CLASSES
            ));
        }
    }
    Table::new("predictions", rows, columns.to_vec())
        .map(|_| ())
        .or_else(|e| invalid(e.to_string()))
}

/// Checks what `describe` returned: every string and list within its bound,
/// so that no wallet prints, no broker stores and no simulation copies a
/// name of megabytes.
pub fn check_info(info: &AlgorithmInfo) -> Result<(), TaskError> {
    let bound = |what: &str, text: &str, most: usize| {
        if text.len() > most {
            Err(TaskError::InvalidResult(format!(
                "describe: {what} of {} bytes exceeds the limit of {most} bytes",
                text.len()
            )))
        } else {
            Ok(())
        }
    };
    bound("the name", &info.name, MAX_NAME_BYTES)?;
    bound("the version", &info.version, MAX_NAME_BYTES)?;
    bound("the description", &info.description, MAX_DESCRIPTION_BYTES)?;
    if info.params.len() > MAX_PARAMS {
        return Err(TaskError::InvalidResult(format!(
            "describe: {} hyper-parameters; at most {MAX_PARAMS} are allowed",
            info.params.len()
        )));
    }
    for p in &info.params {
        bound("a parameter's name", &p.name, MAX_NAME_BYTES)?;
        bound(
            &format!("the description of parameter '{}'", p.name),
            &p.description,
            MAX_DESCRIPTION_BYTES,
        )?;
        let default_bytes = match &p.default {
            Some(ParamValue::Text(t)) => t.len(),
            Some(ParamValue::TextList(items)) => items
                .iter()
                .map(|i| i.len().saturating_add(1))
                .fold(0usize, usize::saturating_add),
            _ => 0,
        };
        if default_bytes > MAX_DEFAULT_BYTES {
            return Err(TaskError::InvalidResult(format!(
                "describe: the default of parameter '{}' has {default_bytes} bytes; at most \
                 {MAX_DEFAULT_BYTES} are allowed",
                p.name
            )));
        }
    }
    Ok(())
}

/// Checks metrics: count, name length, finite values.
pub fn check_metrics(metrics: &[Metric], limits: &SandboxLimits) -> Result<(), TaskError> {
    if metrics.len() > limits.max_metrics {
        return Err(TaskError::InvalidResult(format!(
            "{} metrics; at most {} are allowed",
            metrics.len(),
            limits.max_metrics
        )));
    }
    for m in metrics {
        if m.name.is_empty() || m.name.len() > limits.max_metric_name_bytes {
            return Err(TaskError::InvalidResult(format!(
                "metric name of {} bytes; names must have 1 to {} bytes",
                m.name.len(),
                limits.max_metric_name_bytes
            )));
        }
        if !m.value.is_finite() {
            return Err(TaskError::InvalidResult(format!(
                "metric '{}' is {}, not a finite number",
                m.name, m.value
            )));
        }
    }
    Ok(())
}

/// Checks a parameter vector's size and values (a model, or an update's delta).
pub fn check_vector(what: &str, values: &[f32], limits: &SandboxLimits) -> Result<(), TaskError> {
    let bytes = values.len().saturating_mul(4);
    if bytes > limits.max_result_bytes {
        return Err(TaskError::InvalidResult(format!(
            "{what} of {} values ({bytes} bytes) exceeds the limit of {} bytes",
            values.len(),
            limits.max_result_bytes
        )));
    }
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(TaskError::InvalidResult(format!(
            "{what} value {i} is {v}, not a finite number"
        )));
    }
    Ok(())
}

/// Checks an update against the model it was trained from, and clips its L2
/// norm to `clip_norm` when given.
pub fn check_update(
    mut update: Update,
    model_len: usize,
    clip_norm: Option<f64>,
    limits: &SandboxLimits,
) -> Result<CheckedUpdate, TaskError> {
    check_vector("update", &update.delta, limits)?;
    if update.delta.len() != model_len {
        return Err(TaskError::InvalidResult(format!(
            "update has {} values but the model has {model_len}",
            update.delta.len()
        )));
    }
    check_metrics(&update.metrics, limits)?;
    let norm = update
        .delta
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    let mut clipped = false;
    if let Some(limit) = clip_norm
        && norm > limit
    {
        // A margin of one part in a million: rounding each coordinate to
        // f32 cannot push the norm past the limit the noise is calibrated to.
        let scale = (limit / norm * (1.0 - 1e-6)) as f32;
        update.delta.iter_mut().for_each(|v| *v *= scale);
        clipped = true;
    }
    Ok(CheckedUpdate {
        update,
        norm,
        clipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn update(delta: Vec<f32>) -> Update {
        Update {
            delta,
            examples: 1,
            metrics: vec![],
        }
    }

    #[test]
    fn wrong_length_and_nan_are_refused_with_the_reason() {
        let limits = SandboxLimits::default();
        let err = check_update(update(vec![0.0; 3]), 2, None, &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the algorithm's result was refused: update has 3 values but the model has 2"
        );
        let err = check_update(update(vec![0.0, f32::NAN]), 2, None, &limits).unwrap_err();
        assert!(err.to_string().contains("update value 1 is NaN"));
        let err = check_update(update(vec![f32::INFINITY]), 1, None, &limits).unwrap_err();
        assert!(err.to_string().contains("inf"));
    }

    #[test]
    fn metrics_are_bounded() {
        let limits = SandboxLimits::default();
        let mut u = update(vec![0.0]);
        u.metrics = (0..33).map(|i| Metric::new(format!("m{i}"), 0.0)).collect();
        assert!(check_update(u.clone(), 1, None, &limits).is_err());
        u.metrics = vec![Metric::new("x".repeat(65), 0.0)];
        assert!(check_update(u.clone(), 1, None, &limits).is_err());
        u.metrics = vec![Metric::new("loss", f64::NAN)];
        assert!(check_update(u, 1, None, &limits).is_err());
    }

    proptest! {
        #[test]
        fn clipping_bounds_the_norm_and_keeps_the_direction(
            delta in proptest::collection::vec(-1e3f32..1e3, 1..50),
            limit in 0.01f64..100.0,
        ) {
            let limits = SandboxLimits::default();
            let n = delta.len();
            let checked = check_update(update(delta.clone()), n, Some(limit), &limits).unwrap();
            let norm: f64 = checked.update.delta.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            prop_assert!(norm <= limit, "{norm} > {limit}");
            prop_assert_eq!(checked.clipped, checked.norm > limit);
            if !checked.clipped {
                prop_assert_eq!(&checked.update.delta, &delta);
            }
            for (a, b) in checked.update.delta.iter().zip(&delta) {
                prop_assert!(a * b >= 0.0);
            }
        }
    }
}
