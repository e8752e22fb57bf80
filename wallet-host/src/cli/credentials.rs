//! `wallet credential import|list|show|remove`: the verifiable credentials
//! that vouch for this wallet's `did:key`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use c2ssi_credentials::format_time;
use c2ssi_protocol::now_ms;
use clap::{Args, Subcommand};
use wallet_host::credentials::{self, CREDENTIALS_FILE, Credentials};

use super::GlobalArgs;
use super::unlock;

#[derive(Debug, Args)]
pub(crate) struct CredentialArgs {
    #[command(subcommand)]
    command: CredentialCommand,
}

#[derive(Debug, Subcommand)]
enum CredentialCommand {
    /// Import a credential (the JSON file its issuer gave you), after checking
    /// its issuer's signature and that it is about this wallet
    Import {
        /// The credential's JSON file
        file: PathBuf,
    },
    /// This wallet's DID (what an issuer needs) and the credentials held
    List(c2ssi_cli::JsonArg),
    /// Print one credential as issued
    Show {
        /// The credential's id (`urn:uuid:...`)
        id: String,
    },
    /// Remove a credential from this wallet
    Remove {
        /// The credential's id (`urn:uuid:...`)
        id: String,
    },
}

pub(crate) fn credential(g: &GlobalArgs, args: CredentialArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    match args.command {
        CredentialCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let c = credentials::import(&wallet, json, now_ms())
                .with_context(|| format!("{} was not imported", file.display()))?;
            println!(
                "imported {} ({}) issued by {}",
                c.id(),
                c.types().join(", "),
                c.issuer()
            );
        }
        CredentialCommand::List(out) => {
            let store: Credentials = wallet.read_document(CREDENTIALS_FILE)?;
            let held = credentials::held(&store);
            if out.json {
                let now = now_ms();
                let list: Vec<serde_json::Value> = held
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "id": c.id(),
                            "types": c.types(),
                            "issuer": c.issuer(),
                            "valid_until": c.valid_until_ms().map(format_time),
                            "problem": c.check_time(now).err().map(|e| e.to_string()),
                        })
                    })
                    .collect();
                let json = serde_json::json!({
                    "did": credentials::did(&wallet),
                    "credentials": list,
                });
                println!("{}", serde_json::to_string_pretty(&json)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("this wallet's DID: {}", credentials::did(&wallet));
            if held.is_empty() {
                println!("no credentials (import one with `wallet credential import FILE`)");
            }
            let now = now_ms();
            for c in held {
                let types: Vec<&str> = c
                    .types()
                    .iter()
                    .map(String::as_str)
                    .filter(|t| *t != c2ssi_credentials::VC_TYPE)
                    .collect();
                let state = match c.check_time(now) {
                    Ok(()) => c
                        .valid_until_ms()
                        .map_or("valid, no expiry".to_string(), |t| {
                            format!("valid until {}", format_time(t))
                        }),
                    Err(e) => e.to_string(),
                };
                println!(
                    "{}  {}  issued by {}  {state}",
                    c.id(),
                    types.join(","),
                    c.issuer()
                );
            }
        }
        CredentialCommand::Show { id } => {
            let store: Credentials = wallet.read_document(CREDENTIALS_FILE)?;
            let Some(json) = store
                .held
                .iter()
                .find(|j| j.get("id").and_then(|v| v.as_str()) == Some(id.as_str()))
            else {
                bail!("this wallet holds no credential {id} (see `wallet credential list`)");
            };
            println!("{}", serde_json::to_string_pretty(json)?);
        }
        CredentialCommand::Remove { id } => {
            let removed = wallet.update_document(CREDENTIALS_FILE, |store: &mut Credentials| {
                let before = store.held.len();
                store
                    .held
                    .retain(|j| j.get("id").and_then(|v| v.as_str()) != Some(id.as_str()));
                Ok(before != store.held.len())
            })?;
            if !removed {
                bail!("this wallet holds no credential {id} (see `wallet credential list`)");
            }
            println!(
                "removed {id}; subscriptions that needed it end when the broker next checks it"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
