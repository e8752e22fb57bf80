//! The wallet's records: named typed tables, in memory (and, in store
//! format 1, in one encrypted document, which a wallet migrates from).

use std::collections::BTreeMap;

use c2ssi_guest_sdk::{Column, ColumnData, ColumnType, Table};
use serde::{Deserialize, Serialize};

use super::WalletError;

pub use c2ssi_guest_sdk::MAX_TABLE_NAME;

/// Every table in the wallet, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Records {
    /// The tables.
    pub tables: BTreeMap<String, Table>,
}

/// What to do when a table of that name exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    /// Refuse.
    Fail,
    /// Add the new rows; the schemas must be equal.
    Append,
    /// Replace the table.
    Replace,
}

/// Checks a table name: 1 to 64 letters, digits, `_`, `.` or `-`, starting
/// with a letter or digit.
pub fn check_table_name(name: &str) -> Result<(), WalletError> {
    if c2ssi_guest_sdk::valid_table_name(name) {
        Ok(())
    } else {
        Err(WalletError::InvalidTableName {
            name: name.to_string(),
        })
    }
}

impl Records {
    /// The table called `name`.
    pub fn table(&self, name: &str) -> Result<&Table, WalletError> {
        self.tables
            .get(name)
            .ok_or_else(|| WalletError::NoSuchTable {
                name: name.to_string(),
                known: self.tables.keys().cloned().collect(),
            })
    }

    /// Stores `table` under its name; returns the number of rows it now has.
    pub fn put(&mut self, table: Table, if_exists: IfExists) -> Result<usize, WalletError> {
        check_table_name(&table.name)?;
        table.validate().map_err(|e| WalletError::InvalidData {
            reason: e.to_string(),
        })?;
        match (self.tables.get_mut(&table.name), if_exists) {
            (None, _) | (Some(_), IfExists::Replace) => {
                let rows = table.row_count;
                self.tables.insert(table.name.clone(), table);
                Ok(rows)
            }
            (Some(_), IfExists::Fail) => Err(WalletError::TableExists { name: table.name }),
            (Some(existing), IfExists::Append) => {
                if existing.schema() != table.schema() {
                    return Err(WalletError::InvalidData {
                        reason: format!(
                            "the new rows' columns do not match table '{}': it has {}",
                            table.name,
                            describe_schema(&existing.schema())
                        ),
                    });
                }
                for (column, new) in existing.columns.iter_mut().zip(table.columns) {
                    match (&mut column.data, new.data) {
                        (ColumnData::Integer(a), ColumnData::Integer(b)) => a.extend(b),
                        (ColumnData::Real(a), ColumnData::Real(b)) => a.extend(b),
                        (ColumnData::Boolean(a), ColumnData::Boolean(b)) => a.extend(b),
                        (ColumnData::Category(a), ColumnData::Category(b)) => a.extend(b),
                        _ => {
                            return Err(WalletError::InvalidData {
                                reason: format!("column '{}' changed type", column.name),
                            });
                        }
                    }
                }
                existing.row_count += table.row_count;
                Ok(existing.row_count)
            }
        }
    }

    /// Removes the table called `name`.
    pub fn remove(&mut self, name: &str) -> Result<Table, WalletError> {
        let known: Vec<String> = self.tables.keys().cloned().collect();
        self.tables
            .remove(name)
            .ok_or_else(|| WalletError::NoSuchTable {
                name: name.to_string(),
                known,
            })
    }
}

pub(crate) fn describe_schema(columns: &[c2ssi_guest_sdk::ColumnSpec]) -> String {
    columns
        .iter()
        .map(|c| format!("{} ({})", c.name, c.ty))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One cell as text: a category as its level's name.
pub fn cell_text(column: &Column, row: usize) -> String {
    match (&column.ty, &column.data) {
        (_, ColumnData::Integer(v)) => v.get(row).map(|x| x.to_string()),
        (_, ColumnData::Real(v)) => v.get(row).map(|x| x.to_string()),
        (_, ColumnData::Boolean(v)) => v.get(row).map(|x| x.to_string()),
        (ColumnType::Category { levels }, ColumnData::Category(v)) => {
            v.get(row).and_then(|&c| levels.get(c as usize)).cloned()
        }
        (_, ColumnData::Category(v)) => v.get(row).map(|c| format!("#{c}")),
    }
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use c2ssi_guest_sdk::{Column, ColumnType};

    fn table(name: &str, values: Vec<i64>) -> Table {
        Table::new(
            name,
            values.len(),
            vec![Column {
                name: "steps".into(),
                ty: ColumnType::Integer {
                    min: Some(0),
                    max: None,
                },
                data: ColumnData::Integer(values),
            }],
        )
        .unwrap()
    }

    #[test]
    fn append_extends_and_fail_refuses() {
        let mut records = Records::default();
        assert_eq!(
            records
                .put(table("health", vec![1, 2]), IfExists::Fail)
                .unwrap(),
            2
        );
        assert!(matches!(
            records.put(table("health", vec![3]), IfExists::Fail),
            Err(WalletError::TableExists { .. })
        ));
        assert_eq!(
            records
                .put(table("health", vec![3]), IfExists::Append)
                .unwrap(),
            3
        );
        assert_eq!(
            records.table("health").unwrap().columns[0].data,
            ColumnData::Integer(vec![1, 2, 3])
        );
        assert_eq!(
            records
                .put(table("health", vec![9]), IfExists::Replace)
                .unwrap(),
            1
        );
    }

    #[test]
    fn names_are_checked_and_missing_tables_listed() {
        assert!(check_table_name("health.daily").is_ok());
        for bad in ["", ".hidden", "a/b", "x y", &"n".repeat(65)] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
        let records = Records::default();
        assert!(
            records
                .table("nope")
                .unwrap_err()
                .to_string()
                .contains("no table 'nope'")
        );
    }
}
