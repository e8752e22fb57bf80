//! The dashboard's pages, each read from the broker's signed API, and the
//! commands it sends: a job started (with the training flags `collective
//! train` takes, parsed by the same definitions) or stopped.

use std::collections::BTreeMap;

use anyhow::Context;
use askama::Template;
use c2ssi_protocol::{
    Command, CommandOutcome, EntryKind, JobSpec, JobState, Manifest, RoundStatus, RoundSummary,
    open_manifest, verify_chain,
};
use c2ssi_web::{Notice, Page, body};
use clap::Parser;
use serde::Deserialize;

use super::{APP, NAV, Operator};
use crate::args::TrainingArgs;

/// Most ledger entries listed.
const LATEST_ENTRIES: usize = 50;

fn page(current: &'static str, title: impl Into<String>, body: String) -> Page {
    let mut page = Page::new(APP, NAV, current, title, body);
    page.scripts = &[
        "/assets/live.js",
        "/assets/uPlot.iife.min.js",
        "/assets/chart.js",
    ];
    page
}

fn manifest(op: &Operator) -> anyhow::Result<Manifest> {
    let signed = op
        .client
        .manifest(&op.collective)
        .with_context(|| format!("fetching the manifest of {}", op.collective))?;
    Ok(open_manifest(&signed, &op.collective)?)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn epsilon(spent: Option<f64>, bound: Option<f64>) -> String {
    match (spent, bound) {
        (Some(s), Some(b)) => format!("{s:.3} of {b:.3}"),
        _ => "unbounded (no noise)".into(),
    }
}

struct JobRow {
    id: String,
    state: &'static str,
    algorithm: String,
    rounds: String,
    spent: String,
    epsilon: String,
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
struct OverviewView {
    collective: String,
    name: String,
    version: u64,
    subscribers: u64,
    consented: u64,
    deposited: String,
    paid: String,
    balance: String,
    history: Vec<(u64, String, u64)>,
    privacy: Vec<String>,
    jobs: Vec<JobRow>,
    algorithms: Vec<(String, String)>,
    default_params: String,
    csrf: String,
    form: String,
}

pub(super) fn overview(op: &Operator, csrf: &str, notice: Option<Notice>) -> anyhow::Result<Page> {
    let id = &op.collective;
    let summary = op.client.summary(id)?;
    let manifest = manifest(op)?;
    let history = op.client.subscriber_history(id)?;
    let mut jobs = op.client.jobs(id)?;
    jobs.reverse();
    let names: BTreeMap<&str, &str> = manifest
        .allowed_algorithms
        .iter()
        .map(|a| (a.sha256.as_str(), a.name.as_str()))
        .collect();
    let label = manifest
        .requirements
        .tables
        .first()
        .and_then(|t| t.columns.last())
        .map(|c| format!("label={}", c.name))
        .unwrap_or_default();
    let view = OverviewView {
        collective: id.clone(),
        name: manifest.name.clone(),
        version: summary.manifest_version,
        subscribers: summary.subscribers,
        consented: summary.consented_to_current,
        deposited: summary.balance.deposited.to_string(),
        paid: summary.balance.paid.to_string(),
        balance: summary.balance.balance.to_string(),
        // The recorded changes, then the count now.
        history: history
            .iter()
            .map(|p| (p.time_ms / 1000, c2ssi_cli::date(p.time_ms), p.subscribers))
            .chain(std::iter::once((
                c2ssi_protocol::now_ms() / 1000,
                "now".to_string(),
                summary.subscribers,
            )))
            .collect(),
        privacy: manifest.privacy.describe(),
        jobs: jobs
            .iter()
            .map(|j| JobRow {
                id: j.id.clone(),
                state: j.state.as_str(),
                algorithm: names.get(j.spec.algorithm_sha256.as_str()).map_or_else(
                    || short(&j.spec.algorithm_sha256).to_string(),
                    |n| n.to_string(),
                ),
                rounds: format!("{} / {}", j.rounds_done, j.spec.rounds),
                spent: format!("{} of {}", j.spent, j.spec.budget),
                epsilon: epsilon(j.epsilon_spent, j.epsilon_bound),
            })
            .collect(),
        algorithms: manifest
            .allowed_algorithms
            .iter()
            .map(|a| (a.sha256.clone(), format!("{} {}", a.name, a.version)))
            .collect(),
        default_params: label,
        csrf: csrf.to_string(),
        form: op.new_form(),
    };
    let mut page = page("/", format!("Collective {}", manifest.name), body(&view));
    page.notice = notice;
    Ok(page)
}

/// The start form.
#[derive(Debug, Deserialize)]
pub(super) struct StartForm {
    form: String,
    algorithm: String,
    params: String,
    rounds: String,
    wallets_per_round: String,
    deadline_ms: String,
    budget: String,
    filter: String,
    momentum: String,
}

/// A whole number from a form field, or an error that names the field.
fn whole<T: std::str::FromStr>(field: &str, text: &str) -> anyhow::Result<T> {
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{field}: '{}' is not a whole number", text.trim()))
}

/// The training flags, parsed by the definitions `collective train` uses.
#[derive(Debug, Parser)]
#[command(name = "the form")]
struct FormFlags {
    #[command(flatten)]
    training: TrainingArgs,
}

/// Starts a job from the form; its id.
pub(super) fn start(op: &Operator, form: &StartForm) -> anyhow::Result<String> {
    if !op.spend_form(&form.form) {
        anyhow::bail!(
            "this form was sent already (or comes from an earlier run of the dashboard), so \
             no second job was started; the jobs list shows what runs"
        );
    }
    let manifest = manifest(op)?;
    let algorithm = manifest
        .allowed_algorithms
        .iter()
        .find(|a| a.sha256 == form.algorithm)
        .context("the algorithm is not in the manifest (reload the page)")?;
    let table = manifest
        .requirements
        .tables
        .first()
        .map(|t| t.table.clone())
        .context("the manifest requires no table")?;
    let mut argv = vec![
        "form".to_string(),
        "--filter".into(),
        form.filter.trim().to_string(),
        "--momentum".into(),
        form.momentum.trim().to_string(),
    ];
    let params: Vec<&str> = form.params.split_whitespace().collect();
    if !params.is_empty() {
        argv.push("--params".into());
        argv.extend(params.iter().map(|p| p.to_string()));
    }
    let flags = FormFlags::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    let training = flags.training;
    let spec = JobSpec {
        algorithm_sha256: algorithm.sha256.clone(),
        table,
        params: training.params()?,
        rounds: whole("rounds", &form.rounds)?,
        wallets_per_round: whole("wallets per round", &form.wallets_per_round)?,
        round_deadline_ms: whole("round deadline", &form.deadline_ms)?,
        rule: training.rule()?,
        server_lr: training.server_lr,
        momentum: training.momentum,
        optimizer: training.optimizer()?,
        schedule: training.schedule()?,
        budget: form
            .budget
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("budget: {e}"))?,
        initial_model: None,
    };
    match crate::operator::send(&op.client, &op.key, &op.collective, Command::StartJob(spec))? {
        CommandOutcome::JobStarted { job_id } => Ok(job_id),
        other => anyhow::bail!("the broker answered {other:?}, not a started job"),
    }
}

/// Asks the broker to stop `job` after its current round.
pub(super) fn stop(op: &Operator, job: &str) -> anyhow::Result<()> {
    crate::operator::send(
        &op.client,
        &op.key,
        &op.collective,
        Command::StopJob {
            job_id: job.to_string(),
        },
    )?;
    Ok(())
}

struct RoundRow {
    round: u32,
    state: &'static str,
    released: bool,
    sampled: u32,
    updates: String,
    report: String,
    /// (series name, value for the chart, value shown), per metric name.
    metrics: Vec<(String, f64, String)>,
}

/// What the filter did in a round, as far as the release tells.
fn filter_report(r: &RoundSummary) -> String {
    match &r.counts {
        Some(c) => {
            let rejected = if c.rejected.is_empty() {
                "none refused".to_string()
            } else {
                c.rejected
                    .iter()
                    .map(|(kind, n)| format!("{n} {kind}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "received {}, refused or unused: {rejected}, combined {}",
                c.received, c.aggregated
            )
        }
        None if r.status == RoundStatus::Released => {
            format!("{} (exact counts withheld: released with noise)", r.report)
        }
        None => r.report.clone(),
    }
}

#[derive(Template)]
#[template(path = "ui/job.html")]
struct JobView {
    id: String,
    state: &'static str,
    running: bool,
    reason: Option<String>,
    rounds_done: u32,
    rounds_total: u32,
    spent: String,
    budget: String,
    epsilon: String,
    algorithm: String,
    table: String,
    rule: String,
    wallets_per_round: u32,
    model: String,
    metric_names: Vec<String>,
    rounds: Vec<RoundRow>,
    csrf: String,
}

pub(super) fn job(op: &Operator, job: &str, csrf: &str) -> anyhow::Result<Page> {
    let status = op.client.job(&op.collective, job)?;
    let manifest = manifest(op)?;
    let mut metric_names: Vec<String> = Vec::new();
    for r in &status.rounds {
        for m in &r.metrics {
            if !metric_names.contains(&m.name) {
                metric_names.push(m.name.clone());
            }
        }
    }
    let rounds = status
        .rounds
        .iter()
        .map(|r| RoundRow {
            round: r.round,
            state: r.status.as_str(),
            released: r.status == RoundStatus::Released,
            sampled: r.sampled,
            updates: r.updates.map_or_else(|| "-".into(), |u| format!("{u:.1}")),
            report: filter_report(r),
            metrics: metric_names
                .iter()
                .map(|name| match r.metrics.iter().find(|m| &m.name == name) {
                    Some(m) => (name.clone(), m.value, format!("{:.4}", m.value)),
                    None => (name.clone(), f64::NAN, "-".into()),
                })
                .collect(),
        })
        .collect();
    let algorithm = manifest
        .allowed_algorithms
        .iter()
        .find(|a| a.sha256 == status.spec.algorithm_sha256)
        .map_or_else(
            || short(&status.spec.algorithm_sha256).to_string(),
            |a| format!("{} {}", a.name, a.version),
        );
    let view = JobView {
        id: status.id.clone(),
        state: status.state.as_str(),
        running: status.state == JobState::Running,
        reason: status.reason.clone(),
        rounds_done: status.rounds_done,
        rounds_total: status.spec.rounds,
        spent: status.spent.to_string(),
        budget: status.spec.budget.to_string(),
        epsilon: epsilon(status.epsilon_spent, status.epsilon_bound),
        algorithm,
        table: status.spec.table.clone(),
        rule: status.spec.rule.to_string(),
        wallets_per_round: status.spec.wallets_per_round,
        model: short(&status.model_hash).to_string(),
        metric_names,
        rounds,
        csrf: csrf.to_string(),
    };
    Ok(page("/", format!("Job {}", status.id), body(&view)))
}

struct ModelRow {
    hash: String,
    short: String,
    round: u32,
    parent: Option<String>,
    parameters: usize,
    when: String,
    algorithm: String,
    manifest: String,
    release: String,
}

#[derive(Template)]
#[template(path = "ui/models.html")]
struct ModelsView {
    chains: Vec<(String, Vec<ModelRow>)>,
}

pub(super) fn models(op: &Operator) -> anyhow::Result<Page> {
    let mut chains: BTreeMap<String, Vec<ModelRow>> = BTreeMap::new();
    for m in op.client.models(&op.collective, None)? {
        let p = &m.provenance;
        let release = match &p.noise {
            Some(n) => format!(
                "{:.1} updates combined, noise sigma {:.4}, rule {}",
                p.updates,
                n.sigma,
                p.rule
                    .as_ref()
                    .map_or_else(|| "mean".to_string(), ToString::to_string)
            ),
            None if p.round == 0 => "the initial model".to_string(),
            None => format!(
                "{:.0} updates combined without noise, rule {}",
                p.updates,
                p.rule
                    .as_ref()
                    .map_or_else(|| "mean".to_string(), ToString::to_string)
            ),
        };
        chains.entry(p.job_id.clone()).or_default().push(ModelRow {
            short: short(&m.hash).to_string(),
            hash: m.hash.clone(),
            round: p.round,
            parent: p.parent.clone(),
            parameters: m.parameters,
            when: c2ssi_cli::date(m.created_ms),
            algorithm: short(&p.algorithm_sha256).to_string(),
            manifest: short(&p.manifest_digest).to_string(),
            release,
        });
    }
    for chain in chains.values_mut() {
        chain.sort_by_key(|m| m.round);
    }
    let view = ModelsView {
        chains: chains.into_iter().collect(),
    };
    Ok(page("/models", "Model versions", body(&view)))
}

#[derive(Template)]
#[template(path = "ui/ledger.html")]
struct LedgerView {
    deposited: String,
    paid: String,
    balance: String,
    entries: usize,
    latest: Vec<(u64, String, String, String, String)>,
    csrf: String,
}

pub(super) fn ledger(op: &Operator, csrf: &str, notice: Option<Notice>) -> anyhow::Result<Page> {
    let balance = op.client.balance(&op.collective)?;
    let entries = op.client.ledger(&op.collective)?;
    let latest = entries
        .iter()
        .rev()
        .take(LATEST_ENTRIES)
        .map(|e| {
            let (kind, amount) = match &e.kind {
                EntryKind::Deposit { amount, .. } => ("deposit".to_string(), amount.to_string()),
                EntryKind::Payment {
                    job_id,
                    round,
                    amount,
                    ..
                } => (
                    format!("payment, job {job_id} round {round}"),
                    amount.to_string(),
                ),
                EntryKind::ModelVersion {
                    job_id,
                    round,
                    model_hash,
                    ..
                } => (
                    format!("model {} of job {job_id} round {round}", short(model_hash)),
                    String::new(),
                ),
                EntryKind::JobStarted { job_id, budget } => {
                    (format!("job {job_id} started"), budget.to_string())
                }
                EntryKind::JobEnded { job_id, reason } => {
                    (format!("job {job_id} ended: {reason}"), String::new())
                }
            };
            (
                e.seq,
                c2ssi_cli::date(e.time_ms),
                kind,
                amount,
                short(&e.hash).to_string(),
            )
        })
        .collect();
    let view = LedgerView {
        deposited: balance.deposited.to_string(),
        paid: balance.paid.to_string(),
        balance: balance.balance.to_string(),
        entries: entries.len(),
        latest,
        csrf: csrf.to_string(),
    };
    let mut page = page("/ledger", "Budget and ledger", body(&view));
    page.notice = notice;
    Ok(page)
}

/// Verifies the whole ledger here, as `collective ledger verify` does.
pub(super) fn verify(op: &Operator) -> Notice {
    let checked = (|| -> anyhow::Result<c2ssi_protocol::LedgerSummary> {
        let manifest = manifest(op)?;
        let entries = op.client.ledger(&op.collective)?;
        Ok(verify_chain(
            &entries,
            &manifest.broker_key,
            &op.collective,
        )?)
    })();
    match checked {
        Ok(s) => Notice::ok(format!(
            "The ledger verifies: {} entries, {} deposited, {} paid in {} payments, {} model \
             versions, balance {}.",
            s.entries, s.deposited, s.paid, s.payments, s.model_versions, s.balance
        )),
        Err(e) => Notice::bad(format!("The ledger does NOT verify: {e:#}")),
    }
}
