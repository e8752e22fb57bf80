//! The collective's state in SQLite: one file under the data directory, in
//! WAL mode with full synchronous commits, so that a crash loses no committed
//! payment, ledger entry or model version. Every multi-step change runs in one
//! transaction.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::CollectiveError;

/// The schema, in order; each entry runs once, recorded in `schema_version`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE service_keys (
    name TEXT PRIMARY KEY,
    pkcs8 BLOB NOT NULL
);
CREATE TABLE collectives (
    id TEXT PRIMARY KEY,
    operator_key TEXT NOT NULL,
    collective_pkcs8 BLOB NOT NULL,
    manifest TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE algorithms (
    collective_id TEXT NOT NULL REFERENCES collectives(id),
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    bytes BLOB NOT NULL,
    added_ms INTEGER NOT NULL,
    PRIMARY KEY (collective_id, sha256)
);
CREATE TABLE subscriptions (
    collective_id TEXT NOT NULL REFERENCES collectives(id),
    wallet TEXT NOT NULL,
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
    previous_aggregate BLOB,
    dp_rounds INTEGER NOT NULL DEFAULT 0,
    spent INTEGER NOT NULL DEFAULT 0,
    epsilon REAL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE rounds (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    sampled INTEGER NOT NULL,
    opened_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    closed_ms INTEGER,
    outcome TEXT,
    PRIMARY KEY (job_id, round)
);
CREATE TABLE assignments (
    job_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    wallet TEXT NOT NULL,
    task TEXT NOT NULL,
    task_digest TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, round, wallet)
);
CREATE TABLE models (
    hash TEXT NOT NULL,
    collective_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    parent_hash TEXT,
    algorithm_sha256 TEXT NOT NULL,
    params BLOB NOT NULL,
    provenance TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (collective_id, hash)
);
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
"#];

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
}

impl Database {
    /// Opens (creating if needed) `path` and brings its schema up to date.
    /// Every commit is synced to disk before it returns.
    pub fn open(path: &Path) -> Result<Database, CollectiveError> {
        Database::open_with(path, true)
    }

    /// Like [`Database::open`]; with `durable` false, commits are synced at
    /// WAL checkpoints only (SQLite's `synchronous = NORMAL`): still never
    /// corrupt, but the last commits may be lost on power failure. The
    /// simulation uses it; a service never does.
    pub fn open_with(path: &Path, durable: bool) -> Result<Database, CollectiveError> {
        let conn = Connection::open(path)
            .map_err(|e| CollectiveError::Database(format!("opening {}: {e}", path.display())))?;
        let db = Database::setup(conn)?;
        if !durable {
            db.lock().pragma_update(None, "synchronous", "NORMAL")?;
        }
        Ok(db)
    }

    /// A private in-memory database (the simulation).
    pub fn in_memory() -> Result<Database, CollectiveError> {
        let conn = Connection::open_in_memory().map_err(CollectiveError::from)?;
        Database::setup(conn)
    }

    fn setup(conn: Connection) -> Result<Database, CollectiveError> {
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
        f: impl FnOnce(&Connection) -> Result<R, CollectiveError>,
    ) -> Result<R, CollectiveError> {
        f(&self.lock())
    }

    /// Runs `f` in one immediate transaction, committed if it returns `Ok`.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<R, CollectiveError>,
    ) -> Result<R, CollectiveError> {
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
        let result: Result<(), CollectiveError> = db.write(|tx| {
            tx.execute("INSERT INTO service_keys VALUES ('a', x'00')", [])?;
            Err(CollectiveError::Invalid("no".into()))
        });
        assert!(result.is_err());
        drop(db);
        let db = Database::open(&path).unwrap();
        let count: i64 = db
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM service_keys", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(count, 0);
    }
}
