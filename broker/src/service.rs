//! Putting a broker together: its database and key under a data directory,
//! the sandbox that checks components, the link to its aggregator, and the
//! HTTP server. On start, running jobs are resumed (a round left open is
//! waited for and closed).

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
) -> Result<()> {
    let b = broker.clone();
    let running = tokio::task::spawn_blocking(move || b.running_jobs())
        .await
        .map_err(|e| BrokerError::Internal(e.to_string()))??;
    let runner = Runner::default();
    for job in running {
        tracing::info!(%job, "resuming job");
        runner.spawn(broker.clone(), job);
    }
    let router = app(AppState {
        broker,
        runner,
        creators,
    });
    c2ssi_server::serve(listener, router, tls)
        .await
        .map_err(|e| BrokerError::Internal(format!("server: {e}")))
}
