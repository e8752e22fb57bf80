//! The wallet's tables, store format 2: an encrypted index of every table's
//! schema, row count and segments, and each table's rows in encrypted
//! segment files, so that listing tables or adding a row never reads the
//! rows of a large table.
//!
//! ```text
//! tables.age            the index: per table, its columns, rows and segments
//! tables/<random>.age   one segment: some rows of one table, column by column
//! ```
//!
//! A segment's plaintext is its columns' values in postcard (the schema is
//! in the index); the index names each segment's file, row count and the
//! SHA-256 of its sealed bytes, so a segment swapped for another (all are
//! sealed to the same key) or rolled back is refused as damage. Appending
//! writes one new segment and then the index; when [`MAX_SEGMENTS`] small
//! segments trail a table (rows added one at a time), the next small append
//! merges them into one. A streamed import writes a segment per
//! [`CHUNK_ROWS`] rows as it reads.
//! Segments that no index names (a crash between the two writes) are removed
//! by the next writer.

use std::collections::BTreeMap;

use c2ssi_guest_sdk::{ColumnData, ColumnSpec, Table};
use serde::{Deserialize, Serialize};

use super::WalletError;
use super::records::{IfExists, check_table_name, describe_schema};

/// The encrypted index.
pub const INDEX_FILE: &str = "tables.age";
/// The directory of segment files.
pub const SEGMENT_DIR: &str = "tables";
/// Small segments (a row added at a time) that may trail a table before an
/// append merges them, and its own rows, into one.
pub const MAX_SEGMENTS: usize = 32;
/// A segment of fewer rows is small; an import writes segments of
/// [`CHUNK_ROWS`], which are never merged.
pub const SMALL_SEGMENT_ROWS: usize = 1024;
/// Rows per segment of a streamed import: what the import holds at once.
pub const CHUNK_ROWS: usize = 65_536;

/// Every table's schema, row count and segments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableIndex {
    /// The tables, by name.
    pub tables: BTreeMap<String, TableEntry>,
}

/// One table in the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Its columns' names and declared types.
    pub columns: Vec<ColumnSpec>,
    /// Its rows, in all segments.
    pub rows: usize,
    /// Its segments, in row order.
    pub(crate) segments: Vec<Segment>,
}

/// One segment file of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Segment {
    /// The file's name under [`SEGMENT_DIR`].
    pub(crate) file: String,
    /// Rows it holds.
    pub(crate) rows: usize,
    /// SHA-256 of its sealed bytes, hex.
    pub(crate) sha256: String,
}

impl TableEntry {
    /// One empty column of values per column of the table, to extend.
    pub(crate) fn empty_columns(&self) -> Vec<ColumnData> {
        self.columns
            .iter()
            .map(|c| ColumnData::empty_for(&c.ty))
            .collect()
    }
}

impl TableIndex {
    /// The entry of the table called `name`.
    pub fn entry(&self, name: &str) -> Result<&TableEntry, WalletError> {
        self.tables
            .get(name)
            .ok_or_else(|| WalletError::NoSuchTable {
                name: name.to_string(),
                known: self.tables.keys().cloned().collect(),
            })
    }

    /// Every segment file any table names.
    pub(crate) fn files(&self) -> impl Iterator<Item = &str> {
        self.tables
            .values()
            .flat_map(|t| t.segments.iter().map(|s| s.file.as_str()))
    }
}

/// The path of a segment file relative to the wallet's directory.
pub(crate) fn segment_path(file: &str) -> String {
    format!("{SEGMENT_DIR}/{file}")
}

/// A new segment file name: 128 random bits, so that no two collide.
pub(crate) fn new_segment_name() -> Result<String, WalletError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| WalletError::Keys {
            reason: "the operating system gave no randomness".into(),
        })?;
    Ok(format!("{}.age", hex::encode(bytes)))
}

/// A segment's plaintext: the columns' values.
pub(crate) fn encode_segment(columns: &[ColumnData]) -> Result<Vec<u8>, WalletError> {
    postcard::to_allocvec(columns).map_err(|e| WalletError::Crypto {
        path: SEGMENT_DIR.into(),
        reason: format!("encoding a segment: {e}"),
    })
}

/// A segment's columns from its plaintext, checked against the index: as
/// many columns as the schema, each of its declared type, `rows` values each.
pub(crate) fn decode_segment(
    plaintext: &[u8],
    entry: &TableEntry,
    segment: &Segment,
) -> Result<Vec<ColumnData>, WalletError> {
    let damaged = |reason: String| WalletError::Damaged {
        path: segment_path(&segment.file).into(),
        reason,
    };
    let columns: Vec<ColumnData> =
        postcard::from_bytes(plaintext).map_err(|e| damaged(format!("it does not decode: {e}")))?;
    if columns.len() != entry.columns.len() {
        return Err(damaged(format!(
            "it has {} columns but the table has {}",
            columns.len(),
            entry.columns.len()
        )));
    }
    for (data, spec) in columns.iter().zip(&entry.columns) {
        if std::mem::discriminant(data) != std::mem::discriminant(&ColumnData::empty_for(&spec.ty))
        {
            return Err(damaged(format!(
                "column '{}' holds other values",
                spec.name
            )));
        }
        if data.len() != segment.rows {
            return Err(damaged(format!(
                "column '{}' has {} values but the index says {} rows",
                spec.name,
                data.len(),
                segment.rows
            )));
        }
    }
    Ok(columns)
}

/// Appends `more` to `columns`, column by column (same types, as checked).
pub(crate) fn extend(columns: &mut [ColumnData], more: Vec<ColumnData>) {
    for (a, b) in columns.iter_mut().zip(more) {
        match (a, b) {
            (ColumnData::Integer(a), ColumnData::Integer(b)) => a.extend(b),
            (ColumnData::Real(a), ColumnData::Real(b)) => a.extend(b),
            (ColumnData::Boolean(a), ColumnData::Boolean(b)) => a.extend(b),
            (ColumnData::Category(a), ColumnData::Category(b)) => a.extend(b),
            // `decode_segment` checked every column's type.
            _ => {}
        }
    }
}

/// Keeps the first `rows` values of a column.
pub(crate) fn truncate(data: &mut ColumnData, rows: usize) {
    match data {
        ColumnData::Integer(v) => v.truncate(rows),
        ColumnData::Real(v) => v.truncate(rows),
        ColumnData::Boolean(v) => v.truncate(rows),
        ColumnData::Category(v) => v.truncate(rows),
    }
}

/// A table from its entry and its columns' values, checked.
pub(crate) fn assemble(
    name: &str,
    entry: &TableEntry,
    columns: Vec<ColumnData>,
) -> Result<Table, WalletError> {
    let table = Table {
        name: name.to_string(),
        row_count: entry.rows,
        columns: entry
            .columns
            .iter()
            .zip(columns)
            .map(|(spec, data)| c2ssi_guest_sdk::Column {
                name: spec.name.clone(),
                ty: spec.ty.clone(),
                data,
            })
            .collect(),
    };
    table.validate().map_err(|e| WalletError::Damaged {
        path: INDEX_FILE.into(),
        reason: format!("table '{name}': {e}"),
    })?;
    Ok(table)
}

/// What a put does to the index: the entry to store, with the segments it
/// replaces left out (they are swept once the index no longer names them),
/// and the segments whose rows go first into the new segment.
pub(crate) struct PutPlan {
    /// The entry, without the new segment yet.
    pub(crate) entry: TableEntry,
    /// The trailing small segments that the new segment absorbs, in order:
    /// their rows, then the new ones.
    pub(crate) merge: Vec<Segment>,
}

/// Checks a put of rows with `schema` into the table `name` against the
/// index, and plans it. `rows` are the rows of the put, to know whether the
/// new segment is small.
pub(crate) fn plan_put(
    index: &TableIndex,
    name: &str,
    schema: &[ColumnSpec],
    if_exists: IfExists,
    rows: usize,
) -> Result<PutPlan, WalletError> {
    check_table_name(name)?;
    let fresh = || PutPlan {
        entry: TableEntry {
            columns: schema.to_vec(),
            rows: 0,
            segments: Vec::new(),
        },
        merge: Vec::new(),
    };
    match (index.tables.get(name), if_exists) {
        (None, _) | (Some(_), IfExists::Replace) => Ok(fresh()),
        (Some(_), IfExists::Fail) => Err(WalletError::TableExists {
            name: name.to_string(),
        }),
        (Some(existing), IfExists::Append) => {
            if existing.columns != schema {
                return Err(WalletError::InvalidData {
                    reason: format!(
                        "the new rows' columns do not match table '{name}': it has {}",
                        describe_schema(&existing.columns)
                    ),
                });
            }
            let mut entry = existing.clone();
            let small = entry
                .segments
                .iter()
                .rev()
                .take_while(|s| s.rows < SMALL_SEGMENT_ROWS)
                .count();
            let merge = if rows < SMALL_SEGMENT_ROWS && small + 1 >= MAX_SEGMENTS {
                let kept = entry.segments.len() - small;
                entry.segments.split_off(kept)
            } else {
                Vec::new()
            };
            Ok(PutPlan { entry, merge })
        }
    }
}
