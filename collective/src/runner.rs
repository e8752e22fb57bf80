//! Drives running jobs: opens a round, waits until every sampled wallet
//! answered or the deadline passed, closes it, and goes on until the job
//! ends. One tokio task per job; the coordinator's blocking work runs on the
//! blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use c2ssi_protocol::now_ms;
use tokio::task::JoinHandle;

use crate::coordinator::{Coordinator, JobState, RoundEnd, RoundStart};
use crate::error::{CollectiveError, Result};

/// How often a round's progress is looked at.
const POLL: Duration = Duration::from_millis(50);
/// How long to wait for live wallets before trying again.
const WAIT_FOR_WALLETS: Duration = Duration::from_millis(250);

async fn blocking<R: Send + 'static>(
    coordinator: &Arc<Coordinator>,
    f: impl FnOnce(&Coordinator) -> Result<R> + Send + 'static,
) -> Result<R> {
    let c = coordinator.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .map_err(|e| CollectiveError::Internal(format!("a blocking task failed: {e}")))?
}

/// Runs one job to its end.
pub async fn drive_job(coordinator: Arc<Coordinator>, job_id: String) -> Result<JobState> {
    let mut errors = 0u32;
    loop {
        let id = job_id.clone();
        let start = blocking(&coordinator, move |c| c.open_round(&id)).await;
        match start {
            Ok(RoundStart::Finished(state)) => {
                tracing::info!(job = %job_id, ?state, "job ended");
                return Ok(state);
            }
            Ok(RoundStart::Waiting(why)) => {
                tracing::debug!(job = %job_id, %why, "waiting for wallets");
                tokio::time::sleep(WAIT_FOR_WALLETS).await;
            }
            Ok(RoundStart::Opened {
                round,
                sampled,
                deadline_ms,
            }) => {
                tracing::info!(job = %job_id, round, sampled, "round opened");
                loop {
                    tokio::time::sleep(POLL).await;
                    let id = job_id.clone();
                    let progress =
                        blocking(&coordinator, move |c| c.round_progress(&id, round)).await?;
                    let done = progress.is_none_or(|(answered, assigned)| answered >= assigned);
                    if done || now_ms() >= deadline_ms {
                        break;
                    }
                }
                let id = job_id.clone();
                match blocking(&coordinator, move |c| c.close_round(&id, round)).await {
                    Ok(RoundEnd::Applied(s)) => {
                        tracing::info!(job = %job_id, round, aggregated = s.counts.aggregated, "round applied");
                        errors = 0;
                    }
                    Ok(RoundEnd::Failed(s)) => {
                        tracing::warn!(job = %job_id, round, report = %s.report, "round released nothing");
                    }
                    Err(e) => {
                        tracing::error!(job = %job_id, round, error = %e, "closing the round failed");
                        errors += 1;
                    }
                }
            }
            Err(e) => {
                tracing::error!(job = %job_id, error = %e, "opening a round failed");
                errors += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if errors >= 20 {
            return Err(CollectiveError::Internal(format!(
                "job {job_id}: too many errors in a row"
            )));
        }
    }
}

/// The running jobs' tasks.
#[derive(Clone, Debug, Default)]
pub struct Runner {
    jobs: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
}

impl Runner {
    /// Starts driving `job_id` unless it is already driven.
    pub fn spawn(&self, coordinator: Arc<Coordinator>, job_id: String) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.retain(|_, h| !h.is_finished());
        if jobs.contains_key(&job_id) {
            return;
        }
        let id = job_id.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = drive_job(coordinator, id.clone()).await {
                tracing::error!(job = %id, error = %e, "job driver stopped");
            }
        });
        jobs.insert(job_id, handle);
    }
}
