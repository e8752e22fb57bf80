//! The ledger (table `ledger`): append-only, hash-chained, every entry
//! signed by the broker's key. Deposits, one payment per access, model
//! versions, job starts and ends. A payment names its payee only by a salted
//! commitment; the salt is in the payee's receipt.

use std::sync::Arc;

use crate::database::Sql;
use crate::params;
use c2ssi_protocol::{
    EntryKind, LedgerEntry, LedgerSummary, PublicKey, Signer, SigningKey, entry_hash, genesis_hash,
    now_ms, verify_chain,
};

use crate::database::Database;
use crate::error::{BrokerError, Result};

/// The ledger.
#[derive(Clone, Debug)]
pub struct Ledger {
    db: Database,
    key: Arc<SigningKey>,
}

impl Ledger {
    /// The ledger in `db`, signing with `key`.
    pub fn new(db: Database, key: Arc<SigningKey>) -> Ledger {
        Ledger { db, key }
    }

    /// The key entries and receipts are signed with.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The key itself, to sign receipts with.
    pub(crate) fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Appends an entry inside the caller's transaction.
    pub fn append_in(
        &self,
        tx: &Sql<'_>,
        collective_id: &str,
        kind: EntryKind,
    ) -> Result<LedgerEntry> {
        let last: Option<(u64, String)> = tx.query_opt(
            "SELECT seq, hash FROM ledger WHERE collective_id = ?1 ORDER BY seq DESC LIMIT 1",
            params![collective_id],
            |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)),
        )?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, genesis_hash()),
        };
        let time_ms = now_ms();
        let hash = entry_hash(seq, collective_id, time_ms, &prev_hash, &kind);
        let signature = hex::encode(self.key.sign_bytes(hash.as_bytes()));
        tx.execute(
            "INSERT INTO ledger (collective_id, seq, time_ms, prev_hash, kind, hash, signature)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                collective_id,
                seq as i64,
                time_ms as i64,
                prev_hash,
                serde_json::to_string(&kind)?,
                hash,
                signature
            ],
        )?;
        Ok(LedgerEntry {
            seq,
            collective_id: collective_id.to_string(),
            time_ms,
            prev_hash,
            kind,
            hash,
            signature,
        })
    }

    /// Every entry of a collective, in order.
    pub fn entries(&self, collective_id: &str) -> Result<Vec<LedgerEntry>> {
        read_entries(&self.db, collective_id)
    }

    /// Checks the whole chain of a collective.
    pub fn verify(&self, collective_id: &str) -> Result<LedgerSummary> {
        let entries = self.entries(collective_id)?;
        verify_chain(&entries, &self.public_key(), collective_id)
            .map_err(|e| BrokerError::Conflict(format!("the ledger does not verify: {e}")))
    }
}

/// Every entry of a collective, in order, read from `db` (no key needed:
/// `collective ledger verify --db` checks a database file this way).
pub fn read_entries(db: &Database, collective_id: &str) -> Result<Vec<LedgerEntry>> {
    db.read(|c| {
        let rows = c.query_map(
            "SELECT seq, time_ms, prev_hash, kind, hash, signature FROM ledger
             WHERE collective_id = ?1 ORDER BY seq",
            params![collective_id],
            |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<String>(4)?,
                    r.get::<String>(5)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, time_ms, prev_hash, kind, hash, signature) = row;
            out.push(LedgerEntry {
                seq: seq as u64,
                collective_id: collective_id.to_string(),
                time_ms: time_ms as u64,
                prev_hash,
                kind: serde_json::from_str(&kind).map_err(|e| {
                    BrokerError::Database(format!("ledger entry {seq} does not parse: {e}"))
                })?,
                hash,
                signature,
            });
        }
        Ok(out)
    })
}
