//! The dashboard's pages, each built from the wallet's own documents, and
//! the consent it accepts: the same checks as `wallet consent`.

use std::collections::BTreeMap;

use anyhow::bail;
use askama::Template;
use c2ssi_protocol::{Amount, PublicKey, Purpose, check_requirement, now_ms};
use c2ssi_web::{Page, body};

use super::{APP, NAV};
use crate::agent::budget::{self, Spent};
use crate::agent::consent::{self, check_newer, consent_text, describe};
use crate::agent::{
    AccessLog, AccessOutcome, AccessRecord, LOG_FILE, POLICY_FILE, Policy, RECEIPTS_FILE, Receipts,
    SUBSCRIPTIONS_FILE, Subscriptions, check_kept,
};
use crate::store::{Wallet, cell_text};

/// Most rows shown at once on request.
const MAX_ROWS_SHOWN: usize = 1000;

/// Most accesses the log page lists (the newest; `wallet log` has them all).
const MAX_LOG_ROWS: usize = 1000;

fn page(current: &'static str, title: impl Into<String>, body: String) -> Page {
    let mut page = Page::new(APP, NAV, current, title, body);
    page.scripts = &["/assets/live.js"];
    page
}

/// One access as a row of the log.
struct LogRow {
    when: String,
    collective: String,
    job: String,
    round: u32,
    algorithm: String,
    fuel: u64,
    took: String,
    outcome: String,
    class: &'static str,
    delivered: &'static str,
}

impl LogRow {
    fn of(r: &AccessRecord) -> LogRow {
        LogRow {
            when: c2ssi_cli::date(r.time_ms),
            collective: r.collective_id.clone(),
            job: r.job_id.clone(),
            round: r.round,
            algorithm: if r.algorithm.is_empty() {
                format!("sha256 {}", r.algorithm_sha256.get(..12).unwrap_or(""))
            } else {
                r.algorithm.clone()
            },
            fuel: r.fuel,
            took: c2ssi_cli::duration_ms(r.elapsed_ms),
            outcome: r.outcome.to_string(),
            class: match r.outcome {
                AccessOutcome::Trained { .. } => "ok",
                AccessOutcome::Denied { .. } | AccessOutcome::Failed { .. } => "bad",
                AccessOutcome::DataMissing { .. } => "warn",
            },
            delivered: match r.delivered {
                Some(true) => "sent",
                Some(false) => "not delivered",
                None => "",
            },
        }
    }
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
struct Overview {
    tables: usize,
    subscriptions: usize,
    pending: usize,
    accesses: usize,
    earned: Amount,
    epsilon_year: String,
    epsilon_limit: f64,
    latest: Vec<LogRow>,
}

/// Earned from the receipts that verify, per collective: (count, amount).
fn earned(
    wallet: &Wallet,
    subs: &Subscriptions,
) -> anyhow::Result<BTreeMap<String, (u64, Amount)>> {
    let receipts: Receipts = wallet.read_document(RECEIPTS_FILE)?;
    let me = PublicKey(wallet.keys().public_key());
    let mut totals: BTreeMap<String, (u64, Amount)> = BTreeMap::new();
    for (id, checked) in check_kept(&receipts, subs, &me) {
        if let Ok(r) = checked {
            let t = totals.entry(id).or_default();
            t.0 += 1;
            t.1 = t.1.checked_add(r.amount).unwrap_or(t.1);
        }
    }
    Ok(totals)
}

fn epsilon_text(spent: &Spent, delta: f64) -> String {
    match spent.without_noise {
        0 => format!("{:.3}", spent.epsilon(delta)),
        n => format!("{:.3} + {n} round(s) without noise", spent.epsilon(delta)),
    }
}

pub(super) fn overview(wallet: &Wallet) -> anyhow::Result<Page> {
    let subs: Subscriptions = wallet.read_document(SUBSCRIPTIONS_FILE)?;
    let log: AccessLog = wallet.read_document(LOG_FILE)?;
    let policy: Policy = wallet.read_document(POLICY_FILE)?;
    let report = budget::report(&log, now_ms());
    let earned = earned(wallet, &subs)?
        .values()
        .fold(Amount(0), |sum, (_, a)| sum.checked_add(*a).unwrap_or(sum));
    let view = Overview {
        tables: wallet.table_index()?.tables.len(),
        subscriptions: subs.collectives.len(),
        pending: subs
            .collectives
            .values()
            .filter(|r| r.pending.is_some())
            .count(),
        accesses: log.records.len(),
        earned,
        epsilon_year: epsilon_text(&report.last_year, policy.delta),
        epsilon_limit: policy.max_epsilon_per_year,
        latest: log.records.iter().rev().take(5).map(LogRow::of).collect(),
    };
    Ok(page("/", format!("Wallet {}", wallet.id()), body(&view)))
}

struct TableRow {
    name: String,
    rows: usize,
    columns: usize,
    required_by: String,
}

#[derive(Template)]
#[template(path = "ui/data.html")]
struct Data {
    tables: Vec<TableRow>,
}

pub(super) fn data(wallet: &Wallet) -> anyhow::Result<Page> {
    let subs: Subscriptions = wallet.read_document(SUBSCRIPTIONS_FILE)?;
    let mut required: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, record) in &subs.collectives {
        if let Ok(m) = record.manifest() {
            for t in &m.requirements.tables {
                required
                    .entry(t.table.clone())
                    .or_default()
                    .push(id.clone());
            }
        }
    }
    let tables = wallet
        .table_index()?
        .tables
        .iter()
        .map(|(name, entry)| TableRow {
            name: name.clone(),
            rows: entry.rows,
            columns: entry.columns.len(),
            required_by: required
                .get(name)
                .map_or_else(|| "no subscription".to_string(), |ids| ids.join(", ")),
        })
        .collect();
    Ok(page("/data", "Your data", body(&Data { tables })))
}

#[derive(Template)]
#[template(path = "ui/table.html")]
struct TableView {
    name: String,
    rows: usize,
    columns: Vec<(String, String)>,
    values: Option<Vec<Vec<String>>>,
}

pub(super) fn table(wallet: &Wallet, name: &str, rows: Option<usize>) -> anyhow::Result<Page> {
    let index = wallet.table_index()?;
    let entry = index.entry(name)?;
    let columns = entry
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.ty.to_string()))
        .collect();
    let values = match rows {
        None => None,
        Some(n) => {
            // Only the segments that hold the rows shown are read.
            let head = wallet.table_head(name, n.clamp(1, MAX_ROWS_SHOWN))?;
            Some(
                (0..head.row_count)
                    .map(|row| head.columns.iter().map(|c| cell_text(c, row)).collect())
                    .collect(),
            )
        }
    };
    let view = TableView {
        name: name.to_string(),
        rows: entry.rows,
        columns,
        values,
    };
    Ok(page("/data", format!("Table {name}"), body(&view)))
}

struct Pending {
    version: u64,
    digest: String,
    /// Why it cannot be consented to at all, if so.
    problem: Option<String>,
    changes: Vec<String>,
    described: String,
    /// (class, line): whether the wallet's data meets each requirement.
    data: Vec<(&'static str, String)>,
    refusals: Vec<String>,
    consent: String,
}

struct CollectiveView {
    id: String,
    name: String,
    url: String,
    version: u64,
    rate: String,
    epsilon: String,
    subscribed: String,
    pending: Option<Pending>,
}

#[derive(Template)]
#[template(path = "ui/collectives.html")]
struct CollectivesView {
    collectives: Vec<CollectiveView>,
    csrf: String,
}

/// Whether the wallet's tables meet `manifest`'s requirements, a line each.
fn data_lines(wallet: &Wallet, manifest: &c2ssi_protocol::Manifest) -> Vec<(&'static str, String)> {
    let names = manifest
        .requirements
        .tables
        .iter()
        .map(|t| t.table.as_str());
    let records = match wallet.records_of(names) {
        Ok(r) => r,
        Err(e) => return vec![("bad", format!("Your data could not be read: {e}"))],
    };
    manifest
        .requirements
        .tables
        .iter()
        .map(
            |t| match check_requirement(t, records.tables.get(&t.table)) {
                Ok(_) => (
                    "ok",
                    format!("Your table '{}' meets the requirements.", t.table),
                ),
                Err(problems) => (
                    "warn",
                    format!(
                        "Your table '{}' does not meet the requirements: {}. You may consent \
                     anyway; accesses are paid only when the required data is there.",
                        t.table,
                        problems.join("; ")
                    ),
                ),
            },
        )
        .collect()
}

pub(super) fn collectives(wallet: &Wallet, csrf: &str) -> anyhow::Result<Page> {
    let subs: Subscriptions = wallet.read_document(SUBSCRIPTIONS_FILE)?;
    let policy: Policy = wallet.read_document(POLICY_FILE)?;
    let mut views = Vec::new();
    for (id, record) in &subs.collectives {
        // A record whose manifest does not open is shown as such, and can
        // still be revoked: one damaged record does not hide the others.
        let consented = match record.manifest() {
            Ok(m) => m,
            Err(e) => {
                views.push(CollectiveView {
                    id: id.clone(),
                    name: format!("(the consented manifest does not open: {e})"),
                    url: record.url.clone(),
                    version: 0,
                    rate: "?".into(),
                    epsilon: "?".into(),
                    subscribed: c2ssi_cli::date(record.subscribed_ms),
                    pending: None,
                });
                continue;
            }
        };
        let pending = record.pending.as_ref().map(|signed| {
            let version = signed
                .open_any_time(None, Purpose::Manifest)
                .map_or(0, |m| m.version);
            let digest = hex::encode(signed.digest());
            match check_newer(&consented, signed) {
                Ok(m) => Pending {
                    version,
                    digest,
                    problem: None,
                    changes: consented
                        .changes(&m)
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    described: describe(&m),
                    data: data_lines(wallet, &m),
                    refusals: policy.refuses(&m),
                    consent: consent_text(&m),
                },
                Err(e) => Pending {
                    version,
                    digest,
                    problem: Some(e.to_string()),
                    changes: Vec::new(),
                    described: String::new(),
                    data: Vec::new(),
                    refusals: Vec::new(),
                    consent: String::new(),
                },
            }
        });
        views.push(CollectiveView {
            id: id.clone(),
            name: consented.name.clone(),
            url: record.url.clone(),
            version: consented.version,
            rate: consented.rate.to_string(),
            epsilon: consented
                .privacy
                .epsilon
                .map_or_else(|| "none (NO NOISE)".to_string(), |e| format!("{e:.3}")),
            subscribed: c2ssi_cli::date(record.subscribed_ms),
            pending,
        });
    }
    let view = CollectivesView {
        collectives: views,
        csrf: csrf.to_string(),
    };
    Ok(page("/collectives", "Collectives and consent", body(&view)))
}

/// Consents to collective `id`'s pending manifest, if its digest is the one
/// the page showed: checked against the consented version and the owner's
/// policy, then sent to the broker as `wallet consent` does.
pub(super) fn accept(wallet: &Wallet, id: &str, digest: &str) -> anyhow::Result<()> {
    let subs: Subscriptions = wallet.read_document(SUBSCRIPTIONS_FILE)?;
    let Some(record) = subs.collectives.get(id) else {
        bail!("this wallet is not subscribed to {id}");
    };
    let Some(pending) = &record.pending else {
        bail!("nothing of {id} waits for your consent");
    };
    if hex::encode(pending.digest()) != digest {
        bail!("{id} changed its terms again since the page was shown; look at them again");
    }
    let consented = record.manifest()?;
    let manifest = check_newer(&consented, pending)?;
    let refused = crate::agent::policy(wallet)?.refuses(&manifest);
    if !refused.is_empty() {
        bail!("your policy refuses these terms: {}", refused.join("; "));
    }
    let client = c2ssi_client::Client::new(&record.url).patient(std::time::Duration::from_secs(10));
    consent::consent_to(
        wallet,
        &client,
        &record.url,
        id,
        pending,
        consent_text(&manifest),
        Some(digest),
    )
}

#[derive(Template)]
#[template(path = "ui/log.html")]
struct LogView {
    records: Vec<LogRow>,
    total: usize,
}

pub(super) fn log(wallet: &Wallet) -> anyhow::Result<Page> {
    let log: AccessLog = wallet.read_document(LOG_FILE)?;
    let view = LogView {
        records: log
            .records
            .iter()
            .rev()
            .take(MAX_LOG_ROWS)
            .map(LogRow::of)
            .collect(),
        total: log.records.len(),
    };
    Ok(page("/log", "Access log", body(&view)))
}

struct ReceiptRow {
    collective: String,
    job: String,
    round: String,
    amount: String,
    entry: String,
    status: String,
    class: &'static str,
}

#[derive(Template)]
#[template(path = "ui/earnings.html")]
struct EarningsView {
    totals: Vec<(String, u64, Amount)>,
    invalid: usize,
    receipts: Vec<ReceiptRow>,
}

pub(super) fn earnings(wallet: &Wallet) -> anyhow::Result<Page> {
    let subs: Subscriptions = wallet.read_document(SUBSCRIPTIONS_FILE)?;
    let receipts: Receipts = wallet.read_document(RECEIPTS_FILE)?;
    let me = PublicKey(wallet.keys().public_key());
    let mut rows = Vec::new();
    let mut invalid = 0;
    for (id, checked) in check_kept(&receipts, &subs, &me).into_iter().rev() {
        rows.push(match checked {
            Ok(r) => ReceiptRow {
                collective: id,
                job: r.job_id,
                round: r.round.to_string(),
                amount: r.amount.to_string(),
                entry: r.entry_seq.to_string(),
                status: "signature ok".into(),
                class: "ok",
            },
            Err(e) => {
                invalid += 1;
                ReceiptRow {
                    collective: id,
                    job: String::new(),
                    round: String::new(),
                    amount: String::new(),
                    entry: String::new(),
                    status: format!("INVALID: {e}"),
                    class: "bad",
                }
            }
        });
    }
    let view = EarningsView {
        totals: earned(wallet, &subs)?
            .into_iter()
            .map(|(id, (n, a))| (id, n, a))
            .collect(),
        invalid,
        receipts: rows,
    };
    Ok(page("/earnings", "Earnings", body(&view)))
}

#[derive(Template)]
#[template(path = "ui/privacy.html")]
struct PrivacyView {
    delta: String,
    per_job: f64,
    per_year: f64,
    year: String,
    year_value: f64,
    without_noise: usize,
    collectives: Vec<(String, usize, usize, String, String)>,
    total_rounds: usize,
    total: String,
}

pub(super) fn privacy(wallet: &Wallet) -> anyhow::Result<Page> {
    let log: AccessLog = wallet.read_document(LOG_FILE)?;
    let policy: Policy = wallet.read_document(POLICY_FILE)?;
    let report = budget::report(&log, now_ms());
    let d = policy.delta;
    let view = PrivacyView {
        delta: format!("{d:e}"),
        per_job: policy.max_epsilon_per_job,
        per_year: policy.max_epsilon_per_year,
        year: epsilon_text(&report.last_year, d),
        year_value: report.last_year.epsilon(d),
        without_noise: report.total.without_noise,
        collectives: report
            .collectives
            .iter()
            .map(|c| {
                (
                    c.collective_id.clone(),
                    c.jobs,
                    c.all.rounds,
                    epsilon_text(&c.all, d),
                    epsilon_text(&c.last_year, d),
                )
            })
            .collect(),
        total_rounds: report.total.rounds,
        total: epsilon_text(&report.total, d),
    };
    Ok(page("/privacy", "Privacy budget", body(&view)))
}
