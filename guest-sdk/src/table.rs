//! Typed tables: the only data an algorithm ever sees.
//!
//! A table is a list of named columns, each with a declared type (integer or
//! real with an optional range, boolean, or a category from a declared list)
//! and one value per row. Hosts build tables from a wallet's records; the
//! algorithm reads them through the accessors here.

use crate::error::{Error, Result};

/// The declared type of a column: what a schema or a data requirement says.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(tag = "type", rename_all = "snake_case"))]
pub enum ColumnType {
    /// Whole numbers, optionally within `min..=max`.
    Integer {
        /// Smallest allowed value.
        #[cfg_attr(
            feature = "serde",
            serde(default, skip_serializing_if = "Option::is_none")
        )]
        min: Option<i64>,
        /// Largest allowed value.
        #[cfg_attr(
            feature = "serde",
            serde(default, skip_serializing_if = "Option::is_none")
        )]
        max: Option<i64>,
    },
    /// Finite real numbers, optionally within `min..=max`.
    Real {
        /// Smallest allowed value.
        #[cfg_attr(
            feature = "serde",
            serde(default, skip_serializing_if = "Option::is_none")
        )]
        min: Option<f64>,
        /// Largest allowed value.
        #[cfg_attr(
            feature = "serde",
            serde(default, skip_serializing_if = "Option::is_none")
        )]
        max: Option<f64>,
    },
    /// True or false.
    Boolean,
    /// One of a declared list of levels.
    Category {
        /// The declared levels, in the order that defines their codes.
        levels: Vec<String>,
    },
}

impl ColumnType {
    /// A short name for messages: `integer`, `real`, `boolean`, `category`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ColumnType::Integer { .. } => "integer",
            ColumnType::Real { .. } => "real",
            ColumnType::Boolean => "boolean",
            ColumnType::Category { .. } => "category",
        }
    }

    /// The declared range as reals, when both ends are declared and `min < max`.
    pub fn numeric_range(&self) -> Option<(f64, f64)> {
        match *self {
            ColumnType::Integer {
                min: Some(lo),
                max: Some(hi),
            } if lo < hi => Some((lo as f64, hi as f64)),
            ColumnType::Real {
                min: Some(lo),
                max: Some(hi),
            } if lo < hi => Some((lo, hi)),
            _ => None,
        }
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn range<T: std::fmt::Display>(
            f: &mut std::fmt::Formatter<'_>,
            min: &Option<T>,
            max: &Option<T>,
        ) -> std::fmt::Result {
            match (min, max) {
                (None, None) => Ok(()),
                (Some(lo), Some(hi)) => write!(f, " {lo}..={hi}"),
                (Some(lo), None) => write!(f, " >= {lo}"),
                (None, Some(hi)) => write!(f, " <= {hi}"),
            }
        }
        match self {
            ColumnType::Integer { min, max } => {
                f.write_str("integer")?;
                range(f, min, max)
            }
            ColumnType::Real { min, max } => {
                f.write_str("real")?;
                range(f, min, max)
            }
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Category { levels } => write!(f, "category [{}]", levels.join(", ")),
        }
    }
}

/// A column's name and declared type, without values.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ColumnSpec {
    /// The column's name.
    pub name: String,
    /// Its declared type.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub ty: ColumnType,
}

/// Checks a schema: some columns, unique non-empty names, ranges in order,
/// categories with unique levels.
pub fn check_schema(columns: &[ColumnSpec]) -> Result<(), String> {
    if columns.is_empty() {
        return Err("the schema declares no columns".into());
    }
    for (i, c) in columns.iter().enumerate() {
        if c.name.trim().is_empty() {
            return Err(format!("column {} has an empty name", i + 1));
        }
        if columns[..i].iter().any(|d| d.name == c.name) {
            return Err(format!("column '{}' is declared twice", c.name));
        }
        let bad_range = match &c.ty {
            ColumnType::Integer {
                min: Some(lo),
                max: Some(hi),
            } => lo > hi,
            ColumnType::Real { min, max } => {
                min.is_some_and(|v| !v.is_finite())
                    || max.is_some_and(|v| !v.is_finite())
                    || matches!((min, max), (Some(lo), Some(hi)) if lo > hi)
            }
            ColumnType::Category { levels } => {
                if levels.is_empty() {
                    return Err(format!("category column '{}' declares no levels", c.name));
                }
                let mut sorted = levels.clone();
                sorted.sort();
                sorted.dedup();
                if sorted.len() != levels.len() {
                    return Err(format!("category column '{}' repeats a level", c.name));
                }
                false
            }
            _ => false,
        };
        if bad_range {
            return Err(format!(
                "column '{}' declares an empty or invalid range",
                c.name
            ));
        }
    }
    Ok(())
}

/// The longest table name.
pub const MAX_TABLE_NAME: usize = 64;

/// Whether `name` is a valid table name: 1 to 64 ASCII letters, digits,
/// `_`, `.` or `-`, starting with a letter or digit (`health.daily`).
pub fn valid_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TABLE_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The values of one column, one per row.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ColumnData {
    /// Values of an integer column.
    Integer(Vec<i64>),
    /// Values of a real column.
    Real(Vec<f64>),
    /// Values of a boolean column.
    Boolean(Vec<bool>),
    /// Codes of a category column: indexes into the declared levels.
    Category(Vec<u32>),
}

impl ColumnData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Integer(v) => v.len(),
            ColumnData::Real(v) => v.len(),
            ColumnData::Boolean(v) => v.len(),
            ColumnData::Category(v) => v.len(),
        }
    }

    /// Whether the column has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empty values of the shape that `ty` declares.
    pub fn empty_for(ty: &ColumnType) -> ColumnData {
        match ty {
            ColumnType::Integer { .. } => ColumnData::Integer(Vec::new()),
            ColumnType::Real { .. } => ColumnData::Real(Vec::new()),
            ColumnType::Boolean => ColumnData::Boolean(Vec::new()),
            ColumnType::Category { .. } => ColumnData::Category(Vec::new()),
        }
    }
}

/// A named, typed column with its values.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Its declared type.
    pub ty: ColumnType,
    /// Its values.
    pub data: ColumnData,
}

impl Column {
    /// The column's name and type.
    pub fn spec(&self) -> ColumnSpec {
        ColumnSpec {
            name: self.name.clone(),
            ty: self.ty.clone(),
        }
    }

    /// The value in `row` as a real number: integers and reals as they are,
    /// booleans as 0 or 1, categories as their code.
    pub fn value_f64(&self, row: usize) -> Option<f64> {
        match &self.data {
            ColumnData::Integer(v) => v.get(row).map(|&x| x as f64),
            ColumnData::Real(v) => v.get(row).copied(),
            ColumnData::Boolean(v) => v.get(row).map(|&b| f64::from(u8::from(b))),
            ColumnData::Category(v) => v.get(row).map(|&c| f64::from(c)),
        }
    }

    /// All values as reals, for integer, real and boolean columns.
    pub fn numeric_values(&self) -> Result<Vec<f64>> {
        match &self.data {
            ColumnData::Integer(v) => Ok(v.iter().map(|&x| x as f64).collect()),
            ColumnData::Real(v) => Ok(v.clone()),
            ColumnData::Boolean(v) => Ok(v.iter().map(|&b| f64::from(u8::from(b))).collect()),
            ColumnData::Category(_) => Err(Error::new(format!(
                "column '{}' is a category, not a number",
                self.name
            ))),
        }
    }

    /// Checks that the values fit the declared type: same variant, codes
    /// within the levels, numbers finite and within the declared range.
    pub fn validate(&self) -> Result<()> {
        let bad = |row: usize, what: String| {
            Err(Error::new(format!(
                "column '{}', row {}: {what}",
                self.name,
                row + 1
            )))
        };
        match (&self.ty, &self.data) {
            (ColumnType::Integer { min, max }, ColumnData::Integer(values)) => {
                for (row, &x) in values.iter().enumerate() {
                    if min.is_some_and(|lo| x < lo) || max.is_some_and(|hi| x > hi) {
                        return bad(row, format!("{x} is outside {}", self.ty));
                    }
                }
                Ok(())
            }
            (ColumnType::Real { min, max }, ColumnData::Real(values)) => {
                for (row, &x) in values.iter().enumerate() {
                    if !x.is_finite() {
                        return bad(row, format!("{x} is not a finite number"));
                    }
                    if min.is_some_and(|lo| x < lo) || max.is_some_and(|hi| x > hi) {
                        return bad(row, format!("{x} is outside {}", self.ty));
                    }
                }
                Ok(())
            }
            (ColumnType::Boolean, ColumnData::Boolean(_)) => Ok(()),
            (ColumnType::Category { levels }, ColumnData::Category(codes)) => {
                for (row, &code) in codes.iter().enumerate() {
                    if code as usize >= levels.len() {
                        return bad(
                            row,
                            format!("code {code} but only {} levels are declared", levels.len()),
                        );
                    }
                }
                Ok(())
            }
            (ty, _) => Err(Error::new(format!(
                "column '{}' is declared {} but holds other values",
                self.name,
                ty.kind_name()
            ))),
        }
    }
}

/// A typed table.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Table {
    /// The table's name, `health.daily` say.
    pub name: String,
    /// Number of rows; every column has this many values.
    pub row_count: usize,
    /// The columns, in declared order.
    pub columns: Vec<Column>,
}

impl Table {
    /// A checked table: every column has `row_count` values that fit its type,
    /// and no two columns share a name.
    pub fn new(name: impl Into<String>, row_count: usize, columns: Vec<Column>) -> Result<Table> {
        let table = Table {
            name: name.into(),
            row_count,
            columns,
        };
        table.validate()?;
        Ok(table)
    }

    /// An empty table with the given schema.
    pub fn empty(name: impl Into<String>, schema: &[ColumnSpec]) -> Table {
        Table {
            name: name.into(),
            row_count: 0,
            columns: schema
                .iter()
                .map(|spec| Column {
                    name: spec.name.clone(),
                    ty: spec.ty.clone(),
                    data: ColumnData::empty_for(&spec.ty),
                })
                .collect(),
        }
    }

    /// Checks the invariants that [`Table::new`] promises.
    pub fn validate(&self) -> Result<()> {
        for (i, column) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|c| c.name == column.name) {
                return Err(Error::new(format!(
                    "table '{}' has two columns named '{}'",
                    self.name, column.name
                )));
            }
            if column.data.len() != self.row_count {
                return Err(Error::new(format!(
                    "table '{}': column '{}' has {} values but the table has {} rows",
                    self.name,
                    column.name,
                    column.data.len(),
                    self.row_count
                )));
            }
            column.validate()?;
        }
        Ok(())
    }

    /// The column called `name`, or an error that names it and the table.
    pub fn column(&self, name: &str) -> Result<&Column> {
        self.columns.iter().find(|c| c.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
            Error::new(format!(
                "table '{}' has no column '{name}' (it has: {})",
                self.name,
                known.join(", ")
            ))
        })
    }

    /// The names and types of the columns.
    pub fn schema(&self) -> Vec<ColumnSpec> {
        self.columns.iter().map(Column::spec).collect()
    }

    /// The schema with `label` added when the table does not hold it: what
    /// `predict` encodes features and unscales predictions by.
    pub fn schema_with(&self, label: &ColumnSpec) -> Vec<ColumnSpec> {
        let mut schema = self.schema();
        if !schema.iter().any(|c| c.name == label.name) {
            schema.push(label.clone());
        }
        schema
    }

    /// A table with only the named columns, in the order given.
    pub fn project(&self, names: &[String]) -> Result<Table> {
        let columns = names
            .iter()
            .map(|n| self.column(n).cloned())
            .collect::<Result<Vec<_>>>()?;
        Ok(Table {
            name: self.name.clone(),
            row_count: self.row_count,
            columns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(name: &str, values: Vec<f64>, min: Option<f64>, max: Option<f64>) -> Column {
        Column {
            name: name.into(),
            ty: ColumnType::Real { min, max },
            data: ColumnData::Real(values),
        }
    }

    #[test]
    fn a_value_outside_the_declared_range_is_named_by_row_and_column() {
        let err = Table::new(
            "t",
            3,
            vec![real("bmi", vec![20.0, 21.0, 99.0], Some(10.0), Some(60.0))],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column 'bmi', row 3: 99 is outside real 10..=60"
        );
    }

    #[test]
    fn columns_of_unequal_length_are_refused() {
        let err = Table::new("t", 2, vec![real("x", vec![1.0], None, None)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("has 1 values but the table has 2 rows")
        );
    }

    #[test]
    fn duplicate_names_and_bad_codes_are_refused() {
        let a = real("x", vec![1.0], None, None);
        assert!(Table::new("t", 1, vec![a.clone(), a]).is_err());
        let cat = Column {
            name: "c".into(),
            ty: ColumnType::Category {
                levels: vec!["a".into()],
            },
            data: ColumnData::Category(vec![1]),
        };
        assert!(
            Table::new("t", 1, vec![cat])
                .unwrap_err()
                .to_string()
                .contains("code 1")
        );
    }

    #[test]
    fn non_finite_reals_are_refused() {
        let err = Table::new("t", 1, vec![real("x", vec![f64::NAN], None, None)]).unwrap_err();
        assert!(err.to_string().contains("not a finite number"));
    }

    #[test]
    fn missing_columns_are_named_with_the_ones_that_exist() {
        let t = Table::new("health", 1, vec![real("steps", vec![1.0], None, None)]).unwrap();
        let err = t.column("bmi").unwrap_err();
        assert_eq!(
            err.to_string(),
            "table 'health' has no column 'bmi' (it has: steps)"
        );
    }
}
