//! `collective aggregator`: the aggregator as its own process, apart from
//! the collective's service (`collective serve --aggregator URL`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use collective::aggregator::{Aggregator, AggregatorKeys};
use collective::aggregator_process::{AggregatorState, serve_aggregator};

#[derive(Debug, Args)]
pub(crate) struct AggregatorArgs {
    /// Where the aggregator keeps its keys (never any update)
    #[arg(long, env = "AGGREGATOR_DATA", value_name = "DIR")]
    data: PathBuf,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// The collective service whose ledger pays the accesses
    #[arg(long, env = "COLLECTIVE_URL", default_value = "http://127.0.0.1:8080")]
    service: String,
}

pub(crate) fn aggregator(args: AggregatorArgs) -> anyhow::Result<ExitCode> {
    let keys = AggregatorKeys::load_or_create(&args.data)
        .with_context(|| format!("the aggregator's keys in {}", args.data.display()))?;
    let public_key = keys.public_key();
    let state = AggregatorState::new(Aggregator::new(keys), &args.service);
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let address = listener.local_addr()?;
        println!(
            "aggregator on http://{address} (key {}, for the service at {})",
            public_key.short(),
            args.service
        );
        serve_aggregator(listener, state).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
