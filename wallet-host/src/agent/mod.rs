//! The wallet agent: what a wallet does for the collectives it subscribed
//! to, and the privacy it enforces for its owner whatever the algorithm does.
//!
//! - [`Subscriptions`]: each collective's manifest as consented to, and a
//!   newer version waiting for consent. Deleting an entry (revocation)
//!   denies every later task from that collective, offline too.
//! - [`task`]: checks a task (the broker's signature against the consented
//!   manifest, expiry, the wallet it is for, nonce, the manifest version the
//!   owner consented to, the allowed algorithm, the owner's policy and
//!   privacy budget), runs it in the sandbox on the required columns only,
//!   clips the update to the manifest's norm, keeps only the declared
//!   metrics, seals the result to the aggregator and signs the envelope.
//! - [`budget`]: the owner's policy (`wallet policy`) and the privacy spent
//!   (`wallet privacy`), from the rounds this wallet took part in.
//! - [`consent`]: what changed between the consented manifest and a newer
//!   one, which waits for the owner (`wallet consent`).
//! - [`AccessLog`] and [`Receipts`]: every access and every payment, kept
//!   in the wallet, encrypted like its records.
//!
//! The `wallet agent` command and the simulation's honest wallets both run
//! [`worker::Worker`], which goes through [`task`] and reaches a collective
//! through a [`transport::Transport`]: HTTP for `wallet agent`, calls in
//! one process for the simulation.

pub mod budget;
pub mod consent;
pub mod task;
pub mod transport;
pub mod worker;

use std::collections::BTreeMap;

use c2ssi_protocol::{Amount, Manifest, PublicKey, Purpose, Receipt, Signed, Signer, now_ms};
use serde::{Deserialize, Serialize};

use crate::store::{Wallet, WalletError, WalletKeys};

pub use budget::{Participation, Policy, Spent};
pub use task::{
    Computed, Denial, Handled, VerifiedTask, compute, denied_record, seal, verify_task,
};
pub use transport::{HttpTransport, Transport, TransportError};

/// The encrypted document of subscriptions.
pub const SUBSCRIPTIONS_FILE: &str = "subscriptions.age";
/// The encrypted access log (with the privacy spent).
pub const LOG_FILE: &str = "log.age";
/// The encrypted receipts.
pub const RECEIPTS_FILE: &str = "receipts.age";
/// The encrypted policy.
pub const POLICY_FILE: &str = "policy.age";

impl Signer for WalletKeys {
    fn public_key(&self) -> PublicKey {
        PublicKey(WalletKeys::public_key(self))
    }

    fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.sign(message)
    }
}

/// One subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// The broker's URL.
    pub url: String,
    /// The manifest version the owner consented to.
    pub manifest: Signed<Manifest>,
    /// When the owner consented.
    pub subscribed_ms: u64,
    /// The highest ledger position of a receipt already kept.
    pub receipts_after: u64,
    /// A newer version of the manifest that waits for the owner's consent;
    /// until then nothing of this collective runs.
    #[serde(default)]
    pub pending: Option<Signed<Manifest>>,
}

impl SubscriptionRecord {
    /// The consented manifest's content.
    pub fn manifest(&self) -> Result<Manifest, c2ssi_protocol::ProtocolError> {
        self.manifest.open_any_time(None, Purpose::Manifest)
    }

    /// SHA-256 of the consented manifest, hex.
    pub fn digest(&self) -> String {
        hex::encode(self.manifest.digest())
    }
}

/// The wallet's subscriptions, by collective id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Subscriptions {
    /// By collective id.
    pub collectives: BTreeMap<String, SubscriptionRecord>,
}

/// How an access ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AccessOutcome {
    /// The algorithm trained; its update left the wallet, clipped.
    Trained {
        /// Whether clipping shortened the update.
        #[serde(default)]
        clipped: bool,
    },
    /// The algorithm failed on the wallet's data; a zero update left instead.
    Failed {
        /// The failure's kind (`panic`, `out-of-fuel`, ...), kept here only.
        failure: String,
    },
    /// The required data was missing: only that attestation left.
    DataMissing {
        /// What was missing, kept here only.
        #[serde(default)]
        problems: Vec<String>,
    },
    /// The task was not run.
    Denied {
        /// Why, typed (`forged`, `budget`, `consent-pending`, ...).
        denial: String,
        /// Why, in words.
        detail: String,
    },
}

impl AccessOutcome {
    /// One word for logs and counts.
    pub fn word(&self) -> &str {
        match self {
            AccessOutcome::Trained { .. } => "trained",
            AccessOutcome::Failed { .. } => "failed",
            AccessOutcome::DataMissing { .. } => "data-missing",
            AccessOutcome::Denied { .. } => "denied",
        }
    }
}

impl std::fmt::Display for AccessOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessOutcome::Trained { clipped: true } => f.write_str("trained (update clipped)"),
            AccessOutcome::Trained { clipped: false } => f.write_str("trained"),
            AccessOutcome::Failed { failure } => write!(f, "failed: {failure}"),
            AccessOutcome::DataMissing { problems } if problems.is_empty() => {
                f.write_str("data missing")
            }
            AccessOutcome::DataMissing { problems } => {
                write!(f, "data missing: {}", problems.join("; "))
            }
            AccessOutcome::Denied { denial, detail } => write!(f, "denied ({denial}): {detail}"),
        }
    }
}

/// The outcome as stored: the typed form, or the words an earlier version
/// of the wallet wrote, read into the typed form.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredOutcome {
    Typed(AccessOutcome),
    Words(String),
}

impl From<StoredOutcome> for AccessOutcome {
    fn from(stored: StoredOutcome) -> Self {
        match stored {
            StoredOutcome::Typed(t) => t,
            StoredOutcome::Words(w) => {
                if w == "trained" {
                    AccessOutcome::Trained { clipped: false }
                } else if w == "data-missing" {
                    AccessOutcome::DataMissing {
                        problems: Vec::new(),
                    }
                } else if let Some(rest) = w.strip_prefix("failed: ") {
                    AccessOutcome::Failed {
                        failure: rest.to_string(),
                    }
                } else {
                    AccessOutcome::Denied {
                        denial: "recorded-by-an-earlier-version".into(),
                        detail: w.trim_start_matches("denied: ").to_string(),
                    }
                }
            }
        }
    }
}

fn outcome_from_storage<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AccessOutcome, D::Error> {
    StoredOutcome::deserialize(d).map(AccessOutcome::from)
}

/// One access to the wallet: who, what, when, what it cost, how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// When.
    pub time_ms: u64,
    /// The collective.
    pub collective_id: String,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// The algorithm, by SHA-256.
    pub algorithm_sha256: String,
    /// Its name, from the manifest.
    pub algorithm: String,
    /// How it ended.
    #[serde(deserialize_with = "outcome_from_storage")]
    pub outcome: AccessOutcome,
    /// Fuel used.
    pub fuel: u64,
    /// Milliseconds it ran.
    pub elapsed_ms: f64,
    /// Whether the envelope was sent and taken.
    pub delivered: Option<bool>,
}

/// The access log, the nonces of tasks already handled, and the rounds
/// this wallet took part in (its privacy spent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessLog {
    /// Every access, oldest first.
    pub records: Vec<AccessRecord>,
    /// Task nonces seen, with their expiry.
    pub seen_tasks: BTreeMap<String, u64>,
    /// Every release this wallet's data may enter, with its privacy cost.
    #[serde(default)]
    pub participations: Vec<Participation>,
}

impl AccessLog {
    /// Remembers a task's nonce; `false` if it was seen before (a replay).
    pub fn remember(&mut self, nonce: &str, expires_ms: u64) -> bool {
        let now = now_ms();
        self.seen_tasks.retain(|_, &mut e| e >= now);
        self.seen_tasks
            .insert(nonce.to_string(), expires_ms)
            .is_none()
    }
}

/// The receipts the broker's ledger signed for this wallet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Receipts {
    /// By collective, then in ledger order.
    pub receipts: Vec<(String, Signed<Receipt>)>,
}

/// Checks a receipt: signed by the collective's broker, for this wallet.
pub fn check_receipt(
    receipt: &Signed<Receipt>,
    manifest: &Manifest,
    wallet: &PublicKey,
) -> Result<Receipt, String> {
    let body = receipt
        .open_any_time(Some(&manifest.broker_key), Purpose::Receipt)
        .map_err(|e| format!("receipt does not verify: {e}"))?;
    if body.wallet != *wallet {
        return Err("receipt is for another wallet".into());
    }
    if body.header.collective_id != manifest.header.collective_id {
        return Err("receipt is for another collective".into());
    }
    Ok(body)
}

/// The wallet's subscriptions.
pub fn subscriptions(wallet: &Wallet) -> Result<Subscriptions, WalletError> {
    wallet.read_document(SUBSCRIPTIONS_FILE)
}

/// The owner's policy (the defaults if it never set one).
pub fn policy(wallet: &Wallet) -> Result<Policy, WalletError> {
    wallet.read_document(POLICY_FILE)
}

/// Appends to the access log.
pub fn log_access(wallet: &Wallet, record: AccessRecord) -> Result<(), WalletError> {
    wallet.update_document(LOG_FILE, |log: &mut AccessLog| {
        log.records.push(record);
        Ok(())
    })
}

/// Keeps receipts that verify for this wallet; returns how many were new.
pub fn keep_receipts(
    wallet: &Wallet,
    collective_id: &str,
    manifest: &Manifest,
    receipts: &[Signed<Receipt>],
) -> Result<(usize, Amount), WalletError> {
    let me = PublicKey(wallet.keys().public_key());
    let mut checked = Vec::new();
    for r in receipts {
        match check_receipt(r, manifest, &me) {
            Ok(body) => checked.push((body, r.clone())),
            Err(problem) => tracing::warn!(%problem, "ignoring a receipt"),
        }
    }
    if checked.is_empty() {
        return Ok((0, Amount::ZERO));
    }
    let max_seq = checked.iter().map(|(b, _)| b.entry_seq).max().unwrap_or(0);
    let (added, amount) = wallet.update_document(RECEIPTS_FILE, |doc: &mut Receipts| {
        let mut added = 0;
        let mut amount = Amount::ZERO;
        // The kept receipts were checked when kept: read, not verified again
        // (a signature check per kept receipt per round made a long job
        // quadratic in its rounds).
        let mut known: std::collections::HashSet<u64> = doc
            .receipts
            .iter()
            .filter(|(c, _)| c == collective_id)
            .filter_map(|(_, r)| r.body_unverified().ok())
            .map(|k| k.entry_seq)
            .collect();
        for (body, signed) in &checked {
            if known.insert(body.entry_seq) {
                doc.receipts
                    .push((collective_id.to_string(), signed.clone()));
                added += 1;
                amount = amount.checked_add(body.amount).unwrap_or(amount);
            }
        }
        Ok((added, amount))
    })?;
    wallet.update_document(SUBSCRIPTIONS_FILE, |subs: &mut Subscriptions| {
        if let Some(s) = subs.collectives.get_mut(collective_id) {
            s.receipts_after = s.receipts_after.max(max_seq);
        }
        Ok(())
    })?;
    Ok((added, amount))
}

/// Each kept receipt, checked offline: with the ledger key of the manifest
/// consented to, or after a revocation with the key the receipt names.
pub fn check_kept(
    receipts: &Receipts,
    subs: &Subscriptions,
    me: &PublicKey,
) -> Vec<(String, Result<Receipt, String>)> {
    receipts
        .receipts
        .iter()
        .map(|(id, signed)| {
            let checked = match subs.collectives.get(id).and_then(|s| s.manifest().ok()) {
                Some(m) => check_receipt(signed, &m, me),
                None => signed
                    .open_any_time(None, Purpose::Receipt)
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        if r.wallet == *me {
                            Ok(r)
                        } else {
                            Err("for another wallet".into())
                        }
                    }),
            };
            (id.clone(), checked)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_by_an_earlier_version_still_read() {
        let old = r#"{"time_ms":1,"collective_id":"c","job_id":"j","round":1,
            "algorithm_sha256":"a","algorithm":"x","outcome":"failed: panic (boom)",
            "fuel":5,"elapsed_ms":1.0,"delivered":true}"#;
        let r: AccessRecord = serde_json::from_str(old).unwrap();
        assert_eq!(
            r.outcome,
            AccessOutcome::Failed {
                failure: "panic (boom)".into()
            }
        );
        let new = serde_json::to_string(&r).unwrap();
        let back: AccessRecord = serde_json::from_str(&new).unwrap();
        assert_eq!(back, r);
        let log: AccessLog = serde_json::from_str(r#"{"records":[],"seen_tasks":{}}"#).unwrap();
        assert!(log.participations.is_empty());
    }
}
