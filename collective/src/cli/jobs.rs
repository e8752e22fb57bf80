//! `collective train`, `status` and `stop`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use c2ssi_client::Client;
use c2ssi_protocol::{
    Command, CommandOutcome, JobSpec, JobState, JobStatus, RoundStatus, RoundSummary,
};
use clap::Args;
use collective::args::TrainingArgs;

use super::Target;
use super::manifest::current;

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
    #[command(flatten)]
    training: TrainingArgs,
    /// Rounds
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// Wallets sampled per round
    #[arg(long, default_value_t = 10)]
    wallets_per_round: u32,
    /// How long a round waits for updates, in milliseconds
    #[arg(long, default_value_t = 10_000)]
    deadline_ms: u64,
    /// Most this job may spend, as a decimal
    #[arg(long)]
    budget: String,
    /// Follow the job until it ends
    #[arg(long)]
    watch: bool,
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
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    #[command(flatten)]
    target: Target,
    /// The job
    job: String,
}

pub(crate) fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let (_, manifest) = current(&args.target)?;
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
    let spec = JobSpec {
        algorithm_sha256: algorithm.sha256.clone(),
        table,
        params: args.training.params()?,
        rounds: args.rounds,
        wallets_per_round: args.wallets_per_round,
        round_deadline_ms: args.deadline_ms,
        rule: args.training.rule()?,
        server_lr: args.training.server_lr,
        momentum: args.training.momentum,
        optimizer: args.training.optimizer()?,
        schedule: args.training.schedule()?,
        budget: args.budget.parse().context("--budget")?,
        initial_model: None,
    };
    let CommandOutcome::JobStarted { job_id } = args.target.send(Command::StartJob(spec))? else {
        anyhow::bail!("the broker did not start a job");
    };
    println!("{job_id}");
    eprintln!(
        "privacy: k = {}, clipping {}, {}",
        manifest.privacy.min_batch,
        manifest.privacy.clip_norm,
        manifest.privacy.epsilon.map_or_else(
            || "NO NOISE".to_string(),
            |e| format!("at most epsilon {e:.3} per wallet for the whole job")
        )
    );
    if args.watch {
        return watch(&args.target.client()?, &args.target.collective, &job_id);
    }
    Ok(ExitCode::SUCCESS)
}

fn metrics_of(summary: &RoundSummary) -> String {
    summary
        .metrics
        .iter()
        .map(|m| format!("{} {:.4}", m.name, m.value))
        .collect::<Vec<_>>()
        .join("  ")
}

fn print_round(r: &RoundSummary, indent: &str) {
    println!(
        "{indent}round {:>3}  {:<16}  sampled {:>4}  updates {:>8}  {}",
        r.round,
        r.status.as_str(),
        r.sampled,
        r.updates.map_or_else(|| "-".into(), |u| format!("{u:.1}")),
        if r.status == RoundStatus::Released {
            metrics_of(r)
        } else {
            r.report.clone()
        }
    );
}

fn print_job(status: &JobStatus) {
    println!(
        "job {}  {}  rounds released {}/{}  spent {} of {}  model {}  epsilon {}",
        status.id,
        status.state.as_str(),
        status.rounds_done,
        status.spec.rounds,
        status.spent,
        status.spec.budget,
        &status.model_hash[..12.min(status.model_hash.len())],
        match (status.epsilon_spent, status.epsilon_bound) {
            (Some(s), Some(b)) => format!("{s:.3} of {b:.3} (delta {:e})", status.delta),
            _ => "unbounded (no noise)".into(),
        }
    );
    if let Some(reason) = &status.reason {
        println!("  ended: {reason}");
    }
}

fn watch(client: &Client, collective: &str, job: &str) -> anyhow::Result<ExitCode> {
    let mut shown = 0usize;
    loop {
        let status = client.job(collective, job)?;
        for r in status
            .rounds
            .iter()
            .filter(|r| r.status != RoundStatus::Open)
            .skip(shown)
        {
            print_round(r, "");
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

pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let id = &args.target.collective;
    match args.job {
        Some(job) if args.watch => watch(&client, id, &job),
        Some(job) => {
            let status = client.job(id, &job)?;
            if args.out.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_job(&status);
                for r in &status.rounds {
                    print_round(r, "  ");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let jobs = client.jobs(id)?;
            if args.out.json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                let balance = client.balance(id)?;
                println!(
                    "collective {id}: deposited {}, paid {}",
                    balance.deposited, balance.paid
                );
                for j in &jobs {
                    print_job(j);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    args.target.send(Command::StopJob {
        job_id: args.job.clone(),
    })?;
    println!("job {} stops after its current round", args.job);
    Ok(ExitCode::SUCCESS)
}
