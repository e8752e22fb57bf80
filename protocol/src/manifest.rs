//! A collective's manifest (what it asks for, what it pays, who holds which
//! key) and its data requirements, with the check a wallet makes of its own
//! data against them.

use c2ssi_guest_sdk::{Column, ColumnData, ColumnSpec, ColumnType, Table};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::signing::{Header, Message, PublicKey, canonical_json, sha256};

/// The columns and rows a collective needs from one table of a wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRequirement {
    /// The table's name in the wallet (`health.daily`).
    pub table: String,
    /// The columns, with the types, ranges and category lists every wallet's
    /// data is checked against and encoded by.
    pub columns: Vec<ColumnSpec>,
    /// The fewest rows a wallet must have.
    #[serde(default = "one")]
    pub min_rows: u32,
}

fn one() -> u32 {
    1
}

/// Everything a collective needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRequirements {
    /// One entry per table.
    pub tables: Vec<TableRequirement>,
}

impl DataRequirements {
    /// The requirement for `table`.
    pub fn table(&self, table: &str) -> Option<&TableRequirement> {
        self.tables.iter().find(|t| t.table == table)
    }

    /// SHA-256 of the canonical form, hex: what a wallet attests against.
    pub fn digest(&self) -> String {
        hex::encode(sha256(canonical_json(self).unwrap_or_default().as_bytes()))
    }
}

/// An algorithm a collective allows: its content address and what it says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedAlgorithm {
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// Its name, from `describe`.
    pub name: String,
    /// Its version, from `describe`.
    pub version: String,
}

/// What an operator writes to create a collective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestDraft {
    /// A short name.
    pub name: String,
    /// What the collective trains and why, for the people asked to subscribe.
    pub description: String,
    /// The data it needs.
    pub requirements: DataRequirements,
    /// What each access to a wallet pays.
    pub rate: Amount,
    /// The smallest batch the aggregator ever releases (k).
    pub min_batch: u32,
}

/// A collective's manifest, signed by the collective's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Purpose `manifest`, the collective's id.
    pub header: Header,
    /// Increases with every change (an added algorithm).
    pub version: u64,
    /// A short name.
    pub name: String,
    /// What the collective trains and why.
    pub description: String,
    /// The data it needs.
    pub requirements: DataRequirements,
    /// The algorithms it may send.
    pub allowed_algorithms: Vec<AllowedAlgorithm>,
    /// What each access pays.
    pub rate: Amount,
    /// The smallest batch the aggregator releases (k).
    pub min_batch: u32,
    /// The key that signs the manifest and tasks.
    pub collective_key: PublicKey,
    /// The key that signs batch results.
    pub aggregator_key: PublicKey,
    /// The age X25519 recipient updates are encrypted to.
    pub aggregator_recipient: String,
    /// The key that signs ledger entries and receipts.
    pub ledger_key: PublicKey,
}

impl Message for Manifest {
    fn header(&self) -> &Header {
        &self.header
    }
}

impl Manifest {
    /// Whether `sha256` (hex) is an allowed algorithm.
    pub fn allows(&self, sha256: &str) -> Option<&AllowedAlgorithm> {
        self.allowed_algorithms.iter().find(|a| a.sha256 == sha256)
    }

    /// Whether `newer` changes only what a subscriber need not consent to
    /// again: the list of algorithms (growing) and the version.
    pub fn same_terms(&self, newer: &Manifest) -> bool {
        self.header.collective_id == newer.header.collective_id
            && self.requirements == newer.requirements
            && self.rate == newer.rate
            && self.min_batch == newer.min_batch
            && self.collective_key == newer.collective_key
            && self.aggregator_key == newer.aggregator_key
            && self.aggregator_recipient == newer.aggregator_recipient
            && self.ledger_key == newer.ledger_key
    }
}

/// A collective's id: derived from its key, so that nobody else can claim it.
pub fn collective_id(collective_key: &PublicKey) -> String {
    format!("c-{}", &hex::encode(sha256(&collective_key.0))[..24])
}

/// Checks a wallet's table against a requirement. On success, the table as
/// the algorithm will see it: only the required columns, in the required
/// order, typed as required (ranges and category lists from the requirement,
/// so every wallet encodes alike). On failure, everything that is missing or
/// does not fit, in words.
pub fn check_requirement(
    requirement: &TableRequirement,
    table: Option<&Table>,
) -> Result<Table, Vec<String>> {
    let Some(table) = table else {
        return Err(vec![format!("no table '{}'", requirement.table)]);
    };
    let mut problems = Vec::new();
    if (table.row_count as u64) < u64::from(requirement.min_rows) {
        problems.push(format!(
            "table '{}' has {} rows; at least {} are required",
            requirement.table, table.row_count, requirement.min_rows
        ));
    }
    let mut columns = Vec::with_capacity(requirement.columns.len());
    for spec in &requirement.columns {
        let Ok(column) = table.column(&spec.name) else {
            problems.push(format!(
                "table '{}' has no column '{}' ({})",
                requirement.table, spec.name, spec.ty
            ));
            continue;
        };
        match retype(column, &spec.ty) {
            Ok(data) => columns.push(Column {
                name: spec.name.clone(),
                ty: spec.ty.clone(),
                data,
            }),
            Err(problem) => problems.push(format!(
                "table '{}', column '{}': {problem}",
                requirement.table, spec.name
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Table::new(&requirement.table, table.row_count, columns).map_err(|e| vec![e.to_string()])
}

/// The column's values as the required type.
fn retype(column: &Column, want: &ColumnType) -> Result<ColumnData, String> {
    let out_of_range = |row: usize, value: String| {
        format!("row {} has {value}, outside the required {want}", row + 1)
    };
    match (want, &column.data) {
        (ColumnType::Integer { min, max }, ColumnData::Integer(v)) => {
            if let Some((row, x)) = v
                .iter()
                .enumerate()
                .find(|(_, x)| min.is_some_and(|lo| **x < lo) || max.is_some_and(|hi| **x > hi))
            {
                return Err(out_of_range(row, x.to_string()));
            }
            Ok(ColumnData::Integer(v.clone()))
        }
        (ColumnType::Real { min, max }, ColumnData::Real(_) | ColumnData::Integer(_)) => {
            let v: Vec<f64> = match &column.data {
                ColumnData::Real(v) => v.clone(),
                ColumnData::Integer(v) => v.iter().map(|&x| x as f64).collect(),
                _ => Vec::new(),
            };
            if let Some((row, x)) = v.iter().enumerate().find(|(_, x)| {
                !x.is_finite() || min.is_some_and(|lo| **x < lo) || max.is_some_and(|hi| **x > hi)
            }) {
                return Err(out_of_range(row, x.to_string()));
            }
            Ok(ColumnData::Real(v))
        }
        (ColumnType::Boolean, ColumnData::Boolean(v)) => Ok(ColumnData::Boolean(v.clone())),
        (ColumnType::Category { levels }, ColumnData::Category(codes)) => {
            let ColumnType::Category { levels: own } = &column.ty else {
                return Err("is a category without levels".into());
            };
            // Re-encode by the required list, level by level name.
            let map: Vec<Option<u32>> = own
                .iter()
                .map(|l| levels.iter().position(|r| r == l).map(|p| p as u32))
                .collect();
            let mut out = Vec::with_capacity(codes.len());
            for (row, &code) in codes.iter().enumerate() {
                match map.get(code as usize).copied().flatten() {
                    Some(c) => out.push(c),
                    None => {
                        let level = own.get(code as usize).map(String::as_str).unwrap_or("?");
                        return Err(format!(
                            "row {} has '{level}', which is not among the required levels ({})",
                            row + 1,
                            levels.join(", ")
                        ));
                    }
                }
            }
            Ok(ColumnData::Category(out))
        }
        (want, _) => Err(format!(
            "is {} in the wallet, but {} is required",
            column.ty.kind_name(),
            want.kind_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet_table() -> Table {
        Table::new(
            "career",
            2,
            vec![
                Column {
                    name: "job".into(),
                    ty: ColumnType::Category {
                        levels: vec!["nurse".into(), "engineer".into()],
                    },
                    data: ColumnData::Category(vec![0, 1]),
                },
                Column {
                    name: "eval".into(),
                    ty: ColumnType::Integer {
                        min: None,
                        max: None,
                    },
                    data: ColumnData::Integer(vec![7, 9]),
                },
                Column {
                    name: "private_notes".into(),
                    ty: ColumnType::Boolean,
                    data: ColumnData::Boolean(vec![true, false]),
                },
            ],
        )
        .unwrap()
    }

    fn requirement(eval_max: f64) -> TableRequirement {
        TableRequirement {
            table: "career".into(),
            columns: vec![
                ColumnSpec {
                    name: "eval".into(),
                    ty: ColumnType::Real {
                        min: Some(0.0),
                        max: Some(eval_max),
                    },
                },
                ColumnSpec {
                    name: "job".into(),
                    ty: ColumnType::Category {
                        levels: vec!["engineer".into(), "manager".into(), "nurse".into()],
                    },
                },
            ],
            min_rows: 1,
        }
    }

    #[test]
    fn projection_keeps_only_required_columns_retyped_and_recoded() {
        let t = check_requirement(&requirement(10.0), Some(&wallet_table())).unwrap();
        assert_eq!(
            t.columns.len(),
            2,
            "private_notes never reaches the algorithm"
        );
        assert_eq!(t.columns[0].data, ColumnData::Real(vec![7.0, 9.0]));
        assert_eq!(t.columns[1].data, ColumnData::Category(vec![2, 0]));
        assert_eq!(t.columns[0].ty.numeric_range(), Some((0.0, 10.0)));
    }

    #[test]
    fn every_problem_is_listed() {
        let mut req = requirement(8.0);
        req.min_rows = 3;
        req.columns.push(ColumnSpec {
            name: "salary".into(),
            ty: ColumnType::Real {
                min: None,
                max: None,
            },
        });
        let problems = check_requirement(&req, Some(&wallet_table())).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("2 rows; at least 3"));
        assert!(problems[1].contains("row 2 has 9, outside the required real 0..=8"));
        assert!(problems[2].contains("no column 'salary'"));
        assert_eq!(
            check_requirement(&req, None).unwrap_err(),
            vec!["no table 'career'".to_string()]
        );
    }
}
