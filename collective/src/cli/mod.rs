//! The `collective` command line: flags defined once here, one module per
//! group of commands.

mod aggregator;
mod operator;
mod serve;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// A compute collective: trains models on personal data that stays in its owners' wallets.
#[derive(Debug, Parser)]
#[command(name = "collective", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log what happens (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// How the operator's commands reach the service.
#[derive(Debug, Args, Clone)]
pub(crate) struct Connection {
    /// The collective service
    #[arg(long, env = "COLLECTIVE_URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// The operator's key file (created by `collective create` if missing)
    #[arg(
        long,
        env = "COLLECTIVE_KEY",
        value_name = "FILE",
        default_value = "collective-operator.key"
    )]
    pub(crate) key: PathBuf,
}

/// The collective a command is about.
#[derive(Debug, Args, Clone)]
pub(crate) struct Target {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// The collective's id
    #[arg(long = "collective", env = "COLLECTIVE_ID")]
    pub(crate) collective: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collective's service (HTTP API, aggregator, ledger, job runner)
    Serve(serve::ServeArgs),
    /// Run the aggregator as its own process (wallets send their updates to it)
    Aggregator(aggregator::AggregatorArgs),
    /// Create a collective from a manifest file
    Create(operator::CreateArgs),
    /// Add budget to a collective
    Deposit(operator::DepositArgs),
    /// Allowed algorithms
    #[command(subcommand)]
    Algorithm(operator::AlgorithmCommand),
    /// List a collective's subscribed wallets (ids only)
    Subscribers(Target),
    /// Start a training job
    Train(Box<operator::TrainArgs>),
    /// Show jobs, or one job and its rounds
    Status(operator::StatusArgs),
    /// Stop a job after its current round
    Stop(operator::StopArgs),
    /// Model versions
    #[command(subcommand)]
    Model(operator::ModelCommand),
    /// The ledger
    #[command(subcommand)]
    Ledger(operator::LedgerCommand),
    /// Run the whole loop in one process on a real dataset
    Simulate(Box<simulate::SimulateArgs>),
}

pub(crate) fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COLLECTIVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Aggregator(args) => aggregator::aggregator(args),
        Command::Create(args) => operator::create(args),
        Command::Deposit(args) => operator::deposit(args),
        Command::Algorithm(cmd) => operator::algorithm(cmd),
        Command::Subscribers(target) => operator::subscribers(target),
        Command::Train(args) => operator::train(*args),
        Command::Status(args) => operator::status(args),
        Command::Stop(args) => operator::stop(args),
        Command::Model(cmd) => operator::model(cmd),
        Command::Ledger(cmd) => operator::ledger(cmd),
        Command::Simulate(args) => simulate::simulate(*args),
    }
}
