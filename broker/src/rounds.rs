//! Rounds (table `rounds`): when each opened, under which manifest, how
//! many wallets were sampled, and what it released.

use c2ssi_protocol::{RoundStatus, RoundSummary, now_ms};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::{BrokerError, Result};

/// Records an open round.
pub fn open_in(
    tx: &Transaction<'_>,
    job_id: &str,
    round: u32,
    manifest_digest: &str,
    sampled: u32,
    deadline_ms: u64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO rounds (job_id, round, status, manifest_digest, sampled, opened_ms, deadline_ms)
         VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6)",
        params![
            job_id,
            round,
            manifest_digest,
            sampled,
            now_ms() as i64,
            deadline_ms as i64
        ],
    )?;
    Ok(())
}

/// An open round's manifest digest and sample size.
pub fn opened(c: &Connection, job_id: &str, round: u32) -> Result<(String, u32)> {
    c.query_row(
        "SELECT manifest_digest, sampled FROM rounds WHERE job_id = ?1 AND round = ?2",
        params![job_id, round],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u32)),
    )
    .optional()?
    .ok_or_else(|| BrokerError::NotFound(format!("job {job_id} has no round {round}")))
}

/// A round's status.
pub fn status(c: &Connection, job_id: &str, round: u32) -> Result<Option<RoundStatus>> {
    let text: Option<String> = c
        .query_row(
            "SELECT status FROM rounds WHERE job_id = ?1 AND round = ?2",
            params![job_id, round],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text.and_then(|t| RoundStatus::parse(&t)))
}

/// Closes a round with its summary.
pub fn close_in(tx: &Transaction<'_>, job_id: &str, summary: &RoundSummary) -> Result<()> {
    tx.execute(
        "UPDATE rounds SET status = ?3, closed_ms = ?4, summary = ?5 WHERE job_id = ?1 AND round = ?2",
        params![
            job_id,
            summary.round,
            summary.status.as_str(),
            now_ms() as i64,
            serde_json::to_string(summary)?
        ],
    )?;
    Ok(())
}

/// Every round of a job.
pub fn list(c: &Connection, job_id: &str) -> Result<Vec<RoundSummary>> {
    let mut stmt = c.prepare(
        "SELECT round, status, sampled, summary FROM rounds WHERE job_id = ?1 ORDER BY round",
    )?;
    let rows = stmt.query_map(params![job_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (round, status, sampled, summary) = row?;
        out.push(match summary {
            Some(text) => serde_json::from_str(&text)?,
            None => RoundSummary {
                round: round as u32,
                status: RoundStatus::parse(&status).unwrap_or(RoundStatus::Open),
                sampled: sampled as u32,
                updates: None,
                metrics: Vec::new(),
                counts: None,
                report: String::new(),
                model_hash: None,
            },
        });
    }
    Ok(out)
}

/// The manifest digests of a job's released rounds, one per round.
pub fn released_digests(c: &Connection, job_id: &str) -> Result<Vec<String>> {
    let mut stmt = c.prepare(
        "SELECT manifest_digest FROM rounds WHERE job_id = ?1 AND status = 'released' ORDER BY round",
    )?;
    let rows = stmt
        .query_map(params![job_id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(rows)
}

/// A job's open round, if any: its number and deadline.
pub fn open_of(c: &Connection, job_id: &str) -> Result<Option<(u32, u64)>> {
    Ok(c.query_row(
        "SELECT round, deadline_ms FROM rounds WHERE job_id = ?1 AND status = 'open'
         ORDER BY round DESC LIMIT 1",
        params![job_id],
        |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64)),
    )
    .optional()?)
}
