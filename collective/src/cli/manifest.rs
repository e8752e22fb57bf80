//! `collective create`, `update` and `deposit`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use c2ssi_protocol::{
    Amount, Command, Manifest, ManifestSubmission, PrivacyTerms, Signed, Signer, collective_id,
    open_manifest,
};
use clap::Args;
use collective::manifest_file::{ManifestFile, build};

use super::{Connection, Target};

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    connection: Connection,
    /// The manifest file (JSON): name, description, rate, requirements, privacy
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    target: Target,
    /// The manifest file with the new name, description, rate, requirements or privacy terms
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct DepositArgs {
    #[command(flatten)]
    target: Target,
    /// How much, as a decimal ("100", "2.5")
    amount: String,
}

/// Prints the privacy terms that will be signed, naming the defaults used.
pub(crate) fn print_terms(terms: &PrivacyTerms, defaults: &[&str]) {
    eprintln!("privacy terms signed in the manifest:");
    for line in terms.describe() {
        eprintln!("  {line}");
    }
    if !defaults.is_empty() {
        eprintln!("  (defaults used for: {})", defaults.join(", "));
    }
    if !terms.has_noise() {
        eprintln!(
            "warning: these terms add NO NOISE: no privacy guarantee; wallets with the default \
             policy refuse them, and brokers take them only with --allow-without-noise"
        );
    }
}

/// The current manifest of the target collective, checked.
pub(crate) fn current(target: &Target) -> anyhow::Result<(Signed<Manifest>, Manifest)> {
    let signed = target
        .client()?
        .manifest(&target.collective)
        .with_context(|| format!("fetching the manifest of {}", target.collective))?;
    let manifest = open_manifest(&signed, &target.collective)?;
    Ok((signed, manifest))
}

/// Signs `manifest` and submits it with `components`.
pub(crate) fn submit(
    target: &Target,
    manifest: &Manifest,
    components: Vec<String>,
    audit_params: Vec<c2ssi_guest_sdk::Param>,
) -> anyhow::Result<c2ssi_protocol::SubmissionOutcome> {
    submit_with(
        &target.client()?,
        target,
        manifest,
        components,
        audit_params,
    )
}

/// [`submit`] through `client` (for a new collective: signed by the
/// consumer's key, which the broker admits as a creator).
fn submit_with(
    client: &c2ssi_client::Client,
    target: &Target,
    manifest: &Manifest,
    components: Vec<String>,
    audit_params: Vec<c2ssi_guest_sdk::Param>,
) -> anyhow::Result<c2ssi_protocol::SubmissionOutcome> {
    let key = target.key()?;
    let signed = Signed::sign(manifest, &key)?;
    Ok(client.submit_manifest(
        &target.collective,
        &ManifestSubmission {
            manifest: signed,
            components_base64: components,
            audit_params,
        },
    )?)
}

pub(crate) fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let file = ManifestFile::read(&args.manifest)?;
    let (terms, defaults) = file
        .privacy
        .terms()
        .with_context(|| format!("{}: privacy", args.manifest.display()))?;
    let client = args.connection.client();
    let keys = client
        .broker_keys()
        .with_context(|| format!("asking the broker at {} for its keys", args.connection.url))?;
    let home = args.connection.home()?;
    let (key, key_path) = collective::home::create_key(&home, args.connection.key.as_deref())?;
    let manifest = build(&file, terms.clone(), &key, &keys, 1, Vec::new())
        .with_context(|| format!("{}", args.manifest.display()))?;
    let id = collective_id(&key.public_key());
    let target = Target {
        connection: Connection {
            key: Some(key_path.clone()),
            ..args.connection.clone()
        },
        collective: id.clone(),
    };
    print_terms(&terms, &defaults);
    match &manifest.credential {
        Some(c) => eprintln!("subscribers must present {c}: one subscription per person"),
        None => eprintln!(
            "warning: {} requires no credential: anyone may subscribe with any number of keys \
             (Sybils). Add \"credential\": {{\"credential_type\": \"UniquePersonCredential\", \
             \"issuers\": [\"did:key:...\"]}} to require one",
            args.manifest.display()
        ),
    }
    let consumer = collective::home::consumer_key(&home)?;
    let creator = client.clone().signed_by(std::sync::Arc::new(consumer));
    if let Err(e) = submit_with(&creator, &target, &manifest, Vec::new(), Vec::new()) {
        // The key of a collective the broker refused is of no use.
        let _ = std::fs::remove_file(&key_path);
        return Err(e.context("the broker refused the collective"));
    }
    println!("{id}");
    eprintln!(
        "created collective {id}; its key is {} (keep it: it signs every change and command); \
         wallets subscribe with `wallet subscribe {} {id}`",
        key_path.display(),
        args.connection.url
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn update(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let file = ManifestFile::read(&args.manifest)?;
    let (terms, defaults) = file
        .privacy
        .terms()
        .with_context(|| format!("{}: privacy", args.manifest.display()))?;
    let (_, current) = current(&args.target)?;
    let keys = args.target.client()?.broker_keys()?;
    let key = args.target.key()?;
    let manifest = build(
        &file,
        terms.clone(),
        &key,
        &keys,
        current.version + 1,
        current.allowed_algorithms.clone(),
    )?;
    let changes = current.changes(&manifest);
    if changes.is_empty() {
        eprintln!(
            "nothing changed: the manifest stays at version {}",
            current.version
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_terms(&terms, &defaults);
    let outcome = submit(&args.target, &manifest, Vec::new(), Vec::new())?;
    eprintln!(
        "manifest version {} published; every subscriber consents again before anything runs:",
        outcome.version
    );
    for c in changes {
        eprintln!("  - {c}");
    }
    println!("{}", outcome.digest);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn deposit(args: DepositArgs) -> anyhow::Result<ExitCode> {
    let amount: Amount = args.amount.parse()?;
    match args.target.send(Command::Deposit { amount })? {
        c2ssi_protocol::CommandOutcome::Deposited {
            deposited, paid, ..
        } => println!("deposited {amount}; balance {deposited} deposited, {paid} paid"),
        other => anyhow::bail!("the broker answered {other:?} to a deposit"),
    }
    Ok(ExitCode::SUCCESS)
}
