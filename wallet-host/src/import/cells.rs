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

/// A cell borrowed from a CSV record or a parsed JSON value: what a cell is
/// typed from, without a copy of its text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CellRef<'a> {
    /// Text.
    Text(&'a str),
    /// A JSON number.
    Number(&'a serde_json::Number),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON null.
    Null,
}

impl<'a> From<&'a Cell> for CellRef<'a> {
    fn from(cell: &'a Cell) -> CellRef<'a> {
        match cell {
            Cell::Text(t) => CellRef::Text(t),
            Cell::Number(n) => CellRef::Number(n),
            Cell::Bool(b) => CellRef::Bool(*b),
            Cell::Null => CellRef::Null,
        }
    }
}

impl CellRef<'_> {
    pub(crate) fn shown(&self) -> String {
        match self {
            CellRef::Text(s) => format!("'{s}'"),
            CellRef::Number(n) => n.to_string(),
            CellRef::Bool(b) => b.to_string(),
            CellRef::Null => "null".into(),
        }
    }
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
pub(crate) fn is_missing<'a>(ty: &ColumnType, cell: impl Into<CellRef<'a>>) -> bool {
    match cell.into() {
        CellRef::Null => true,
        CellRef::Text(t) if t.trim().is_empty() => true,
        CellRef::Text(t) if is_missing_token(t) => match ty {
            ColumnType::Category { levels } => !levels.iter().any(|l| l == t.trim()),
            _ => true,
        },
        _ => false,
    }
}

/// Why a column's type was not inferred.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NotInferred {
    /// At least half of the column's values are numbers, the others are
    /// not: a typo or an unmarked missing value more likely than a category
    /// whose levels are numbers.
    MostlyNumbers {
        /// How many cells are not numbers.
        count: usize,
        /// The first few of them.
        first: Vec<OddCell>,
        /// Whether one of them is a number written with a decimal comma.
        decimal_comma: bool,
    },
    /// Anything else, said in words.
    Other(String),
}

/// A cell that is not a number in a column of numbers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OddCell {
    /// Its row, from 0.
    pub(crate) row: usize,
    /// Its line in the file, where known.
    pub(crate) line: Option<u64>,
    /// The cell as shown in messages.
    pub(crate) shown: String,
}

/// How many cells that are not numbers a [`NotInferred::MostlyNumbers`] names.
const ODD_CELLS_NAMED: usize = 5;

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
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

/// Parses `cell` as a value of `ty`, range and levels included; the error
/// says what is wrong with it.
fn parse<'a>(ty: &ColumnType, cell: impl Into<CellRef<'a>>) -> Result<Value, String> {
    let cell = cell.into();
    if let CellRef::Text(t) = cell
        && t.trim().is_empty()
    {
        return Err("empty value; every cell needs a value".into());
    }
    let value = match (ty, cell) {
        (ColumnType::Integer { .. }, CellRef::Text(t)) => t
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{} is not an integer", cell.shown()))?,
        (ColumnType::Integer { .. }, CellRef::Number(n)) => n
            .as_i64()
            .map(Value::Integer)
            .ok_or_else(|| format!("{n} is not an integer"))?,
        (ColumnType::Real { .. }, CellRef::Text(t)) => match t.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Value::Real(x),
            _ => return Err(format!("{} is not a finite real number", cell.shown())),
        },
        (ColumnType::Real { .. }, CellRef::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Value::Real)
            .ok_or_else(|| format!("{n} is not a finite real number"))?,
        (ColumnType::Boolean, CellRef::Bool(b)) => Value::Boolean(b),
        (ColumnType::Boolean, CellRef::Text(t)) => parse_bool(t)
            .map(Value::Boolean)
            .ok_or_else(|| format!("{} is not true or false", cell.shown()))?,
        (ColumnType::Category { levels }, CellRef::Text(_) | CellRef::Number(_)) => {
            let text: std::borrow::Cow<'_, str> = match cell {
                CellRef::Text(t) => t.trim().into(),
                other => other.shown().into(),
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

/// Infers the type of a column from all its cells (see [`Inference`]).
#[cfg(test)]
pub(crate) fn infer(cells: &[&Cell]) -> Result<ColumnType, NotInferred> {
    let mut inference = Inference::default();
    for (row, cell) in cells.iter().enumerate() {
        inference.add(row, None, cell);
    }
    inference.finish()
}

/// A column's type, inferred one cell at a time, in memory that does not
/// grow with the rows: integer if every value is one, else real, else
/// boolean, else a category of at most [`MAX_INFERRED_LEVELS`] levels.
/// Missing cells (null, empty, or one of [`MISSING_TOKENS`]) do not count;
/// what becomes of them is decided afterwards, by `--missing`.
#[derive(Debug, Default)]
pub(crate) struct Inference {
    present: usize,
    /// A value that is not an integer seen (then no cell is parsed as one).
    not_integer: bool,
    numbers: usize,
    /// A value that is not a boolean seen.
    not_boolean: bool,
    odd: usize,
    first_odd: Vec<OddCell>,
    decimal_comma: bool,
    /// Every text that is not empty ("NA" included), until there are too many.
    levels: std::collections::BTreeSet<String>,
    too_many_levels: bool,
    /// A JSON number or boolean seen (a category holds only texts).
    not_text: bool,
}

impl Inference {
    /// Counts `cell`, of row `row` (from 0) at `line` of the file.
    pub(crate) fn add(&mut self, row: usize, line: Option<u64>, cell: &Cell) {
        match cell {
            Cell::Null => {}
            Cell::Text(t) => self.add_text(row, line, t),
            Cell::Number(n) => {
                self.not_text = true;
                self.present += 1;
                self.not_integer |= !n.is_i64();
                self.not_boolean = true;
                if is_number(cell) {
                    self.numbers += 1;
                } else {
                    self.count_odd(row, line, cell.shown());
                }
            }
            Cell::Bool(_) => {
                self.not_text = true;
                self.present += 1;
                self.not_integer = true;
                self.count_odd(row, line, cell.shown());
            }
        }
    }

    /// Counts a text cell (every CSV cell), without copying it unless it is
    /// a new level or one of the first cells named in an error.
    pub(crate) fn add_text(&mut self, row: usize, line: Option<u64>, text: &str) {
        let t = text.trim();
        if t.is_empty() {
            return;
        }
        if !self.too_many_levels && !self.levels.contains(t) {
            self.levels.insert(t.to_string());
            if self.levels.len() > MAX_INFERRED_LEVELS {
                self.too_many_levels = true;
                self.levels.clear();
            }
        }
        if is_missing_token(t) {
            return;
        }
        self.present += 1;
        if !self.not_integer {
            self.not_integer = t.parse::<i64>().is_err();
        }
        if !self.not_boolean {
            self.not_boolean = parse_bool(t).is_none();
        }
        if t.parse::<f64>().is_ok_and(f64::is_finite) {
            self.numbers += 1;
        } else {
            if t.replace(',', ".").parse::<f64>().is_ok() {
                self.decimal_comma = true;
            }
            self.count_odd(row, line, format!("'{text}'"));
        }
    }

    /// Counts a present cell that is not a number.
    fn count_odd(&mut self, row: usize, line: Option<u64>, shown: String) {
        self.odd += 1;
        if self.first_odd.len() < ODD_CELLS_NAMED {
            self.first_odd.push(OddCell { row, line, shown });
        }
    }

    /// The column's type, or why it has none.
    pub(crate) fn finish(self) -> Result<ColumnType, NotInferred> {
        if self.present == 0 {
            return Err(NotInferred::Other(
                "has no values, only missing ones; declare its type in a schema file (--schema)"
                    .into(),
            ));
        }
        if !self.not_integer {
            return Ok(ColumnType::Integer {
                min: None,
                max: None,
            });
        }
        if self.numbers == self.present {
            return Ok(ColumnType::Real {
                min: None,
                max: None,
            });
        }
        if !self.not_boolean {
            return Ok(ColumnType::Boolean);
        }
        if 2 * self.numbers >= self.present {
            return Err(NotInferred::MostlyNumbers {
                count: self.odd,
                first: self.first_odd,
                decimal_comma: self.decimal_comma,
            });
        }
        if self.not_text {
            return Err(NotInferred::Other(
                "mixes numbers, booleans and text; declare its type in a schema file (--schema)"
                    .into(),
            ));
        }
        if self.too_many_levels {
            return Err(NotInferred::Other(format!(
                "has more than {MAX_INFERRED_LEVELS} distinct text values, which looks like free \
                 text rather than a category; declare its type in a schema file (--schema)"
            )));
        }
        Ok(ColumnType::Category {
            levels: self.levels.into_iter().collect(),
        })
    }
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
    pub(crate) fn push_row(&mut self, cells: &[CellRef<'_>]) -> Result<(), (usize, String)> {
        let values = self
            .schema
            .iter()
            .zip(cells)
            .enumerate()
            .map(|(i, (spec, cell))| parse(&spec.ty, *cell).map_err(|e| (i, e)))
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
            Err(NotInferred::MostlyNumbers {
                count: 1,
                first: vec![OddCell {
                    row: 1,
                    line: None,
                    shown: "'twelve'".into()
                }],
                decimal_comma: false
            })
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
