//! Property-based fuzzing of the import of the owner's data: arbitrary and mutated CSV, JSON and schema files, and typed rows.

use std::path::{Path, PathBuf};

use c2ssi_guest_sdk::ColumnSpec;
use proptest::prelude::*;
use serde_json::Value;

use super::*;

use c2ssi_fuzzing::{config, mutations};

const CSV: &str = "age,bmi,smoker,city,score\n\
                   50,22.5,yes,Delft,7\n\
                   61,30,no,Breda,-3\n\
                   \"44\",\" 19.25 \",TRUE,\"Den Haag, Centrum\",0\n";

const JSON: &str = r#"[
    {"age": 50, "bmi": 22.5, "smoker": true, "city": "Delft", "score": 7},
    {"age": 61, "bmi": 30, "smoker": false, "city": "Breda", "score": -3},
    {"age": "44", "bmi": "19.25", "smoker": "yes", "city": "Den Haag", "score": 0}
]"#;

const SCHEMA: &str = r#"{"columns": [
    {"name": "age", "type": "integer", "min": 0, "max": 120},
    {"name": "bmi", "type": "real", "min": 10.0, "max": 60.0},
    {"name": "smoker", "type": "boolean"},
    {"name": "city", "type": "category", "levels": ["Breda", "Delft", "Den Haag", "Den Haag, Centrum"]},
    {"name": "score", "type": "integer"}
]}"#;

/// Bytes that break CSV and JSON readers more often than random ones.
const TOKENS: &[&[u8]] = &[
    b",",
    b"\"",
    b"\n",
    b"\r",
    b"\r\n",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\0",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"null",
    b"-",
    b"1e999",
    b"NaN",
    b"inf",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"\\u0000",
    b"\\ud800",
    b" ",
];

fn mutate(input: &[u8], mutations: &[c2ssi_fuzzing::Mutation]) -> Vec<u8> {
    c2ssi_fuzzing::mutate_with(input, mutations, TOKENS)
}

/// A JSON value likely to be out of place in a row.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |x| x.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        "(yes|no|true|false|Delft|Breda| 7 |1e3|-0|inf)".prop_map(Value::from),
        Just(Value::Array(Vec::new())),
        Just(serde_json::json!({"a": 1})),
    ]
}

/// One change to the rows of a JSON file: a cell replaced, a field dropped
/// or added, a row duplicated or dropped. Indices are taken modulo the size.
#[derive(Debug, Clone)]
enum RowMutation {
    Replace {
        row: usize,
        field: usize,
        with: Value,
    },
    Drop {
        row: usize,
        field: usize,
    },
    Add {
        row: usize,
        key: String,
        with: Value,
    },
    Duplicate {
        row: usize,
    },
    Remove {
        row: usize,
    },
}

fn row_mutations() -> impl Strategy<Value = Vec<RowMutation>> {
    let one = prop_oneof![
        4 => (any::<usize>(), any::<usize>(), json_value())
            .prop_map(|(row, field, with)| RowMutation::Replace { row, field, with }),
        1 => (any::<usize>(), any::<usize>())
            .prop_map(|(row, field)| RowMutation::Drop { row, field }),
        1 => (any::<usize>(), "(age|bmi|city|x|)", json_value())
            .prop_map(|(row, key, with)| RowMutation::Add { row, key, with }),
        1 => any::<usize>().prop_map(|row| RowMutation::Duplicate { row }),
        1 => any::<usize>().prop_map(|row| RowMutation::Remove { row }),
    ];
    proptest::collection::vec(one, 1..=3)
}

/// The JSON rows with `mutations` applied, written with their fields in
/// order (a `serde_json::Map` sorts them, which would hide field order).
fn mutate_rows(mutations: &[RowMutation]) -> String {
    let parsed: Vec<serde_json::Map<String, Value>> =
        serde_json::from_str(JSON).expect("the sample is JSON");
    let mut rows: Vec<Vec<(String, Value)>> = parsed
        .into_iter()
        .map(|o| o.into_iter().collect())
        .collect();
    for m in mutations {
        if rows.is_empty() {
            break;
        }
        let n = rows.len();
        match m {
            RowMutation::Replace { row, field, with } => {
                let r = &mut rows[row % n];
                if !r.is_empty() {
                    let i = field % r.len();
                    r[i].1 = with.clone();
                }
            }
            RowMutation::Drop { row, field } => {
                let r = &mut rows[row % n];
                if !r.is_empty() {
                    let i = field % r.len();
                    r.remove(i);
                }
            }
            RowMutation::Add { row, key, with } => rows[row % n].push((key.clone(), with.clone())),
            RowMutation::Duplicate { row } => rows.push(rows[row % n].clone()),
            RowMutation::Remove { row } => {
                rows.remove(row % n);
            }
        }
    }
    let objects: Vec<String> = rows
        .iter()
        .map(|r| {
            let fields: Vec<String> = r
                .iter()
                .map(|(k, v)| format!("{}: {v}", Value::from(k.as_str())))
                .collect();
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    format!("[{}]", objects.join(",\n"))
}

/// The schema the sample data is declared with.
fn schema() -> Vec<ColumnSpec> {
    let parsed: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
    serde_json::from_value(parsed["columns"].clone()).expect("the schema parses")
}

/// Writes `bytes` to `name` in a fresh directory.
fn file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("the file is written");
    (dir, path)
}

/// Imports `path`, with and without the schema: what imports is a valid
/// table of the declared (or inferred) columns, and what does not is a
/// clear error about the data, never about reading the file.
fn imports_or_is_refused(
    path: &Path,
    declared: Option<&[ColumnSpec]>,
) -> Result<(), TestCaseError> {
    for schema in [declared, None] {
        match import_file(path, &ReadOptions::default(), "t", schema) {
            Ok(imported) => {
                prop_assert!(imported.table.validate().is_ok(), "{:?}", imported.table);
                prop_assert_eq!(imported.inferred, schema.is_none());
                if let Some(schema) = schema {
                    prop_assert_eq!(&imported.table.schema(), schema);
                }
                prop_assert!(!imported.table.columns.is_empty());
            }
            Err(e) => {
                prop_assert!(
                    matches!(
                        e,
                        ImportError::Malformed { .. }
                            | ImportError::Cell { .. }
                            | ImportError::Schema { .. }
                    ),
                    "{e:?}"
                );
                let text = e.to_string();
                prop_assert!(text.starts_with(&path.display().to_string()), "{text}");
            }
        }
    }
    Ok(())
}

#[test]
fn the_samples_import() {
    let (_dir, csv) = file("d.csv", CSV.as_bytes());
    let (_dir2, json) = file("d.json", JSON.as_bytes());
    let schema = schema();
    for path in [&csv, &json] {
        let imported = import_file(path, &ReadOptions::default(), "t", Some(&schema))
            .expect("the sample imports");
        assert_eq!(imported.table.row_count, 3);
        import_file(path, &ReadOptions::default(), "t", None)
            .expect("the sample imports with inferred types");
    }
    let (_dir3, rows) = file("r.json", mutate_rows(&[]).as_bytes());
    assert_eq!(
        import_file(&rows, &ReadOptions::default(), "t", Some(&schema))
            .expect("imports")
            .table
            .row_count,
        3
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_csv_imports_or_is_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        text in "[a-z0-9,\"\n\r .-]{0,200}",
    ) {
        let schema = schema();
        for content in [&bytes[..], text.as_bytes()] {
            let (_dir, path) = file("d.csv", content);
            imports_or_is_refused(&path, Some(&schema))?;
        }
    }

    #[test]
    fn mutated_csv_imports_or_is_refused(mutations in mutations()) {
        let (_dir, path) = file("d.csv", &mutate(CSV.as_bytes(), &mutations));
        imports_or_is_refused(&path, Some(&schema()))?;
    }

    #[test]
    fn arbitrary_json_imports_or_is_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        text in ".{0,200}",
    ) {
        let schema = schema();
        for content in [&bytes[..], text.as_bytes()] {
            let (_dir, path) = file("d.json", content);
            imports_or_is_refused(&path, Some(&schema))?;
        }
    }

    #[test]
    fn mutated_json_imports_or_is_refused(bytes in mutations(), rows in row_mutations()) {
        let schema = schema();
        let (_dir, path) = file("d.json", &mutate(JSON.as_bytes(), &bytes));
        imports_or_is_refused(&path, Some(&schema))?;
        let (_dir2, path) = file("e.json", mutate_rows(&rows).as_bytes());
        imports_or_is_refused(&path, Some(&schema))?;
    }

    /// A schema file, mutated: refused with a clear error, or a valid
    /// schema that the sample data then imports against (or not).
    #[test]
    fn mutated_schema_files_are_valid_or_refused(mutations in mutations()) {
        let (_dir, path) = file("s.json", &mutate(SCHEMA.as_bytes(), &mutations));
        match read_schema(&path) {
            Ok(schema) => {
                prop_assert!(check_schema(&schema).is_ok());
                let (_dir2, csv) = file("d.csv", CSV.as_bytes());
                imports_or_is_refused(&csv, Some(&schema))?;
                let (_dir3, json) = file("d.json", JSON.as_bytes());
                imports_or_is_refused(&json, Some(&schema))?;
            }
            Err(e) => {
                prop_assert!(matches!(e, ImportError::Schema { .. }), "{e:?}");
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// Rows typed at the command line: one valid row, or an error that
    /// names the problem.
    #[test]
    fn typed_rows_are_one_valid_row_or_refused(
        assignments in proptest::collection::vec(
            prop_oneof![
                "(age|bmi|smoker|city|score|x)=.{0,10}",
                "(age|bmi|smoker|city|score)=(50|22.5|yes|Delft|7|-1|1e400|NaN| )",
                ".{0,12}",
            ],
            0..7,
        ),
    ) {
        match row_from_assignments("t", &schema(), &assignments) {
            Ok(table) => {
                prop_assert!(table.validate().is_ok(), "{table:?}");
                prop_assert_eq!(table.row_count, 1);
            }
            Err(e) => {
                prop_assert!(
                    matches!(
                        e,
                        ImportError::Malformed { .. }
                            | ImportError::Cell { .. }
                            | ImportError::Schema { .. }
                    ),
                    "{e:?}"
                );
                prop_assert!(e.to_string().starts_with("command line: "));
            }
        }
    }

    /// Column types inferred from any cells are types those cells parse as.
    #[test]
    fn inferred_types_fit_their_cells(
        cells in proptest::collection::vec(
            prop_oneof![
                ".{0,8}".prop_map(Cell::Text),
                "(-?[0-9]{1,20}(\\.[0-9]{0,4})?|yes|no|TRUE| |1e308|1e309)".prop_map(Cell::Text),
                any::<bool>().prop_map(Cell::Bool),
                any::<i64>().prop_map(|n| Cell::Number(n.into())),
                any::<f64>().prop_filter_map("JSON numbers are finite", |x| {
                    serde_json::Number::from_f64(x).map(Cell::Number)
                }),
            ],
            0..80,
        ),
    ) {
        let refs: Vec<&Cell> = cells.iter().collect();
        if let Ok(ty) = cells::infer(&refs) {
            let mut builder = TableBuilder::new(
                "t",
                vec![ColumnSpec { name: "c".into(), ty: ty.clone() }],
            );
            for cell in refs.iter().filter(|c| !cells::is_missing(&ty, **c)) {
                prop_assert!(builder.push_row(&[(*cell).into()]).is_ok(), "{cell:?} is not {ty}");
            }
            prop_assert!(builder.finish().validate().is_ok());
        }
    }
}
