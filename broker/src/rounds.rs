//! Rounds (table `rounds`): when each opened, under which manifest, how
//! many wallets were sampled, and what it released.

use crate::database::Sql;
use crate::params;
use c2ssi_protocol::{RoundStatus, RoundSummary, now_ms};

use crate::error::{BrokerError, Result};

/// Records an open round.
pub fn open_in(
    tx: &Sql<'_>,
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
pub fn opened(c: &Sql<'_>, job_id: &str, round: u32) -> Result<(String, u32)> {
    c.query_opt(
        "SELECT manifest_digest, sampled FROM rounds WHERE job_id = ?1 AND round = ?2",
        params![job_id, round],
        |r| Ok((r.get(0)?, r.get::<i64>(1)? as u32)),
    )?
    .ok_or_else(|| BrokerError::NotFound(format!("job {job_id} has no round {round}")))
}

/// A round's status.
pub fn status(c: &Sql<'_>, job_id: &str, round: u32) -> Result<Option<RoundStatus>> {
    let text: Option<String> = c.query_opt(
        "SELECT status FROM rounds WHERE job_id = ?1 AND round = ?2",
        params![job_id, round],
        |r| r.get(0),
    )?;
    Ok(text.and_then(|t| RoundStatus::parse(&t)))
}

/// Closes a round with its summary.
pub fn close_in(tx: &Sql<'_>, job_id: &str, summary: &RoundSummary) -> Result<()> {
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
pub fn list(c: &Sql<'_>, job_id: &str) -> Result<Vec<RoundSummary>> {
    let rows = c.query_map(
        "SELECT round, status, sampled, summary FROM rounds WHERE job_id = ?1 ORDER BY round",
        params![job_id],
        |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<i64>(2)?,
                r.get::<Option<String>>(3)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (round, status, sampled, summary) = row;
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
pub fn released_digests(c: &Sql<'_>, job_id: &str) -> Result<Vec<String>> {
    let rows = c.query_map(
"SELECT manifest_digest FROM rounds WHERE job_id = ?1 AND status = 'released' ORDER BY round",
params![job_id], |r| r.get(0))?;
    Ok(rows)
}

/// A job's open round, if any: its number and deadline.
pub fn open_of(c: &Sql<'_>, job_id: &str) -> Result<Option<(u32, u64)>> {
    c.query_opt(
        "SELECT round, deadline_ms FROM rounds WHERE job_id = ?1 AND status = 'open'
         ORDER BY round DESC LIMIT 1",
        params![job_id],
        |r| Ok((r.get::<i64>(0)? as u32, r.get::<i64>(1)? as u64)),
    )
}

/// How many rounds are open, over every job (the status page's figure).
pub fn count_open(c: &Sql<'_>) -> Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM rounds WHERE status = 'open'",
        &[],
        |r| Ok(r.get::<i64>(0)? as u64),
    )
}
