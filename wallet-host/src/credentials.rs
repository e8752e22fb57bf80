//! The verifiable credentials a wallet holds (document `credentials.age`):
//! imported after checking that their issuer signed them and that they are
//! about this wallet's `did:key`, and chosen for a subscription when a
//! manifest requires one.

use c2ssi_credentials::{Credential, Did};
use c2ssi_protocol::CredentialRequirement;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Wallet, WalletError};

/// The encrypted document that holds the credentials.
pub const CREDENTIALS_FILE: &str = "credentials.age";

/// The credentials, as issued.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// Each credential's JSON as its issuer signed it.
    pub held: Vec<Value>,
}

/// Why a credential was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not a valid credential.
    #[error("{0}")]
    Invalid(#[from] c2ssi_credentials::CredentialError),
    /// About another DID than this wallet's.
    #[error("the credential is about {subject}, not about this wallet ({wallet})")]
    NotOurs {
        /// Its subject.
        subject: String,
        /// This wallet's DID.
        wallet: String,
    },
    /// Already held.
    #[error("this wallet already holds credential {0}")]
    Duplicate(String),
    /// The wallet could not be read or written.
    #[error(transparent)]
    Wallet(#[from] WalletError),
}

/// The wallet's `did:key`: its Ed25519 signing key.
pub fn did(wallet: &Wallet) -> Did {
    Did::from_ed25519(wallet.keys().public_key())
}

/// Verifies `json` (proof by its issuer, subject this wallet, valid at
/// `now_ms`) and stores it; nothing is written if any check fails.
pub fn import(wallet: &Wallet, json: Value, now_ms: u64) -> Result<Credential, ImportError> {
    let credential = Credential::verify(json)?;
    let ours = did(wallet);
    if credential.subject() != &ours {
        return Err(ImportError::NotOurs {
            subject: credential.subject().to_string(),
            wallet: ours.to_string(),
        });
    }
    credential.check_time(now_ms)?;
    wallet.update_document(CREDENTIALS_FILE, |store: &mut Credentials| {
        if held(store).iter().any(|c| c.id() == credential.id()) {
            return Ok(Err(ImportError::Duplicate(credential.id().to_string())));
        }
        store.held.push(credential.json().clone());
        Ok(Ok(()))
    })??;
    Ok(credential)
}

/// The credentials held that still verify (a stored one that no longer does
/// is skipped: the file is the owner's, but never trusted blindly).
pub fn held(store: &Credentials) -> Vec<Credential> {
    store
        .held
        .iter()
        .filter_map(|json| Credential::verify(json.clone()).ok())
        .collect()
}

/// The credentials to present for `requirement` at `now_ms`: those of its
/// type, from one of its issuers, valid now; the latest-expiring first.
pub fn matching(
    store: &Credentials,
    requirement: &CredentialRequirement,
    now_ms: u64,
) -> Vec<Credential> {
    let mut out: Vec<Credential> = held(store)
        .into_iter()
        .filter(|c| {
            c.has_type(&requirement.credential_type)
                && requirement.issuers.contains(c.issuer())
                && c.check_time(now_ms).is_ok()
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.valid_until_ms().unwrap_or(u64::MAX)));
    out
}
