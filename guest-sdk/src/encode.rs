//! Turning a typed table into numbers, the same way on every wallet.
//!
//! The encoding depends only on the declared schema, never on the data, so a
//! wallet's encoding cannot leak anything and every wallet encodes alike:
//!
//! - an integer or real column with a declared range `min..=max` is scaled to
//!   `[-1, 1]`; without a range it is used as it is;
//! - a boolean is 0 or 1;
//! - a category is one-hot over its declared levels.
//!
//! A regression label with a declared range is scaled the same way, so models
//! train in well-conditioned units and report metrics in the label's own units.

use crate::error::{Error, Result};
use crate::table::{Column, ColumnData, ColumnSpec, ColumnType, Table};

/// The feature columns for `requested` names: the names as given, or, when the
/// list is empty, every column except the label, in schema order.
pub fn select_features(
    schema: &[ColumnSpec],
    requested: &[String],
    label: Option<&str>,
) -> Vec<String> {
    if requested.is_empty() {
        schema
            .iter()
            .filter(|c| Some(c.name.as_str()) != label)
            .map(|c| c.name.clone())
            .collect()
    } else {
        requested.to_vec()
    }
}

/// How many numbers one row becomes under the encoding above.
pub fn feature_count(schema: &[ColumnSpec], features: &[String]) -> Result<usize> {
    Ok(FeatureEncoder::new(schema, features)?.width())
}

/// An affine map of a declared range onto `[-1, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeScale {
    mid: f64,
    half: f64,
}

impl RangeScale {
    /// The scale for `ty`; the identity when no range is declared.
    pub fn for_type(ty: &ColumnType) -> RangeScale {
        match ty.numeric_range() {
            Some((lo, hi)) => RangeScale {
                mid: (lo + hi) / 2.0,
                half: (hi - lo) / 2.0,
            },
            None => RangeScale {
                mid: 0.0,
                half: 1.0,
            },
        }
    }

    /// Into scaled units.
    pub fn forward(&self, x: f64) -> f64 {
        (x - self.mid) / self.half
    }

    /// Back into the column's own units.
    pub fn inverse(&self, y: f64) -> f64 {
        y * self.half + self.mid
    }

    /// The factor by which a difference in scaled units grows back in own units.
    pub fn half_width(&self) -> f64 {
        self.half
    }
}

#[derive(Debug, Clone)]
enum Encoding {
    Scaled(RangeScale),
    Boolean,
    OneHot(usize),
}

/// Encodes the feature columns of a table into a row-major matrix.
#[derive(Debug, Clone)]
pub struct FeatureEncoder {
    columns: Vec<(String, Encoding)>,
    width: usize,
}

impl FeatureEncoder {
    /// The encoder for these feature columns of `schema`.
    pub fn new(schema: &[ColumnSpec], features: &[String]) -> Result<FeatureEncoder> {
        if features.is_empty() {
            return Err(Error::new("no feature columns selected"));
        }
        let mut columns = Vec::with_capacity(features.len());
        let mut width = 0;
        for name in features {
            let spec = schema.iter().find(|c| &c.name == name).ok_or_else(|| {
                let known: Vec<&str> = schema.iter().map(|c| c.name.as_str()).collect();
                Error::new(format!(
                    "feature column '{name}' is not in the table (it has: {})",
                    known.join(", ")
                ))
            })?;
            let encoding = match &spec.ty {
                ColumnType::Integer { .. } | ColumnType::Real { .. } => {
                    Encoding::Scaled(RangeScale::for_type(&spec.ty))
                }
                ColumnType::Boolean => Encoding::Boolean,
                ColumnType::Category { levels } => Encoding::OneHot(levels.len()),
            };
            width += match encoding {
                Encoding::OneHot(n) => n,
                _ => 1,
            };
            columns.push((name.clone(), encoding));
        }
        Ok(FeatureEncoder { columns, width })
    }

    /// Numbers per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The table's feature columns as a row-major `row_count x width` matrix.
    pub fn encode(&self, table: &Table) -> Result<Vec<f32>> {
        let n = table.row_count;
        let mut x = vec![0.0f32; n * self.width];
        let mut offset = 0;
        for (name, encoding) in &self.columns {
            let column = table.column(name)?;
            match (encoding, &column.data) {
                (Encoding::Scaled(scale), ColumnData::Integer(v)) => {
                    for (row, &value) in v.iter().enumerate() {
                        x[row * self.width + offset] = scale.forward(value as f64) as f32;
                    }
                }
                (Encoding::Scaled(scale), ColumnData::Real(v)) => {
                    // Four rows per iteration: a quarter of the loop
                    // back-edges, where the sandbox checks fuel and deadline.
                    let mut blocks = v.chunks_exact(4);
                    let mut row = 0;
                    for block in &mut blocks {
                        for &value in block {
                            x[row * self.width + offset] = scale.forward(value) as f32;
                            row += 1;
                        }
                    }
                    for &value in blocks.remainder() {
                        x[row * self.width + offset] = scale.forward(value) as f32;
                        row += 1;
                    }
                }
                (Encoding::Boolean, ColumnData::Boolean(v)) => {
                    for (row, &value) in v.iter().enumerate() {
                        x[row * self.width + offset] = f32::from(u8::from(value));
                    }
                }
                (Encoding::OneHot(levels), ColumnData::Category(codes)) => {
                    for (row, &code) in codes.iter().enumerate() {
                        let code = code as usize;
                        if code >= *levels {
                            return Err(Error::new(format!(
                                "column '{name}', row {}: code {code} outside {levels} levels",
                                row + 1
                            )));
                        }
                        x[row * self.width + offset + code] = 1.0;
                    }
                }
                _ => {
                    return Err(Error::new(format!(
                        "column '{name}' is {} in this table but the schema said otherwise",
                        column.ty.kind_name()
                    )));
                }
            }
            offset += match encoding {
                Encoding::OneHot(n) => *n,
                _ => 1,
            };
        }
        Ok(x)
    }
}

/// A numeric label for regression, scaled by its declared range.
#[derive(Debug, Clone)]
pub struct RegressionTarget {
    name: String,
    scale: RangeScale,
}

impl RegressionTarget {
    /// The target for the column `label` of `schema`: an integer or real column.
    pub fn new(schema: &[ColumnSpec], label: &str) -> Result<RegressionTarget> {
        let spec = find(schema, label)?;
        match &spec.ty {
            ColumnType::Integer { .. } | ColumnType::Real { .. } => Ok(RegressionTarget {
                name: label.into(),
                scale: RangeScale::for_type(&spec.ty),
            }),
            other => Err(Error::new(format!(
                "label column '{label}' is {}, but regression needs an integer or real column",
                other.kind_name()
            ))),
        }
    }

    /// The label values in scaled units.
    pub fn encode(&self, table: &Table) -> Result<Vec<f32>> {
        let column = table.column(&self.name)?;
        Ok(column
            .numeric_values()?
            .into_iter()
            .map(|y| self.scale.forward(y) as f32)
            .collect())
    }

    /// The scale between model units and the label's own units.
    pub fn scale(&self) -> RangeScale {
        self.scale
    }

    /// Scores in model units as the prediction column: named like the
    /// label, real, in the label's own units.
    pub fn column(&self, scores: &[f32]) -> Column {
        Column {
            name: self.name.clone(),
            ty: ColumnType::Real {
                min: None,
                max: None,
            },
            data: ColumnData::Real(
                scores
                    .iter()
                    .map(|&s| self.scale.inverse(f64::from(s)))
                    .collect(),
            ),
        }
    }
}

/// A class label: boolean (2 classes), category (one class per level) or an
/// integer with a declared range (one class per value).
#[derive(Debug, Clone)]
pub struct ClassTarget {
    name: String,
    ty: ColumnType,
    classes: usize,
    offset: i64,
}

/// The most classes an integer label may declare.
pub const MAX_CLASSES: usize = 1024;

impl ClassTarget {
    /// The target for the column `label` of `schema`.
    pub fn new(schema: &[ColumnSpec], label: &str) -> Result<ClassTarget> {
        let spec = find(schema, label)?;
        let (classes, offset) = match &spec.ty {
            ColumnType::Boolean => (2, 0),
            ColumnType::Category { levels } => (levels.len(), 0),
            ColumnType::Integer {
                min: Some(lo),
                max: Some(hi),
            } if hi >= lo && ((hi - lo) as u64) < MAX_CLASSES as u64 => {
                ((hi - lo + 1) as usize, *lo)
            }
            other => {
                return Err(Error::new(format!(
                    "label column '{label}' is {other}; classification needs a boolean, a \
                     category, or an integer with a declared range of at most {MAX_CLASSES} values"
                )));
            }
        };
        if classes < 2 {
            return Err(Error::new(format!(
                "label column '{label}' declares {classes} class(es); at least 2 are needed"
            )));
        }
        Ok(ClassTarget {
            name: label.into(),
            ty: spec.ty.clone(),
            classes,
            offset,
        })
    }

    /// Each class's name: a category's level, `false`/`true`, or the integer.
    pub fn class_names(&self) -> Vec<String> {
        match &self.ty {
            ColumnType::Category { levels } => levels.clone(),
            ColumnType::Boolean => vec!["false".into(), "true".into()],
            _ => (0..self.classes as i64)
                .map(|k| (self.offset + k).to_string())
                .collect(),
        }
    }

    /// Classes `0..classes` as the prediction column: named like the label,
    /// of the label's own type.
    pub fn column(&self, classes: &[usize]) -> Column {
        let data = match &self.ty {
            ColumnType::Category { .. } => {
                ColumnData::Category(classes.iter().map(|&k| k as u32).collect())
            }
            ColumnType::Boolean => ColumnData::Boolean(classes.iter().map(|&k| k == 1).collect()),
            _ => ColumnData::Integer(classes.iter().map(|&k| self.offset + k as i64).collect()),
        };
        Column {
            name: self.name.clone(),
            ty: self.ty.clone(),
            data,
        }
    }

    /// Class probabilities (row-major, `classes` per row) as one column per
    /// class, named `p_` and the class's name, in `[0, 1]`.
    pub fn probability_columns(&self, p: &[f32]) -> Vec<Column> {
        let rows = p.len().checked_div(self.classes).unwrap_or(0);
        self.class_names()
            .into_iter()
            .enumerate()
            .map(|(k, class)| Column {
                name: format!("p_{class}"),
                ty: ColumnType::Real {
                    min: Some(0.0),
                    max: Some(1.0),
                },
                data: ColumnData::Real(
                    (0..rows)
                        .map(|i| f64::from(p[i * self.classes + k]).clamp(0.0, 1.0))
                        .collect(),
                ),
            })
            .collect()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Each row's class, `0..classes`.
    pub fn encode(&self, table: &Table) -> Result<Vec<usize>> {
        let column = table.column(&self.name)?;
        let out_of_range = |row: usize| {
            Error::new(format!(
                "label column '{}', row {}: value outside the declared classes",
                self.name,
                row + 1
            ))
        };
        match &column.data {
            ColumnData::Boolean(v) => Ok(v.iter().map(|&b| usize::from(b)).collect()),
            ColumnData::Category(codes) => codes
                .iter()
                .enumerate()
                .map(|(row, &c)| {
                    let c = c as usize;
                    if c < self.classes {
                        Ok(c)
                    } else {
                        Err(out_of_range(row))
                    }
                })
                .collect(),
            ColumnData::Integer(v) => v
                .iter()
                .enumerate()
                .map(|(row, &x)| {
                    let class = x.wrapping_sub(self.offset);
                    if (0..self.classes as i64).contains(&class) {
                        Ok(class as usize)
                    } else {
                        Err(out_of_range(row))
                    }
                })
                .collect(),
            ColumnData::Real(_) => Err(Error::new(format!(
                "label column '{}' is real; classification needs classes",
                self.name
            ))),
        }
    }
}

/// The schema `predict` works with: the table's columns and the label's
/// declared type, after checking that the `label` hyper-parameter names it.
pub fn prediction_schema(
    table: &Table,
    label: &ColumnSpec,
    label_param: &str,
) -> Result<Vec<ColumnSpec>> {
    if label.name != label_param {
        return Err(Error::new(format!(
            "the host asks to predict '{}' but the hyper-parameter 'label' is '{label_param}'",
            label.name
        )));
    }
    Ok(table.schema_with(label))
}

fn find<'a>(schema: &'a [ColumnSpec], name: &str) -> Result<&'a ColumnSpec> {
    schema.iter().find(|c| c.name == name).ok_or_else(|| {
        let known: Vec<&str> = schema.iter().map(|c| c.name.as_str()).collect();
        Error::new(format!(
            "label column '{name}' is not in the table (it has: {})",
            known.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Column;

    fn table() -> Table {
        Table::new(
            "t",
            2,
            vec![
                Column {
                    name: "age".into(),
                    ty: ColumnType::Integer {
                        min: Some(0),
                        max: Some(100),
                    },
                    data: ColumnData::Integer(vec![0, 75]),
                },
                Column {
                    name: "smoker".into(),
                    ty: ColumnType::Boolean,
                    data: ColumnData::Boolean(vec![true, false]),
                },
                Column {
                    name: "city".into(),
                    ty: ColumnType::Category {
                        levels: vec!["a".into(), "b".into(), "c".into()],
                    },
                    data: ColumnData::Category(vec![2, 0]),
                },
                Column {
                    name: "y".into(),
                    ty: ColumnType::Real {
                        min: Some(10.0),
                        max: Some(30.0),
                    },
                    data: ColumnData::Real(vec![10.0, 25.0]),
                },
            ],
        )
        .unwrap()
    }

    #[test]
    fn encoding_scales_ranges_and_one_hots_categories() {
        let t = table();
        let features = select_features(&t.schema(), &[], Some("y"));
        assert_eq!(features, ["age", "smoker", "city"]);
        let enc = FeatureEncoder::new(&t.schema(), &features).unwrap();
        assert_eq!(enc.width(), 5);
        assert_eq!(
            enc.encode(&t).unwrap(),
            vec![-1.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.0, 0.0]
        );
    }

    #[test]
    fn regression_labels_scale_and_come_back() {
        let t = table();
        let target = RegressionTarget::new(&t.schema(), "y").unwrap();
        assert_eq!(target.encode(&t).unwrap(), vec![-1.0, 0.5]);
        assert_eq!(target.scale().inverse(0.5), 25.0);
    }

    #[test]
    fn class_labels_from_booleans_categories_and_ranged_integers() {
        let t = table();
        let s = t.schema();
        assert_eq!(
            ClassTarget::new(&s, "smoker").unwrap().encode(&t).unwrap(),
            vec![1, 0]
        );
        let city = ClassTarget::new(&s, "city").unwrap();
        assert_eq!((city.classes(), city.encode(&t).unwrap()), (3, vec![2, 0]));
        let age = ClassTarget::new(&s, "age").unwrap();
        assert_eq!((age.classes(), age.encode(&t).unwrap()), (101, vec![0, 75]));
        assert!(ClassTarget::new(&s, "y").is_err());
    }

    #[test]
    fn an_unknown_feature_is_named() {
        let t = table();
        let err = FeatureEncoder::new(&t.schema(), &["bmi".to_string()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("feature column 'bmi' is not in the table")
        );
    }
}
