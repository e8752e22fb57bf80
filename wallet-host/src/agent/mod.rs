//! The wallet agent: what a wallet does for the collectives it subscribed to.
//!
//! - [`Subscriptions`]: each collective's manifest as consented to, with its
//!   keys. Deleting an entry (revocation) denies every later task from that
//!   collective, offline too: nothing else holds the key a task is checked with.
//! - [`handle_task`]: checks a task (signature against the stored collective
//!   key, expiry, the wallet it is for, nonce, allowed algorithm, the wallet's
//!   own data against the requirements), runs it in the sandbox on the
//!   required columns only, seals the update to the aggregator and signs the
//!   envelope with the wallet's attestation that the data was present.
//! - [`AccessLog`] and [`Receipts`]: every access and every payment, kept in
//!   the wallet, encrypted like its records.
//!
//! The `wallet agent` command and the collective's simulation both go
//! through [`handle_task`].

pub mod worker;

use std::collections::BTreeMap;

use c2ssi_protocol::{
    Amount, Attestation, Header, Manifest, Outcome, PublicKey, Purpose, Receipt, Signed, Signer,
    Task, UpdateEnvelope, UpdatePayload, check_requirement, now_ms,
};
use serde::{Deserialize, Serialize};

use crate::store::{Records, Wallet, WalletError, WalletKeys};
use c2ssi_sandbox::{Sandbox, TaskError};

/// The encrypted document of subscriptions.
pub const SUBSCRIPTIONS_FILE: &str = "subscriptions.age";
/// The encrypted access log.
pub const LOG_FILE: &str = "log.age";
/// The encrypted receipts.
pub const RECEIPTS_FILE: &str = "receipts.age";
/// How long an update envelope is valid.
const ENVELOPE_VALIDITY_MS: u64 = 10 * 60 * 1000;

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
    /// The collective's service.
    pub url: String,
    /// The manifest as consented to (and later versions with the same terms).
    pub manifest: Signed<Manifest>,
    /// When the person consented.
    pub subscribed_ms: u64,
    /// The highest ledger position of a receipt already kept.
    pub receipts_after: u64,
}

impl SubscriptionRecord {
    /// The stored manifest's content.
    pub fn manifest(&self) -> Result<Manifest, c2ssi_protocol::ProtocolError> {
        self.manifest.open_any_time(None, Purpose::Manifest)
    }
}

/// The wallet's subscriptions, by collective id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Subscriptions {
    /// By collective id.
    pub collectives: BTreeMap<String, SubscriptionRecord>,
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
    /// `trained`, `failed: KIND`, `data-missing`, or `denied: REASON`.
    pub outcome: String,
    /// Fuel used.
    pub fuel: u64,
    /// Milliseconds it ran.
    pub elapsed_ms: f64,
    /// Whether the envelope was sent and taken.
    pub delivered: Option<bool>,
}

/// The access log, and the nonces of tasks already handled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessLog {
    /// Every access, oldest first.
    pub records: Vec<AccessRecord>,
    /// Task nonces seen, with their expiry.
    pub seen_tasks: BTreeMap<String, u64>,
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

/// The receipts the ledger signed for this wallet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Receipts {
    /// By collective, then in ledger order.
    pub receipts: Vec<(String, Signed<Receipt>)>,
}

/// Checks a receipt: signed by the collective's ledger, for this wallet.
pub fn check_receipt(
    receipt: &Signed<Receipt>,
    manifest: &Manifest,
    wallet: &PublicKey,
) -> Result<Receipt, String> {
    let body = receipt
        .open_any_time(Some(&manifest.ledger_key), Purpose::Receipt)
        .map_err(|e| format!("receipt does not verify: {e}"))?;
    if body.wallet != *wallet {
        return Err("receipt is for another wallet".into());
    }
    if body.header.collective_id != manifest.header.collective_id {
        return Err("receipt is for another collective".into());
    }
    Ok(body)
}

/// Why a task was not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// No subscription: never subscribed, or revoked.
    #[error("not subscribed to collective '{0}' (or the subscription was revoked)")]
    NotSubscribed(String),
    /// The signature does not verify with the stored collective key.
    #[error("forged: {0}")]
    Forged(String),
    /// Past its expiry.
    #[error("expired: {0}")]
    Expired(String),
    /// A task for another wallet or collective.
    #[error("misdirected: {0}")]
    Misdirected(String),
    /// A task already handled.
    #[error("replayed: this task was already handled")]
    Replayed,
    /// The algorithm is not one the manifest allows.
    #[error("algorithm {0} is not allowed by the manifest consented to")]
    AlgorithmNotAllowed(String),
    /// The algorithm's bytes do not match its hash, or the sandbox refused them.
    #[error("algorithm refused: {0}")]
    AlgorithmRefused(String),
    /// The task asks for more than the wallet's policy allows.
    #[error("refused by the wallet's policy: {0}")]
    Policy(String),
}

impl Denial {
    /// A short name for the log.
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::NotSubscribed(_) => "not-subscribed",
            Denial::Forged(_) => "forged",
            Denial::Expired(_) => "expired",
            Denial::Misdirected(_) => "misdirected",
            Denial::Replayed => "replayed",
            Denial::AlgorithmNotAllowed(_) => "algorithm-not-allowed",
            Denial::AlgorithmRefused(_) => "algorithm-refused",
            Denial::Policy(_) => "policy",
        }
    }
}

/// The wallet's own limits on what it runs.
#[derive(Debug, Clone)]
pub struct AgentPolicy {
    /// The most model parameters it accepts.
    pub max_model_params: usize,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        AgentPolicy {
            max_model_params: 4 << 20,
        }
    }
}

/// A checked task, ready to run.
#[derive(Debug)]
pub struct VerifiedTask {
    /// The task.
    pub task: Task,
    /// SHA-256 of its signed payload, hex.
    pub digest: String,
    /// The manifest it is checked against.
    pub manifest: Manifest,
}

/// Checks a task against the wallet's subscription and policy, and records
/// its nonce in `log`. Nothing is run.
pub fn verify_task(
    wallet: &PublicKey,
    subscription: Option<&SubscriptionRecord>,
    collective_id: &str,
    signed: &Signed<Task>,
    log: &mut AccessLog,
    policy: &AgentPolicy,
) -> Result<VerifiedTask, Denial> {
    let Some(subscription) = subscription else {
        return Err(Denial::NotSubscribed(collective_id.to_string()));
    };
    let manifest = subscription
        .manifest()
        .map_err(|e| Denial::Forged(format!("the stored manifest does not verify: {e}")))?;
    let task = signed
        .open(Some(&manifest.collective_key), Purpose::Task, now_ms())
        .map_err(|e| match e {
            c2ssi_protocol::ProtocolError::Expired { .. } => Denial::Expired(e.to_string()),
            other => Denial::Forged(other.to_string()),
        })?;
    if task.header.collective_id != manifest.header.collective_id
        || task.header.collective_id != collective_id
    {
        return Err(Denial::Misdirected(format!(
            "the task is for collective '{}'",
            task.header.collective_id
        )));
    }
    if task.wallet != *wallet {
        return Err(Denial::Misdirected(format!(
            "the task is for wallet {}",
            task.wallet.short()
        )));
    }
    if !log.remember(&task.header.nonce, task.header.expires_at_ms) {
        return Err(Denial::Replayed);
    }
    if manifest.allows(&task.algorithm_sha256).is_none() {
        return Err(Denial::AlgorithmNotAllowed(task.algorithm_sha256.clone()));
    }
    if task.model.len() > policy.max_model_params {
        return Err(Denial::Policy(format!(
            "a model of {} parameters is more than the {} allowed",
            task.model.len(),
            policy.max_model_params
        )));
    }
    Ok(VerifiedTask {
        digest: hex::encode(signed.digest()),
        task,
        manifest,
    })
}

/// What handling a task produced.
#[derive(Debug)]
pub struct Handled {
    /// The envelope to send.
    pub envelope: Signed<UpdateEnvelope>,
    /// The log entry.
    pub record: AccessRecord,
}

/// A task's result before it is sealed: the attestation, the update (none
/// when the data was missing) and the log entry.
#[derive(Debug)]
pub struct Computed {
    /// The wallet's statement about its data.
    pub attestation: Attestation,
    /// The update, when the data was present.
    pub payload: Option<UpdatePayload>,
    /// The log entry.
    pub record: AccessRecord,
}

/// Runs a verified task: checks the wallet's data against the requirement
/// (only an attestation that the data is missing, when it is), and runs the
/// algorithm in the sandbox on the required columns only. `algorithm` is the
/// component's bytes.
pub fn compute(
    records: &Records,
    verified: &VerifiedTask,
    algorithm: &[u8],
    sandbox: &Sandbox,
) -> Result<Computed, Denial> {
    let VerifiedTask { task, manifest, .. } = verified;
    let name = manifest
        .allows(&task.algorithm_sha256)
        .map(|a| a.name.clone())
        .unwrap_or_default();
    let mut record = AccessRecord {
        time_ms: now_ms(),
        collective_id: task.header.collective_id.clone(),
        job_id: task.job_id.clone(),
        round: task.round,
        algorithm_sha256: task.algorithm_sha256.clone(),
        algorithm: name,
        outcome: String::new(),
        fuel: 0,
        elapsed_ms: 0.0,
        delivered: None,
    };
    let requirement = manifest.requirements.table(&task.table).ok_or_else(|| {
        Denial::Policy(format!(
            "the task's table '{}' is not in the requirements",
            task.table
        ))
    })?;
    let own = records.tables.get(&task.table);
    let attestation = |present: bool, rows: usize, problems: Vec<String>| Attestation {
        requirements_digest: manifest.requirements.digest(),
        table: task.table.clone(),
        rows: rows as u64,
        present,
        problems,
    };
    let table = match check_requirement(requirement, own) {
        Err(problems) => {
            record.outcome = "data-missing".into();
            return Ok(Computed {
                attestation: attestation(false, own.map_or(0, |t| t.row_count), problems),
                payload: None,
                record,
            });
        }
        Ok(table) => table,
    };
    if c2ssi_protocol::sha256(algorithm) != hex_digest(&task.algorithm_sha256) {
        return Err(Denial::AlgorithmRefused(
            "its bytes do not match the SHA-256 in the task".into(),
        ));
    }
    let component = sandbox
        .load(algorithm)
        .map_err(|e| Denial::AlgorithmRefused(e.to_string()))?;
    let report = sandbox.train(
        &component,
        &task.model,
        &task.params,
        &table,
        task.seed,
        task.clip_norm,
    );
    record.fuel = report.stats.fuel_used;
    record.elapsed_ms = report.stats.elapsed.as_secs_f64() * 1e3;
    let payload = match report.result {
        Ok(checked) => {
            record.outcome = "trained".into();
            UpdatePayload {
                outcome: Outcome::Trained,
                delta: checked.update.delta,
                examples: checked.update.examples,
                metrics: checked.update.metrics,
            }
        }
        Err(e) => {
            record.outcome = format!("failed: {}", failure(&e));
            UpdatePayload {
                outcome: Outcome::Failed {
                    kind: e.kind().to_string(),
                },
                delta: Vec::new(),
                examples: 0,
                metrics: Vec::new(),
            }
        }
    };
    Ok(Computed {
        attestation: attestation(true, table.row_count, Vec::new()),
        payload: Some(payload),
        record,
    })
}

/// Seals a computed update to the aggregator and signs the envelope.
pub fn seal(
    keys: &WalletKeys,
    verified: &VerifiedTask,
    computed: Computed,
) -> Result<Handled, Denial> {
    let VerifiedTask {
        task,
        digest,
        manifest,
    } = verified;
    let sealed = match &computed.payload {
        None => String::new(),
        Some(payload) => {
            let recipient: age::x25519::Recipient =
                manifest.aggregator_recipient.parse().map_err(|e| {
                    Denial::Forged(format!(
                        "the manifest's aggregator recipient is invalid: {e}"
                    ))
                })?;
            payload
                .seal(&recipient)
                .map_err(|e| Denial::Policy(format!("sealing failed: {e}")))?
        }
    };
    let envelope = UpdateEnvelope {
        header: Header::new(
            Purpose::Update,
            &task.header.collective_id,
            ENVELOPE_VALIDITY_MS,
        ),
        job_id: task.job_id.clone(),
        round: task.round,
        wallet: Signer::public_key(keys),
        task_digest: digest.clone(),
        attestation: computed.attestation,
        sealed,
    };
    let envelope = Signed::sign(&envelope, keys)
        .map_err(|e| Denial::Policy(format!("signing failed: {e}")))?;
    Ok(Handled {
        envelope,
        record: computed.record,
    })
}

/// [`compute`] then [`seal`]: what an honest agent does with a verified task.
pub fn run_task(
    keys: &WalletKeys,
    records: &Records,
    verified: &VerifiedTask,
    algorithm: &[u8],
    sandbox: &Sandbox,
) -> Result<Handled, Denial> {
    let computed = compute(records, verified, algorithm, sandbox)?;
    seal(keys, verified, computed)
}

fn failure(e: &TaskError) -> String {
    format!("{} ({e})", e.kind())
}

fn hex_digest(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(bytes) = hex::decode(text)
        && bytes.len() == 32
    {
        out.copy_from_slice(&bytes);
    }
    out
}

/// A log entry for a task that was denied.
pub fn denied_record(collective_id: &str, signed: &Signed<Task>, denial: &Denial) -> AccessRecord {
    // The task did not verify, so only what it claims is shown.
    let claimed: Option<Task> = serde_json::from_str(&signed.payload).ok();
    AccessRecord {
        time_ms: now_ms(),
        collective_id: collective_id.to_string(),
        job_id: claimed
            .as_ref()
            .map(|t| t.job_id.clone())
            .unwrap_or_default(),
        round: claimed.as_ref().map(|t| t.round).unwrap_or(0),
        algorithm_sha256: claimed
            .as_ref()
            .map(|t| t.algorithm_sha256.clone())
            .unwrap_or_default(),
        algorithm: String::new(),
        outcome: format!("denied: {denial}"),
        fuel: 0,
        elapsed_ms: 0.0,
        delivered: None,
    }
}

/// The wallet's subscriptions.
pub fn subscriptions(wallet: &Wallet) -> Result<Subscriptions, WalletError> {
    wallet.read_document(SUBSCRIPTIONS_FILE)
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
        for (body, signed) in &checked {
            let known = doc.receipts.iter().any(|(c, r)| {
                c == collective_id
                    && r.open_any_time(None, Purpose::Receipt)
                        .is_ok_and(|k| k.entry_seq == body.entry_seq)
            });
            if !known {
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
