//! The `collective` command line: flags defined once here, one module per
//! group of commands. Every command that changes something signs it with
//! the collective's key.

mod algorithm;
mod jobs;
mod manifest;
mod model_run;
mod reads;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use c2ssi_client::Client;
use c2ssi_protocol::{Command, SigningKey};
use clap::{Args, Parser, Subcommand};

/// The environment variables `collective` reads, for `--help` and the man page.
const ENVIRONMENT: &str = "\
Environment:
  BROKER_URL       the broker (as --broker)
  COLLECTIVE_HOME  this consumer's directory of keys (as --home) [default: compute-to-ssi/
                   collective under your data directory]
  COLLECTIVE_ID    the collective (as --collective)
  COLLECTIVE_KEY   the collective's key file (as --key)
  COLLECTIVE_LOG   what to log to stderr: error, warn, info, debug, or a tracing filter
                   (overrides -v)
  C2SSI_CA_FILE    a PEM file of certificate authorities to trust for https:// brokers";

/// A compute collective: trains models on personal data that stays in its
/// owners' wallets, through a broker and an aggregator it does not control.
#[derive(Debug, Parser)]
#[command(name = "collective", version, about, long_about = None, after_help = ENVIRONMENT)]
pub(crate) struct Cli {
    /// Log what happens (repeat for more; COLLECTIVE_LOG overrides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    command: Command_,
}

/// How commands reach the broker, and where the collective's keys are.
#[derive(Debug, Args, Clone)]
pub(crate) struct Connection {
    /// The broker
    #[arg(
        long = "broker",
        env = "BROKER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) url: String,
    /// The consumer's data directory, where each collective's key is kept
    /// [default: compute-to-ssi/collective under your data directory]
    #[arg(long, env = "COLLECTIVE_HOME", value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
    /// The collective's key file [default: COLLECTIVE_ID.key in the data directory]
    #[arg(long, env = "COLLECTIVE_KEY", value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
}

impl Connection {
    /// A client that waits up to 10 s for a broker that is still starting.
    pub(crate) fn client(&self) -> Client {
        Client::new(&self.url).patient(std::time::Duration::from_secs(10))
    }

    pub(crate) fn home(&self) -> anyhow::Result<PathBuf> {
        collective::home::home(self.home.as_deref())
    }
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

impl Target {
    /// A client of the broker that signs its requests with the collective's
    /// key: the consumer's reads and uploads need it.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Ok(self
            .connection
            .client()
            .signed_by(std::sync::Arc::new(self.key()?)))
    }

    pub(crate) fn key(&self) -> anyhow::Result<SigningKey> {
        collective::home::load_key(
            &self.connection.home()?,
            self.connection.key.as_deref(),
            &self.collective,
        )
    }

    /// Signs and sends a command.
    pub(crate) fn send(&self, command: Command) -> anyhow::Result<c2ssi_protocol::CommandOutcome> {
        collective::operator::send(&self.client()?, &self.key()?, &self.collective, command)
    }
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once; boxing the arguments buys nothing"
)]
enum Command_ {
    /// Print this consumer's key (made on first use), which a broker's
    /// operator lists to let you create collectives
    Whoami(Connection),
    /// Create a collective from a manifest file, signed with a new key
    Create(manifest::CreateArgs),
    /// Sign and publish a new version of the manifest (terms, rate,
    /// description); every subscriber consents to it again
    Update(manifest::UpdateArgs),
    /// Add budget
    Deposit(manifest::DepositArgs),
    /// Algorithms: add one (a new manifest version), list them, audit a component
    #[command(subcommand)]
    Algorithm(algorithm::AlgorithmCommand),
    /// The collective at a glance: manifest version, subscribers, budget
    Info(reads::InfoArgs),
    /// Start a training job
    Train(Box<jobs::TrainArgs>),
    /// Show jobs, or one job and its rounds
    Status(jobs::StatusArgs),
    /// Stop a job after its current round
    Stop(jobs::StopArgs),
    /// Model versions
    #[command(subcommand)]
    Model(reads::ModelCommand),
    /// The ledger
    #[command(subcommand)]
    Ledger(reads::LedgerCommand),
    /// Your dashboard in a browser, on 127.0.0.1 only: subscribers, jobs
    /// (start, stop, watch), model versions, budget and ledger
    Ui(UiArgs),
    /// Run the whole loop in one process on a real dataset (the `simulate` program)
    #[command(disable_help_flag = true)]
    Simulate(simulate::SimulateArgs),
    #[command(flatten)]
    Shell(c2ssi_cli::ShellCommand),
}

#[derive(Debug, Args)]
pub(crate) struct UiArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    dashboard: c2ssi_cli::DashboardArgs,
}

/// `collective ui`: loads the collective's key once, prints the one-time
/// link, serves until ctrl-c.
fn ui(args: UiArgs) -> anyhow::Result<ExitCode> {
    let key = std::sync::Arc::new(args.target.key()?);
    let operator = collective::ui::Operator::new(
        args.target.connection.client().signed_by(key.clone()),
        key,
        args.target.collective.clone(),
    );
    // The broker must answer before the link is given.
    operator.client().summary(operator.collective())?;
    collective::ui::serve(operator, args.dashboard.port, |url| {
        c2ssi_cli::DashboardArgs::announce("your collective's", url);
    })?;
    Ok(ExitCode::SUCCESS)
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
    // A deployment with its own CA (or a self-signed test setup) names it here.
    c2ssi_client::trust_ca_file_from_env()?;
    match cli.command {
        Command_::Whoami(connection) => {
            let key = collective::home::consumer_key(&connection.home()?)?;
            println!("{}", c2ssi_protocol::Signer::public_key(&key).to_hex());
            Ok(ExitCode::SUCCESS)
        }
        Command_::Create(args) => manifest::create(args),
        Command_::Update(args) => manifest::update(args),
        Command_::Ui(args) => ui(args),
        Command_::Deposit(args) => manifest::deposit(args),
        Command_::Algorithm(cmd) => algorithm::algorithm(cmd),
        Command_::Info(args) => reads::info(args),
        Command_::Train(args) => jobs::train(*args),
        Command_::Status(args) => jobs::status(args),
        Command_::Stop(args) => jobs::stop(args),
        Command_::Model(cmd) => reads::model(cmd),
        Command_::Ledger(cmd) => reads::ledger(cmd),
        Command_::Simulate(args) => simulate::forward(args),
        Command_::Shell(command) => {
            command.run::<Cli>()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
