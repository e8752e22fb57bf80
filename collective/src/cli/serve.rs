//! `collective serve`: the service, on tokio.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use c2ssi_sandbox::SandboxLimits;
use clap::Args;
use collective::aggregator_process::RemoteAggregator;
use collective::coordinator::CoordinatorConfig;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where the service keeps its state (SQLite) and keys
    #[arg(long, env = "COLLECTIVE_DATA", value_name = "DIR")]
    data: PathBuf,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// A wallet counts as live this long after its last check-in, in milliseconds
    #[arg(long, default_value_t = 30_000)]
    liveness_ms: u64,
    /// How long wallet agents wait between check-ins, in milliseconds
    #[arg(long, default_value_t = 500)]
    checkin_retry_ms: u64,
    /// An aggregator in its own process (`collective aggregator`), instead
    /// of one inside this service; wallets send their updates there
    #[arg(long, value_name = "URL")]
    aggregator: Option<String>,
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = CoordinatorConfig {
        liveness_ms: args.liveness_ms,
        checkin_retry_ms: args.checkin_retry_ms,
        update_url: None,
    };
    let coordinator = match &args.aggregator {
        None => collective::service::open_local(&args.data, config, SandboxLimits::default()),
        Some(url) => {
            let remote = RemoteAggregator::connect(url)?;
            config.update_url = Some(remote.url().to_string());
            collective::service::open_with(
                &args.data,
                config,
                SandboxLimits::default(),
                Arc::new(remote),
            )
        }
    }
    .with_context(|| format!("opening the service in {}", args.data.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let address = listener.local_addr()?;
        println!(
            "collective service on http://{address} (state in {})",
            args.data.display()
        );
        collective::service::serve(listener, coordinator).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
