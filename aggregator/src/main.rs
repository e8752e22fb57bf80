//! `aggregator`: the aggregator's process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use c2ssi_aggregator::process::{AggregatorState, app};
use c2ssi_aggregator::{Aggregator, AggregatorKeys, NoiseSource};
use clap::{Args, Parser, Subcommand};

/// The aggregator of compute-to-ssi: opens wallets' sealed updates in memory
/// and releases only noised aggregates of at least k.
#[derive(Debug, Parser)]
#[command(name = "aggregator", version, about, long_about = None)]
struct Cli {
    /// Log what happens (repeat for more; AGGREGATOR_LOG overrides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the aggregator's API until ctrl-c or SIGTERM
    Serve(ServeArgs),
    /// Print the OpenAPI description of the API (what `GET /openapi.json` serves)
    Openapi,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where the aggregator keeps its keys and the rounds it closed (never any update)
    #[arg(long, env = "AGGREGATOR_DATA", value_name = "DIR")]
    data: PathBuf,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// The broker whose rounds this aggregator takes and whose ledger pays the accesses
    #[arg(long, env = "BROKER_URL", default_value = "http://127.0.0.1:8080")]
    broker: String,
    /// The URL wallets reach this aggregator at [default: http(s)://LISTEN-ADDRESS]
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    #[command(flatten)]
    tls: c2ssi_server::TlsArgs,
    #[command(flatten)]
    metrics: c2ssi_server::metrics::MetricsArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGGREGATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&c2ssi_aggregator::process::openapi())?
            );
            return Ok(());
        }
    };
    c2ssi_client::trust_ca_file_from_env()?;
    let tls = args.tls.load().map_err(anyhow::Error::msg)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let keys = AggregatorKeys::load_or_create(&args.data)?;
    let metrics_token = args
        .metrics
        .token(Some(&args.data))
        .map_err(anyhow::Error::msg)?;
    let public_key = keys.public_key();
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let address = listener.local_addr()?;
        args.tls.check_plain(address).map_err(anyhow::Error::msg)?;
        let url = args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{address}"));
        let journal = args.data.join("closed-rounds.log");
        let aggregator = Aggregator::new(keys, NoiseSource::os())
            .with_journal(&journal)
            .with_context(|| format!("reading {}", journal.display()))?;
        let state =
            AggregatorState::new(aggregator, &url, &args.broker).with_metrics_token(metrics_token);
        println!(
            "aggregator on {scheme}://{address} (key {}, for the broker at {})",
            public_key.short(),
            args.broker
        );
        c2ssi_server::serve(listener, app(state), tls)
            .await
            .context("serving")?;
        anyhow::Ok(())
    })
}
