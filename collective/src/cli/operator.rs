//! The operator's commands, each a signed request to the service's API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use c2ssi_client::Client;
use c2ssi_guest_sdk::{Param, ParamValue};
use c2ssi_protocol::{
    AggregationRule, Amount, Command, CreateCollective, DataRequirements, DpSpec, Header, JobSpec,
    LedgerEntry, LedgerSummary, Manifest, ManifestDraft, OperatorCommand, Purpose, Signed,
    SigningKey, verify_chain,
};
use clap::{Args, Subcommand};
use collective::coordinator::{JobState, JobStatus};
use collective::http::AlgorithmUpload;
use collective::models::{ModelSummary, ModelVersion};
use serde::Deserialize;

use super::{Connection, Target};

/// How long an operator's signed request is valid.
const COMMAND_VALIDITY_MS: u64 = 5 * 60 * 1000;

/// The manifest file an operator writes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    name: String,
    description: String,
    /// A decimal: "0.005".
    rate: String,
    min_batch: u32,
    requirements: DataRequirements,
}

fn read_manifest_file(path: &Path) -> anyhow::Result<ManifestDraft> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the manifest {}", path.display()))?;
    let file: ManifestFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected {{\"name\", \"description\", \"rate\": \"0.005\", \"min_batch\", \
             \"requirements\": {{\"tables\": [{{\"table\", \"columns\": [...], \"min_rows\"}}]}}}}",
            path.display()
        )
    })?;
    let rate: Amount = file
        .rate
        .parse()
        .with_context(|| format!("{}: field 'rate'", path.display()))?;
    Ok(ManifestDraft {
        name: file.name,
        description: file.description,
        requirements: file.requirements,
        rate,
        min_batch: file.min_batch,
    })
}

fn load_key(path: &Path) -> anyhow::Result<SigningKey> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading the operator key {} (`collective create` makes one)",
            path.display()
        )
    })?;
    SigningKey::from_pkcs8(&bytes)
        .with_context(|| format!("{} is not an operator key", path.display()))
}

fn load_or_create_key(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        return load_key(path);
    }
    let key = SigningKey::generate()?;
    collective::aggregator::write_private(path, key.pkcs8())
        .with_context(|| format!("writing the operator key {}", path.display()))?;
    eprintln!(
        "created the operator key {} (keep it: it authorizes every command)",
        path.display()
    );
    Ok(key)
}

fn signed_command(target: &Target, command: Command) -> anyhow::Result<Signed<OperatorCommand>> {
    let key = load_key(&target.connection.key)?;
    Ok(Signed::sign(
        &OperatorCommand {
            header: Header::new(
                Purpose::OperatorCommand,
                &target.collective,
                COMMAND_VALIDITY_MS,
            ),
            command,
        },
        &key,
    )?)
}

fn send(target: &Target, command: Command) -> anyhow::Result<serde_json::Value> {
    let signed = signed_command(target, command)?;
    let client = Client::new(&target.connection.url);
    Ok(client.post(
        &format!("/collectives/{}/commands", target.collective),
        &signed,
    )?)
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    connection: Connection,
    /// The manifest file (JSON): name, description, rate, min_batch, requirements
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
}

pub(crate) fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let draft = read_manifest_file(&args.manifest)?;
    let key = load_or_create_key(&args.connection.key)?;
    let request = Signed::sign(
        &CreateCollective {
            header: Header::new(Purpose::CreateCollective, "", COMMAND_VALIDITY_MS),
            draft,
        },
        &key,
    )?;
    let client = Client::new(&args.connection.url);
    let created: serde_json::Value = client.post("/collectives", &request)?;
    let id = created["collective_id"]
        .as_str()
        .context("the service sent no collective id")?;
    println!("{id}");
    eprintln!(
        "created collective {id}; wallets subscribe with `wallet subscribe {} {id}`",
        args.connection.url
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub(crate) struct DepositArgs {
    #[command(flatten)]
    target: Target,
    /// How much, as a decimal ("100", "2.5")
    amount: String,
}

pub(crate) fn deposit(args: DepositArgs) -> anyhow::Result<ExitCode> {
    let amount: Amount = args.amount.parse()?;
    let result = send(&args.target, Command::Deposit { amount })?;
    println!(
        "deposited {amount}; balance {} deposited, {} paid",
        Amount(result["deposited"].as_u64().unwrap_or(0)),
        Amount(result["paid"].as_u64().unwrap_or(0))
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub(crate) enum AlgorithmCommand {
    /// Add an algorithm (a wasm32-wasip2 component) to the manifest
    Add {
        #[command(flatten)]
        target: Target,
        /// The component
        file: PathBuf,
    },
    /// List the allowed algorithms
    List {
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) fn algorithm(command: AlgorithmCommand) -> anyhow::Result<ExitCode> {
    match command {
        AlgorithmCommand::Add { target, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let sha256 = hex::encode(c2ssi_protocol::sha256(&bytes));
            let upload = AlgorithmUpload {
                command: signed_command(
                    &target,
                    Command::AddAlgorithm {
                        sha256: sha256.clone(),
                    },
                )?,
                component_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
            };
            let client = Client::new(&target.connection.url);
            let manifest: Signed<Manifest> = client
                .post(
                    &format!("/collectives/{}/algorithms", target.collective),
                    &upload,
                )
                .with_context(|| format!("adding {}", file.display()))?;
            let m = manifest.open_any_time(None, Purpose::Manifest)?;
            let added = m
                .allows(&sha256)
                .context("the new manifest does not list the algorithm")?;
            println!("{sha256}");
            eprintln!(
                "allowed {} {} (manifest version {})",
                added.name, added.version, m.version
            );
        }
        AlgorithmCommand::List { target } => {
            let client = Client::new(&target.connection.url);
            let list: Vec<c2ssi_protocol::AllowedAlgorithm> =
                client.get(&format!("/collectives/{}/algorithms", target.collective))?;
            for a in list {
                println!("{}\t{}\t{}", a.sha256, a.name, a.version);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn subscribers(target: Target) -> anyhow::Result<ExitCode> {
    let client = Client::new(&target.connection.url);
    let ids: Vec<c2ssi_protocol::PublicKey> =
        client.get(&format!("/collectives/{}/subscribers", target.collective))?;
    for id in &ids {
        println!("{id}");
    }
    eprintln!("{} subscribed wallets", ids.len());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    target: Target,
    /// The algorithm: its SHA-256, or its name in the manifest
    #[arg(long)]
    algorithm: String,
    /// The required table to train on [default: the first]
    #[arg(long)]
    table: Option<String>,
    /// Hyper-parameters, as name=value (lists comma-separated)
    #[arg(long = "params", num_args = 1.., value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Rounds
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// Wallets sampled per round
    #[arg(long, default_value_t = 10)]
    wallets_per_round: u32,
    /// Smallest batch released [default: the manifest's]
    #[arg(long)]
    k: Option<u32>,
    /// How long a round waits for updates, in milliseconds
    #[arg(long, default_value_t = 10_000)]
    deadline_ms: u64,
    /// Aggregation rule: mean, clipped-mean[:NORM], median, trimmed-mean[:FRACTION],
    /// multi-krum[:F], centered-clipping[:RADIUS[:ITERATIONS]]
    #[arg(long, default_value = "mean")]
    filter: String,
    /// Server learning rate
    #[arg(long, default_value_t = 1.0)]
    server_lr: f64,
    /// Server momentum
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Most this job may spend, as a decimal
    #[arg(long)]
    budget: String,
    /// Clip each update's L2 norm in the wallet
    #[arg(long)]
    clip_norm: Option<f64>,
    /// Central differential privacy: noise multiplier
    #[arg(long)]
    dp_noise: Option<f64>,
    /// Central differential privacy: clipping norm
    #[arg(long, default_value_t = 1.0)]
    dp_clip: f64,
    /// Central differential privacy: delta
    #[arg(long, default_value_t = 1e-5)]
    dp_delta: f64,
    /// Seed of sampling and local training
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Follow the job until it ends
    #[arg(long)]
    watch: bool,
}

/// A hyper-parameter typed by its look; the algorithm's declaration decides
/// (an integer where a real is declared, a text where a list is, are accepted).
pub(crate) fn parse_param(text: &str) -> anyhow::Result<Param> {
    let Some((name, value)) = text.split_once('=') else {
        bail!("hyper-parameter '{text}' is not name=value");
    };
    let value = value.trim();
    let typed = if let Ok(i) = value.parse::<i64>() {
        ParamValue::Integer(i)
    } else if let Ok(x) = value
        .parse::<f64>()
        .map_err(|_| ())
        .and_then(|x| if x.is_finite() { Ok(x) } else { Err(()) })
    {
        ParamValue::Real(x)
    } else if value == "true" || value == "false" {
        ParamValue::Boolean(value == "true")
    } else if value.contains(',') {
        ParamValue::TextList(value.split(',').map(|s| s.trim().to_string()).collect())
    } else {
        ParamValue::Text(value.to_string())
    };
    Ok(Param::new(name.trim(), typed))
}

pub(crate) fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.target.connection.url);
    let manifest = client
        .manifest(&args.target.collective)?
        .open_any_time(None, Purpose::Manifest)?;
    let algorithm = manifest
        .allowed_algorithms
        .iter()
        .find(|a| a.sha256 == args.algorithm || a.name == args.algorithm)
        .with_context(|| {
            format!(
                "'{}' is not an allowed algorithm (allowed: {})",
                args.algorithm,
                manifest
                    .allowed_algorithms
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let table = match args.table {
        Some(t) => t,
        None => manifest
            .requirements
            .tables
            .first()
            .map(|t| t.table.clone())
            .context("no required table")?,
    };
    let rule: AggregationRule = args
        .filter
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--filter: {e}"))?;
    let spec = JobSpec {
        algorithm_sha256: algorithm.sha256.clone(),
        table,
        params: args
            .params
            .iter()
            .map(|p| parse_param(p))
            .collect::<anyhow::Result<_>>()?,
        rounds: args.rounds,
        wallets_per_round: args.wallets_per_round,
        min_batch: args.k.unwrap_or(manifest.min_batch),
        round_deadline_ms: args.deadline_ms,
        rule,
        server_lr: args.server_lr,
        momentum: args.momentum,
        budget: args.budget.parse().context("--budget")?,
        clip_norm: args.clip_norm,
        dp: args.dp_noise.map(|noise| DpSpec {
            noise_multiplier: noise,
            clip_norm: args.dp_clip,
            delta: args.dp_delta,
        }),
        seed: args.seed,
        initial_model: None,
    };
    let result = send(&args.target, Command::StartJob(spec))?;
    let job = result["job_id"]
        .as_str()
        .context("the service sent no job id")?
        .to_string();
    println!("{job}");
    if args.watch {
        return watch(&client, &args.target.collective, &job);
    }
    Ok(ExitCode::SUCCESS)
}

fn loss_of(summary: &collective::coordinator::RoundSummary) -> String {
    summary
        .metrics
        .iter()
        .find(|m| m.name.ends_with("_before"))
        .or_else(|| summary.metrics.first())
        .map(|m| format!("{} {:.4}", m.name, m.value))
        .unwrap_or_default()
}

fn print_job(status: &JobStatus) {
    println!(
        "job {}  {:?}  rounds released {}/{}  spent {} of {}  model {}{}",
        status.id,
        status.state,
        status.rounds_done,
        status.spec.rounds,
        status.spent,
        status.spec.budget,
        &status.model_hash[..12.min(status.model_hash.len())],
        status
            .epsilon
            .map(|e| format!("  epsilon {e:.3}"))
            .unwrap_or_default()
    );
    if let Some(reason) = &status.reason {
        println!("  ended: {reason}");
    }
}

fn watch(client: &Client, collective: &str, job: &str) -> anyhow::Result<ExitCode> {
    let mut shown = 0usize;
    loop {
        let status: JobStatus = client.get(&format!("/collectives/{collective}/jobs/{job}"))?;
        for r in status
            .rounds
            .iter()
            .filter(|r| r.status != "open")
            .skip(shown)
        {
            println!(
                "round {:>3}  {:<9}  sampled {:>4}  received {:>4}  aggregated {:>4}  {}",
                r.round,
                r.status,
                r.sampled,
                r.counts.received,
                r.counts.aggregated,
                if r.status == "closed" {
                    loss_of(r)
                } else {
                    r.report.clone()
                }
            );
            shown += 1;
        }
        if status.state != JobState::Running {
            print_job(&status);
            return Ok(if matches!(status.state, JobState::Failed) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// A job; without one, every job
    job: Option<String>,
    /// Follow the job until it ends
    #[arg(long)]
    watch: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.target.connection.url);
    let id = &args.target.collective;
    match args.job {
        Some(job) if args.watch => watch(&client, id, &job),
        Some(job) => {
            let status: JobStatus = client.get(&format!("/collectives/{id}/jobs/{job}"))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_job(&status);
                for r in &status.rounds {
                    println!(
                        "  round {:>3}  {:<9}  sampled {:>4}  received {:>4}  aggregated {:>4}  {}",
                        r.round,
                        r.status,
                        r.sampled,
                        r.counts.received,
                        r.counts.aggregated,
                        if r.status == "closed" {
                            loss_of(r)
                        } else {
                            r.report.clone()
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let jobs: Vec<JobStatus> = client.get(&format!("/collectives/{id}/jobs"))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                let balance: serde_json::Value =
                    client.get(&format!("/collectives/{id}/ledger/balance"))?;
                println!(
                    "collective {id}: deposited {}, paid {}",
                    Amount(balance["deposited"].as_u64().unwrap_or(0)),
                    Amount(balance["paid"].as_u64().unwrap_or(0))
                );
                for j in &jobs {
                    print_job(j);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    #[command(flatten)]
    target: Target,
    /// The job
    job: String,
}

pub(crate) fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    send(
        &args.target,
        Command::StopJob {
            job_id: args.job.clone(),
        },
    )?;
    println!("job {} stops after its current round", args.job);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// List model versions with their provenance
    List {
        #[command(flatten)]
        target: Target,
        /// Only this job's
        #[arg(long)]
        job: Option<String>,
    },
    /// Fetch one version (JSON: parameters and provenance)
    Get {
        #[command(flatten)]
        target: Target,
        /// Its hash
        hash: String,
        /// Write it to this file instead of stdout
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub(crate) fn model(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::List { target, job } => {
            let client = Client::new(&target.connection.url);
            let query = job.map(|j| format!("?job={j}")).unwrap_or_default();
            let list: Vec<ModelSummary> =
                client.get(&format!("/collectives/{}/models{query}", target.collective))?;
            for m in list {
                let p = &m.provenance;
                println!(
                    "{}  job {} round {:>3}  {} params  parent {}  {} updates  {}",
                    m.hash,
                    p.job_id,
                    p.round,
                    m.parameters,
                    p.parent
                        .as_deref()
                        .map(|h| &h[..12.min(h.len())])
                        .unwrap_or("-"),
                    p.updates_aggregated,
                    p.filter_report
                );
            }
        }
        ModelCommand::Get { target, hash, out } => {
            let client = Client::new(&target.connection.url);
            let version: ModelVersion =
                client.get(&format!("/collectives/{}/models/{hash}", target.collective))?;
            if collective::models::model_hash(&version.params) != version.hash {
                bail!("the model's parameters do not match its hash");
            }
            let text = serde_json::to_string_pretty(&version)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote model {hash} to {}", path.display());
                }
                None => println!("{text}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Print the entries
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// Check every entry's hash, link and signature (with the ledger key from
    /// the signed manifest), positions without gaps, and a balance never below zero
    Verify {
        #[command(flatten)]
        target: Target,
        /// Check the service's database file directly instead of its API
        #[arg(long, value_name = "FILE")]
        db: Option<PathBuf>,
    },
}

fn verified(
    entries: &[LedgerEntry],
    manifest: &Manifest,
    collective: &str,
) -> anyhow::Result<LedgerSummary> {
    verify_chain(entries, &manifest.ledger_key, collective)
        .map_err(|e| anyhow::anyhow!("the ledger of {collective} does NOT verify: {e}"))
}

pub(crate) fn ledger(command: LedgerCommand) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::Show { target } => {
            let client = Client::new(&target.connection.url);
            for e in client.ledger(&target.collective)? {
                println!(
                    "{:>6}  {}  {}  {}",
                    e.seq,
                    e.time_ms,
                    &e.hash[..16],
                    serde_json::to_string(&e.kind)?
                );
            }
        }
        LedgerCommand::Verify { target, db } => {
            let id = &target.collective;
            let (manifest, entries) = match db {
                Some(path) => {
                    if !path.exists() {
                        bail!("no database at {}", path.display());
                    }
                    let db = collective::database::Database::open(&path)?;
                    let manifest =
                        collective::registry::Registry::new(db.clone()).manifest_body(id)?;
                    (manifest, collective::ledger::read_entries(&db, id)?)
                }
                None => {
                    let client = Client::new(&target.connection.url);
                    let signed = client.manifest(id)?;
                    let manifest = signed.open_any_time(Some(&signed.signer), Purpose::Manifest)?;
                    if c2ssi_protocol::collective_id(&manifest.collective_key) != *id {
                        bail!("the manifest is not signed by the key collective {id} belongs to");
                    }
                    (manifest, client.ledger(id)?)
                }
            };
            let summary = verified(&entries, &manifest, id)?;
            println!(
                "ledger of {id} verifies: {} entries, {} deposited, {} paid in {} payments, {} model versions, balance {}",
                summary.entries,
                summary.deposited,
                summary.paid,
                summary.payments,
                summary.model_versions,
                summary.balance
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
