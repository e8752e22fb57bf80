//! The commands for collectives: `subscribe`, `subscriptions`, `consent`,
//! `revoke`, `agent`, `log`, `earnings`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use c2ssi_client::Client;
use c2ssi_protocol::{
    Amount, EntryKind, Manifest, PublicKey, Purpose, check_requirement, open_manifest,
    payee_commitment, verify_chain,
};
use c2ssi_sandbox::Sandbox;
use clap::Args;
use wallet_host::agent::consent::{self, describe};
use wallet_host::agent::worker::Worker;
use wallet_host::agent::{
    AccessLog, LOG_FILE, RECEIPTS_FILE, Receipts, SUBSCRIPTIONS_FILE, Subscriptions, check_kept,
};
use wallet_host::store::Wallet;

use super::GlobalArgs;
use super::unlock;

#[derive(Debug, Args)]
pub(crate) struct SubscribeArgs {
    /// The collective's service, like http://127.0.0.1:8080
    url: String,
    /// The collective's id
    collective: String,
    /// Consent without asking (for scripts)
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The collective's id
    collective: String,
}

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// One pass over the subscriptions, then exit
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    limits: super::LimitArgs,
    /// Longest wait between check-ins, in milliseconds
    #[arg(long, default_value_t = 5_000)]
    max_poll_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct EarningsArgs {
    /// Also check every receipt against the collective's public ledger
    #[arg(long)]
    online: bool,
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct ConsentArgs {
    /// The collective's id
    collective: String,
    /// Consent without asking (for scripts)
    #[arg(long)]
    yes: bool,
}

/// Checks the wallet's data against a manifest's requirements and prints
/// what does not fit; `true` when everything does.
fn check_data(wallet: &Wallet, manifest: &Manifest) -> anyhow::Result<bool> {
    let records = wallet.records_of(
        manifest
            .requirements
            .tables
            .iter()
            .map(|t| t.table.as_str()),
    )?;
    let mut all_met = true;
    for t in &manifest.requirements.tables {
        match check_requirement(t, records.tables.get(&t.table)) {
            Ok(_) => println!("your data    table '{}' meets the requirements", t.table),
            Err(problems) => {
                all_met = false;
                println!(
                    "your data    table '{}' does not meet the requirements:",
                    t.table
                );
                for p in problems {
                    println!("  - {p}");
                }
            }
        }
    }
    if !all_met {
        println!(
            "(you may subscribe anyway; accesses are paid only when the required data is there)"
        );
    }
    Ok(all_met)
}

/// Refuses terms the owner's policy refuses, naming each reason.
fn check_policy(wallet: &Wallet, manifest: &Manifest) -> anyhow::Result<()> {
    let policy = wallet_host::agent::policy(wallet)?;
    let refused = policy.refuses(manifest);
    if !refused.is_empty() {
        bail!(
            "your policy refuses these terms:\n  - {}\n(see `wallet policy`; nothing was consented to)",
            refused.join("\n  - ")
        );
    }
    Ok(())
}

/// The consent text, and the person's answer (`true`: consented).
fn ask(manifest: &Manifest, yes: bool) -> anyhow::Result<(String, bool)> {
    let consent = consent::consent_text(manifest);
    if yes {
        return Ok((consent, true));
    }
    let agreed = super::confirm(
        &format!("{consent}\nDo you consent?"),
        "consenting needs your answer: run in a terminal, or pass --yes",
    )?;
    Ok((consent, agreed))
}

/// A client for a command a person (or a script) runs: it waits up to 10 s
/// for a broker that is still starting.
fn cli_client(url: &str) -> Client {
    Client::new(url).patient(Duration::from_secs(10))
}

pub(crate) fn subscribe(g: &GlobalArgs, args: SubscribeArgs) -> anyhow::Result<ExitCode> {
    let client = cli_client(&args.url);
    let signed = client
        .manifest(&args.collective)
        .with_context(|| format!("fetching the manifest of {}", args.collective))?;
    let manifest = open_manifest(&signed, &args.collective).with_context(|| {
        format!(
            "the manifest is not signed by the key that collective id {} belongs to",
            args.collective
        )
    })?;
    print!("{}", describe(&manifest));
    let wallet = unlock::open(g)?;
    check_data(&wallet, &manifest)?;
    check_policy(&wallet, &manifest)?;
    let (consent, yes) = ask(&manifest, args.yes)?;
    if !yes {
        println!("not subscribed");
        return Ok(ExitCode::SUCCESS);
    }
    consent::consent_to(
        &wallet,
        &cli_client(&args.url),
        &args.url,
        &args.collective,
        &signed,
        consent,
        None,
    )?;
    println!(
        "subscribed to {} (manifest version {}); revoke with `wallet revoke {}`",
        args.collective, manifest.version, args.collective
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn consent(g: &GlobalArgs, args: ConsentArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let subs: Subscriptions = wallet.read_document(SUBSCRIPTIONS_FILE)?;
    let Some(record) = subs.collectives.get(&args.collective) else {
        bail!("not subscribed to {}", args.collective);
    };
    let consented = record.manifest()?;
    // The broker's current version, checked against the consented one.
    let newer = match Client::new(&record.url).manifest(&args.collective) {
        Ok(current) if hex::encode(current.digest()) != record.digest() => current,
        Ok(_) => match &record.pending {
            Some(p) => p.clone(),
            None => {
                println!(
                    "nothing waits for your consent: you consented to version {}, the current one",
                    consented.version
                );
                return Ok(ExitCode::SUCCESS);
            }
        },
        Err(e) => bail!("fetching the current manifest from {}: {e}", record.url),
    };
    let manifest = consent::check_newer(&consented, &newer)?;
    println!(
        "collective {} changed its manifest from version {} to version {}:",
        args.collective, consented.version, manifest.version
    );
    for change in consented.changes(&manifest) {
        println!("  - {change}");
    }
    println!();
    print!("{}", describe(&manifest));
    check_data(&wallet, &manifest)?;
    check_policy(&wallet, &manifest)?;
    let (text, yes) = ask(&manifest, args.yes)?;
    if !yes {
        println!(
            "not consented: nothing of {} runs in this wallet until you do (or `wallet revoke {}`)",
            args.collective, args.collective
        );
        return Ok(ExitCode::SUCCESS);
    }
    consent::consent_to(
        &wallet,
        &cli_client(&record.url),
        &record.url,
        &args.collective,
        &newer,
        text,
        None,
    )?;
    println!(
        "consented to version {} of {}",
        manifest.version, args.collective
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn subscriptions(g: &GlobalArgs, out: c2ssi_cli::JsonArg) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let subs: Subscriptions = wallet.read_document(SUBSCRIPTIONS_FILE)?;
    if out.json {
        let list: Vec<serde_json::Value> = subs
            .collectives
            .iter()
            .map(|(id, record)| {
                let pending = record
                    .pending
                    .as_ref()
                    .and_then(|p| p.open_any_time(None, Purpose::Manifest).ok())
                    .map(|p| p.version);
                match record.manifest() {
                    Ok(m) => serde_json::json!({
                        "collective": id,
                        "name": m.name,
                        "url": record.url,
                        "rate": m.rate.to_string(),
                        "manifest_version": m.version,
                        "algorithms": m.allowed_algorithms.len(),
                        "epsilon_per_job": m.privacy.epsilon,
                        "subscribed": c2ssi_cli::date(record.subscribed_ms),
                        "pending_version": pending,
                    }),
                    Err(e) => serde_json::json!({
                        "collective": id,
                        "url": record.url,
                        "error": format!("unreadable manifest: {e}"),
                    }),
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if subs.collectives.is_empty() {
        println!("no subscriptions (subscribe with `wallet subscribe URL COLLECTIVE_ID`)");
    }
    for (id, record) in &subs.collectives {
        let m = match record.manifest() {
            Ok(m) => m,
            Err(e) => {
                println!("{id}\t{}\tUNREADABLE manifest: {e}", record.url);
                continue;
            }
        };
        let pending = record
            .pending
            .as_ref()
            .and_then(|p| p.open_any_time(None, Purpose::Manifest).ok())
            .map(|p| {
                format!(
                    "\tPENDING: version {} waits for your consent (`wallet consent {id}`); nothing runs until then",
                    p.version
                )
            })
            .unwrap_or_default();
        println!(
            "{id}\t{}\t{}\t{} per access\tmanifest v{}\t{} algorithms\tepsilon per job {}{pending}",
            m.name,
            record.url,
            m.rate,
            m.version,
            m.allowed_algorithms.len(),
            m.privacy
                .epsilon
                .map_or_else(|| "none (NO NOISE)".to_string(), |e| format!("{e:.3}")),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn revoke(g: &GlobalArgs, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let told = consent::revoke(&wallet, &args.collective)?;
    println!(
        "deleted the key of {}: no task of it will run in this wallet again",
        args.collective
    );
    match told {
        Ok(url) => println!("unsubscribed at {url}"),
        Err(e) => eprintln!(
            "warning: the collective was not told ({e}); it may still sample this wallet, \
             but every task it sends is denied"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn agent(g: &GlobalArgs, args: AgentArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let limits = args.limits.limits();
    let sandbox = Sandbox::new(limits)?;
    let worker = Worker::new(&wallet, &sandbox);
    eprintln!("wallet agent {} running", wallet.id());
    loop {
        let report = worker.pass()?;
        for d in &report.denied {
            eprintln!("denied a task: {d}");
        }
        for e in &report.errors {
            eprintln!("{e}");
        }
        for id in &report.pending {
            eprintln!(
                "{id} changed its manifest: nothing of it runs until you consent (`wallet consent {id}`)"
            );
        }
        if report.tasks_run > 0 || report.receipts > 0 {
            eprintln!(
                "ran {} task(s), kept {} receipt(s)",
                report.tasks_run, report.receipts
            );
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        let wait = report
            .retry_after_ms
            .unwrap_or(args.max_poll_ms)
            .min(args.max_poll_ms);
        std::thread::sleep(Duration::from_millis(wait.max(50)));
    }
}

pub(crate) fn log(g: &GlobalArgs, args: LogArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let log: AccessLog = wallet.read_document(LOG_FILE)?;
    if args.out.json {
        println!("{}", serde_json::to_string_pretty(&log.records)?);
        return Ok(ExitCode::SUCCESS);
    }
    if log.records.is_empty() {
        println!("no accesses yet");
    }
    for r in &log.records {
        println!(
            "{}  {}  job {} round {}  {} {}  fuel {}  {}  {}{}",
            c2ssi_cli::date(r.time_ms),
            r.collective_id,
            r.job_id,
            r.round,
            if r.algorithm.is_empty() {
                "?"
            } else {
                &r.algorithm
            },
            &r.algorithm_sha256.get(..12).unwrap_or(""),
            r.fuel,
            c2ssi_cli::duration_ms(r.elapsed_ms),
            r.outcome,
            match r.delivered {
                Some(true) => ", sent",
                Some(false) => ", not delivered",
                None => "",
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn earnings(g: &GlobalArgs, args: EarningsArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let me = PublicKey(wallet.keys().public_key());
    let receipts: Receipts = wallet.read_document(RECEIPTS_FILE)?;
    let subs: Subscriptions = wallet.read_document(SUBSCRIPTIONS_FILE)?;
    let mut totals: std::collections::BTreeMap<String, (u64, Amount)> = Default::default();
    let mut bad = 0;
    let mut rows = Vec::new();
    let mut ledgers: std::collections::BTreeMap<String, Vec<c2ssi_protocol::LedgerEntry>> =
        Default::default();
    for (id, checked) in check_kept(&receipts, &subs, &me) {
        let id = &id;
        let manifest = subs.collectives.get(id).and_then(|s| s.manifest().ok());
        let mut status = match &checked {
            Ok(_) => "signature ok".to_string(),
            Err(e) => format!("INVALID: {e}"),
        };
        if let (true, Ok(r), Some(record), Some(m)) =
            (args.online, &checked, subs.collectives.get(id), &manifest)
        {
            if !ledgers.contains_key(id) {
                // Only the collective and its wallets read its ledger: signed as this wallet.
                let entries = Client::new(&record.url)
                    .signed_by(wallet.signer())
                    .ledger(id)?;
                verify_chain(&entries, &m.broker_key, id)
                    .map_err(|e| anyhow::anyhow!("the ledger of {id} does not verify: {e}"))?;
                ledgers.insert(id.clone(), entries);
            }
            let entry = ledgers[id].get((r.entry_seq as usize).wrapping_sub(1));
            status = match entry {
                Some(e) if e.hash == r.entry_hash => match &e.kind {
                    EntryKind::Payment {
                        payee_commitment: c,
                        amount,
                        job_id,
                        round,
                    } if *c == payee_commitment(&me, &r.payee_salt)
                        && *amount == r.amount
                        && *job_id == r.job_id
                        && *round == r.round =>
                    {
                        "in the ledger".to_string()
                    }
                    _ => "INVALID: the ledger entry does not match".to_string(),
                },
                _ => "INVALID: not in the ledger".to_string(),
            };
        }
        match &checked {
            Ok(r) if !status.starts_with("INVALID") => {
                let t = totals.entry(id.clone()).or_default();
                t.0 += 1;
                t.1 = t.1.checked_add(r.amount).unwrap_or(t.1);
                rows.push(serde_json::json!({
                    "collective": id, "job": r.job_id, "round": r.round, "amount": r.amount,
                    "entry": r.entry_seq, "status": status,
                }));
            }
            _ => {
                bad += 1;
                rows.push(serde_json::json!({ "collective": id, "status": status }));
            }
        }
    }
    if args.out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "receipts": rows,
                "totals": totals.iter().map(|(k, (n, a))| (k.clone(), serde_json::json!({"accesses": n, "amount": a}))).collect::<serde_json::Map<_, _>>(),
                "invalid": bad,
            }))?
        );
    } else {
        for row in &rows {
            println!(
                "{}  job {}  round {}  {}  entry {}  {}",
                row["collective"].as_str().unwrap_or(""),
                row["job"].as_str().unwrap_or("?"),
                row["round"],
                Amount(row["amount"].as_u64().unwrap_or(0)),
                row["entry"],
                row["status"].as_str().unwrap_or("")
            );
        }
        for (id, (n, amount)) in &totals {
            println!("total from {id}: {amount} for {n} accesses");
        }
        if rows.is_empty() {
            println!("no receipts yet");
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
