//! The components the broker holds (table `components`, by SHA-256) and
//! the privacy audit of each for each collective that allows it (table
//! `audits`). A component is served only to collectives whose current
//! manifest allows it.

use crate::database::Sql;
use crate::params;
use c2ssi_protocol::{AuditSummary, now_ms};

use crate::database::Database;
use crate::error::{BrokerError, Result};
use crate::registry::Registry;

/// The component store.
#[derive(Clone, Debug)]
pub struct Algorithms {
    db: Database,
}

impl Algorithms {
    /// The store in `db`.
    pub fn new(db: Database) -> Algorithms {
        Algorithms { db }
    }

    /// Whether the broker holds the component.
    pub fn has(&self, sha256: &str) -> Result<bool> {
        self.db.read(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM components WHERE sha256 = ?1",
                params![sha256],
                |_| Ok(()),
            )?
            .is_some())
        })
    }

    /// A component's bytes, whoever allows it (the broker's own use).
    pub fn bytes(&self, sha256: &str) -> Result<Vec<u8>> {
        self.db.read(|c| {
            c.query_opt(
                "SELECT bytes FROM components WHERE sha256 = ?1",
                params![sha256],
                |r| r.get(0),
            )?
            .ok_or_else(|| BrokerError::NotFound(format!("no algorithm {sha256}")))
        })
    }

    /// A component, for a wallet of collective `id`: only if the current
    /// manifest allows it.
    pub fn for_collective(&self, registry: &Registry, id: &str, sha256: &str) -> Result<Vec<u8>> {
        let current = registry.current(id)?;
        if current.manifest.allows(sha256).is_none() {
            return Err(BrokerError::NotFound(format!(
                "collective '{id}' does not allow algorithm {sha256}"
            )));
        }
        self.bytes(sha256)
    }

    /// Stores a component (a no-op if it is there).
    pub fn put_in(
        tx: &Sql<'_>,
        sha256: &str,
        name: &str,
        version: &str,
        bytes: &[u8],
    ) -> Result<()> {
        tx.execute(
            "INSERT INTO components (sha256, name, version, bytes, added_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![sha256, name, version, bytes, now_ms() as i64],
        )?;
        Ok(())
    }

    /// Records the audit of a component for a collective.
    pub fn put_audit_in(tx: &Sql<'_>, id: &str, audit: &AuditSummary) -> Result<()> {
        tx.execute(
            "INSERT INTO audits (collective_id, sha256, summary) VALUES (?1, ?2, ?3)
             ON CONFLICT (collective_id, sha256) DO UPDATE SET summary = ?3",
            params![id, audit.sha256, serde_json::to_string(audit)?],
        )?;
        Ok(())
    }

    /// The audits of a collective's components.
    pub fn audits(&self, id: &str) -> Result<Vec<AuditSummary>> {
        self.db.read(|c| {
            c.query_map(
                "SELECT summary FROM audits WHERE collective_id = ?1 ORDER BY sha256",
                params![id],
                |r| r.json(0),
            )
        })
    }
}
