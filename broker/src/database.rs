//! The broker's state in SQLite: one file under the data directory, in WAL
//! mode with full synchronous commits, so that a crash loses no committed
//! payment, ledger entry or model version. Each table belongs to one module
//! (its SQL is there); a change that spans tables runs in one transaction
//! that the broker composes from those modules' `*_in` functions.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::BrokerError;

/// The schema, in order; each entry runs once, recorded in `schema_version`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE keys (
    name TEXT PRIMARY KEY,
    pkcs8 BLOB NOT NULL
);
CREATE TABLE collectives (
    id TEXT PRIMARY KEY,
    collective_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE manifests (
    collective_id TEXT NOT NULL REFERENCES collectives(id),
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    signed TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (collective_id, version)
);
CREATE UNIQUE INDEX manifests_by_digest ON manifests (collective_id, digest);
CREATE TABLE components (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    bytes BLOB NOT NULL,
    added_ms INTEGER NOT NULL
);
CREATE TABLE audits (
    collective_id TEXT NOT NULL REFERENCES collectives(id),
    sha256 TEXT NOT NULL REFERENCES components(sha256),
    summary TEXT NOT NULL,
    PRIMARY KEY (collective_id, sha256)
);
CREATE TABLE subscriptions (
    collective_id TEXT NOT NULL REFERENCES collectives(id),
    wallet TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    contract TEXT NOT NULL,
    subscribed_ms INTEGER NOT NULL,
    last_checkin_ms INTEGER,
    PRIMARY KEY (collective_id, wallet)
);
CREATE TABLE seen_nonces (
    signer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (signer, nonce)
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    collective_id TEXT NOT NULL REFERENCES collectives(id),
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    rounds_done INTEGER NOT NULL,
    next_round INTEGER NOT NULL,
    model_hash TEXT NOT NULL,
    velocity BLOB,
    spent INTEGER NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE rounds (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    sampled INTEGER NOT NULL,
    opened_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    closed_ms INTEGER,
    summary TEXT,
    PRIMARY KEY (job_id, round)
);
CREATE TABLE assignments (
    job_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    wallet TEXT NOT NULL,
    task TEXT,
    task_digest TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, round, wallet)
);
CREATE INDEX assignments_by_wallet ON assignments (wallet, delivered);
CREATE TABLE models (
    hash TEXT NOT NULL,
    collective_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    parent_hash TEXT,
    params BLOB NOT NULL,
    provenance TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (collective_id, job_id, round)
);
CREATE INDEX models_by_hash ON models (collective_id, hash);
CREATE TABLE ledger (
    collective_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (collective_id, seq)
);
CREATE TABLE payments (
    collective_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    wallet TEXT NOT NULL,
    seq INTEGER NOT NULL,
    receipt TEXT NOT NULL,
    PRIMARY KEY (job_id, round, wallet)
);
CREATE INDEX payments_by_wallet ON payments (collective_id, wallet, seq);
CREATE TABLE accounts (
    collective_id TEXT PRIMARY KEY,
    deposited INTEGER NOT NULL,
    paid INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE subscriptions ADD COLUMN credential_id TEXT;
ALTER TABLE subscriptions ADD COLUMN credential_subject TEXT;
ALTER TABLE subscriptions ADD COLUMN credential_issuer TEXT;
ALTER TABLE subscriptions ADD COLUMN credential_valid_until_ms INTEGER;
ALTER TABLE subscriptions ADD COLUMN status_list TEXT;
ALTER TABLE subscriptions ADD COLUMN status_index INTEGER;
CREATE UNIQUE INDEX subscriptions_one_per_subject
    ON subscriptions (collective_id, credential_subject) WHERE credential_subject IS NOT NULL;
CREATE UNIQUE INDEX subscriptions_one_per_credential
    ON subscriptions (collective_id, credential_id) WHERE credential_id IS NOT NULL;
CREATE TABLE status_lists (
    issuer TEXT NOT NULL,
    id TEXT NOT NULL,
    valid_from_ms INTEGER NOT NULL,
    credential TEXT NOT NULL,
    PRIMARY KEY (issuer, id)
);
"#,
];

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
}

impl Database {
    /// Opens (creating if needed) `path` and brings its schema up to date.
    /// Every commit is synced to disk before it returns.
    pub fn open(path: &Path) -> Result<Database, BrokerError> {
        Database::open_with(path, true)
    }

    /// Like [`Database::open`]; with `durable` false, commits are synced at
    /// WAL checkpoints only (SQLite's `synchronous = NORMAL`): still never
    /// corrupt, but the last commits may be lost on power failure. The
    /// simulation uses it; a deployed broker never does.
    pub fn open_with(path: &Path, durable: bool) -> Result<Database, BrokerError> {
        let conn = Connection::open(path)
            .map_err(|e| BrokerError::Database(format!("opening {}: {e}", path.display())))?;
        let db = Database::setup(conn)?;
        if !durable {
            db.lock().pragma_update(None, "synchronous", "NORMAL")?;
        }
        Ok(db)
    }

    /// A private in-memory database (the simulation).
    pub fn in_memory() -> Result<Database, BrokerError> {
        let conn = Connection::open_in_memory().map_err(BrokerError::from)?;
        Database::setup(conn)
    }

    fn setup(conn: Connection) -> Result<Database, BrokerError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
        let version: i64 = conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            conn.execute_batch(&format!(
                "BEGIN; {migration}; INSERT INTO schema_version VALUES ({}); COMMIT;",
                i + 1
            ))?;
        }
        Ok(Database {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no transaction open (rusqlite
        // rolls back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the connection.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        f(&self.lock())
    }

    /// Runs `f` in one immediate transaction, committed if it returns `Ok`.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_a_failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = Database::open(&path).unwrap();
        let result: Result<(), BrokerError> = db.write(|tx| {
            tx.execute("INSERT INTO keys VALUES ('a', x'00')", [])?;
            Err(BrokerError::Invalid("no".into()))
        });
        assert!(result.is_err());
        drop(db);
        let db = Database::open(&path).unwrap();
        let count: i64 = db
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM keys", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(count, 0);
    }
}
