//! `issuer`: a small credential issuer, so that tests and the walkthrough can
//! vouch for wallets. It holds an Ed25519 key (its `did:key`), issues W3C
//! verifiable credentials about wallets' DIDs, each with a revocation bit in
//! its Bitstring Status List, and signs and pushes that list to brokers.
//!
//! Its home (`--home`, `ISSUER_HOME`) holds `issuer.key` (PKCS#8, mode
//! 0600) and `issued.json` (what it issued and revoked), each written
//! atomically.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use c2ssi_credentials::{Did, Issuance, MIN_BITS, StatusEntry, issue, issue_list};
use c2ssi_protocol::{Signer, SigningKey, now_ms, write_secret};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(
    name = "issuer",
    version,
    about = "Issue and revoke verifiable credentials for compute-to-ssi wallets"
)]
struct Cli {
    /// The issuer's directory (key and records)
    #[arg(long, env = "ISSUER_HOME", global = true)]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the issuer's key and print its DID (what manifests name)
    Init,
    /// Print the issuer's DID
    Did,
    /// Issue a credential about a wallet's DID (`wallet credential list` shows it)
    Issue {
        /// The wallet's DID (did:key:z6Mk...)
        #[arg(long)]
        subject: String,
        /// The credential type
        #[arg(long = "type", default_value = "UniquePersonCredential")]
        credential_type: String,
        /// Days until it expires
        #[arg(long, default_value_t = 365)]
        valid_days: u64,
        /// Write it here (default: standard output)
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The credentials issued, and which are revoked
    List,
    /// Revoke a credential (then `issuer publish` so that brokers know)
    Revoke {
        /// The credential's id (urn:uuid:...)
        id: String,
    },
    /// Write the signed status list (revocations) as JSON
    StatusList {
        /// Write it here (default: standard output)
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Push the signed status list to a broker, which ends the subscriptions of revoked credentials
    Publish {
        /// The broker, like http://127.0.0.1:8080
        url: String,
    },
}

/// What the issuer issued: its status list's id, and each credential.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Issued {
    status_list: String,
    credentials: Vec<IssuedCredential>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IssuedCredential {
    id: String,
    subject: String,
    credential_type: String,
    status_index: u64,
    issued_ms: u64,
    valid_until_ms: u64,
    revoked: bool,
}

const KEY_FILE: &str = "issuer.key";
const ISSUED_FILE: &str = "issued.json";
const DAY_MS: u64 = 86_400_000;

fn home(cli: &Cli) -> anyhow::Result<PathBuf> {
    match &cli.home {
        Some(h) => Ok(h.clone()),
        None => dirs::data_dir()
            .map(|d| d.join("c2ssi-issuer"))
            .context("no home directory: pass --home or set ISSUER_HOME"),
    }
}

fn key(home: &Path) -> anyhow::Result<SigningKey> {
    let path = home.join(KEY_FILE);
    if !path.exists() {
        bail!("no issuer in {}: run `issuer init` first", home.display());
    }
    Ok(SigningKey::read_from(&path)?)
}

fn did(key: &SigningKey) -> Did {
    Did::from_ed25519(key.public_key().0)
}

fn read_issued(home: &Path) -> anyhow::Result<Issued> {
    let path = home.join(ISSUED_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} does not parse", path.display()))
}

fn write_issued(home: &Path, issued: &Issued) -> anyhow::Result<()> {
    let path = home.join(ISSUED_FILE);
    write_secret(&path, &serde_json::to_vec_pretty(issued)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn output(out: Option<&Path>, json: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(json)?;
    match out {
        Some(path) => {
            write_secret(path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// A random index in the list that no credential has: random, not in
/// order, so that an index says nothing about when or to whom it went.
fn free_index(issued: &Issued) -> anyhow::Result<u64> {
    use ring::rand::{SecureRandom, SystemRandom};
    if issued.credentials.len() as u64 >= MIN_BITS {
        bail!("the status list is full ({MIN_BITS} credentials)");
    }
    let rng = SystemRandom::new();
    loop {
        let mut bytes = [0u8; 8];
        rng.fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let index = u64::from_le_bytes(bytes) % MIN_BITS;
        if !issued.credentials.iter().any(|c| c.status_index == index) {
            return Ok(index);
        }
    }
}

fn status_list(home: &Path, key: &SigningKey) -> anyhow::Result<serde_json::Value> {
    let issued = read_issued(home)?;
    let revoked: Vec<u64> = issued
        .credentials
        .iter()
        .filter(|c| c.revoked)
        .map(|c| c.status_index)
        .collect();
    Ok(issue_list(
        &issued.status_list,
        &did(key),
        MIN_BITS,
        &revoked,
        now_ms(),
        &|m| key.sign_bytes(m),
    )?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // A deployment with its own CA (or a self-signed test setup) names it here.
    c2ssi_client::trust_ca_file_from_env()?;
    let home = home(&cli)?;
    match cli.command {
        Command::Init => {
            if home.join(KEY_FILE).exists() {
                bail!("{} already holds an issuer", home.display());
            }
            std::fs::create_dir_all(&home)
                .with_context(|| format!("creating {}", home.display()))?;
            let key = SigningKey::generate()?;
            key.write_to(&home.join(KEY_FILE))?;
            write_issued(
                &home,
                &Issued {
                    status_list: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                    credentials: Vec::new(),
                },
            )?;
            println!("issuer DID {}", did(&key));
        }
        Command::Did => println!("{}", did(&key(&home)?)),
        Command::Issue {
            subject,
            credential_type,
            valid_days,
            out,
        } => {
            let key = key(&home)?;
            let subject = Did::parse(&subject)
                .context("--subject must be a wallet's did:key (see `wallet credential list`)")?;
            let mut issued = read_issued(&home)?;
            let index = free_index(&issued)?;
            let now = now_ms();
            let until = now.saturating_add(valid_days.saturating_mul(DAY_MS));
            let json = issue(
                &Issuance {
                    issuer: &did(&key),
                    subject: &subject,
                    credential_type: &credential_type,
                    valid_from_ms: now,
                    valid_until_ms: Some(until),
                    status: Some(StatusEntry {
                        list: issued.status_list.clone(),
                        index,
                    }),
                },
                &|m| key.sign_bytes(m),
            )?;
            let id = json["id"].as_str().unwrap_or_default().to_string();
            issued.credentials.push(IssuedCredential {
                id: id.clone(),
                subject: subject.to_string(),
                credential_type,
                status_index: index,
                issued_ms: now,
                valid_until_ms: until,
                revoked: false,
            });
            // Recorded before it is handed out: a credential is never out
            // without its revocation bit on record.
            write_issued(&home, &issued)?;
            output(out.as_deref(), &json)?;
            eprintln!("issued {id} to {subject}");
        }
        Command::List => {
            let issued = read_issued(&home)?;
            println!("status list {}", issued.status_list);
            for c in &issued.credentials {
                println!(
                    "{}  {}  {}  index {}  {}",
                    c.id,
                    c.credential_type,
                    c.subject,
                    c.status_index,
                    if c.revoked { "REVOKED" } else { "valid" }
                );
            }
        }
        Command::Revoke { id } => {
            let mut issued = read_issued(&home)?;
            let Some(c) = issued.credentials.iter_mut().find(|c| c.id == id) else {
                bail!("no credential {id} was issued here (see `issuer list`)");
            };
            if c.revoked {
                bail!("{id} is already revoked");
            }
            c.revoked = true;
            write_issued(&home, &issued)?;
            println!(
                "revoked {id}; run `issuer publish URL` so that brokers end its subscriptions"
            );
        }
        Command::StatusList { out } => {
            let key = key(&home)?;
            output(out.as_deref(), &status_list(&home, &key)?)?;
        }
        Command::Publish { url } => {
            let key = key(&home)?;
            let list = status_list(&home, &key)?;
            let ended = c2ssi_client::Client::new(&url)
                .put_status_list(&list)
                .with_context(|| format!("pushing the status list to {url}"))?;
            println!("{url} took the status list: {ended} subscription(s) ended");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
