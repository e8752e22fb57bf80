//! The owner's privacy: `wallet privacy` (epsilon spent, per collective and
//! in total) and `wallet policy` (the limits the agent enforces).

use std::process::ExitCode;

use c2ssi_protocol::now_ms;
use clap::Args;
use wallet_host::agent::budget::{self, Spent};
use wallet_host::agent::{AccessLog, LOG_FILE, POLICY_FILE, Policy};

use super::GlobalArgs;
use super::unlock;

#[derive(Debug, Args)]
pub(crate) struct PrivacyArgs {
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// Limits to change, as NAME=VALUE: max-epsilon-per-job,
    /// max-epsilon-per-year, min-k, require-noise (true|false),
    /// max-model-params, delta; without any, the policy is shown
    #[arg(value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Go back to the defaults
    #[arg(long, conflicts_with = "set")]
    reset: bool,
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

fn epsilon_text(spent: &Spent, delta: f64) -> String {
    let e = spent.epsilon(delta);
    match spent.without_noise {
        0 => format!("{e:.3}"),
        n => format!("{e:.3}, and {n} round(s) without noise: unbounded"),
    }
}

pub(crate) fn privacy(g: &GlobalArgs, args: PrivacyArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let log: AccessLog = wallet.read_document(LOG_FILE)?;
    let policy: Policy = wallet.read_document(POLICY_FILE)?;
    let report = budget::report(&log, now_ms());
    let (total, year) = (report.total, report.last_year);
    let rows: Vec<(serde_json::Value, Spent, Spent)> = report
        .collectives
        .iter()
        .map(|c| {
            (
                serde_json::json!({
                    "collective": c.collective_id,
                    "jobs": c.jobs,
                    "rounds": c.all.rounds,
                    "rounds_without_noise": c.all.without_noise,
                    "epsilon": c.all.epsilon(policy.delta),
                    "epsilon_last_365_days": c.last_year.epsilon(policy.delta),
                }),
                c.all,
                c.last_year,
            )
        })
        .collect();
    if args.out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "delta": policy.delta,
                "collectives": rows.iter().map(|r| &r.0).collect::<Vec<_>>(),
                "total": {
                    "rounds": total.rounds,
                    "rounds_without_noise": total.without_noise,
                    "epsilon": total.epsilon(policy.delta),
                },
                "last_365_days": {
                    "rounds": year.rounds,
                    "rounds_without_noise": year.without_noise,
                    "epsilon": year.epsilon(policy.delta),
                },
                "limits": {
                    "max_epsilon_per_job": policy.max_epsilon_per_job,
                    "max_epsilon_per_year": policy.max_epsilon_per_year,
                },
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("privacy spent, as epsilon at delta {:e}:", policy.delta);
    if rows.is_empty() {
        println!("  nothing yet: no update has left this wallet");
    }
    for ((row, all, last_year), c) in rows.iter().zip(&report.collectives) {
        let id = &c.collective_id;
        println!(
            "  {id}  {} job(s), {} round(s): epsilon {} (last 365 days {})",
            row["jobs"],
            row["rounds"],
            epsilon_text(all, policy.delta),
            epsilon_text(last_year, policy.delta),
        );
    }
    println!(
        "  total: {} round(s), epsilon {}",
        total.rounds,
        epsilon_text(&total, policy.delta)
    );
    println!(
        "  last 365 days: epsilon {} of your limit {}; at most {} per job",
        epsilon_text(&year, policy.delta),
        policy.max_epsilon_per_year,
        policy.max_epsilon_per_job
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn policy(g: &GlobalArgs, args: PolicyArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let policy = if args.reset {
        wallet.update_document(POLICY_FILE, |p: &mut Policy| {
            *p = Policy::default();
            Ok(p.clone())
        })?
    } else if args.set.is_empty() {
        wallet.read_document(POLICY_FILE)?
    } else {
        let mut changes = Vec::new();
        for item in &args.set {
            let Some((name, value)) = item.split_once('=') else {
                anyhow::bail!("'{item}' is not NAME=VALUE");
            };
            changes.push((name.trim().to_string(), value.trim().to_string()));
        }
        // Every change is checked before anything is written.
        let mut checked: Policy = wallet.read_document(POLICY_FILE)?;
        for (name, value) in &changes {
            checked.set(name, value).map_err(anyhow::Error::msg)?;
        }
        wallet.update_document(POLICY_FILE, |p: &mut Policy| {
            *p = checked.clone();
            Ok(p.clone())
        })?
    };
    if args.out.json {
        println!("{}", serde_json::to_string_pretty(&policy)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("max-epsilon-per-job   {}", policy.max_epsilon_per_job);
    println!("max-epsilon-per-year  {}", policy.max_epsilon_per_year);
    println!("min-k                 {}", policy.min_k);
    println!("require-noise         {}", policy.require_noise);
    println!("max-model-params      {}", policy.max_model_params);
    println!("delta                 {:e}", policy.delta);
    if policy == Policy::default() {
        println!("(the defaults)");
    }
    Ok(ExitCode::SUCCESS)
}
