//! A collective's manifest (what it asks for, what it pays, the privacy it
//! promises, who holds which key), what changes between two versions of it,
//! and its data requirements, with the check a wallet makes of its own data
//! against them.

use c2ssi_guest_sdk::{
    Column, ColumnData, ColumnSpec, ColumnType, Table, check_schema, valid_table_name,
};
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::error::ProtocolError;
use crate::privacy::PrivacyTerms;
use crate::signing::{Header, Message, PublicKey, Purpose, Signed, canonical_json, sha256};

/// The columns and rows a collective needs from one table of a wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// The longest name, version or collective name a manifest may carry.
const MAX_NAME: usize = 200;
/// The longest description.
const MAX_DESCRIPTION: usize = 10_000;
/// The most tables a manifest may require, and the most algorithms it may allow.
const MAX_ENTRIES: usize = 256;
/// The most columns a manifest may require of one table. Checking a schema
/// takes time quadratic in its columns, so an unbounded list in a submitted
/// manifest would hold the broker (or a wallet) for hours.
const MAX_COLUMNS: usize = 1024;

impl DataRequirements {
    /// Checks the requirements: some tables, each with a valid name, given
    /// once, with a valid schema.
    pub fn check(&self) -> Result<(), String> {
        if self.tables.is_empty() {
            return Err("the manifest requires no data".into());
        }
        if self.tables.len() > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} tables are required"));
        }
        for (i, t) in self.tables.iter().enumerate() {
            if !valid_table_name(&t.table) {
                return Err(format!(
                    "required table {} has an invalid name (1 to 64 letters, digits, '_', '.' \
                     or '-')",
                    i + 1
                ));
            }
            if self.tables[..i].iter().any(|o| o.table == t.table) {
                return Err(format!("table '{}' is required twice", t.table));
            }
            if t.columns.len() > MAX_COLUMNS {
                return Err(format!(
                    "more than {MAX_COLUMNS} columns are required of table '{}'",
                    t.table
                ));
            }
            check_schema(&t.columns)
                .map_err(|e| format!("requirement for table '{}': {e}", t.table))?;
        }
        Ok(())
    }
}

/// An algorithm a collective allows: its content address and what it says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AllowedAlgorithm {
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// Its name, from `describe`.
    pub name: String,
    /// Its version, from `describe`.
    pub version: String,
}

/// The credential a collective requires of every subscriber, against Sybils:
/// a verifiable credential of `credential_type` issued by one of `issuers`
/// to the wallet's own `did:key`. The broker then admits one subscription
/// per credential subject, and ends it when the credential expires or its
/// issuer revokes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequirement {
    /// The credential type (`UniquePersonCredential`).
    pub credential_type: String,
    /// The issuers whose credentials count.
    #[schema(value_type = Vec<String>)]
    pub issuers: Vec<c2ssi_credentials::Did>,
}

impl std::fmt::Display for CredentialRequirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self.issuers.iter().map(|d| d.as_str()).collect();
        write!(
            f,
            "a {} credential issued by {}",
            self.credential_type,
            issuers.join(" or ")
        )
    }
}

/// A collective's manifest, signed by the collective's key: what it asks
/// for, what it pays, the privacy it promises, and who holds which key.
/// Every version needs each subscriber's consent again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Purpose `manifest`, the collective's id.
    pub header: Header,
    /// 1 for a new collective, one more with every change.
    pub version: u64,
    /// A short name.
    pub name: String,
    /// What the collective trains and why, for the people asked to subscribe.
    pub description: String,
    /// The data it needs.
    pub requirements: DataRequirements,
    /// The algorithms it may send, by content address.
    pub allowed_algorithms: Vec<AllowedAlgorithm>,
    /// What each access to a wallet pays.
    pub rate: Amount,
    /// The privacy terms, which the wallet and the aggregator enforce.
    pub privacy: PrivacyTerms,
    /// The collective's key: signs the manifest and the consumer's commands;
    /// the collective's id is derived from it.
    pub collective_key: PublicKey,
    /// The broker's key: signs tasks, round control, ledger entries and receipts.
    pub broker_key: PublicKey,
    /// The aggregator's key: signs batch results and access reports.
    pub aggregator_key: PublicKey,
    /// The age X25519 recipient updates are sealed to.
    pub aggregator_recipient: String,
    /// The credential every subscriber must present, if any. Without one,
    /// any key may subscribe: the manifest says so and `collective create`
    /// warns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialRequirement>,
}

impl Message for Manifest {
    fn header(&self) -> &Header {
        &self.header
    }
}

/// One difference between two versions of a manifest, which a subscriber
/// consents to (or not).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// The name.
    Name {
        /// Before.
        from: String,
        /// After.
        to: String,
    },
    /// The description.
    Description,
    /// The data required.
    Requirements,
    /// A new algorithm.
    AlgorithmAdded(AllowedAlgorithm),
    /// An algorithm no longer allowed.
    AlgorithmRemoved(AllowedAlgorithm),
    /// The rate per access.
    Rate {
        /// Before.
        from: Amount,
        /// After.
        to: Amount,
    },
    /// The privacy terms.
    Privacy {
        /// Before.
        from: Box<PrivacyTerms>,
        /// After.
        to: Box<PrivacyTerms>,
    },
    /// Another broker.
    Broker,
    /// Another aggregator.
    Aggregator,
    /// The credential subscribers must present.
    Credential {
        /// Before.
        from: Option<CredentialRequirement>,
        /// After.
        to: Option<CredentialRequirement>,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Name { from, to } => write!(f, "name: '{from}' becomes '{to}'"),
            Change::Description => f.write_str("the description changed"),
            Change::Requirements => f.write_str("the data required changed"),
            Change::AlgorithmAdded(a) => write!(
                f,
                "new algorithm {} {} (sha256 {})",
                a.name, a.version, a.sha256
            ),
            Change::AlgorithmRemoved(a) => {
                write!(f, "algorithm {} {} is no longer allowed", a.name, a.version)
            }
            Change::Rate { from, to } => write!(f, "rate per access: {from} becomes {to}"),
            Change::Privacy { from, to } => {
                let terms = |t: &PrivacyTerms| {
                    format!(
                        "k {}, clipping {}, noise multiplier {}, at most {} rounds per job, \
                         epsilon per job {} at delta {:e}, metrics [{}]",
                        t.min_batch,
                        t.clip_norm,
                        t.noise_multiplier,
                        t.rounds_per_wallet,
                        epsilon_text(t.epsilon),
                        t.delta,
                        metric_ranges(t)
                    )
                };
                write!(f, "privacy terms: from {} to {}", terms(from), terms(to))
            }
            Change::Broker => f.write_str("another broker distributes tasks and keeps the ledger"),
            Change::Aggregator => f.write_str("another aggregator receives the updates"),
            Change::Credential { from, to } => {
                let text = |c: &Option<CredentialRequirement>| {
                    c.as_ref()
                        .map_or_else(|| "no credential".to_string(), |c| c.to_string())
                };
                write!(
                    f,
                    "credential required of subscribers: from {} to {}",
                    text(from),
                    text(to)
                )
            }
        }
    }
}

fn epsilon_text(e: Option<f64>) -> String {
    e.map_or_else(|| "none (NO NOISE)".into(), |e| format!("{e}"))
}

fn metric_ranges(t: &PrivacyTerms) -> String {
    t.metrics
        .iter()
        .map(|m| format!("{} in [{}, {}]", m.name, m.min, m.max))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Manifest {
    /// Whether `sha256` (hex) is an allowed algorithm.
    pub fn allows(&self, sha256: &str) -> Option<&AllowedAlgorithm> {
        self.allowed_algorithms.iter().find(|a| a.sha256 == sha256)
    }

    /// Checks every field: texts present and bounded, requirements and
    /// privacy terms valid, a positive rate, algorithms named by SHA-256
    /// once each, an age recipient, and an id derived from the collective key.
    pub fn check(&self) -> Result<(), String> {
        if self.header.purpose != Purpose::Manifest {
            return Err("the header's purpose is not 'manifest'".into());
        }
        if self.header.collective_id != collective_id(&self.collective_key) {
            return Err(format!(
                "collective id '{}' is not the one its key gives ({})",
                self.header.collective_id,
                collective_id(&self.collective_key)
            ));
        }
        if self.version == 0 {
            return Err("versions start at 1".into());
        }
        if self.name.trim().is_empty() || self.name.len() > MAX_NAME {
            return Err(format!("the name must have 1 to {MAX_NAME} bytes"));
        }
        if self.description.trim().is_empty() || self.description.len() > MAX_DESCRIPTION {
            return Err(format!(
                "the description (for the people asked to subscribe) must have 1 to \
                 {MAX_DESCRIPTION} bytes"
            ));
        }
        self.requirements.check()?;
        if self.rate.0 == 0 {
            return Err("the rate per access must be more than zero".into());
        }
        self.privacy.check().map_err(|e| e.to_string())?;
        if self.allowed_algorithms.len() > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} algorithms are allowed"));
        }
        for (i, a) in self.allowed_algorithms.iter().enumerate() {
            if a.sha256.len() != 64
                || !a
                    .sha256
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            {
                return Err(format!(
                    "algorithm {} is not named by a SHA-256 in lower-case hex",
                    i + 1
                ));
            }
            if self.allowed_algorithms[..i]
                .iter()
                .any(|o| o.sha256 == a.sha256)
            {
                return Err(format!("algorithm {} is allowed twice", a.sha256));
            }
            if a.name.is_empty() || a.name.len() > MAX_NAME || a.version.len() > MAX_NAME {
                return Err(format!(
                    "algorithm {} needs a name and version of at most {MAX_NAME} bytes",
                    a.sha256
                ));
            }
        }
        self.aggregator_recipient
            .parse::<age::x25519::Recipient>()
            .map_err(|e| format!("the aggregator recipient is not an age recipient: {e}"))?;
        if let Some(c) = &self.credential {
            let t = &c.credential_type;
            if t.is_empty()
                || t.len() > MAX_NAME
                || !t
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch))
            {
                return Err(format!(
                    "the required credential type must be 1 to {MAX_NAME} letters, digits,                      '_', '-' or '.'"
                ));
            }
            if c.issuers.is_empty() || c.issuers.len() > MAX_ENTRIES {
                return Err(format!(
                    "a required credential names 1 to {MAX_ENTRIES} issuers"
                ));
            }
        }
        Ok(())
    }

    /// What changed from `self` to `newer`, in the order a person reads it.
    pub fn changes(&self, newer: &Manifest) -> Vec<Change> {
        let mut out = Vec::new();
        if self.name != newer.name {
            out.push(Change::Name {
                from: self.name.clone(),
                to: newer.name.clone(),
            });
        }
        if self.description != newer.description {
            out.push(Change::Description);
        }
        if self.requirements != newer.requirements {
            out.push(Change::Requirements);
        }
        for a in &newer.allowed_algorithms {
            if self.allows(&a.sha256).is_none() {
                out.push(Change::AlgorithmAdded(a.clone()));
            }
        }
        for a in &self.allowed_algorithms {
            if newer.allows(&a.sha256).is_none() {
                out.push(Change::AlgorithmRemoved(a.clone()));
            }
        }
        if self.rate != newer.rate {
            out.push(Change::Rate {
                from: self.rate,
                to: newer.rate,
            });
        }
        if self.privacy != newer.privacy {
            out.push(Change::Privacy {
                from: Box::new(self.privacy.clone()),
                to: Box::new(newer.privacy.clone()),
            });
        }
        if self.broker_key != newer.broker_key {
            out.push(Change::Broker);
        }
        if self.aggregator_key != newer.aggregator_key
            || self.aggregator_recipient != newer.aggregator_recipient
        {
            out.push(Change::Aggregator);
        }
        if self.credential != newer.credential {
            out.push(Change::Credential {
                from: self.credential.clone(),
                to: newer.credential.clone(),
            });
        }
        out
    }
}

/// Opens a signed manifest of collective `id`: signed by the key it names,
/// that key gives `id`, and every field checks.
pub fn open_manifest(signed: &Signed<Manifest>, id: &str) -> Result<Manifest, ProtocolError> {
    let manifest = signed.open_any_time(Some(&signed.signer), Purpose::Manifest)?;
    if manifest.collective_key != signed.signer {
        return Err(ProtocolError::Malformed(
            "the manifest is not signed by the collective key it names".into(),
        ));
    }
    if manifest.header.collective_id != id {
        return Err(ProtocolError::Malformed(format!(
            "the manifest is for collective '{}', not '{id}'",
            manifest.header.collective_id
        )));
    }
    manifest
        .check()
        .map_err(|e| ProtocolError::Malformed(format!("manifest: {e}")))?;
    Ok(manifest)
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

    fn manifest(key: &crate::SigningKey) -> Manifest {
        use crate::signing::Signer;
        let id = collective_id(&key.public_key());
        let other = crate::SigningKey::generate().unwrap().public_key();
        Manifest {
            header: Header::new(Purpose::Manifest, &id, 60_000),
            version: 1,
            name: "n".into(),
            description: "d".into(),
            requirements: DataRequirements {
                tables: vec![requirement(10.0)],
            },
            allowed_algorithms: Vec::new(),
            rate: Amount(5),
            privacy: crate::privacy::default_terms(),
            collective_key: key.public_key(),
            broker_key: other,
            aggregator_key: other,
            aggregator_recipient: age::x25519::Identity::generate().to_public().to_string(),
            credential: None,
        }
    }

    #[test]
    fn a_manifest_checks_its_fields_and_opens_only_for_its_id() {
        let key = crate::SigningKey::generate().unwrap();
        let m = manifest(&key);
        m.check().unwrap();
        let signed = Signed::sign(&m, &key).unwrap();
        let id = m.header.collective_id.clone();
        assert_eq!(open_manifest(&signed, &id).unwrap(), m);
        assert!(open_manifest(&signed, "c-000000000000000000000000").is_err());
        // Signed by another key than the one it names (and its id derives from).
        let thief = crate::SigningKey::generate().unwrap();
        assert!(open_manifest(&Signed::sign(&m, &thief).unwrap(), &id).is_err());
        for broken in [
            Manifest {
                rate: Amount(0),
                ..m.clone()
            },
            Manifest {
                description: " ".into(),
                ..m.clone()
            },
            Manifest {
                aggregator_recipient: "age1nonsense".into(),
                credential: None,
                ..m.clone()
            },
            Manifest {
                allowed_algorithms: vec![AllowedAlgorithm {
                    sha256: "ABC".into(),
                    name: "x".into(),
                    version: "1".into(),
                }],
                ..m.clone()
            },
        ] {
            assert!(broken.check().is_err(), "{broken:?}");
        }
    }

    #[test]
    fn every_change_that_needs_consent_is_listed() {
        let key = crate::SigningKey::generate().unwrap();
        let old = manifest(&key);
        assert!(old.changes(&old.clone()).is_empty());
        let mut new = old.clone();
        new.version = 2;
        new.header = Header::new(Purpose::Manifest, &old.header.collective_id, 60_000);
        assert!(
            old.changes(&new).is_empty(),
            "a new version alone changes nothing"
        );
        new.allowed_algorithms.push(AllowedAlgorithm {
            sha256: "a".repeat(64),
            name: "leaky".into(),
            version: "1".into(),
        });
        new.rate = Amount(6);
        new.privacy.min_batch = 3;
        new.aggregator_key = crate::Signer::public_key(&key);
        let changes = old.changes(&new);
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(matches!(changes[0], Change::AlgorithmAdded(_)));
        assert!(matches!(changes[1], Change::Rate { .. }));
        assert!(matches!(changes[2], Change::Privacy { .. }));
        assert!(matches!(changes[3], Change::Aggregator));
        let text = changes[2].to_string();
        assert!(
            text.contains("from k 10,") && text.contains("to k 3,"),
            "{text}"
        );
        assert!(text.contains("delta 1e-5"), "{text}");
    }

    /// Found while fuzzing (by reading the checks the fuzzer reaches, then
    /// timing them): checking a requirement's columns takes time
    /// quadratic in their number (40,000 columns, 2.8 MB of JSON, took 19 s
    /// unoptimized; a 48 MiB submission would take hours), so their number
    /// is bounded before the check.
    #[test]
    fn a_requirement_of_too_many_columns_is_refused_at_once() {
        let requirement = |n: usize| DataRequirements {
            tables: vec![TableRequirement {
                table: "t".into(),
                columns: (0..n)
                    .map(|i| ColumnSpec {
                        name: format!("column_with_a_long_shared_prefix_{i:08}"),
                        ty: ColumnType::Boolean,
                    })
                    .collect(),
                min_rows: 1,
            }],
        };
        requirement(MAX_COLUMNS).check().unwrap();
        let started = std::time::Instant::now();
        let refused = requirement(40_000).check().unwrap_err();
        assert!(refused.contains("more than 1024 columns"), "{refused}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
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

/// Property-based fuzzing of manifests: arbitrary JSON, mutations of a real
/// signed manifest on the wire, and manifests mutated field by field and
/// signed again, so that every check is reached.
#[cfg(test)]
mod fuzz {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;
    use crate::privacy::MetricBound;
    use crate::signing::{Signer, SigningKey};
    use c2ssi_fuzzing::{config, json_mutations, mutate, mutate_json, mutations};

    static KEY: LazyLock<SigningKey> =
        LazyLock::new(|| SigningKey::generate().expect("the system has randomness"));

    /// A real manifest with every kind of field filled, signed, and its
    /// wire form.
    static MANIFEST: LazyLock<(Manifest, Signed<Manifest>, Vec<u8>)> = LazyLock::new(|| {
        let id = collective_id(&KEY.public_key());
        let other = SigningKey::generate()
            .expect("the system has randomness")
            .public_key();
        let metrics = vec![MetricBound {
            name: "mse".into(),
            min: 0.0,
            max: 10.0,
        }];
        let manifest = Manifest {
            header: Header::new(Purpose::Manifest, &id, 3_600_000),
            version: 2,
            name: "career".into(),
            description: "salaries by job".into(),
            requirements: DataRequirements {
                tables: vec![TableRequirement {
                    table: "career".into(),
                    columns: vec![
                        ColumnSpec {
                            name: "eval".into(),
                            ty: ColumnType::Real {
                                min: Some(0.0),
                                max: Some(10.0),
                            },
                        },
                        ColumnSpec {
                            name: "years".into(),
                            ty: ColumnType::Integer {
                                min: Some(0),
                                max: Some(60),
                            },
                        },
                        ColumnSpec {
                            name: "job".into(),
                            ty: ColumnType::Category {
                                levels: vec!["engineer".into(), "nurse".into()],
                            },
                        },
                        ColumnSpec {
                            name: "remote".into(),
                            ty: ColumnType::Boolean,
                        },
                    ],
                    min_rows: 2,
                }],
            },
            allowed_algorithms: vec![AllowedAlgorithm {
                sha256: "a".repeat(64),
                name: "linear-regression".into(),
                version: "1.0.0".into(),
            }],
            rate: Amount(5),
            privacy: PrivacyTerms::with_epsilon(5, 1.0, 1e-5, 4, 3.0, metrics)
                .expect("the terms are valid"),
            collective_key: KEY.public_key(),
            broker_key: other,
            aggregator_key: other,
            aggregator_recipient: age::x25519::Identity::generate().to_public().to_string(),
            credential: Some(CredentialRequirement {
                credential_type: "UniquePersonCredential".into(),
                issuers: vec![c2ssi_credentials::Did::from_ed25519(other.0)],
            }),
        };
        manifest.check().expect("the manifest is valid");
        let signed = Signed::sign(&manifest, &*KEY).expect("the manifest signs");
        let wire = serde_json::to_vec(&signed).expect("the manifest serializes");
        (manifest, signed, wire)
    });

    /// A wallet's table to check requirements against.
    static TABLE: LazyLock<Table> = LazyLock::new(|| {
        Table::new(
            "career",
            2,
            vec![
                Column {
                    name: "eval".into(),
                    ty: ColumnType::Integer {
                        min: None,
                        max: None,
                    },
                    data: ColumnData::Integer(vec![7, 9]),
                },
                Column {
                    name: "years".into(),
                    ty: ColumnType::Integer {
                        min: None,
                        max: None,
                    },
                    data: ColumnData::Integer(vec![3, 30]),
                },
                Column {
                    name: "job".into(),
                    ty: ColumnType::Category {
                        levels: vec!["nurse".into(), "engineer".into(), "manager".into()],
                    },
                    data: ColumnData::Category(vec![0, 1]),
                },
                Column {
                    name: "remote".into(),
                    ty: ColumnType::Boolean,
                    data: ColumnData::Boolean(vec![true, false]),
                },
            ],
        )
        .expect("the table is valid")
    });

    /// Everything a wallet does with a manifest it opened: list the
    /// changes from the one it has, show them and the terms, and check its
    /// data against the requirements.
    fn use_manifest(manifest: &Manifest) {
        let (original, ..) = &*MANIFEST;
        for change in original.changes(manifest) {
            let _ = change.to_string();
        }
        for change in manifest.changes(original) {
            let _ = change.to_string();
        }
        let _ = manifest.privacy.describe();
        let _ = manifest.privacy.sensitivity();
        let _ = manifest.requirements.digest();
        for requirement in &manifest.requirements.tables {
            let _ = check_requirement(requirement, Some(&TABLE));
            let _ = check_requirement(requirement, None);
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_json_is_no_manifest(text in ".*", id in ".{0,40}") {
            let _ = serde_json::from_str::<Manifest>(&text);
            if let Ok(signed) = serde_json::from_str::<Signed<Manifest>>(&text) {
                prop_assert!(open_manifest(&signed, &id).is_err());
            }
        }

        #[test]
        fn a_mutated_signed_manifest_on_the_wire_never_opens_changed(mutations in mutations()) {
            let (manifest, original, wire) = &*MANIFEST;
            let bytes = mutate(wire, &mutations);
            if let Ok(signed) = serde_json::from_slice::<Signed<Manifest>>(&bytes) {
                match open_manifest(&signed, &manifest.header.collective_id) {
                    Ok(opened) => {
                        prop_assert_eq!(&signed.payload, &original.payload);
                        prop_assert_eq!(&opened, manifest);
                    }
                    Err(e) => prop_assert!(
                        matches!(
                            e,
                            ProtocolError::BadSignature { .. }
                                | ProtocolError::Malformed(_)
                                | ProtocolError::WrongPurpose { .. }
                        ),
                        "{e:?}"
                    ),
                }
            }
        }

        /// The collective (or anyone, with its own key) signs whatever it
        /// likes: every field mutated reaches the checks, which refuse it
        /// with a typed error or accept a manifest that checks.
        #[test]
        fn a_mutated_manifest_signed_again_opens_only_if_it_checks(
            json in json_mutations(),
            bytes in mutations(),
            by_json in any::<bool>(),
        ) {
            let (manifest, original, _) = &*MANIFEST;
            let payload = if by_json {
                let value: serde_json::Value =
                    serde_json::from_str(&original.payload).expect("the payload is JSON");
                mutate_json(&value, &json).to_string()
            } else {
                String::from_utf8_lossy(&mutate(original.payload.as_bytes(), &bytes)).into_owned()
            };
            let signed: Signed<Manifest> = Signed::sign_raw(payload, Purpose::Manifest, &*KEY);
            let id = &manifest.header.collective_id;
            match open_manifest(&signed, id) {
                Ok(opened) => {
                    prop_assert!(opened.check().is_ok());
                    prop_assert_eq!(opened.collective_key, KEY.public_key());
                    prop_assert_eq!(&opened.header.collective_id, id);
                    use_manifest(&opened);
                }
                Err(e) => prop_assert!(
                    matches!(e, ProtocolError::Malformed(_) | ProtocolError::WrongPurpose { .. }),
                    "{e:?}"
                ),
            }
            // A manifest that parses but does not check is still used
            // safely by code that has not checked it yet.
            if let Ok(parsed) = serde_json::from_str::<Manifest>(&signed.payload) {
                let _ = parsed.check();
                use_manifest(&parsed);
            }
        }
    }
}
