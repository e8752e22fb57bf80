//! `collective algorithm add`, `list` and `audit`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use c2ssi_audit::AuditOptions;
use c2ssi_protocol::{AllowedAlgorithm, AuditSummary};
use c2ssi_sandbox::{Sandbox, SandboxLimits};
use clap::{Args, Subcommand};
use collective::args::parse_param;
use collective::manifest_file::{ManifestFile, next_version};

use super::Target;
use super::manifest::{current, submit};

#[derive(Debug, Subcommand)]
pub(crate) enum AlgorithmCommand {
    /// Allow an algorithm (a wasm32-wasip2 component): a new manifest
    /// version, which every subscriber consents to again; the broker checks
    /// and audits the component first
    Add {
        #[command(flatten)]
        target: Target,
        /// The component
        file: PathBuf,
        /// Hyper-parameters for the broker's privacy audit (a label, say), as name=value
        #[arg(long = "params", num_args = 1.., value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// List the allowed algorithms, with the broker's audit of each
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: c2ssi_cli::JsonArg,
    },
    /// Audit a component for privacy on synthetic data, here, before adding it
    Audit(AuditArgs),
    /// Start a new algorithm: a crate that builds into a component and runs at once
    New(NewArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The algorithm's name: lowercase letters, digits and '-'
    name: String,
    /// Where to create it [default: ./NAME]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The guest SDK (the guest-sdk directory of a compute-to-ssi checkout)
    /// [default: the one this program was built from]
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The component
    file: PathBuf,
    /// The manifest file whose requirements and terms to audit under
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The required table to train on [default: the first]
    #[arg(long)]
    table: Option<String>,
    /// Hyper-parameters, as name=value
    #[arg(long = "params", num_args = 1.., value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Canary-game trials
    #[arg(long, default_value_t = AuditOptions::default().trials)]
    trials: u32,
    /// Synthetic wallets
    #[arg(long, default_value_t = AuditOptions::default().pool)]
    pool: usize,
    /// Seed of the synthetic data and the noise
    #[arg(long, default_value_t = AuditOptions::default().seed)]
    seed: u64,
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

fn print_audit(a: &AuditSummary) {
    eprintln!(
        "privacy audit of {}: empirical epsilon {:.3} per release (accountant: {}), {:.0}% of \
         synthetic records at the clip norm{}",
        &a.sha256[..12],
        a.empirical_epsilon,
        a.accountant_epsilon
            .map_or_else(|| "no bound: no noise".into(), |e| format!("{e:.3}")),
        100.0 * a.at_clip_bound,
        if a.flagged_encoding { ", FLAGGED" } else { "" }
    );
}

pub(crate) fn algorithm(command: AlgorithmCommand) -> anyhow::Result<ExitCode> {
    match command {
        AlgorithmCommand::New(args) => {
            let sdk = match args.sdk.or_else(collective::scaffold::default_sdk) {
                Some(sdk) => sdk,
                None => anyhow::bail!(
                    "the guest SDK this program was built from is gone; give --sdk DIR"
                ),
            };
            let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
            collective::scaffold::create(&args.name, &dir, &sdk)?;
            let lib = args.name.replace('-', "_");
            println!(
                "created {} ({}) on the SDK at {}",
                dir.display(),
                args.name,
                sdk.display()
            );
            println!("next:");
            println!("  cd {}", dir.display());
            println!("  cargo test");
            println!("  cargo build --release --target wasm32-wasip2");
            println!(
                "  wallet run target/wasm32-wasip2/release/{lib}.wasm --table TABLE --params label=COLUMN"
            );
            return Ok(ExitCode::SUCCESS);
        }
        AlgorithmCommand::Add {
            target,
            file,
            params,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let sha256 = hex::encode(c2ssi_protocol::sha256(&bytes));
            let sandbox = Sandbox::new(SandboxLimits::default())?;
            let loaded = sandbox
                .load(&bytes)
                .with_context(|| format!("{} is refused by the sandbox", file.display()))?;
            let info = sandbox
                .describe(&loaded)
                .into_result()
                .with_context(|| format!("{}: describe failed", file.display()))?;
            let (_, current) = current(&target)?;
            if current.allows(&sha256).is_some() {
                println!("{sha256}");
                eprintln!("{} {} is already allowed", info.name, info.version);
                return Ok(ExitCode::SUCCESS);
            }
            let mut manifest = next_version(&current);
            manifest.allowed_algorithms.push(AllowedAlgorithm {
                sha256: sha256.clone(),
                name: info.name.clone(),
                version: info.version.clone(),
            });
            let params = params
                .iter()
                .map(|p| parse_param(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let outcome = submit(
                &target,
                &manifest,
                vec![base64::engine::general_purpose::STANDARD.encode(&bytes)],
                params,
            )
            .with_context(|| format!("adding {}", file.display()))?;
            println!("{sha256}");
            eprintln!(
                "allowed {} {} (manifest version {}; subscribers consent again before it runs)",
                info.name, info.version, outcome.version
            );
            for a in &outcome.audits {
                print_audit(a);
            }
        }
        AlgorithmCommand::List { target, out } => {
            let (_, manifest) = current(&target)?;
            let audits: Vec<AuditSummary> = target
                .client()?
                .get(&format!(
                    "/collectives/{}/audits",
                    c2ssi_client::segment(&target.collective)
                ))
                .unwrap_or_default();
            if out.json {
                let list: Vec<serde_json::Value> = manifest
                    .allowed_algorithms
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "algorithm": a,
                            "audit": audits.iter().find(|x| x.sha256 == a.sha256),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            for a in &manifest.allowed_algorithms {
                let audit = audits.iter().find(|x| x.sha256 == a.sha256).map_or_else(
                    || "not audited".to_string(),
                    |x| format!("empirical epsilon {:.3}", x.empirical_epsilon),
                );
                println!("{}\t{}\t{}\t{audit}", a.sha256, a.name, a.version);
            }
        }
        AlgorithmCommand::Audit(args) => return audit(args),
    }
    Ok(ExitCode::SUCCESS)
}

fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let file = ManifestFile::read(&args.manifest)?;
    let (terms, _) = file.privacy.terms()?;
    let requirement = match &args.table {
        Some(t) => file
            .requirements
            .table(t)
            .with_context(|| format!("the manifest requires no table '{t}'"))?,
        None => file
            .requirements
            .tables
            .first()
            .context("the manifest requires no table")?,
    };
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let sandbox = Sandbox::new(SandboxLimits::default())?;
    let loaded = sandbox
        .load(&bytes)
        .with_context(|| format!("{} is refused by the sandbox", args.file.display()))?;
    let params = args
        .params
        .iter()
        .map(|p| parse_param(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let audit = c2ssi_audit::audit(
        &sandbox,
        &loaded,
        requirement,
        &terms,
        &params,
        &AuditOptions {
            trials: args.trials,
            pool: args.pool,
            seed: args.seed,
        },
    )?;
    if args.out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "summary": audit.summary,
                "influence": {"least": audit.influence.0, "median": audit.influence.1, "most": audit.influence.2},
                "failures": audit.failures,
                "error_rates": {"false_positives": audit.error_rates.0, "false_negatives": audit.error_rates.1},
            }))?
        );
    } else {
        for line in audit.lines() {
            println!("{line}");
        }
    }
    Ok(if audit.summary.flagged_encoding {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
