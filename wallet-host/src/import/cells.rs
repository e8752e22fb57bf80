//! One cell at a time: parsing a value against its declared column type, and
//! inferring a column's type from its values when no schema is given.

use c2ssi_guest_sdk::{Column, ColumnData, ColumnSpec, ColumnType, Table};

/// The most distinct values an inferred category may have; more looks like
/// free text, which must be declared.
pub(crate) const MAX_INFERRED_LEVELS: usize = 64;

/// A raw cell, as the source file has it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// Text (every CSV cell; JSON strings).
    Text(String),
    /// A JSON number.
    Number(serde_json::Number),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON null.
    Null,
}

/// Texts that mean "no value" in the files people bring (pandas' list, less
/// the odd ones, plus `?` from the UCI repository), compared without case.
/// They count as missing only where a value must be a number or a boolean, or
/// is not one of a category's declared levels: "none" may be a level.
pub(crate) const MISSING_TOKENS: [&str; 8] = ["na", "n/a", "#n/a", "nan", "null", "none", "?", "-"];

fn is_missing_token(text: &str) -> bool {
    let t = text.trim();
    MISSING_TOKENS.iter().any(|m| t.eq_ignore_ascii_case(m))
}

/// Whether `cell` has no value for a column of type `ty`: a JSON null, an
/// empty cell, or one of [`MISSING_TOKENS`] where that cannot be a value.
pub(crate) fn is_missing(ty: &ColumnType, cell: &Cell) -> bool {
    match cell {
        Cell::Null => true,
        Cell::Text(t) if t.trim().is_empty() => true,
        Cell::Text(t) if is_missing_token(t) => match ty {
            ColumnType::Category { levels } => !levels.iter().any(|l| l == t.trim()),
            _ => true,
        },
        _ => false,
    }
}

/// Why a column's type was not inferred.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NotInferred {
    /// At least half of the column's values are numbers, the others
    /// (their positions here) are not: a typo or an unmarked missing value
    /// more likely than a category whose levels are numbers.
    MostlyNumbers {
        /// Positions of the cells that are not numbers.
        odd: Vec<usize>,
    },
    /// Anything else, said in words.
    Other(String),
}

impl Cell {
    pub(crate) fn shown(&self) -> String {
        match self {
            Cell::Text(s) => format!("'{s}'"),
            Cell::Number(n) => n.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Null => "null".into(),
        }
    }
}

/// A typed value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Integer(i64),
    Real(f64),
    Boolean(bool),
    Category(u32),
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

/// Parses `cell` as a value of `ty`, range and levels included; the error
/// says what is wrong with it.
fn parse(ty: &ColumnType, cell: &Cell) -> Result<Value, String> {
    if let Cell::Text(t) = cell
        && t.trim().is_empty()
    {
        return Err("empty value; every cell needs a value".into());
    }
    let value = match (ty, cell) {
        (ColumnType::Integer { .. }, Cell::Text(t)) => t
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{} is not an integer", cell.shown()))?,
        (ColumnType::Integer { .. }, Cell::Number(n)) => n
            .as_i64()
            .map(Value::Integer)
            .ok_or_else(|| format!("{n} is not an integer"))?,
        (ColumnType::Real { .. }, Cell::Text(t)) => match t.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Value::Real(x),
            _ => return Err(format!("{} is not a finite real number", cell.shown())),
        },
        (ColumnType::Real { .. }, Cell::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Value::Real)
            .ok_or_else(|| format!("{n} is not a finite real number"))?,
        (ColumnType::Boolean, Cell::Bool(b)) => Value::Boolean(*b),
        (ColumnType::Boolean, Cell::Text(t)) => parse_bool(t)
            .map(Value::Boolean)
            .ok_or_else(|| format!("{} is not true or false", cell.shown()))?,
        (ColumnType::Category { levels }, Cell::Text(_) | Cell::Number(_)) => {
            let text = match cell {
                Cell::Text(t) => t.trim().to_string(),
                other => other.shown(),
            };
            match levels.iter().position(|l| *l == text) {
                Some(code) => Value::Category(code as u32),
                None => {
                    let shown: Vec<&str> = levels.iter().take(12).map(String::as_str).collect();
                    let more = if levels.len() > 12 { ", ..." } else { "" };
                    return Err(format!(
                        "'{text}' is not one of the declared levels ({}{more})",
                        shown.join(", ")
                    ));
                }
            }
        }
        (ty, cell) => {
            return Err(format!("{} is not {}", cell.shown(), article(ty)));
        }
    };
    check_range(ty, value)?;
    Ok(value)
}

fn article(ty: &ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer { .. } => "an integer",
        ColumnType::Real { .. } => "a real number",
        ColumnType::Boolean => "true or false",
        ColumnType::Category { .. } => "a category level",
    }
}

fn check_range(ty: &ColumnType, value: Value) -> Result<(), String> {
    let outside = match (ty, value) {
        (ColumnType::Integer { min, max }, Value::Integer(x)) => {
            min.is_some_and(|lo| x < lo) || max.is_some_and(|hi| x > hi)
        }
        (ColumnType::Real { min, max }, Value::Real(x)) => {
            min.is_some_and(|lo| x < lo) || max.is_some_and(|hi| x > hi)
        }
        _ => false,
    };
    if outside {
        let shown = match value {
            Value::Integer(x) => x.to_string(),
            Value::Real(x) => x.to_string(),
            _ => String::new(),
        };
        return Err(format!("{shown} is outside the declared range ({ty})"));
    }
    Ok(())
}

fn is_number(c: &Cell) -> bool {
    match c {
        Cell::Number(n) => n.as_f64().is_some_and(f64::is_finite),
        Cell::Text(t) => t.trim().parse::<f64>().is_ok_and(f64::is_finite),
        _ => false,
    }
}

/// Infers the type of a column from all its cells. Missing cells (null,
/// empty, or one of [`MISSING_TOKENS`]) do not count; what becomes of them
/// is decided afterwards, by `--missing`.
pub(crate) fn infer(cells: &[&Cell]) -> Result<ColumnType, NotInferred> {
    let present: Vec<(usize, &Cell)> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| match c {
            Cell::Null => false,
            Cell::Text(t) => !t.trim().is_empty() && !is_missing_token(t),
            _ => true,
        })
        .map(|(i, c)| (i, *c))
        .collect();
    let all = |f: &dyn Fn(&Cell) -> bool| present.iter().all(|(_, c)| f(c));
    if present.is_empty() {
        return Err(NotInferred::Other(
            "has no values, only missing ones; declare its type in a schema file (--schema)".into(),
        ));
    }
    if all(&|c| match c {
        Cell::Number(n) => n.is_i64(),
        Cell::Text(t) => t.trim().parse::<i64>().is_ok(),
        _ => false,
    }) {
        return Ok(ColumnType::Integer {
            min: None,
            max: None,
        });
    }
    if all(&is_number) {
        return Ok(ColumnType::Real {
            min: None,
            max: None,
        });
    }
    if all(&|c| match c {
        Cell::Bool(_) => true,
        Cell::Text(t) => parse_bool(t).is_some(),
        _ => false,
    }) {
        return Ok(ColumnType::Boolean);
    }
    let numbers = present.iter().filter(|(_, c)| is_number(c)).count();
    if 2 * numbers >= present.len() {
        return Err(NotInferred::MostlyNumbers {
            odd: present
                .iter()
                .filter(|(_, c)| !is_number(c))
                .map(|(i, _)| *i)
                .collect(),
        });
    }
    // A category: every text that is not empty is a level, "NA" included
    // (it is shown with the inferred schema).
    let texts: Option<Vec<String>> = cells
        .iter()
        .filter_map(|c| match c {
            Cell::Null => None,
            Cell::Text(t) if t.trim().is_empty() => None,
            Cell::Text(t) => Some(Some(t.trim().to_string())),
            _ => Some(None),
        })
        .collect();
    let Some(mut levels) = texts else {
        return Err(NotInferred::Other(
            "mixes numbers, booleans and text; declare its type in a schema file (--schema)".into(),
        ));
    };
    levels.sort();
    levels.dedup();
    if levels.len() > MAX_INFERRED_LEVELS {
        return Err(NotInferred::Other(format!(
            "has {} distinct text values, which looks like free text rather than a \
             category; declare its type in a schema file (--schema)",
            levels.len()
        )));
    }
    Ok(ColumnType::Category { levels })
}

/// Collects typed values column by column.
#[derive(Debug)]
pub(crate) struct TableBuilder {
    name: String,
    schema: Vec<ColumnSpec>,
    data: Vec<ColumnData>,
    rows: usize,
}

impl TableBuilder {
    pub(crate) fn new(name: &str, schema: Vec<ColumnSpec>) -> TableBuilder {
        let data = schema
            .iter()
            .map(|c| ColumnData::empty_for(&c.ty))
            .collect();
        TableBuilder {
            name: name.to_string(),
            schema,
            data,
            rows: 0,
        }
    }

    /// Adds one row whose cells are in schema order; on error, the index of
    /// the column at fault and why. A failed row adds nothing.
    pub(crate) fn push_row(&mut self, cells: &[&Cell]) -> Result<(), (usize, String)> {
        let values = self
            .schema
            .iter()
            .zip(cells)
            .enumerate()
            .map(|(i, (spec, cell))| parse(&spec.ty, cell).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        for (data, value) in self.data.iter_mut().zip(values) {
            match (data, value) {
                (ColumnData::Integer(v), Value::Integer(x)) => v.push(x),
                (ColumnData::Real(v), Value::Real(x)) => v.push(x),
                (ColumnData::Boolean(v), Value::Boolean(x)) => v.push(x),
                (ColumnData::Category(v), Value::Category(x)) => v.push(x),
                // `parse` returns the variant of the declared type.
                _ => unreachable!("parsed value does not match its column"),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows pushed so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn finish(self) -> Table {
        Table {
            name: self.name,
            row_count: self.rows,
            columns: self
                .schema
                .into_iter()
                .zip(self.data)
                .map(|(spec, data)| Column {
                    name: spec.name,
                    ty: spec.ty,
                    data,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    #[test]
    fn cells_parse_by_type_with_ranges_and_levels() {
        let int = ColumnType::Integer {
            min: Some(0),
            max: Some(10),
        };
        assert_eq!(parse(&int, &t(" 7 ")), Ok(Value::Integer(7)));
        assert_eq!(
            parse(&int, &t("11")),
            Err("11 is outside the declared range (integer 0..=10)".into())
        );
        assert_eq!(
            parse(&int, &t("7.5")),
            Err("'7.5' is not an integer".into())
        );
        assert_eq!(
            parse(&int, &t("")),
            Err("empty value; every cell needs a value".into())
        );
        let cat = ColumnType::Category {
            levels: vec!["a".into(), "b".into()],
        };
        assert_eq!(parse(&cat, &t("b")), Ok(Value::Category(1)));
        assert!(
            parse(&cat, &t("c"))
                .unwrap_err()
                .contains("not one of the declared levels (a, b)")
        );
        assert_eq!(
            parse(&ColumnType::Boolean, &t("Yes")),
            Ok(Value::Boolean(true))
        );
        let real = ColumnType::Real {
            min: None,
            max: None,
        };
        assert!(parse(&real, &t("inf")).is_err());
        assert_eq!(
            parse(&real, &Cell::Bool(true)),
            Err("true is not a real number".into())
        );
    }

    #[test]
    fn inference_prefers_integer_then_real_then_boolean_then_category() {
        let (one, half, yes, word) = (t("1"), t("0.5"), t("true"), t("cat"));
        assert!(matches!(
            infer(&[&one, &one]),
            Ok(ColumnType::Integer { .. })
        ));
        assert!(matches!(infer(&[&one, &half]), Ok(ColumnType::Real { .. })));
        assert_eq!(infer(&[&yes]), Ok(ColumnType::Boolean));
        assert_eq!(
            infer(&[&word, &yes]),
            Ok(ColumnType::Category {
                levels: vec!["cat".into(), "true".into()]
            })
        );
        let many: Vec<Cell> = (0..65).map(|i| t(&format!("w{i}"))).collect();
        let refs: Vec<&Cell> = many.iter().collect();
        assert!(matches!(infer(&refs), Err(NotInferred::Other(why)) if why.contains("free text")));
    }

    #[test]
    fn missing_values_never_make_numbers_a_category() {
        let (na, empty, one, half, word) = (t("n/a"), t(""), t("1"), t("0.5"), t("twelve"));
        // Missing cells do not count: the column is numeric, and they are missing.
        assert!(matches!(
            infer(&[&one, &na, &half, &empty, &Cell::Null]),
            Ok(ColumnType::Real { .. })
        ));
        let real = ColumnType::Real {
            min: None,
            max: None,
        };
        for cell in [&na, &empty, &Cell::Null, &t(" NA "), &t("?")] {
            assert!(is_missing(&real, cell), "{cell:?}");
        }
        assert!(!is_missing(&real, &one));
        // A number column with a word in it is refused with the word's place.
        assert_eq!(
            infer(&[&one, &word, &half, &na]),
            Err(NotInferred::MostlyNumbers { odd: vec![1] })
        );
        // Mostly words: a category, whose levels may include "none".
        let none = t("none");
        let cat = infer(&[&word, &t("ten"), &none, &one]).unwrap();
        assert_eq!(
            cat,
            ColumnType::Category {
                levels: ["1", "none", "ten", "twelve"].map(String::from).to_vec()
            }
        );
        assert!(!is_missing(&cat, &none));
        assert!(is_missing(&cat, &na));
        assert!(matches!(infer(&[&na, &empty]), Err(NotInferred::Other(_))));
    }
}
