//! Putting a service together: the database and keys under a data
//! directory, the in-process aggregator (its keys in `aggregator/`, apart
//! from the collective's), the sandbox, and the HTTP server. On start, rounds
//! a crash left open are abandoned and running jobs go on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use c2ssi_sandbox::{Sandbox, SandboxLimits};

use crate::aggregator::{Aggregator, AggregatorKeys};
use crate::coordinator::{AggregatorHandle, Coordinator, CoordinatorConfig};
use crate::database::Database;
use crate::error::{CollectiveError, Result};
use crate::http::{AppState, app};
use crate::runner::Runner;

/// The database file under the data directory.
pub const DATABASE_FILE: &str = "state.db";

/// Opens the service in `data_dir` (created if needed) with an aggregator in
/// this process.
pub fn open_local(
    data_dir: &Path,
    config: CoordinatorConfig,
    limits: SandboxLimits,
) -> Result<Arc<Coordinator>> {
    let keys = AggregatorKeys::load_or_create(&data_dir.join("aggregator"))?;
    open_with(data_dir, config, limits, Arc::new(Aggregator::new(keys)))
}

/// Opens the service in `data_dir` with the given aggregator.
pub fn open_with(
    data_dir: &Path,
    config: CoordinatorConfig,
    limits: SandboxLimits,
    aggregator: Arc<dyn AggregatorHandle>,
) -> Result<Arc<Coordinator>> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| CollectiveError::Internal(format!("{}: {e}", data_dir.display())))?;
    let db = Database::open(&data_dir.join(DATABASE_FILE))?;
    let ledger_key = Arc::new(Coordinator::ledger_key(&db)?);
    let sandbox = Arc::new(
        Sandbox::new(limits).map_err(|e| CollectiveError::Internal(format!("sandbox: {e}")))?,
    );
    Ok(Arc::new(Coordinator::new(
        db, ledger_key, sandbox, aggregator, config,
    )))
}

/// Where a service listens and keeps its state.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The data directory.
    pub data_dir: PathBuf,
}

/// Serves the API on `listener` until ctrl-c (or the process is killed),
/// after recovering from any crash.
pub async fn serve(listener: tokio::net::TcpListener, coordinator: Arc<Coordinator>) -> Result<()> {
    let c = coordinator.clone();
    let running = tokio::task::spawn_blocking(move || c.recover())
        .await
        .map_err(|e| CollectiveError::Internal(e.to_string()))??;
    let runner = Runner::default();
    for job in running {
        tracing::info!(%job, "resuming job");
        runner.spawn(coordinator.clone(), job);
    }
    let router = app(AppState {
        coordinator,
        runner,
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| CollectiveError::Internal(format!("server: {e}")))
}
