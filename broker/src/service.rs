//! Putting a broker together: its database and key under a data directory,
//! the sandbox that checks components, the link to its aggregator, and the
//! HTTP server. Running jobs that no broker drives are taken up at start
//! and every few seconds (a round left open is waited for and closed), and
//! check-ins held in memory are written every second.

use std::path::Path;
use std::sync::Arc;

use c2ssi_sandbox::{Sandbox, SandboxLimits};

use crate::aggregator_link::AggregatorLink;
use crate::broker::{Broker, BrokerConfig};
use crate::database::Database;
use crate::distributor::Randomness;
use crate::error::{BrokerError, Result};
use crate::http::{AppState, app};
use crate::keys::broker_key;
use crate::runner::Runner;

/// How often check-ins held in memory are written to the database.
pub const CHECK_IN_WRITES: std::time::Duration = std::time::Duration::from_secs(1);

/// How often running jobs that no broker drives are looked for.
pub const ADOPT_JOBS: std::time::Duration = std::time::Duration::from_secs(5);

/// The database file under the data directory.
pub const DATABASE_FILE: &str = "broker.db";

/// Opens the broker in `data_dir` (created if needed), driving `aggregator`.
pub fn open(
    data_dir: &Path,
    config: BrokerConfig,
    limits: SandboxLimits,
    aggregator: Arc<dyn AggregatorLink>,
) -> Result<Arc<Broker>> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| BrokerError::Internal(format!("{}: {e}", data_dir.display())))?;
    let db = Database::open(&data_dir.join(DATABASE_FILE))?;
    open_on(db, config, limits, aggregator)
}

/// Opens the broker on `db` (SQLite or PostgreSQL), driving `aggregator`.
/// Brokers that share one PostgreSQL database share its key and state.
pub fn open_on(
    db: Database,
    config: BrokerConfig,
    limits: SandboxLimits,
    aggregator: Arc<dyn AggregatorLink>,
) -> Result<Arc<Broker>> {
    let key = Arc::new(broker_key(&db)?);
    let sandbox =
        Arc::new(Sandbox::new(limits).map_err(|e| BrokerError::Internal(format!("sandbox: {e}")))?);
    Ok(Arc::new(Broker::new(
        db,
        key,
        sandbox,
        aggregator,
        Randomness::os(),
        config,
    )))
}

/// Serves the API on `listener` (over TLS when `tls` is given) until ctrl-c
/// or SIGTERM (or the process is killed), resuming every running job first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    tls: Option<c2ssi_server::Tls>,
    creators: crate::access::Creators,
    metrics_token: Option<String>,
) -> Result<()> {
    // Check-ins are held in memory and written once a second.
    let writer = broker.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECK_IN_WRITES);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let b = writer.clone();
            match tokio::task::spawn_blocking(move || b.subscriptions().write_check_ins()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "writing check-ins; kept for the next try")
                }
                Err(e) => tracing::error!(error = %e, "the check-in writer failed"),
            }
        }
    });
    let runner = Runner::default();
    // Running jobs that no broker drives (this one restarted, or another
    // one sharing the database died) are taken up, now and every few
    // seconds.
    let (adopter, jobs) = (broker.clone(), runner.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(ADOPT_JOBS);
        loop {
            every.tick().await;
            let b = adopter.clone();
            match tokio::task::spawn_blocking(move || b.jobs_to_drive()).await {
                Ok(Ok(ids)) => {
                    for job in ids {
                        jobs.spawn(adopter.clone(), job);
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "looking for jobs to drive"),
                Err(e) => tracing::error!(error = %e, "the job adopter failed"),
            }
        }
    });
    let router = app(AppState {
        monitor: crate::monitor::Monitor::new(broker.clone(), metrics_token),
        broker,
        runner,
        creators,
    });
    c2ssi_server::serve(listener, router, tls)
        .await
        .map_err(|e| BrokerError::Internal(format!("server: {e}")))
}
