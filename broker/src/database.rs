//! The broker's state: SQLite by default (one file under the data directory,
//! in WAL mode with full synchronous commits), or PostgreSQL when given a
//! `postgres://` URL, so that several brokers can share one state. Either
//! way a crash loses no committed payment, ledger entry or model version,
//! and writes are serial: SQLite has one writer, and on PostgreSQL every
//! write transaction first takes one advisory lock.
//!
//! Each table belongs to one module (its SQL is there, written once for
//! both engines: `?N` placeholders, 64-bit integers, `ON CONFLICT`); a
//! change that spans tables runs in one transaction that the broker
//! composes from those modules' `*_in` functions. [`Sql`] is the handle
//! those functions get; it is written here rather than taken from a crate
//! because the crates that span both engines (sqlx, diesel) are async or
//! generate the queries, and the broker's SQL is plain and synchronous.

use std::cell::RefCell;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use std::collections::HashMap;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{IsolationLevel, NoTls};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::BrokerError;

/// The schema, in order; each entry runs once, recorded in `schema_version`.
/// Written for SQLite; [`postgres_schema`] adapts the types for PostgreSQL.
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
    r#"
ALTER TABLE jobs ADD COLUMN driver TEXT;
ALTER TABLE jobs ADD COLUMN driver_until_ms INTEGER;
"#,
    // Every signed request forgets the expired nonces first: without this
    // index that was a scan of every nonce seen in the validity window, per
    // request (quadratic in a burst of subscriptions).
    r#"
CREATE INDEX seen_nonces_by_expiry ON seen_nonces (expires_ms);
"#,
    // The number of subscribers after each change, one row per collective
    // and minute (the last change of the minute wins): the consumer's
    // dashboard draws it over time. Counts only, never a wallet.
    r#"
CREATE TABLE subscriber_counts (
    collective_id TEXT NOT NULL REFERENCES collectives(id),
    minute_ms INTEGER NOT NULL,
    subscribers INTEGER NOT NULL,
    PRIMARY KEY (collective_id, minute_ms)
);
"#,
];

/// The advisory lock every PostgreSQL write transaction takes first, so
/// that writes are serial as they are on SQLite (an arbitrary constant).
const WRITE_LOCK: i64 = 0x6332_7373_6900_0001;
/// The advisory lock that migrations take, so that brokers starting
/// together migrate once.
const MIGRATION_LOCK: i64 = 0x6332_7373_6900_0002;
/// PostgreSQL connections a broker keeps at most.
const POSTGRES_CONNECTIONS: u32 = 16;

/// Which engine a handle talks to, for the rare statement that differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (the default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A value bound to a statement or read from a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (also booleans: 0 or 1).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// What can be bound to a statement; [`params!`](crate::params) uses it.
pub trait ToValue {
    /// The value bound.
    fn to_value(&self) -> Value;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

/// The values bound to a statement's `?1`, `?2`, ...
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::database::ToValue::to_value(&$value)),*][..]
    };
}

/// What a column can be read as.
pub trait FromValue: Sized {
    /// The value read, or why it cannot be.
    fn from_value(value: &Value) -> Result<Self, BrokerError>;
}

fn mismatch(value: &Value, wanted: &str) -> BrokerError {
    BrokerError::Database(format!(
        "a column holds {value:?} where {wanted} was expected"
    ))
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, BrokerError> {
        match value {
            Value::Int(i) => Ok(*i),
            other => Err(mismatch(other, "an integer")),
        }
    }
}
impl FromValue for u32 {
    fn from_value(value: &Value) -> Result<Self, BrokerError> {
        let i = i64::from_value(value)?;
        u32::try_from(i).map_err(|_| mismatch(value, "a 32-bit count"))
    }
}
impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, BrokerError> {
        Ok(i64::from_value(value)? != 0)
    }
}
impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, BrokerError> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => Err(mismatch(other, "text")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, BrokerError> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(mismatch(other, "bytes")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, BrokerError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One row of a result.
#[derive(Debug)]
pub struct Row(Vec<Value>);

impl Row {
    /// Column `index`, read as `T`.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, BrokerError> {
        let value = self
            .0
            .get(index)
            .ok_or_else(|| BrokerError::Database(format!("no column {index}")))?;
        T::from_value(value)
    }

    /// Column `index`, text holding JSON, decoded as `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, index: usize) -> Result<T, BrokerError> {
        Ok(serde_json::from_str(&self.get::<String>(index)?)?)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("an integer bound where {ty} is expected").into()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.as_str().to_sql(ty, out)
                }
                _ => Err(format!("text bound where {ty} is expected").into()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(format!("bytes bound where {ty} is expected").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Every type is taken here and checked in `to_sql`, which knows the value.
        true
    }

    to_sql_checked!();
}

/// Refuses text that holds a NUL character: PostgreSQL cannot store one, and
/// SQLite is held to the same rule so that both stores take the same input.
/// (Stored JSON escapes it; only a raw field, such as a name in a manifest,
/// can carry one.)
fn no_nul(params: &[Value]) -> Result<(), BrokerError> {
    if params
        .iter()
        .any(|p| matches!(p, Value::Text(t) if t.contains('\0')))
    {
        return Err(BrokerError::Invalid(
            "a text field holds a NUL character (\\u0000), which is not stored".into(),
        ));
    }
    Ok(())
}

/// A PostgreSQL row as values, by its columns' types.
fn postgres_row(row: &postgres::Row) -> Result<Row, BrokerError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            ref other => {
                return Err(BrokerError::Database(format!(
                    "column {} is of type {other}, which the broker does not read",
                    column.name()
                )));
            }
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

/// The hosts and ports a PostgreSQL configuration names, for messages.
fn hosts(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                postgres::config::Host::Unix(path) => format!("{} port {port}", path.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A statement's `?N` placeholders as PostgreSQL's `$N`. The broker's SQL
/// has no `?` inside its string literals.
fn postgres_sql(sql: &str) -> String {
    sql.replace('?', "$")
}

/// The SQLite schema with PostgreSQL's types: 64-bit integers and `BYTEA`.
fn postgres_schema(sql: &str) -> String {
    sql.replace("INTEGER", "BIGINT").replace("BLOB", "BYTEA")
}

fn sqlite_row(row: &rusqlite::Row<'_>, columns: usize) -> Result<Row, BrokerError> {
    let mut values = Vec::with_capacity(columns);
    for i in 0..columns {
        values.push(match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Real(v) => {
                return Err(BrokerError::Database(format!(
                    "column {i} holds a float ({v}), which the broker does not store"
                )));
            }
            ValueRef::Text(t) => Value::Text(
                std::str::from_utf8(t)
                    .map_err(|e| BrokerError::Database(format!("column {i}: {e}")))?
                    .to_string(),
            ),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(Row(values))
}

enum Handle<'a> {
    Sqlite(&'a Connection),
    Postgres(RefCell<PostgresTx<'a>>),
}

/// A PostgreSQL transaction, and its connection's prepared statements.
struct PostgresTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, postgres::Statement>,
}

impl PostgresTx<'_> {
    /// The statement for `sql` (`?N` placeholders), prepared once per
    /// connection: each later use is one round trip.
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, BrokerError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(&postgres_sql(sql))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<postgres::Row>, BrokerError> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(self.tx.query(&statement, &refs)?)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, BrokerError> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(self.tx.execute(&statement, &refs)?)
    }
}

/// A connection inside a transaction: what the modules' SQL functions get.
/// In [`Database::write`] it may write; in [`Database::read`] it reads one
/// consistent snapshot.
pub struct Sql<'a> {
    handle: Handle<'a>,
}

impl std::fmt::Debug for Sql<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sql")
            .field("dialect", &self.dialect())
            .finish()
    }
}

impl Sql<'_> {
    /// The engine behind this handle.
    pub fn dialect(&self) -> Dialect {
        match self.handle {
            Handle::Sqlite(_) => Dialect::Sqlite,
            Handle::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, BrokerError> {
        no_nul(params)?;
        match &self.handle {
            Handle::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?),
            Handle::Postgres(tx) => Ok(tx.borrow_mut().execute(sql, params)? as usize),
        }
    }

    /// Every row of a query, each read by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[Value],
        mut f: impl FnMut(&Row) -> Result<T, BrokerError>,
    ) -> Result<Vec<T>, BrokerError> {
        no_nul(params)?;
        let mut out = Vec::new();
        match &self.handle {
            Handle::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                while let Some(row) = rows.next()? {
                    out.push(f(&sqlite_row(row, columns)?)?);
                }
            }
            Handle::Postgres(tx) => {
                let rows = tx.borrow_mut().query(sql, params)?;
                for row in &rows {
                    out.push(f(&postgres_row(row)?)?);
                }
            }
        }
        Ok(out)
    }

    /// The first row of a query read by `f`, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T, BrokerError>,
    ) -> Result<Option<T>, BrokerError> {
        no_nul(params)?;
        let first = match &self.handle {
            Handle::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                match rows.next()? {
                    Some(row) => Some(sqlite_row(row, columns)?),
                    None => None,
                }
            }
            Handle::Postgres(tx) => {
                let rows = tx.borrow_mut().query(sql, params)?;
                match rows.first() {
                    Some(row) => Some(postgres_row(row)?),
                    None => None,
                }
            }
        };
        first.map(|row| f(&row)).transpose()
    }

    /// The first row of a query read by `f`; no row is an error.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T, BrokerError>,
    ) -> Result<T, BrokerError> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| BrokerError::Database("a query that always answers had no row".into()))
    }
}

/// A pooled PostgreSQL connection and the statements prepared on it.
struct PostgresConnection {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

/// Opens, checks and drops pooled connections. (r2d2_postgres's manager
/// pools bare clients; this one keeps each connection's prepared
/// statements with it.)
struct PostgresManager(postgres::Config);

impl r2d2::ManageConnection for PostgresManager {
    type Connection = PostgresConnection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PostgresConnection, postgres::Error> {
        Ok(PostgresConnection {
            client: self.0.connect(NoTls)?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PostgresConnection) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PostgresConnection) -> bool {
        conn.client.is_closed()
    }
}

type Pool = r2d2::Pool<PostgresManager>;

/// The connection pool, closed on a thread of its own when the last handle
/// drops: PostgreSQL's client closes a connection by blocking on its own
/// runtime, which cannot happen inside an async task.
struct PostgresPool(Option<Pool>);

impl PostgresPool {
    fn get(&self) -> Result<r2d2::PooledConnection<PostgresManager>, BrokerError> {
        self.0
            .as_ref()
            .ok_or_else(|| BrokerError::Database("the pool is closed".into()))?
            .get()
            .map_err(|e| BrokerError::Database(format!("no PostgreSQL connection: {e}")))
    }
}

impl PostgresPool {
    /// Runs `f` in a transaction on a pooled connection, committed if it
    /// returns `Ok`. A write first takes the write lock; a read is one
    /// read-only snapshot.
    fn run<R>(
        &self,
        write: bool,
        f: impl FnOnce(&Sql<'_>) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        let mut conn = self.get()?;
        let PostgresConnection { client, statements } = &mut *conn;
        let mut tx = if write {
            client.transaction()?
        } else {
            client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?
        };
        if write {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        }
        let sql = Sql {
            handle: Handle::Postgres(RefCell::new(PostgresTx { tx, statements })),
        };
        let out = f(&sql)?;
        if let Handle::Postgres(tx) = sql.handle {
            tx.into_inner().tx.commit()?;
        }
        Ok(out)
    }
}

impl Drop for PostgresPool {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(Arc<PostgresPool>),
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Database {
    backend: Backend,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dialect = match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        };
        f.debug_struct("Database")
            .field("dialect", &dialect)
            .finish()
    }
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
        if !durable && let Backend::Sqlite(conn) = &db.backend {
            lock(conn).pragma_update(None, "synchronous", "NORMAL")?;
        }
        Ok(db)
    }

    /// A private in-memory database (the simulation).
    pub fn in_memory() -> Result<Database, BrokerError> {
        let conn = Connection::open_in_memory().map_err(BrokerError::from)?;
        Database::setup(conn)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host/db`
    /// or `host=/run/postgresql dbname=...`) and brings its schema up to
    /// date. The connection is not encrypted: only a server on this machine
    /// (loopback or a Unix socket) is taken. Must not be called from inside
    /// an async task (it blocks).
    pub fn connect(url: &str) -> Result<Database, BrokerError> {
        let config: postgres::Config = url.parse().map_err(|e| {
            BrokerError::Invalid(format!(
                "the database URL: {e} (give postgres://USER@127.0.0.1/DB or \
                     host=/run/postgresql dbname=DB)"
            ))
        })?;
        for host in config.get_hosts() {
            let local = match host {
                postgres::config::Host::Unix(_) => true,
                postgres::config::Host::Tcp(name) => {
                    name == "localhost"
                        || name
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                }
            };
            if !local {
                let name = match host {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                };
                return Err(BrokerError::Invalid(format!(
                    "the database URL names host {name}, which is not this machine: the broker \
                     talks to PostgreSQL without TLS, so it takes only a server on loopback or \
                     a Unix socket"
                )));
            }
        }
        if config.get_hosts().is_empty() {
            return Err(BrokerError::Invalid(
                "the database URL names no host (give host=... or postgres://user@host/db)".into(),
            ));
        }
        // One connection first, for the migrations: a server that is not
        // there is said at once, in its own words.
        let mut client = config.connect(NoTls).map_err(|e| {
            BrokerError::Database(format!(
                "connecting to PostgreSQL ({}): {}",
                hosts(&config),
                crate::error::postgres_text(&e)
            ))
        })?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
        let version: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
            .try_get(0)?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(&postgres_schema(migration))?;
            tx.execute(
                "INSERT INTO schema_version VALUES ($1)",
                &[&((i + 1) as i64)],
            )?;
        }
        tx.commit()?;
        let pool = r2d2::Pool::builder()
            .max_size(POSTGRES_CONNECTIONS)
            .min_idle(Some(1))
            .connection_timeout(std::time::Duration::from_secs(10))
            .build_unchecked(PostgresManager(config));
        let pool = PostgresPool(Some(pool));
        // (The client closes here; the caller is not an async task.)
        drop(client);
        Ok(Database {
            backend: Backend::Postgres(Arc::new(pool)),
        })
    }

    /// The engine behind this database.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    fn setup(conn: Connection) -> Result<Database, BrokerError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Every statement the broker runs stays prepared (rusqlite keeps 16
        // by default, fewer than the broker has, so a busy path re-prepared
        // its statements on every request).
        conn.set_prepared_statement_cache_capacity(256);
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
            backend: Backend::Sqlite(Arc::new(Mutex::new(conn))),
        })
    }

    /// Runs `f` on one consistent snapshot of the database.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Sql<'_>) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        match &self.backend {
            Backend::Sqlite(conn) => f(&Sql {
                handle: Handle::Sqlite(&lock(conn)),
            }),
            Backend::Postgres(pool) => pool.run(false, f),
        }
    }

    /// Runs `f` in one transaction, committed if it returns `Ok` and rolled
    /// back otherwise. Write transactions run one at a time.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&Sql<'_>) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut conn = lock(conn);
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = f(&Sql {
                    handle: Handle::Sqlite(&tx),
                })?;
                tx.commit()?;
                Ok(out)
            }
            Backend::Postgres(pool) => pool.run(true, f),
        }
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves no transaction open (rusqlite
    // rolls back on drop), so the connection is still usable.
    conn.lock().unwrap_or_else(|e| e.into_inner())
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
            tx.execute(
                "INSERT INTO keys VALUES (?1, ?2)",
                crate::params!["a", vec![0u8]],
            )?;
            Err(BrokerError::Invalid("no".into()))
        });
        assert!(result.is_err());
        drop(db);
        let db = Database::open(&path).unwrap();
        let count: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM keys", &[], |r| r.get(0)))
            .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn text_with_a_nul_character_is_refused_as_invalid_and_nothing_is_written() {
        let db = Database::in_memory().unwrap();
        let result = db.write(|tx| {
            tx.execute(
                "INSERT INTO keys VALUES (?1, ?2)",
                crate::params!["a\0b", vec![0u8]],
            )
        });
        assert!(matches!(result, Err(BrokerError::Invalid(_))), "{result:?}");
        let count: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM keys", &[], |r| r.get(0)))
            .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn a_postgres_server_off_this_machine_is_refused_before_connecting() {
        for url in [
            "postgres://someone@db.example.com/c2ssi",
            "host=10.0.0.5 dbname=c2ssi",
            "dbname=c2ssi",
        ] {
            assert!(
                matches!(Database::connect(url), Err(BrokerError::Invalid(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn a_postgres_server_that_is_not_there_is_named_with_the_cause() {
        let result = Database::connect("postgres://nobody@127.0.0.1:1/c2ssi");
        match result {
            Err(BrokerError::Database(text)) => {
                assert!(text.contains("127.0.0.1:1"), "{text}");
                assert!(text.contains("refused"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn placeholders_and_types_are_translated_for_postgres() {
        assert_eq!(
            postgres_sql("SELECT a FROM t WHERE b = ?1 AND c > ?12"),
            "SELECT a FROM t WHERE b = $1 AND c > $12"
        );
        assert_eq!(
            postgres_schema("x INTEGER NOT NULL, y BLOB"),
            "x BIGINT NOT NULL, y BYTEA"
        );
    }
}
