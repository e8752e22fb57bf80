//! Bringing a person's own data into the wallet: CSV and JSON files, and
//! single rows typed at the command line (the seed's "data creation tool").
//!
//! Types come from a schema file or are inferred (and then shown). Nothing is
//! guessed silently: a CSV file's delimiter is detected among comma,
//! semicolon, tab and bar and reported; a missing value is refused with its
//! row and column unless the rows that have one are dropped on request; a
//! column of numbers with a few words in it is refused with those cells
//! named, never turned into a category. Every cell is checked against its
//! declared type, range and category list; the first that does not fit is
//! refused with its file, row and column named, and nothing is imported.

mod cells;
#[cfg(test)]
mod fuzz;

use std::io::Read;
use std::path::{Path, PathBuf};

use c2ssi_guest_sdk::{ColumnSpec, Table};
use serde::Deserialize;

use self::cells::{Cell, CellRef, Inference, NotInferred, TableBuilder};

/// Source formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects, one per row.
    Json,
}

impl Format {
    /// The format a file name suggests.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// What to do with a row that has a missing value (an empty cell, a JSON
/// null, or `NA`, `n/a`, `?` and the like where a number is expected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Missing {
    /// Refuse the file, naming the first missing value's row and column.
    #[default]
    Refuse,
    /// Leave out every row that has one, and say which.
    Drop,
}

/// How to read a file.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The format [default: from the file's extension].
    pub format: Option<Format>,
    /// A CSV file's delimiter [default: detected].
    pub delimiter: Option<u8>,
    /// What to do with missing values.
    pub missing: Missing,
    /// Columns of the schema that the data may leave out (the label, for
    /// data to predict); the table then has none of them.
    pub optional: Vec<String>,
}

/// The delimiters detected in a CSV file, in order of preference.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// A CSV file's delimiter, as used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiter {
    /// The byte.
    pub byte: u8,
    /// Whether it was detected rather than given.
    pub detected: bool,
}

impl std::fmt::Display for Delimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.byte {
            b'\t' => f.write_str("tab")?,
            b => write!(f, "'{}'", char::from(b))?,
        }
        if self.detected {
            f.write_str(" (detected; set it with --delimiter)")?;
        }
        Ok(())
    }
}

/// Parses a `--delimiter` value: one ASCII character, or `tab`.
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        t if t.len() == 1 && t.is_ascii() && !t.as_bytes()[0].is_ascii_alphanumeric() => {
            Ok(t.as_bytes()[0])
        }
        _ => Err(format!(
            "'{text}' is not a delimiter: give one character such as , ; | or the word tab"
        )),
    }
}

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed CSV or JSON, or has the wrong shape.
    #[error("{file}: {reason}")]
    Malformed {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A cell does not fit its column's declared type.
    #[error("{file}: row {row}{}, column '{column}': {reason}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Cell {
        /// The file (or `command line`).
        file: PathBuf,
        /// The data row, from 1.
        row: usize,
        /// The line in the file, where known.
        line: Option<u64>,
        /// The column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The columns do not match the schema, or a column's type cannot be inferred.
    #[error("{file}: {reason}")]
    Schema {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A table read from a file.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The table.
    pub table: Table,
    /// Whether its types were inferred (no schema was given).
    pub inferred: bool,
    /// A CSV file's delimiter.
    pub delimiter: Option<Delimiter>,
    /// The rows left out for a missing value (`--missing drop`), from 1.
    pub dropped: Vec<usize>,
}

/// A schema file: `{"columns": [...]}` or just the array, each column like
/// `{"name": "age", "type": "integer", "min": 0, "max": 120}`,
/// `{"name": "bmi", "type": "real"}`, `{"name": "smoker", "type": "boolean"}` or
/// `{"name": "sex", "type": "category", "levels": ["female", "male"]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SchemaFile {
    Wrapped { columns: Vec<ColumnSpec> },
    Bare(Vec<ColumnSpec>),
}

/// Reads and checks a schema file.
pub fn read_schema(path: &Path) -> Result<Vec<ColumnSpec>, ImportError> {
    let text = read_text(path, |reason| ImportError::Schema {
        file: path.to_path_buf(),
        reason,
    })?;
    let parsed: SchemaFile = serde_json::from_str(&text).map_err(|e| ImportError::Schema {
        file: path.to_path_buf(),
        reason: format!(
            "not a schema ({e}); expected {{\"columns\": [{{\"name\": ..., \"type\": \
             \"integer\"|\"real\"|\"boolean\"|\"category\", ...}}]}}"
        ),
    })?;
    let columns = match parsed {
        SchemaFile::Wrapped { columns } | SchemaFile::Bare(columns) => columns,
    };
    check_schema(&columns).map_err(|reason| ImportError::Schema {
        file: path.to_path_buf(),
        reason,
    })?;
    Ok(columns)
}

pub use c2ssi_guest_sdk::check_schema;

/// Reads a text file: an I/O error if it cannot be read, `not_text` if its
/// bytes are not UTF-8 (a problem of the data, like any other).
fn read_text(
    path: &Path,
    not_text: impl FnOnce(String) -> ImportError,
) -> Result<String, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        not_text(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads `path` into a table called `table_name`, typed by `schema` or by
/// inference.
pub fn import_file(
    path: &Path,
    options: &ReadOptions,
    table_name: &str,
    schema: Option<&[ColumnSpec]>,
) -> Result<Imported, ImportError> {
    let (headers, rows, delimiter) = match format_of(path, options)? {
        Format::Csv => {
            let (headers, rows, delimiter) = read_csv(path, options.delimiter)?;
            (headers, rows, Some(delimiter))
        }
        Format::Json => {
            let (headers, rows) = read_json(path)?;
            (headers, rows, None)
        }
    };
    let present: Option<Vec<ColumnSpec>> = schema.map(|schema| {
        schema
            .iter()
            .filter(|c| headers.contains(&c.name) || !options.optional.contains(&c.name))
            .cloned()
            .collect()
    });
    let mut imported = build(
        path,
        table_name,
        headers,
        rows,
        present.as_deref(),
        Some(options.missing),
    )?;
    imported.delimiter = delimiter;
    Ok(imported)
}

/// A table of one row from `column=value` assignments against `schema`.
pub fn row_from_assignments(
    table_name: &str,
    schema: &[ColumnSpec],
    assignments: &[String],
) -> Result<Table, ImportError> {
    let file = PathBuf::from("command line");
    let mut given: Vec<(String, String)> = Vec::new();
    for a in assignments {
        let Some((column, value)) = a.split_once('=') else {
            return Err(ImportError::Malformed {
                file,
                reason: format!("'{a}' is not column=value"),
            });
        };
        let column = column.trim().to_string();
        if given.iter().any(|(c, _)| *c == column) {
            return Err(ImportError::Malformed {
                file,
                reason: format!("column '{column}' is given twice"),
            });
        }
        given.push((column, value.to_string()));
    }
    let headers: Vec<String> = given.iter().map(|(c, _)| c.clone()).collect();
    let row = Row {
        line: None,
        cells: given.into_iter().map(|(_, v)| Cell::Text(v)).collect(),
    };
    build(&file, table_name, headers, vec![row], Some(schema), None).map(|i| i.table)
}

struct Row {
    line: Option<u64>,
    cells: Vec<Cell>,
}

/// The delimiter that splits the start of `bytes` into rows of one width
/// (more than one column), the widest if several do; comma if none does.
/// How much of a CSV file the delimiter is detected from.
const SNIFF_BYTES: u64 = 64 * 1024;

/// The delimiter that splits the start of a file (`head`, its first
/// [`SNIFF_BYTES`]; `whole` when that is the whole file) into rows of one
/// width (more than one column), the widest if several do; comma if none does.
fn sniff_delimiter(head: &[u8], whole: bool) -> u8 {
    // Up to the last full line.
    let mut sample = head;
    if !whole && let Some(end) = sample.iter().rposition(|&b| b == b'\n') {
        sample = &sample[..end];
    }
    let width = |delimiter: u8| -> Option<usize> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(sample);
        let mut widths = reader.records().take(50).map(|r| r.map(|r| r.len()));
        let first = widths.next()?.ok()?;
        (first > 1 && widths.all(|w| w.is_ok_and(|w| w == first))).then_some(first)
    };
    DELIMITERS
        .iter()
        .filter_map(|&d| width(d).map(|w| (d, w)))
        // The widest; the first in DELIMITERS among equals.
        .fold(None, |best: Option<(u8, usize)>, (d, w)| match best {
            Some((_, bw)) if bw >= w => best,
            _ => Some((d, w)),
        })
        .map_or(b',', |(d, _)| d)
}

/// The rows of a CSV file, read as they are asked for.
type CsvRecords =
    csv::StringRecordsIntoIter<std::io::Chain<std::io::Cursor<Vec<u8>>, std::fs::File>>;

/// Opens a CSV file: its header, its delimiter (detected unless given) and
/// its rows, not read yet.
fn open_csv(
    path: &Path,
    delimiter: Option<u8>,
) -> Result<(Vec<String>, CsvRows, Delimiter), ImportError> {
    let malformed = |reason: String| ImportError::Malformed {
        file: path.to_path_buf(),
        reason,
    };
    let io = |source: std::io::Error| ImportError::Io {
        file: path.to_path_buf(),
        source,
    };
    // The file is streamed: only its head is held twice, to detect the
    // delimiter and to drop a byte-order mark (spreadsheets write one; it is
    // not part of the first name).
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut head = Vec::new();
    (&mut file)
        .take(SNIFF_BYTES)
        .read_to_end(&mut head)
        .map_err(io)?;
    let whole = (head.len() as u64) < SNIFF_BYTES;
    if head.starts_with(b"\xEF\xBB\xBF") {
        head.drain(..3);
    }
    let delimiter = match delimiter {
        Some(byte) => Delimiter {
            byte,
            detected: false,
        },
        None => Delimiter {
            byte: sniff_delimiter(&head, whole),
            detected: true,
        },
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .delimiter(delimiter.byte)
        .from_reader(std::io::Cursor::new(head).chain(file));
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| malformed(format!("the header row is not valid CSV: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    // One column whose name holds another delimiter: the wrong delimiter.
    if let [only] = headers.as_slice()
        && let Some(&other) = DELIMITERS
            .iter()
            .find(|&&d| d != delimiter.byte && only.as_bytes().contains(&d))
    {
        let other = Delimiter {
            byte: other,
            detected: false,
        };
        return Err(malformed(format!(
            "the header is one column named '{only}' when split at {delimiter}; \
             is the delimiter {other}? (--delimiter)"
        )));
    }
    let rows = CsvRows {
        file: path.to_path_buf(),
        delimiter,
        records: reader.into_records(),
    };
    Ok((headers, rows, delimiter))
}

/// A CSV file's rows, one at a time.
struct CsvRows {
    file: PathBuf,
    delimiter: Delimiter,
    records: CsvRecords,
}

impl CsvRows {
    /// The next row as the CSV reader gives it, its cells not copied.
    fn next_record(&mut self) -> Option<Result<csv::StringRecord, ImportError>> {
        let record = self.records.next()?;
        Some(record.map_err(|e| {
            let at = e
                .position()
                .map(|p| format!("line {}: ", p.line()))
                .unwrap_or_default();
            let reason = match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!(
                    "{at}this row has {len} fields but the header has {expected_len} \
                             (delimiter {})",
                    self.delimiter
                ),
                _ => format!("{at}{e}"),
            };
            ImportError::Malformed {
                file: self.file.clone(),
                reason,
            }
        }))
    }
}

impl Iterator for CsvRows {
    type Item = Result<Row, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_record()?.map(|record| Row {
            line: record.position().map(|p| p.line()),
            cells: record.iter().map(|s| Cell::Text(s.to_string())).collect(),
        }))
    }
}

fn read_csv(
    path: &Path,
    delimiter: Option<u8>,
) -> Result<(Vec<String>, Vec<Row>, Delimiter), ImportError> {
    let (headers, rows, delimiter) = open_csv(path, delimiter)?;
    let rows = rows.collect::<Result<Vec<Row>, ImportError>>()?;
    Ok((headers, rows, delimiter))
}

/// A JSON object with its keys in file order.
struct OrderedObject(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object with one field per column")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedObject, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    fields.push(entry);
                }
                Ok(OrderedObject(fields))
            }
        }
        d.deserialize_map(Visitor)
    }
}

fn read_json(path: &Path) -> Result<(Vec<String>, Vec<Row>), ImportError> {
    let text = read_text(path, |reason| ImportError::Malformed {
        file: path.to_path_buf(),
        reason,
    })?;
    let mut rows = Vec::new();
    let headers = json_rows(
        path,
        serde_json::Deserializer::from_str(&text),
        |_, _, row| {
            rows.push(row);
            Ok(())
        },
    )?;
    Ok((headers, rows))
}

/// Opens a JSON file to read its rows as they come.
fn open_json(
    path: &Path,
) -> Result<
    serde_json::Deserializer<serde_json::de::IoRead<std::io::BufReader<std::fs::File>>>,
    ImportError,
> {
    let file = std::fs::File::open(path).map_err(|source| ImportError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    Ok(serde_json::Deserializer::from_reader(
        std::io::BufReader::new(file),
    ))
}

/// Reads a JSON array of objects one object at a time, and calls `each`
/// with the header (the first object's keys, in its order), the row's index
/// (from 0) and the row, its cells in the header's order. Returns the
/// header. Only one object is held at a time.
fn json_rows<'de, R: serde_json::de::Read<'de>>(
    path: &Path,
    mut de: serde_json::Deserializer<R>,
    mut each: impl FnMut(&[String], usize, Row) -> Result<(), ImportError>,
) -> Result<Vec<String>, ImportError> {
    struct Objects<'a, F> {
        path: &'a Path,
        headers: Vec<String>,
        each: &'a mut F,
        stopped: Option<ImportError>,
    }
    impl<'de, F: FnMut(&[String], usize, Row) -> Result<(), ImportError>> serde::de::Visitor<'de>
        for &mut Objects<'_, F>
    {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of objects")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while let Some(object) = seq.next_element::<OrderedObject>()? {
                if i == 0 {
                    self.headers = object.0.iter().map(|(k, _)| k.clone()).collect();
                }
                let result = object_row(self.path, &self.headers, i, object)
                    .and_then(|row| (self.each)(&self.headers, i, row));
                if let Err(e) = result {
                    self.stopped = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
                i += 1;
            }
            Ok(())
        }
    }
    let mut objects = Objects {
        path,
        headers: Vec::new(),
        each: &mut each,
        stopped: None,
    };
    let malformed = |e: serde_json::Error| ImportError::Malformed {
        file: path.to_path_buf(),
        reason: format!("expected a JSON array of objects, one per row: {e}"),
    };
    let read = serde::Deserializer::deserialize_seq(&mut de, &mut objects);
    if let Some(stopped) = objects.stopped.take() {
        return Err(stopped);
    }
    read.map_err(malformed)?;
    de.end().map_err(malformed)?;
    Ok(objects.headers)
}

/// One JSON object as a row of cells in the header's order.
fn object_row(
    path: &Path,
    headers: &[String],
    i: usize,
    object: OrderedObject,
) -> Result<Row, ImportError> {
    let row = i + 1;
    for (key, _) in &object.0 {
        if !headers.contains(key) {
            return Err(ImportError::Schema {
                file: path.to_path_buf(),
                reason: format!("row {row} has field '{key}', which the first row does not"),
            });
        }
    }
    let mut fields = object.0;
    let mut cells = Vec::with_capacity(headers.len());
    for column in headers {
        let at = fields
            .iter()
            .position(|(k, _)| k == column)
            .ok_or_else(|| ImportError::Cell {
                file: path.to_path_buf(),
                row,
                line: None,
                column: column.clone(),
                reason: "missing; every row needs every field".into(),
            })?;
        let (_, value) = fields.swap_remove(at);
        cells.push(match value {
            serde_json::Value::String(s) => Cell::Text(s),
            serde_json::Value::Number(n) => Cell::Number(n),
            serde_json::Value::Bool(b) => Cell::Bool(b),
            serde_json::Value::Null => Cell::Null,
            other => {
                return Err(ImportError::Cell {
                    file: path.to_path_buf(),
                    row,
                    line: None,
                    column: column.clone(),
                    reason: format!("{other} is not a number, boolean or string"),
                });
            }
        });
    }
    Ok(Row { line: None, cells })
}

fn build(
    file: &Path,
    table_name: &str,
    headers: Vec<String>,
    rows: Vec<Row>,
    schema: Option<&[ColumnSpec]>,
    // What to do with a missing value; `None` where no choice is offered (one
    // row typed at the command line): refused.
    missing: Option<Missing>,
) -> Result<Imported, ImportError> {
    let schema_error = |reason: String| ImportError::Schema {
        file: file.to_path_buf(),
        reason,
    };
    check_names(file, &headers)?;
    let (schema, inferred) = match schema {
        Some(schema) => {
            check_headers(file, &headers, schema)?;
            (schema.to_vec(), false)
        }
        None => {
            if headers.is_empty() {
                return Err(schema_error("the data has no columns".into()));
            }
            let mut inferences: Vec<Inference> =
                headers.iter().map(|_| Inference::default()).collect();
            for (r, row) in rows.iter().enumerate() {
                for (inference, cell) in inferences.iter_mut().zip(&row.cells) {
                    inference.add(r, row.line, cell);
                }
            }
            let mut specs = Vec::with_capacity(headers.len());
            for (name, inference) in headers.iter().zip(inferences) {
                let ty = inference
                    .finish()
                    .map_err(|why| not_inferred(file, name, why))?;
                specs.push(ColumnSpec {
                    name: name.clone(),
                    ty,
                });
            }
            (specs, true)
        }
    };
    let mut typer = RowTyper::new(file, table_name, &headers, schema, missing);
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<CellRef<'_>> = row.cells.iter().map(CellRef::from).collect();
        typer.push(i, row.line, &cells)?;
    }
    let (table, dropped) = typer.finish();
    Ok(Imported {
        table,
        inferred,
        delimiter: None,
        dropped,
    })
}

/// The error for a column whose type was not inferred.
fn not_inferred(file: &Path, name: &str, why: NotInferred) -> ImportError {
    let reason = match why {
        NotInferred::Other(reason) => format!("column '{name}' {reason}"),
        NotInferred::MostlyNumbers {
            count,
            first,
            decimal_comma,
        } => {
            let named: Vec<String> = first
                .iter()
                .map(|odd| {
                    format!(
                        "row {}{} {}",
                        odd.row + 1,
                        odd.line.map(|l| format!(" (line {l})")).unwrap_or_default(),
                        odd.shown
                    )
                })
                .collect();
            let more = match count.saturating_sub(named.len()) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            format!(
                "column '{name}' holds numbers except in {count} cell{}: {}{more}{}; \
                 correct them, or empty them and add --missing drop, or declare \
                 the column's type in a schema file (--schema)",
                if count == 1 { "" } else { "s" },
                named.join(", "),
                if decimal_comma {
                    " (a decimal comma is not read as a number: write 22.5, not 22,5)"
                } else {
                    ""
                }
            )
        }
    };
    ImportError::Schema {
        file: file.to_path_buf(),
        reason,
    }
}

/// Infers the types of a CSV file's columns in one pass that holds no
/// rows, with the same rules and errors as [`import_file`]; returns them,
/// the delimiter and the number of rows. With the types, [`stream_csv`]
/// then reads the file again into the wallet.
pub fn infer_csv(
    path: &Path,
    options: &ReadOptions,
) -> Result<(Vec<ColumnSpec>, Delimiter, usize), ImportError> {
    let (headers, rows, delimiter) = open_csv(path, options.delimiter)?;
    check_names(path, &headers)?;
    if headers.is_empty() {
        return Err(ImportError::Schema {
            file: path.to_path_buf(),
            reason: "the data has no columns".into(),
        });
    }
    let mut inferences: Vec<Inference> = headers.iter().map(|_| Inference::default()).collect();
    let mut count = 0;
    let mut rows = rows;
    while let Some(record) = rows.next_record() {
        let record = record?;
        let line = record.position().map(|p| p.line());
        for (inference, text) in inferences.iter_mut().zip(record.iter()) {
            inference.add_text(count, line, text);
        }
        count += 1;
    }
    Ok((
        inferred_schema(path, &headers, inferences)?,
        delimiter,
        count,
    ))
}

/// The inferred type of each column, or the first column that has none.
fn inferred_schema(
    path: &Path,
    headers: &[String],
    inferences: Vec<Inference>,
) -> Result<Vec<ColumnSpec>, ImportError> {
    headers
        .iter()
        .zip(inferences)
        .map(|(name, inference)| {
            Ok(ColumnSpec {
                name: name.clone(),
                ty: inference
                    .finish()
                    .map_err(|why| not_inferred(path, name, why))?,
            })
        })
        .collect()
}

/// Checks a header's names: none empty, none twice.
fn check_names(file: &Path, headers: &[String]) -> Result<(), ImportError> {
    let schema_error = |reason: String| ImportError::Schema {
        file: file.to_path_buf(),
        reason,
    };
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() {
            return Err(schema_error(format!("column {} has no name", i + 1)));
        }
        if headers[..i].contains(h) {
            return Err(schema_error(format!("column '{h}' appears twice")));
        }
    }
    Ok(())
}

/// Checks a header against a declared schema: every declared column there,
/// and no other.
fn check_headers(
    file: &Path,
    headers: &[String],
    schema: &[ColumnSpec],
) -> Result<(), ImportError> {
    let schema_error = |reason: String| ImportError::Schema {
        file: file.to_path_buf(),
        reason,
    };
    check_names(file, headers)?;
    if let Some(missing) = schema.iter().find(|c| !headers.contains(&c.name)) {
        return Err(schema_error(format!(
            "column '{}' ({}) is declared in the schema but missing from the data",
            missing.name, missing.ty
        )));
    }
    if let Some(extra) = headers
        .iter()
        .find(|h| !schema.iter().any(|c| &c.name == *h))
    {
        return Err(schema_error(format!(
            "column '{extra}' is not declared in the schema"
        )));
    }
    Ok(())
}

/// Turns rows of cells into typed rows of a table, one at a time: missing
/// values refused or the row dropped, every cell checked against its type.
struct RowTyper {
    file: PathBuf,
    name: String,
    schema: Vec<ColumnSpec>,
    /// Each schema column's position in a row.
    order: Vec<usize>,
    builder: TableBuilder,
    missing: Option<Missing>,
    dropped: Vec<usize>,
}

impl RowTyper {
    fn new(
        file: &Path,
        name: &str,
        headers: &[String],
        schema: Vec<ColumnSpec>,
        missing: Option<Missing>,
    ) -> RowTyper {
        let order = schema
            .iter()
            .filter_map(|c| headers.iter().position(|h| *h == c.name))
            .collect();
        RowTyper {
            file: file.to_path_buf(),
            name: name.to_string(),
            builder: TableBuilder::new(name, schema.clone()),
            schema,
            order,
            missing,
            dropped: Vec::new(),
        }
    }

    /// Types row `i` (from 0, at `line` of the file) and adds it, or drops
    /// it for a missing value; `row` holds its cells in the file's order.
    fn push(
        &mut self,
        i: usize,
        line: Option<u64>,
        row: &[CellRef<'_>],
    ) -> Result<(), ImportError> {
        let cells: Vec<CellRef<'_>> = self
            .order
            .iter()
            .filter_map(|&j| row.get(j).copied())
            .collect();
        let gap = self
            .schema
            .iter()
            .zip(&cells)
            .position(|(spec, cell)| cells::is_missing(&spec.ty, *cell));
        if let Some(col) = gap {
            if self.missing == Some(Missing::Drop) {
                self.dropped.push(i + 1);
                return Ok(());
            }
            return Err(ImportError::Cell {
                file: self.file.clone(),
                row: i + 1,
                line,
                column: self.schema[col].name.clone(),
                reason: format!(
                    "{} is a missing value; fill it in{}",
                    match cells[col] {
                        CellRef::Text(t) if t.trim().is_empty() => "an empty cell".into(),
                        other => other.shown(),
                    },
                    if self.missing.is_some() {
                        ", or leave out the rows that have one with --missing drop"
                    } else {
                        ""
                    }
                ),
            });
        }
        self.builder
            .push_row(&cells)
            .map_err(|(col, reason)| ImportError::Cell {
                file: self.file.clone(),
                row: i + 1,
                line,
                column: self.schema[col].name.clone(),
                reason,
            })
    }

    /// Rows typed since the last chunk.
    fn rows(&self) -> usize {
        self.builder.rows()
    }

    /// The rows typed since the last chunk, as a table; starts a new chunk.
    fn chunk(&mut self) -> Table {
        std::mem::replace(
            &mut self.builder,
            TableBuilder::new(&self.name, self.schema.clone()),
        )
        .finish()
    }

    /// The rows typed since the last chunk, and every row dropped.
    fn finish(self) -> (Table, Vec<usize>) {
        (self.builder.finish(), self.dropped)
    }
}

/// What a streamed import read.
#[derive(Debug, Clone)]
pub struct Streamed {
    /// Rows imported.
    pub rows: usize,
    /// A CSV file's delimiter.
    pub delimiter: Option<Delimiter>,
    /// The rows left out for a missing value (`--missing drop`), from 1.
    pub dropped: Vec<usize>,
}

/// Reads the CSV file `path` against a declared `schema` without holding
/// it: its rows are typed as they are read and handed to `chunk`, at most
/// `rows_per_chunk` at a time, as tables called `table_name`. The first cell
/// that does not fit stops the import with the same error [`import_file`]
/// gives (chunks already handed over are the caller's to discard).
pub fn stream_csv<E: From<ImportError>>(
    path: &Path,
    options: &ReadOptions,
    table_name: &str,
    schema: &[ColumnSpec],
    rows_per_chunk: usize,
    mut chunk: impl FnMut(Table) -> Result<(), E>,
) -> Result<Streamed, E> {
    let (headers, rows, delimiter) = open_csv(path, options.delimiter)?;
    check_headers(path, &headers, schema)?;
    let mut typer = RowTyper::new(
        path,
        table_name,
        &headers,
        schema.to_vec(),
        Some(options.missing),
    );
    let mut count = 0;
    let mut rows = rows;
    let mut i = 0;
    while let Some(record) = rows.next_record() {
        let record = record?;
        let cells: Vec<CellRef<'_>> = record.iter().map(CellRef::Text).collect();
        typer.push(i, record.position().map(|p| p.line()), &cells)?;
        i += 1;
        if typer.rows() >= rows_per_chunk.max(1) {
            count += typer.rows();
            chunk(typer.chunk())?;
        }
    }
    let (last, dropped) = typer.finish();
    count += last.row_count;
    if last.row_count > 0 {
        chunk(last)?;
    }
    Ok(Streamed {
        rows: count,
        delimiter: Some(delimiter),
        dropped,
    })
}

/// A file's format: as given, else from its name.
fn format_of(path: &Path, options: &ReadOptions) -> Result<Format, ImportError> {
    options
        .format
        .or_else(|| Format::from_path(path))
        .ok_or_else(|| ImportError::Malformed {
            file: path.to_path_buf(),
            reason: "cannot tell the format from the file name; give --format csv or --format json"
                .into(),
        })
}

/// Infers the types of a CSV or JSON file's columns in one pass that holds
/// no rows (see [`infer_csv`]); returns them, a CSV file's delimiter, and
/// the number of rows.
pub fn infer_file(
    path: &Path,
    options: &ReadOptions,
) -> Result<(Vec<ColumnSpec>, Option<Delimiter>, usize), ImportError> {
    if format_of(path, options)? == Format::Csv {
        return infer_csv(path, options).map(|(schema, d, n)| (schema, Some(d), n));
    }
    let mut inferences: Vec<Inference> = Vec::new();
    let mut count = 0;
    let headers = json_rows(path, open_json(path)?, |headers, i, row| {
        if i == 0 {
            check_names(path, headers)?;
            inferences = headers.iter().map(|_| Inference::default()).collect();
        }
        for (inference, cell) in inferences.iter_mut().zip(&row.cells) {
            inference.add(i, None, cell);
        }
        count += 1;
        Ok(())
    })?;
    if headers.is_empty() {
        return Err(ImportError::Schema {
            file: path.to_path_buf(),
            reason: "the data has no columns".into(),
        });
    }
    Ok((inferred_schema(path, &headers, inferences)?, None, count))
}

/// Reads a CSV or JSON file against a declared `schema` without holding it,
/// as [`stream_csv`] does.
pub fn stream_file<E: From<ImportError>>(
    path: &Path,
    options: &ReadOptions,
    table_name: &str,
    schema: &[ColumnSpec],
    rows_per_chunk: usize,
    mut chunk: impl FnMut(Table) -> Result<(), E>,
) -> Result<Streamed, E> {
    if format_of(path, options)? == Format::Csv {
        return stream_csv(path, options, table_name, schema, rows_per_chunk, chunk);
    }
    let mut typer: Option<RowTyper> = None;
    let mut count = 0;
    // An error of `chunk` stops the reading; it is kept here, as the
    // reading itself only carries import errors.
    let mut failed: Option<E> = None;
    let read = json_rows(path, open_json(path)?, |headers, i, row| {
        let typer = match &mut typer {
            Some(typer) => typer,
            None => {
                check_headers(path, headers, schema)?;
                typer.insert(RowTyper::new(
                    path,
                    table_name,
                    headers,
                    schema.to_vec(),
                    Some(options.missing),
                ))
            }
        };
        let cells: Vec<CellRef<'_>> = row.cells.iter().map(CellRef::from).collect();
        typer.push(i, None, &cells)?;
        if typer.rows() >= rows_per_chunk.max(1) {
            count += typer.rows();
            if let Err(e) = chunk(typer.chunk()) {
                failed = Some(e);
                return Err(ImportError::Malformed {
                    file: path.to_path_buf(),
                    reason: "storing the rows failed".into(),
                });
            }
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    read?;
    let Some(typer) = typer else {
        // No rows: the declared columns are missing from the data.
        check_headers(path, &[], schema)?;
        return Ok(Streamed {
            rows: 0,
            delimiter: None,
            dropped: Vec::new(),
        });
    };
    let (last, dropped) = typer.finish();
    count += last.row_count;
    if last.row_count > 0 {
        chunk(last)?;
    }
    Ok(Streamed {
        rows: count,
        delimiter: None,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use c2ssi_guest_sdk::{ColumnData, ColumnType};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn csv_with_inferred_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "d.csv",
            "age,bmi,smoker,city\n50,22.5,yes,Delft\n61,30,no,Breda\n",
        );
        let imported = import_file(&path, &ReadOptions::default(), "health", None).unwrap();
        assert!(imported.inferred);
        let t = imported.table;
        assert_eq!(t.row_count, 2);
        assert!(matches!(t.columns[0].ty, ColumnType::Integer { .. }));
        assert_eq!(t.columns[1].data, ColumnData::Real(vec![22.5, 30.0]));
        assert_eq!(t.columns[2].data, ColumnData::Boolean(vec![true, false]));
        assert_eq!(t.columns[3].data, ColumnData::Category(vec![1, 0]));
    }

    #[test]
    fn a_bad_cell_is_named_by_file_row_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let schema = vec![
            ColumnSpec {
                name: "age".into(),
                ty: ColumnType::Integer {
                    min: Some(0),
                    max: Some(120),
                },
            },
            ColumnSpec {
                name: "bmi".into(),
                ty: ColumnType::Real {
                    min: None,
                    max: None,
                },
            },
        ];
        let path = write(dir.path(), "d.csv", "bmi,age\n20,40\n21,200\n");
        let err = import_file(&path, &ReadOptions::default(), "t", Some(&schema))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("d.csv: row 2 (line 3), column 'age': 200 is outside the declared range (integer 0..=120)"),
            "{err}"
        );
        let path = write(dir.path(), "e.csv", "bmi,age\n20,40\n21\n");
        let err = import_file(&path, &ReadOptions::default(), "t", Some(&schema))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3: this row has 1 fields but the header has 2"),
            "{err}"
        );
        let path = write(dir.path(), "f.csv", "bmi,age,x\n20,40,1\n");
        let err = import_file(&path, &ReadOptions::default(), "t", Some(&schema))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column 'x' is not declared in the schema"),
            "{err}"
        );
    }

    #[test]
    fn json_rows_keep_their_field_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "d.json",
            r#"[{"zeta": 1, "alpha": "a"}, {"alpha": "b", "zeta": 2}]"#,
        );
        let t = import_file(&path, &ReadOptions::default(), "t", None)
            .unwrap()
            .table;
        assert_eq!(t.columns[0].name, "zeta");
        let path = write(dir.path(), "e.json", r#"[{"a": 1}, {"a": null}]"#);
        let err = import_file(&path, &ReadOptions::default(), "t", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 2, column 'a': null is a missing value"),
            "{err}"
        );
    }

    #[test]
    fn the_delimiter_is_detected_and_a_bom_is_not_a_name() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text, byte) in [
            (
                "semi.csv",
                "age;bmi;city\n50;22.5;Delft\n61;30;Breda\n",
                b';',
            ),
            ("tab.csv", "age\tbmi\n50\t22.5\n", b'\t'),
            ("comma.csv", "\u{feff}age,note\n50,\"a; b\"\n", b','),
            ("one.csv", "age\n50\n61\n", b','),
        ] {
            let path = write(dir.path(), name, text);
            let imported = import_file(&path, &ReadOptions::default(), "t", None).unwrap();
            assert_eq!(
                imported.delimiter,
                Some(Delimiter {
                    byte,
                    detected: true
                }),
                "{name}"
            );
            assert_eq!(imported.table.columns[0].name, "age", "{name}");
        }
        // A file longer than the sniffed head, streamed after it: a row cut
        // at the head's end is read whole.
        let mut big = String::from("\u{feff}age;bmi;city\n");
        for i in 0..12000 {
            big.push_str(&format!("{};{}.5;Delft\n", 20 + i % 60, 20 + i % 10));
        }
        assert!(big.len() as u64 > 2 * SNIFF_BYTES);
        let path = write(dir.path(), "big.csv", &big);
        let imported = import_file(&path, &ReadOptions::default(), "t", None).unwrap();
        assert_eq!(imported.delimiter.map(|d| d.byte), Some(b';'));
        assert_eq!(imported.table.row_count, 12000);
        assert_eq!(imported.table.columns[0].name, "age");
        // A decimal comma is named, not guessed.
        let path = write(dir.path(), "dc.csv", "age;bmi\n50;22,5\n61;30\n");
        let err = import_file(&path, &ReadOptions::default(), "t", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 1 (line 2) '22,5' (a decimal comma is not read as a number"),
            "{err}"
        );
        // The wrong delimiter, given: the single column's name says so.
        let path = write(dir.path(), "s.csv", "age;bmi\n50;22\n");
        let options = ReadOptions {
            delimiter: Some(b','),
            ..ReadOptions::default()
        };
        let err = import_file(&path, &options, "t", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one column named 'age;bmi' when split at ','; is the delimiter ';'?"),
            "{err}"
        );
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert!(parse_delimiter("ab").is_err());
    }

    #[test]
    fn a_streamed_csv_comes_in_chunks_and_stops_at_the_first_bad_cell() {
        let dir = tempfile::tempdir().unwrap();
        let schema = vec![ColumnSpec {
            name: "age".into(),
            ty: ColumnType::Integer {
                min: Some(0),
                max: Some(120),
            },
        }];
        let path = write(dir.path(), "a.csv", "age\n1\n2\n\n3\n4\n5\n");
        let mut chunks = Vec::new();
        let drop = ReadOptions {
            missing: Missing::Drop,
            ..ReadOptions::default()
        };
        let streamed = stream_csv(&path, &drop, "t", &schema, 2, |t: Table| {
            chunks.push(t.columns[0].data.clone());
            Ok::<(), ImportError>(())
        })
        .unwrap();
        assert_eq!(streamed.rows, 5);
        assert_eq!(
            chunks,
            [
                ColumnData::Integer(vec![1, 2]),
                ColumnData::Integer(vec![3, 4]),
                ColumnData::Integer(vec![5]),
            ]
        );
        // The blank line is skipped by the CSV reader; nothing was dropped.
        assert!(streamed.dropped.is_empty());
        // The same error as a whole-file import, after the chunks before it.
        let bad = write(dir.path(), "b.csv", "age\n1\n2\n3\n200\n");
        let mut seen = 0;
        let err = stream_csv(&bad, &ReadOptions::default(), "t", &schema, 2, |_| {
            seen += 1;
            Ok::<(), ImportError>(())
        })
        .unwrap_err();
        let whole = import_file(&bad, &ReadOptions::default(), "t", Some(&schema)).unwrap_err();
        assert_eq!(err.to_string(), whole.to_string());
        assert!(
            err.to_string().contains("row 4 (line 5), column 'age'"),
            "{err}"
        );
        assert_eq!(seen, 1);
    }

    #[test]
    fn a_json_file_streams_too_and_infers_the_same_types_as_when_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "r.json",
            r#"[{"age": 30, "smoker": true, "city": "a"},
                {"age": 41, "smoker": false, "city": "b"},
                {"age": 52, "smoker": null, "city": "a"}]"#,
        );
        let held = import_file(&path, &ReadOptions::default(), "t", None);
        assert!(held.is_err(), "a null smoker is a missing value");
        let drop = ReadOptions {
            missing: Missing::Drop,
            ..ReadOptions::default()
        };
        let held = import_file(&path, &drop, "t", None).unwrap();
        let (schema, delimiter, rows) = infer_file(&path, &drop).unwrap();
        assert_eq!(
            (schema.as_slice(), delimiter, rows),
            (&held.table.schema()[..], None, 3)
        );
        let mut chunks = Vec::new();
        let streamed = stream_file(&path, &drop, "t", &schema, 1, |t: Table| {
            chunks.push(t);
            Ok::<(), ImportError>(())
        })
        .unwrap();
        assert_eq!((streamed.rows, streamed.dropped.as_slice()), (2, &[3][..]));
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].columns[0].data, ColumnData::Integer(vec![41]));
        // A field the first row does not have stops it, named, as when held.
        let odd = write(dir.path(), "o.json", r#"[{"age": 1}, {"age": 2, "x": 3}]"#);
        let err = stream_file(&odd, &drop, "t", &schema[..1], 10, |_| {
            Ok::<(), ImportError>(())
        })
        .unwrap_err();
        let whole = import_file(&odd, &drop, "t", Some(&schema[..1])).unwrap_err();
        assert_eq!(err.to_string(), whole.to_string());
        assert!(err.to_string().contains("row 2 has field 'x'"), "{err}");
        // Not an array.
        let not = write(dir.path(), "n.json", r#"{"age": 1}"#);
        let err = infer_file(&not, &drop).unwrap_err().to_string();
        assert!(
            err.contains("expected a JSON array of objects, one per row"),
            "{err}"
        );
    }

    #[test]
    fn an_optional_column_may_be_left_out_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let schema = vec![
            ColumnSpec {
                name: "age".into(),
                ty: ColumnType::Integer {
                    min: None,
                    max: None,
                },
            },
            ColumnSpec {
                name: "y".into(),
                ty: ColumnType::Real {
                    min: None,
                    max: None,
                },
            },
        ];
        let options = ReadOptions {
            optional: vec!["y".into()],
            ..ReadOptions::default()
        };
        let without = write(dir.path(), "x.csv", "age\n50\n");
        let imported = import_file(&without, &options, "t", Some(&schema)).unwrap();
        assert_eq!(imported.table.schema(), schema[..1]);
        let with = write(dir.path(), "xy.csv", "age,y\n50,1.5\n");
        let imported = import_file(&with, &options, "t", Some(&schema)).unwrap();
        assert_eq!(imported.table.schema(), schema);
        let neither = write(dir.path(), "n.csv", "y\n1.5\n");
        let err = import_file(&neither, &options, "t", Some(&schema)).unwrap_err();
        assert!(err.to_string().contains("column 'age'"), "{err}");
    }

    #[test]
    fn missing_values_are_refused_by_place_or_dropped_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "m.csv",
            "age,bmi\n50,22.5\n61,n/a\n70,\n44,30\n",
        );
        let err = import_file(&path, &ReadOptions::default(), "t", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "m.csv: row 2 (line 3), column 'bmi': 'n/a' is a missing value; fill it in, \
                 or leave out the rows that have one with --missing drop"
            ),
            "{err}"
        );
        let drop = ReadOptions {
            missing: Missing::Drop,
            ..ReadOptions::default()
        };
        let imported = import_file(&path, &drop, "t", None).unwrap();
        assert_eq!(imported.dropped, vec![2, 3]);
        assert_eq!(imported.table.row_count, 2);
        assert_eq!(
            imported.table.columns[1].data,
            ColumnData::Real(vec![22.5, 30.0])
        );
        // Words among numbers: refused, the words named, never a category.
        let path = write(dir.path(), "w.csv", "age,bmi\n50,22.5\n61,twenty\n70,31\n");
        for options in [&ReadOptions::default(), &drop] {
            let err = import_file(&path, options, "t", None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(
                    "column 'bmi' holds numbers except in 1 cell: row 2 (line 3) 'twenty'"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn schema_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ok = write(
            dir.path(),
            "s.json",
            r#"{"columns": [{"name": "sex", "type": "category", "levels": ["f", "m"]}, {"name": "age", "type": "integer", "min": 0}]}"#,
        );
        assert_eq!(read_schema(&ok).unwrap().len(), 2);
        let bad = write(
            dir.path(),
            "b.json",
            r#"[{"name": "x", "type": "real", "min": 5, "max": 1}]"#,
        );
        assert!(
            read_schema(&bad)
                .unwrap_err()
                .to_string()
                .contains("invalid range")
        );
    }

    /// Found by fuzzing: a JSON data or schema file that is not UTF-8 was
    /// refused as an I/O error ("stream did not contain valid UTF-8"), as
    /// if the file could not be read; it is malformed data, as it is in CSV.
    #[test]
    fn a_file_that_is_not_utf8_is_malformed_not_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        std::fs::write(&path, b"[{\"a\": \"\x80\"}]").unwrap();
        let err = import_file(&path, &ReadOptions::default(), "t", None).unwrap_err();
        assert!(matches!(err, ImportError::Malformed { .. }), "{err:?}");
        assert!(
            err.to_string()
                .ends_with("d.json: not UTF-8 text (invalid byte at offset 8)"),
            "{err}"
        );
        let path = dir.path().join("s.json");
        std::fs::write(&path, b"\x80").unwrap();
        let err = read_schema(&path).unwrap_err();
        assert!(matches!(err, ImportError::Schema { .. }), "{err:?}");
        let path = dir.path().join("d.csv");
        std::fs::write(&path, b"a\n\x80\n").unwrap();
        let err = import_file(&path, &ReadOptions::default(), "t", None).unwrap_err();
        assert!(matches!(err, ImportError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn one_row_from_the_command_line() {
        let schema = vec![ColumnSpec {
            name: "score".into(),
            ty: ColumnType::Integer {
                min: Some(0),
                max: Some(10),
            },
        }];
        let t = row_from_assignments("t", &schema, &["score=7".into()]).unwrap();
        assert_eq!(t.columns[0].data, ColumnData::Integer(vec![7]));
        let err = row_from_assignments("t", &schema, &["score=11".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "command line: row 1, column 'score': 11 is outside the declared range (integer 0..=10)"
        );
        assert!(row_from_assignments("t", &schema, &[]).is_err());
        // One row typed in offers no --missing: the hint does not name it.
        let err = row_from_assignments("t", &schema, &["score=n/a".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "command line: row 1, column 'score': 'n/a' is a missing value; fill it in"
        );
    }
}
