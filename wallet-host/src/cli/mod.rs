//! The `wallet` command line: flags defined once here, one module per group
//! of commands.

mod collectives;
mod credentials;
mod data;
mod privacy;
mod run;
mod unlock;

use std::path::PathBuf;
use std::process::ExitCode;

use c2ssi_sandbox::SandboxLimits;
use clap::{Args, Parser, Subcommand};

/// The environment variables `wallet` reads, for `--help` and the man page.
const ENVIRONMENT: &str = "\
Environment:
  WALLET_DIR         the wallet directory (as --wallet)
  WALLET_IDENTITY    the age identity file that unlocks it (as --identity)
  WALLET_PASSPHRASE  its passphrase (--passphrase-file keeps it out of the environment)
  WALLET_LOG         what to log to stderr: error, warn, info, debug, or a tracing filter
                     such as wallet_host=debug (overrides -v)
  C2SSI_CA_FILE      a PEM file of certificate authorities to trust for https:// brokers";

/// Your personal data, encrypted, and the training algorithms you let run on it.
#[derive(Debug, Parser)]
#[command(name = "wallet", version, about, long_about = None, after_help = ENVIRONMENT)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The wallet directory [default: compute-to-ssi/wallet under your data directory]
    #[arg(long, global = true, env = "WALLET_DIR", value_name = "DIR")]
    pub(crate) wallet: Option<PathBuf>,
    /// Read the passphrase from the first line of this file (WALLET_PASSPHRASE
    /// also works; otherwise you are asked)
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "identity")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// Unlock with this age identity file instead of a passphrase (`wallet init`
    /// creates it if it does not exist)
    #[arg(long, global = true, env = "WALLET_IDENTITY", value_name = "FILE")]
    pub(crate) identity: Option<PathBuf>,
    /// Log what happens (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

/// The sandbox's limits for one task: defined once, for `run` and `agent`.
#[derive(Debug, Args)]
pub(crate) struct LimitArgs {
    /// Fuel limit per task (about one unit per WebAssembly instruction)
    #[arg(long, default_value_t = SandboxLimits::default().fuel)]
    fuel: u64,
    /// Memory limit per task, in MiB
    #[arg(long, default_value_t = SandboxLimits::default().memory_bytes >> 20)]
    memory_mib: usize,
    /// Wall-clock limit per task, in milliseconds
    #[arg(long, default_value_t = SandboxLimits::default().deadline.as_millis() as u64)]
    timeout_ms: u64,
}

impl LimitArgs {
    /// The limits these flags give, the rest at their defaults.
    pub(crate) fn limits(&self) -> SandboxLimits {
        SandboxLimits {
            fuel: self.fuel,
            memory_bytes: self.memory_mib << 20,
            deadline: std::time::Duration::from_millis(self.timeout_ms),
            ..SandboxLimits::default()
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new wallet: signing identity and record store, encrypted
    Init,
    /// Import a CSV or JSON file as a table
    Import(data::ImportArgs),
    /// Add one row to a table, typed in as column=value
    Add(data::AddArgs),
    /// List the tables
    Tables(c2ssi_cli::JsonArg),
    /// Show a table's schema and rows
    Show(data::ShowArgs),
    /// Print a table's schema as JSON (reusable with --schema)
    Schema(data::NameArg),
    /// Remove a table
    Remove(data::RemoveArgs),
    /// Write a table, decrypted, to stdout
    Export(data::ExportArgs),
    /// Run an algorithm on a table locally and show the update that would leave the wallet
    Run(run::RunArgs),
    /// Verifiable credentials that vouch for this wallet: import, list, show, remove
    Credential(credentials::CredentialArgs),
    /// Subscribe to a compute collective: see its terms, check your data, consent
    Subscribe(collectives::SubscribeArgs),
    /// List the collectives this wallet is subscribed to, and changes waiting for consent
    Subscriptions(c2ssi_cli::JsonArg),
    /// See what a collective changed in its manifest, and consent (or not)
    Consent(collectives::ConsentArgs),
    /// Revoke a subscription: delete the collective's key at once, then unsubscribe
    Revoke(collectives::RevokeArgs),
    /// Check in with the subscribed collectives and run their tasks
    Agent(collectives::AgentArgs),
    /// Every access to this wallet: who, which algorithm, when, fuel, outcome
    Log(collectives::LogArgs),
    /// Receipts of payments, checked
    Earnings(collectives::EarningsArgs),
    /// Privacy spent: epsilon per collective, in total and over the last year
    Privacy(privacy::PrivacyArgs),
    /// Your limits: epsilon per job and per year, least k, noise required, biggest model
    Policy(privacy::PolicyArgs),
    /// Your dashboard in a browser, on 127.0.0.1 only: data, consents, accesses, earnings, privacy
    Ui(c2ssi_cli::DashboardArgs),
    #[command(flatten)]
    Shell(c2ssi_cli::ShellCommand),
}

/// Asks `question` in a terminal and reads a yes; elsewhere fails with
/// `refusal`, which says how to answer without a terminal (`--yes`).
pub(crate) fn confirm(question: &str, refusal: &str) -> anyhow::Result<bool> {
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{refusal}");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `wallet ui`: unlocks the wallet once, prints the one-time link, serves
/// until ctrl-c.
fn ui(g: &GlobalArgs, args: c2ssi_cli::DashboardArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    wallet_host::ui::serve(wallet, args.port, |url| {
        c2ssi_cli::DashboardArgs::announce("your wallet's", url);
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WALLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // A deployment with its own CA (or a self-signed test setup) names it here.
    c2ssi_client::trust_ca_file_from_env()?;
    let g = &cli.global;
    match cli.command {
        Command::Init => data::init(g),
        Command::Import(args) => data::import(g, args),
        Command::Add(args) => data::add(g, args),
        Command::Tables(out) => data::tables(g, out),
        Command::Show(args) => data::show(g, args),
        Command::Schema(args) => data::schema(g, args),
        Command::Remove(args) => data::remove(g, args),
        Command::Export(args) => data::export(g, args),
        Command::Run(args) => run::run(g, args),
        Command::Credential(args) => credentials::credential(g, args),
        Command::Subscribe(args) => collectives::subscribe(g, args),
        Command::Subscriptions(out) => collectives::subscriptions(g, out),
        Command::Consent(args) => collectives::consent(g, args),
        Command::Revoke(args) => collectives::revoke(g, args),
        Command::Agent(args) => collectives::agent(g, args),
        Command::Log(args) => collectives::log(g, args),
        Command::Earnings(args) => collectives::earnings(g, args),
        Command::Privacy(args) => privacy::privacy(g, args),
        Command::Policy(args) => privacy::policy(g, args),
        Command::Ui(args) => ui(g, args),
        Command::Shell(command) => {
            command.run::<Cli>()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
