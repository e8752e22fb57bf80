//! What the consumer reads: `collective info`, `model`, `ledger`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use c2ssi_protocol::{model_hash, verify_chain};
use clap::Subcommand;

use super::Target;
use super::manifest::current;

#[derive(Debug, clap::Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

pub(crate) fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let target = args.target;
    let summary = target.client()?.summary(&target.collective)?;
    let (_, manifest) = current(&target)?;
    if args.out.json {
        let json = serde_json::json!({
            "summary": summary,
            "name": manifest.name,
            "privacy": manifest.privacy.describe(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "collective {} ({}), manifest version {}",
        summary.collective_id, manifest.name, summary.manifest_version
    );
    println!(
        "subscribers {} ({} consented to the current version)",
        summary.subscribers, summary.consented_to_current
    );
    println!(
        "budget      {} deposited, {} paid, {} left; {} job(s)",
        summary.balance.deposited, summary.balance.paid, summary.balance.balance, summary.jobs
    );
    for line in manifest.privacy.describe() {
        println!("privacy     {line}");
    }
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
        #[command(flatten)]
        out: c2ssi_cli::JsonArg,
    },
    /// Fetch one version (JSON: parameters and provenance)
    Get {
        #[command(flatten)]
        target: Target,
        /// Its hash, or any prefix of it that only it has (as `status` shows)
        hash: String,
        /// Write it to this file instead of stdout
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Evaluate one version on held-out rows of a file, here, in the sandbox:
    /// its loss, its score and any further metrics
    Evaluate(super::model_run::RowsArgs),
    /// Predict the label for every row of a file, here, in the sandbox: CSV
    /// (or JSON with --json) in the label's own units, with class
    /// probabilities where the algorithm gives them
    Predict(super::model_run::PredictArgs),
    /// Write one version as a model you can use elsewhere: model.safetensors
    /// (the weights) and card.json (algorithm, hyper-parameters, label, the
    /// features' encoding, metrics, provenance)
    Export {
        #[command(flatten)]
        target: Target,
        /// Its hash, or any prefix of it that only it has
        hash: String,
        /// The directory to write into
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The model version whose hash is `prefix` or starts with it, checked
/// against its hash.
pub(super) fn fetch_version(
    client: &c2ssi_client::Client,
    collective: &str,
    prefix: &str,
) -> anyhow::Result<c2ssi_protocol::ModelVersion> {
    let hash = resolve_hash(client, collective, prefix)?;
    let version = client.model(collective, &hash)?;
    if model_hash(&version.params) != version.hash || version.hash != hash {
        bail!("the model's parameters do not match its hash {hash}");
    }
    Ok(version)
}

/// The job that made `version` and the signed manifest it was trained under.
pub(super) fn trained_under(
    client: &c2ssi_client::Client,
    collective: &str,
    version: &c2ssi_protocol::ModelVersion,
) -> anyhow::Result<(c2ssi_protocol::JobStatus, c2ssi_protocol::Manifest)> {
    let job = client.job(collective, &version.provenance.job_id)?;
    let signed = client
        .manifest_version(collective, &version.provenance.manifest_digest)
        .context("fetching the manifest the model was trained under")?;
    if hex::encode(signed.digest()) != version.provenance.manifest_digest {
        bail!(
            "the broker answered another manifest than the one the model names ({})",
            version.provenance.manifest_digest
        );
    }
    if job.id != version.provenance.job_id {
        bail!("the broker answered another job than the one the model names");
    }
    Ok((job, c2ssi_protocol::open_manifest(&signed, collective)?))
}

/// The full hash of the one model version whose hash starts with `prefix`.
fn resolve_hash(
    client: &c2ssi_client::Client,
    collective: &str,
    prefix: &str,
) -> anyhow::Result<String> {
    if prefix.len() == 64 {
        return Ok(prefix.to_string());
    }
    let prefix = prefix.to_ascii_lowercase();
    let matching: Vec<String> = client
        .models(collective, None)?
        .into_iter()
        .map(|m| m.hash)
        .filter(|h| h.starts_with(&prefix))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no model version of {collective} has a hash that starts with '{prefix}' \
             (`collective model list` shows them)"
        ),
        many => bail!(
            "'{prefix}' is the start of {} model versions' hashes; give more of it",
            many.len()
        ),
    }
}

pub(crate) fn model(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::List { target, job, out } => {
            let list = target
                .client()?
                .models(&target.collective, job.as_deref())?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            for m in list {
                let p = &m.provenance;
                println!(
                    "{}  job {} round {:>3}  {} params  parent {}  updates {:.1}  {}",
                    m.hash,
                    p.job_id,
                    p.round,
                    m.parameters,
                    p.parent
                        .as_deref()
                        .map(|h| &h[..12.min(h.len())])
                        .unwrap_or("-"),
                    p.updates,
                    p.report
                );
            }
        }
        ModelCommand::Get { target, hash, out } => {
            let client = target.client()?;
            let version = fetch_version(&client, &target.collective, &hash)?;
            let hash = &version.hash;
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
        ModelCommand::Evaluate(args) => return super::model_run::evaluate(args),
        ModelCommand::Predict(args) => return super::model_run::predict(args),
        ModelCommand::Export { target, hash, out } => {
            let client = target.client()?;
            let id = &target.collective;
            let version = fetch_version(&client, id, &hash)?;
            let hash = &version.hash;
            let (job, manifest) = trained_under(&client, id, &version)?;
            let card = collective::model_file::card(id, &version, &job, &manifest)?;
            let [weights, card_path] = collective::model_file::write(&out, &card, &version.params)?;
            println!("{}", weights.display());
            println!("{}", card_path.display());
            eprintln!(
                "model {} of job {} round {}: {} weights, {} feature columns",
                &hash[..12],
                card.provenance["job"].as_str().unwrap_or("?"),
                version.provenance.round,
                card.parameters,
                card.features.len()
            );
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
        #[command(flatten)]
        out: c2ssi_cli::JsonArg,
    },
    /// Check every entry's hash, link and signature (with the broker key of
    /// the signed manifest), positions without gaps, and a balance never
    /// below zero
    Verify {
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) fn ledger(command: LedgerCommand) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::Show { target, out } => {
            let entries = target.client()?.ledger(&target.collective)?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(ExitCode::SUCCESS);
            }
            for e in entries {
                println!(
                    "{:>6}  {}  {}  {}",
                    e.seq,
                    c2ssi_cli::date(e.time_ms),
                    &e.hash[..16],
                    serde_json::to_string(&e.kind)?
                );
            }
        }
        LedgerCommand::Verify { target } => {
            let id = &target.collective;
            let (_, manifest) = current(&target)?;
            let entries = target.client()?.ledger(id)?;
            let summary = verify_chain(&entries, &manifest.broker_key, id)
                .map_err(|e| anyhow::anyhow!("the ledger of {id} does NOT verify: {e}"))?;
            println!(
                "ledger of {id} verifies: {} entries, {} deposited, {} paid in {} payments, {} \
                 model versions, balance {}",
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
