//! `broker`: the broker's process, and an offline check of its ledger.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use c2ssi_broker::aggregator_link::RemoteAggregator;
use c2ssi_broker::database::Database;
use c2ssi_broker::registry::Registry;
use c2ssi_broker::{BrokerConfig, service};
use c2ssi_protocol::verify_chain;
use c2ssi_sandbox::SandboxLimits;
use clap::{Args, Parser, Subcommand};

/// The broker of compute-to-ssi: keeps collectives' manifests and wallets'
/// subscriptions, hands out tasks, drives the aggregator, pays every access.
#[derive(Debug, Parser)]
#[command(name = "broker", version, about, long_about = None)]
struct Cli {
    /// Log what happens (repeat for more; BROKER_LOG overrides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the broker's API until ctrl-c or SIGTERM
    Serve(ServeArgs),
    /// Check a collective's ledger in the broker's database file, offline
    VerifyLedger(VerifyArgs),
    /// Print the OpenAPI description of the API (what `GET /openapi.json` serves)
    Openapi,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where the broker keeps its state (SQLite) and its key
    #[arg(
        long,
        env = "BROKER_DATA",
        value_name = "DIR",
        required_unless_present = "database",
        conflicts_with = "database"
    )]
    data: Option<PathBuf>,
    #[command(flatten)]
    postgres: PostgresArg,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The aggregator (`aggregator serve`) this broker sends rounds to
    #[arg(long, env = "AGGREGATOR_URL", value_name = "URL")]
    aggregator: String,
    /// A wallet counts as live this long after its last check-in, in milliseconds
    #[arg(long, default_value_t = 30_000)]
    liveness_ms: u64,
    /// How long wallet agents wait between check-ins, in milliseconds
    #[arg(long, default_value_t = 500)]
    checkin_retry_ms: u64,
    /// UNSAFE: take manifests whose terms add no noise (their releases carry
    /// no privacy guarantee), for research
    #[arg(long)]
    allow_without_noise: bool,
    #[command(flatten)]
    tls: c2ssi_server::TlsArgs,
    #[command(flatten)]
    metrics: c2ssi_server::metrics::MetricsArgs,
    /// Who may create a collective: a file of consumer keys (hex, one per
    /// line; `collective whoami` prints one), read again at every creation
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "anyone_may_create"
    )]
    creators: Option<PathBuf>,
    /// UNSAFE: let anyone create collectives, with any number of keys
    #[arg(long, conflicts_with = "creators")]
    anyone_may_create: bool,
}

/// The broker's state in PostgreSQL, for every command that opens it.
#[derive(Debug, Args)]
struct PostgresArg {
    /// The broker's state in PostgreSQL instead (`postgres://USER@127.0.0.1/DB`
    /// or `host=/run/postgresql dbname=DB`): brokers given the same database
    /// serve the same collectives. The server must be on this machine (the
    /// connection is not encrypted)
    #[arg(long, env = "BROKER_DATABASE", value_name = "URL")]
    database: Option<String>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The broker's database file (`broker.db` in its data directory)
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "database",
        conflicts_with = "database"
    )]
    db: Option<PathBuf>,
    #[command(flatten)]
    postgres: PostgresArg,
    /// The collective
    #[arg(long = "collective", env = "COLLECTIVE_ID")]
    collective: String,
}

fn main() -> ExitCode {
    // A compile child compiles one component under its budget and exits here.
    c2ssi_sandbox::compile_child_hook();
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BROKER_LOG")
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
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::VerifyLedger(args) => verify(args),
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&c2ssi_broker::http::openapi())?
            );
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.allow_without_noise {
        eprintln!(
            "warning: --allow-without-noise: collectives whose terms add no noise are taken; \
             their releases carry no privacy guarantee"
        );
    }
    let config = BrokerConfig {
        liveness_ms: args.liveness_ms,
        checkin_retry_ms: args.checkin_retry_ms,
        allow_without_noise: args.allow_without_noise,
        ..BrokerConfig::default()
    };
    c2ssi_client::trust_ca_file_from_env()?;
    let tls = args.tls.load().map_err(anyhow::Error::msg)?;
    let creators = match &args.creators {
        Some(file) => {
            match std::fs::read_to_string(file) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!(
                    "note: {} does not exist yet: no consumer may create a collective until \
                     its key (`collective whoami`) is added there",
                    file.display()
                ),
                Err(e) => bail!("the creators file {}: {e}", file.display()),
            }
            c2ssi_broker::access::Creators::AllowList(file.clone())
        }
        None => {
            eprintln!("warning: --anyone-may-create: anyone may create collectives on this broker");
            c2ssi_broker::access::Creators::Anyone
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Before waiting for the aggregator: a refusal should come at once.
    if let Ok(address) = args.listen.parse::<std::net::SocketAddr>() {
        args.tls.check_plain(address).map_err(anyhow::Error::msg)?;
    }
    // The database before the aggregator: a wrong URL or file is said at once.
    let (db, state) = match (&args.postgres.database, &args.data) {
        (Some(url), _) => (
            Database::connect(url).context("opening the broker's PostgreSQL database")?,
            "PostgreSQL".to_string(),
        ),
        (None, Some(data)) => {
            std::fs::create_dir_all(data)
                .with_context(|| format!("creating {}", data.display()))?;
            let file = data.join(service::DATABASE_FILE);
            (
                Database::open(&file).with_context(|| format!("opening {}", file.display()))?,
                data.display().to_string(),
            )
        }
        (None, None) => bail!("give --data DIR or --database URL"),
    };
    let metrics_token = args
        .metrics
        .token(args.data.as_deref())
        .map_err(anyhow::Error::msg)?;
    let aggregator =
        RemoteAggregator::connect(&args.aggregator, std::time::Duration::from_secs(60))?;
    let broker = service::open_on(db, config, SandboxLimits::default(), Arc::new(aggregator))
        .with_context(|| format!("opening the broker on {state}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let address = listener.local_addr()?;
        args.tls.check_plain(address).map_err(anyhow::Error::msg)?;
        println!(
            "broker on {scheme}://{address} (state in {state}, aggregator {})",
            args.aggregator
        );
        if metrics_token.is_none() {
            eprintln!(
                "note: /metrics is off (no data directory): give --metrics-token-file FILE to \
                 turn it on"
            );
        }
        service::serve(listener, broker, tls, creators, metrics_token).await?;
        anyhow::Ok(())
    })
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let db = match (&args.postgres.database, &args.db) {
        (Some(url), _) => Database::connect(url)?,
        (None, Some(file)) => {
            if !file.exists() {
                bail!("no database at {}", file.display());
            }
            Database::open(file)?
        }
        (None, None) => bail!("give --db FILE or --database URL"),
    };
    let id = &args.collective;
    let manifest = Registry::new(db.clone()).current(id)?.manifest;
    let entries = c2ssi_broker::ledger::read_entries(&db, id)?;
    let summary = verify_chain(&entries, &manifest.broker_key, id)
        .map_err(|e| anyhow::anyhow!("the ledger of {id} does NOT verify: {e}"))?;
    println!(
        "ledger of {id} verifies: {} entries, {} deposited, {} paid in {} payments, {} model \
         versions, balance {}",
        summary.entries,
        summary.deposited,
        summary.paid,
        summary.payments,
        summary.model_versions,
        summary.balance
    );
    Ok(())
}
