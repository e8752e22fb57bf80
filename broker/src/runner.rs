//! Drives running jobs: opens a round, waits until every sampled wallet
//! answered or the deadline passed, closes it, and goes on until the job
//! ends, holding a lease on the job that it renews (brokers that share a
//! database drive each job from one of them, and take over the jobs of a
//! broker that died). One tokio task per job; the broker's blocking work runs on the
//! blocking pool. An aggregator that cannot be reached is retried with a
//! growing pause (the job goes on when it is back); a round it lost in a
//! restart is opened again with the same tasks; a round it cannot close
//! for a minute past its deadline is recorded as releasing nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use c2ssi_protocol::{JobState, now_ms};
use tokio::task::JoinHandle;

use crate::broker::{Broker, RoundEnd, RoundStart};
use crate::error::{BrokerError, Result};

/// How often a round's progress is looked at.
const POLL: Duration = Duration::from_millis(50);
/// How long to wait for live wallets before trying again.
const WAIT_FOR_WALLETS: Duration = Duration::from_millis(250);
/// How often a driver renews its lease on a job while it waits.
const RENEW_EVERY_MS: u64 = crate::broker::JOB_LEASE_MS / 3;
/// How long past its deadline a round that cannot be closed is retried.
const CLOSE_GRACE_MS: u64 = 60_000;

async fn blocking<R: Send + 'static>(
    broker: &Arc<Broker>,
    f: impl FnOnce(&Broker) -> Result<R> + Send + 'static,
) -> Result<R> {
    let b = broker.clone();
    tokio::task::spawn_blocking(move || f(&b))
        .await
        .map_err(|e| BrokerError::Internal(format!("a blocking task failed: {e}")))?
}

fn backoff(errors: u32) -> Duration {
    Duration::from_millis((250u64 << errors.min(6)).min(10_000))
}

/// Waits for an open round to be answered or to pass its deadline, then
/// closes it. `Err` when it could not be closed (tried again later).
async fn finish_round(
    broker: &Arc<Broker>,
    job_id: &str,
    round: u32,
    deadline_ms: u64,
) -> Result<()> {
    let mut renewed = now_ms();
    while now_ms() < deadline_ms {
        tokio::time::sleep(POLL).await;
        if now_ms() > renewed + RENEW_EVERY_MS {
            let id = job_id.to_string();
            if !blocking(broker, move |b| b.lease_job(&id)).await? {
                return Err(BrokerError::Conflict(
                    "another broker took over the job".into(),
                ));
            }
            renewed = now_ms();
        }
        let id = job_id.to_string();
        match blocking(broker, move |b| b.round_progress(&id, round)).await {
            Ok(Some((answered, assigned))) if answered < assigned => {}
            Ok(Some(_)) => break,
            // The aggregator does not know the round: it restarted and lost
            // it. Open it again with the same tasks, so that the wallets
            // still to answer are taken and paid; closing it now would
            // refuse them.
            Ok(None) => {
                let id = job_id.to_string();
                match blocking(broker, move |b| b.reopen_round(&id, round)).await {
                    Ok(()) => {
                        tracing::warn!(job = %job_id, round, "the aggregator lost the round; opened it again")
                    }
                    Err(e) => {
                        tracing::warn!(job = %job_id, round, error = %e, "the aggregator lost the round and does not take it again");
                        break;
                    }
                }
            }
            // The aggregator may be back before the deadline.
            Err(e) => tracing::debug!(job = %job_id, round, error = %e, "round progress"),
        }
    }
    let id = job_id.to_string();
    match blocking(broker, move |b| b.close_round(&id, round)).await {
        Ok(RoundEnd::Released(s)) => {
            tracing::info!(job = %job_id, round, updates = ?s.updates, "round released");
            Ok(())
        }
        Ok(RoundEnd::NothingReleased(s)) => {
            tracing::warn!(job = %job_id, round, report = %s.report, "round released nothing");
            Ok(())
        }
        Err(e) if now_ms() > deadline_ms + CLOSE_GRACE_MS => {
            tracing::error!(job = %job_id, round, error = %e, "giving up on closing the round");
            let id = job_id.to_string();
            // The consumer reads this reason: it says whose side failed,
            // never the error's own text (the log above has that).
            let reason = match e {
                BrokerError::Aggregator(_) => "the aggregator could not close the round in time",
                _ => "the broker could not close the round in time",
            };
            blocking(broker, move |b| b.give_up_round(&id, round, reason)).await
        }
        Err(e) => Err(e),
    }
}

/// Runs one job to its end, or until another broker drives it (then
/// `Running`).
pub async fn drive_job(broker: Arc<Broker>, job_id: String) -> Result<JobState> {
    let mut errors = 0u32;
    let mut leased_at = 0u64;
    loop {
        let id = job_id.clone();
        if now_ms() < leased_at + RENEW_EVERY_MS {
            // Leased a moment ago.
        } else {
            match blocking(&broker, move |b| b.lease_job(&id)).await {
                Ok(true) => leased_at = now_ms(),
                Ok(false) => {
                    // Ended, or driven by another broker: a job that ended says so.
                    let id = job_id.clone();
                    let state = blocking(&broker, move |b| b.job_state(&id)).await?;
                    tracing::info!(job = %job_id, ?state, "not driving the job here");
                    return Ok(state);
                }
                Err(e) => {
                    errors += 1;
                    tracing::error!(job = %job_id, error = %e, errors, "leasing the job; retrying");
                    tokio::time::sleep(backoff(errors)).await;
                    continue;
                }
            }
        }
        let id = job_id.clone();
        let open = blocking(&broker, move |b| b.open_round_of(&id)).await;
        let step = match open {
            Ok(Some((round, deadline_ms))) => finish_round(&broker, &job_id, round, deadline_ms)
                .await
                .map(|()| None),
            Ok(None) => {
                let id = job_id.clone();
                match blocking(&broker, move |b| b.open_round(&id)).await {
                    Ok(RoundStart::Finished(state)) => {
                        tracing::info!(job = %job_id, ?state, "job ended");
                        return Ok(state);
                    }
                    Ok(RoundStart::Waiting(why)) => {
                        tracing::debug!(job = %job_id, %why, "waiting for wallets");
                        tokio::time::sleep(WAIT_FOR_WALLETS).await;
                        Ok(None)
                    }
                    Ok(RoundStart::Opened { round, sampled, .. }) => {
                        tracing::info!(job = %job_id, round, sampled, "round opened");
                        Ok(Some(round))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match step {
            Ok(_) => errors = 0,
            Err(e) => {
                errors += 1;
                // The lease is checked again first: it may be what failed.
                leased_at = 0;
                tracing::error!(job = %job_id, error = %e, errors, "the job's round failed; retrying");
                tokio::time::sleep(backoff(errors)).await;
            }
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
    pub fn spawn(&self, broker: Arc<Broker>, job_id: String) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.retain(|_, h| !h.is_finished());
        if jobs.contains_key(&job_id) {
            return;
        }
        let id = job_id.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = drive_job(broker, id.clone()).await {
                tracing::error!(job = %id, error = %e, "job driver stopped");
            }
        });
        jobs.insert(job_id, handle);
    }
}
