//! Jobs (table `jobs`): what each runs, its state, its current model and
//! server momentum, how far it got and what it spent.

use crate::database::Sql;
use crate::params;
use c2ssi_protocol::{Amount, JobSpec, JobState, now_ms};

use crate::error::{BrokerError, Result};
use crate::models::{from_bytes, to_bytes};

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// Its id.
    pub id: String,
    /// The collective.
    pub collective_id: String,
    /// What it runs.
    pub spec: JobSpec,
    /// Its state.
    pub state: JobState,
    /// Why it ended.
    pub reason: Option<String>,
    /// Rounds that released a batch.
    pub rounds_done: u32,
    /// The next round to open.
    pub next_round: u32,
    /// The current model version.
    pub model_hash: String,
    /// The server optimizer's momentum.
    pub velocity: Option<Vec<f32>>,
    /// What it paid.
    pub spent: Amount,
    /// Whether the consumer asked it to stop.
    pub stop_requested: bool,
}

/// Stores a new running job.
pub fn insert_in(
    tx: &Sql<'_>,
    id: &str,
    collective_id: &str,
    spec: &JobSpec,
    model_hash: &str,
) -> Result<()> {
    let now = now_ms() as i64;
    tx.execute(
        "INSERT INTO jobs (id, collective_id, spec, status, rounds_done, next_round, model_hash,
                           created_ms, updated_ms)
         VALUES (?1, ?2, ?3, 'running', 0, 1, ?4, ?5, ?5)",
        params![
            id,
            collective_id,
            serde_json::to_string(spec)?,
            model_hash,
            now
        ],
    )?;
    Ok(())
}

/// A job.
pub fn load(c: &Sql<'_>, job_id: &str) -> Result<JobRow> {
    let row = c
        .query_opt(
            "SELECT collective_id, spec, status, reason, rounds_done, next_round, model_hash,
                    velocity, spent, stop_requested
             FROM jobs WHERE id = ?1",
            params![job_id],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    r.get::<Option<String>>(3)?,
                    r.get::<i64>(4)?,
                    r.get::<i64>(5)?,
                    r.get::<String>(6)?,
                    r.get::<Option<Vec<u8>>>(7)?,
                    r.get::<i64>(8)?,
                    r.get::<i64>(9)?,
                ))
            },
        )?
        .ok_or_else(|| BrokerError::NotFound(format!("no job '{job_id}'")))?;
    Ok(JobRow {
        id: job_id.to_string(),
        collective_id: row.0,
        spec: serde_json::from_str(&row.1)?,
        state: JobState::parse(&row.2)
            .ok_or_else(|| BrokerError::Database(format!("job {job_id} has state '{}'", row.2)))?,
        reason: row.3,
        rounds_done: row.4 as u32,
        next_round: row.5 as u32,
        model_hash: row.6,
        velocity: row.7.map(|b| from_bytes(&b)),
        spent: Amount(row.8 as u64),
        stop_requested: row.9 != 0,
    })
}

/// Ends a running job; `false` if it had ended already.
pub fn finish_in(tx: &Sql<'_>, job_id: &str, state: JobState, reason: &str) -> Result<bool> {
    let changed = tx.execute(
        "UPDATE jobs SET status = ?2, reason = ?3, updated_ms = ?4 WHERE id = ?1 AND status = 'running'",
        params![job_id, state.as_str(), reason, now_ms() as i64],
    )?;
    Ok(changed > 0)
}

/// Asks a job to stop after its current round.
pub fn request_stop_in(tx: &Sql<'_>, job_id: &str) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET stop_requested = 1 WHERE id = ?1",
        params![job_id],
    )?;
    Ok(())
}

/// Moves a job past a round that released a batch: its new model, its
/// server momentum, one more round done.
pub fn released_in(
    tx: &Sql<'_>,
    job_id: &str,
    round: u32,
    model_hash: &str,
    velocity: &[f32],
) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET model_hash = ?2, velocity = ?3, rounds_done = rounds_done + 1,
                next_round = ?4, updated_ms = ?5
         WHERE id = ?1",
        params![
            job_id,
            model_hash,
            to_bytes(velocity),
            round + 1,
            now_ms() as i64
        ],
    )?;
    Ok(())
}

/// Moves a job past a round that released nothing (or that was abandoned).
pub fn skipped_in(tx: &Sql<'_>, job_id: &str, round: u32) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET next_round = CASE WHEN next_round > ?2 THEN next_round ELSE ?2 END,
             updated_ms = ?3 WHERE id = ?1",
        params![job_id, round + 1, now_ms() as i64],
    )?;
    Ok(())
}

/// What a job has paid.
pub fn spent_in(tx: &Sql<'_>, job_id: &str) -> Result<Amount> {
    let spent: i64 = tx
        .query_opt(
            "SELECT spent FROM jobs WHERE id = ?1",
            params![job_id],
            |r| r.get(0),
        )?
        .unwrap_or(0);
    Ok(Amount(spent as u64))
}

/// Adds a payment to a job's spending.
pub fn add_spent_in(tx: &Sql<'_>, job_id: &str, amount: Amount) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET spent = spent + ?2 WHERE id = ?1",
        params![job_id, amount.0 as i64],
    )?;
    Ok(())
}

/// A collective's jobs, oldest first.
pub fn ids(c: &Sql<'_>, collective_id: &str) -> Result<Vec<String>> {
    let ids = c.query_map(
        "SELECT id FROM jobs WHERE collective_id = ?1 ORDER BY created_ms",
        params![collective_id],
        |r| r.get::<String>(0),
    )?;
    Ok(ids)
}

/// Takes, or renews, the lease on driving `job_id` for `driver` until
/// `until_ms`: false when the job is not running or another driver holds
/// a lease that has not run out (brokers sharing one database drive each
/// job from one of them).
pub fn lease_in(tx: &Sql<'_>, job_id: &str, driver: &str, now: u64, until_ms: u64) -> Result<bool> {
    let taken = tx.execute(
        "UPDATE jobs SET driver = ?2, driver_until_ms = ?4
         WHERE id = ?1 AND status = 'running'
           AND (driver IS NULL OR driver = ?2 OR driver_until_ms IS NULL OR driver_until_ms < ?3)",
        params![job_id, driver, now as i64, until_ms as i64],
    )?;
    Ok(taken == 1)
}

/// Running jobs that `driver` may drive: no other driver's lease on them
/// is still running. Oldest first.
pub fn to_drive(c: &Sql<'_>, driver: &str, now: u64) -> Result<Vec<String>> {
    c.query_map(
        "SELECT id FROM jobs WHERE status = 'running'
           AND (driver IS NULL OR driver = ?1 OR driver_until_ms IS NULL OR driver_until_ms < ?2)
         ORDER BY created_ms",
        params![driver, now as i64],
        |r| r.get::<String>(0),
    )
}

/// Every running job, oldest first.
pub fn running(c: &Sql<'_>) -> Result<Vec<String>> {
    let ids = c.query_map(
        "SELECT id FROM jobs WHERE status = 'running' ORDER BY created_ms",
        &[],
        |r| r.get::<String>(0),
    )?;
    Ok(ids)
}
