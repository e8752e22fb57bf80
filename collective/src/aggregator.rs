//! The aggregator: a role of its own, with its own keys, that the collective
//! cannot look into. It verifies each wallet's signed envelope, opens the
//! sealed update in memory only, drops duplicates per (wallet, round),
//! validates, and once a round closes with at least k valid updates applies
//! the job's rule (and differential privacy), signs the batch result and
//! discards the individual updates. Nothing here is ever written to disk, and
//! no method returns a single wallet's update.
//!
//! It runs inside the collective's service or as its own process (see
//! `aggregator_process`); the collective drives it through
//! [`Aggregator::open_round`] and [`Aggregator::close_round`] either way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use age::secrecy::ExposeSecret;
use c2ssi_guest_sdk::Metric;
use c2ssi_protocol::{
    AccessReport, AggregationRule, BatchCounts, BatchResult, DpReport, DpSpec, Header, Outcome,
    PublicKey, Purpose, Signed, Signer, SigningKey, UpdateEnvelope, UpdatePayload, now_ms,
};

use crate::aggregation::{self, privacy};
use crate::error::{CollectiveError, Result};

/// How long a batch result's signature stays valid.
const BATCH_VALIDITY_MS: u64 = 24 * 3600 * 1000;
/// How long messages between the service and an aggregator in another
/// process (round control, access reports) stay valid.
pub const CONTROL_VALIDITY_MS: u64 = 5 * 60 * 1000;
/// Most metrics an update may carry, and the longest name.
const MAX_METRICS: usize = 32;
const MAX_METRIC_NAME: usize = 64;

/// The aggregator's keys: Ed25519 to sign batch results, age X25519 to open
/// updates.
pub struct AggregatorKeys {
    signing: SigningKey,
    identity: age::x25519::Identity,
}

impl std::fmt::Debug for AggregatorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorKeys")
            .field("signing", &self.signing.public_key())
            .finish_non_exhaustive()
    }
}

impl AggregatorKeys {
    /// New keys.
    pub fn generate() -> Result<AggregatorKeys> {
        Ok(AggregatorKeys {
            signing: SigningKey::generate()?,
            identity: age::x25519::Identity::generate(),
        })
    }

    /// The keys in `dir` (`signing.pkcs8`, `identity.txt`), created on first use
    /// with owner-only permissions.
    pub fn load_or_create(dir: &Path) -> Result<AggregatorKeys> {
        let io = |e: std::io::Error| CollectiveError::Internal(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let signing_path = dir.join("signing.pkcs8");
        let identity_path = dir.join("identity.txt");
        if signing_path.exists() && identity_path.exists() {
            let pkcs8 = std::fs::read(&signing_path).map_err(io)?;
            let text = std::fs::read_to_string(&identity_path).map_err(io)?;
            let identity = text.trim().parse().map_err(|e| {
                CollectiveError::Internal(format!(
                    "{}: not an age identity: {e}",
                    identity_path.display()
                ))
            })?;
            return Ok(AggregatorKeys {
                signing: SigningKey::from_pkcs8(&pkcs8)?,
                identity,
            });
        }
        let keys = AggregatorKeys::generate()?;
        write_private(&signing_path, keys.signing.pkcs8()).map_err(io)?;
        write_private(
            &identity_path,
            keys.identity.to_string().expose_secret().as_bytes(),
        )
        .map_err(io)?;
        Ok(keys)
    }

    /// The key batch results are signed with.
    pub fn public_key(&self) -> PublicKey {
        self.signing.public_key()
    }

    /// The recipient updates are sealed to.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }
}

/// Writes a secret file readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Identifies a round across collectives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoundKey {
    /// The collective.
    pub collective_id: String,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
}

struct ValidUpdate {
    delta: Vec<f32>,
    examples: u32,
    metrics: Vec<Metric>,
}

struct RoundBuffer {
    assigned: HashMap<PublicKey, String>,
    model_len: usize,
    responded: HashSet<PublicKey>,
    updates: Vec<ValidUpdate>,
    counts: BatchCounts,
}

impl RoundBuffer {
    fn reject(&mut self, reason: &str) {
        *self.counts.rejected.entry(reason.to_string()).or_insert(0) += 1;
    }
}

/// An envelope the aggregator took, and what the ledger should know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The wallet.
    pub wallet: PublicKey,
    /// The job.
    pub job_id: String,
    /// The round.
    pub round: u32,
    /// Whether the wallet attested that the required data was present (the
    /// access is paid then, even if the algorithm failed).
    pub data_present: bool,
}

/// Why an envelope was refused; `reason` is the short name counted in the
/// batch result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("update refused ({reason}): {message}")]
pub struct Rejection {
    /// Short, stable reason.
    pub reason: &'static str,
    /// What was wrong.
    pub message: String,
}

fn rejection(reason: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        message: message.into(),
    }
}

/// Why a round closed without a batch result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// Fewer than k valid updates: the batch is not released.
    #[error("only {valid} valid updates, fewer than k = {min_batch}; nothing is released")]
    TooFew {
        /// Valid updates.
        valid: u32,
        /// k.
        min_batch: u32,
        /// The counts.
        counts: BatchCounts,
    },
    /// The round was not open.
    #[error("round {0} is not open")]
    NotOpen(u32),
    /// The rule could not be applied.
    #[error("aggregation failed: {0}")]
    Failed(String),
}

/// What closing a round needs to know.
#[derive(Debug, Clone)]
pub struct CloseSpec {
    /// The rule.
    pub rule: AggregationRule,
    /// k.
    pub min_batch: u32,
    /// The last round's aggregate (centered clipping's center).
    pub previous: Option<Vec<f32>>,
    /// Differential privacy.
    pub dp: Option<DpSpec>,
    /// Wallets sampled over wallets subscribed (the accountant's q).
    pub sampling_rate: f64,
    /// DP rounds released before this one.
    pub rounds_before: u32,
}

/// The aggregator.
pub struct Aggregator {
    keys: AggregatorKeys,
    rounds: Mutex<HashMap<RoundKey, RoundBuffer>>,
    max_update_bytes: usize,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Aggregator {
    /// An aggregator with these keys.
    pub fn new(keys: AggregatorKeys) -> Aggregator {
        Aggregator {
            keys,
            rounds: Mutex::new(HashMap::new()),
            max_update_bytes: 64 << 20,
        }
    }

    /// Its keys' public halves.
    pub fn keys(&self) -> &AggregatorKeys {
        &self.keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoundKey, RoundBuffer>> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a round for the wallets assigned to it (each with the digest of
    /// its task) and a model of `model_len` parameters. A round that is
    /// already open stays as it is: a replayed open message (the aggregator
    /// in its own process takes them over HTTP) cannot wipe the updates
    /// collected so far. Round numbers are never reused, even after a restart.
    pub fn open_round(&self, key: RoundKey, assigned: Vec<(PublicKey, String)>, model_len: usize) {
        self.lock().entry(key).or_insert_with(|| RoundBuffer {
            assigned: assigned.into_iter().collect(),
            model_len,
            responded: HashSet::new(),
            updates: Vec::new(),
            counts: BatchCounts::default(),
        });
    }

    /// Signs a report of an envelope this aggregator took, for the ledger
    /// of a service in another process to pay (the wallet's own signed
    /// envelope is the evidence).
    pub fn report_access(
        &self,
        collective_id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<Signed<AccessReport>> {
        Ok(Signed::sign(
            &AccessReport {
                header: Header::new(Purpose::AccessReport, collective_id, CONTROL_VALIDITY_MS),
                envelope: envelope.clone(),
            },
            &self.keys.signing,
        )?)
    }

    /// Whether the round is open.
    pub fn is_open(&self, key: &RoundKey) -> bool {
        self.lock().contains_key(key)
    }

    /// How many assigned wallets have answered, and how many were assigned.
    pub fn progress(&self, key: &RoundKey) -> Option<(usize, usize)> {
        self.lock()
            .get(key)
            .map(|b| (b.responded.len(), b.assigned.len()))
    }

    /// Drops a round and its updates without a result.
    pub fn abandon_round(&self, key: &RoundKey) {
        self.lock().remove(key);
    }

    /// Takes one wallet's envelope for `collective_id`.
    pub fn submit(
        &self,
        collective_id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<Accepted, Rejection> {
        // The signature first: nothing unsigned is looked at further.
        let body = envelope
            .open(None, Purpose::Update, now_ms())
            .map_err(|e| rejection("bad-signature", e.to_string()))?;
        if body.wallet != envelope.signer {
            return Err(rejection(
                "bad-signature",
                "the envelope is not signed by its wallet",
            ));
        }
        if body.header.collective_id != collective_id {
            return Err(rejection(
                "wrong-collective",
                "the envelope is for another collective",
            ));
        }
        let key = RoundKey {
            collective_id: collective_id.to_string(),
            job_id: body.job_id.clone(),
            round: body.round,
        };
        // Open the sealed update outside the lock: it is the expensive part.
        let payload = if body.attestation.present {
            Some(UpdatePayload::unseal(
                &body.sealed,
                &self.keys.identity,
                self.max_update_bytes,
            ))
        } else {
            None
        };
        let mut rounds = self.lock();
        let Some(buffer) = rounds.get_mut(&key) else {
            return Err(rejection(
                "round-not-open",
                format!("round {} of job {} is not open", body.round, body.job_id),
            ));
        };
        buffer.counts.received += 1;
        match buffer.assigned.get(&body.wallet) {
            None => {
                buffer.reject("not-assigned");
                return Err(rejection(
                    "not-assigned",
                    "this wallet has no task in this round",
                ));
            }
            Some(digest) if *digest != body.task_digest => {
                buffer.reject("wrong-task");
                return Err(rejection("wrong-task", "the envelope answers another task"));
            }
            Some(_) => {}
        }
        if !buffer.responded.insert(body.wallet) {
            buffer.reject("duplicate");
            return Err(rejection(
                "duplicate",
                "this wallet already sent an update for this round",
            ));
        }
        let accepted = Accepted {
            wallet: body.wallet,
            job_id: body.job_id.clone(),
            round: body.round,
            data_present: body.attestation.present,
        };
        let Some(payload) = payload else {
            buffer.reject("data-missing");
            return Ok(accepted);
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                buffer.reject("undecryptable");
                // The wallet attested its data and signed the envelope: the
                // access happened, but its update is unusable.
                let _ = e;
                return Ok(accepted);
            }
        };
        match &payload.outcome {
            Outcome::Failed { .. } => {
                buffer.reject("algorithm-failed");
                return Ok(accepted);
            }
            Outcome::Trained => {}
        }
        if let Err(problem) = validate(&payload, buffer.model_len) {
            buffer.reject("invalid");
            drop(rounds);
            tracing::debug!(wallet = %body.wallet.short(), %problem, "invalid update");
            return Ok(accepted);
        }
        buffer.updates.push(ValidUpdate {
            delta: payload.delta,
            examples: payload.examples,
            metrics: payload.metrics,
        });
        Ok(accepted)
    }

    /// Closes a round: with at least k valid updates, the signed batch
    /// result; otherwise nothing. The individual updates are discarded either way.
    pub fn close_round(
        &self,
        key: &RoundKey,
        spec: &CloseSpec,
    ) -> Result<Signed<BatchResult>, CloseError> {
        let Some(buffer) = self.lock().remove(key) else {
            return Err(CloseError::NotOpen(key.round));
        };
        let mut counts = buffer.counts;
        let valid = buffer.updates.len() as u32;
        if valid < spec.min_batch {
            return Err(CloseError::TooFew {
                valid,
                min_batch: spec.min_batch,
                counts,
            });
        }
        let deltas: Vec<Vec<f32>> = buffer.updates.iter().map(|u| u.delta.clone()).collect();
        let weights: Vec<f64> = buffer
            .updates
            .iter()
            .map(|u| f64::from(u.examples))
            .collect();
        let examples: u64 = buffer.updates.iter().map(|u| u64::from(u.examples)).sum();
        let metrics = mean_metrics(&buffer.updates);
        drop(buffer.updates);
        let dp = spec.dp.as_ref().map(|d| (d, privacy::noise_seed()));
        let (aggregate, sigma) =
            aggregation::combine(&spec.rule, &deltas, &weights, spec.previous.as_deref(), dp)
                .map_err(|e| CloseError::Failed(e.to_string()))?;
        drop(deltas);
        counts.aggregated = aggregate.contributors as u32;
        let dp_report = match (&spec.dp, sigma) {
            (Some(d), Some(sigma)) => Some(DpReport {
                sigma,
                epsilon: privacy::epsilon(
                    spec.sampling_rate,
                    d.noise_multiplier,
                    spec.rounds_before + 1,
                    d.delta,
                ),
                delta: d.delta,
            }),
            _ => None,
        };
        let result = BatchResult {
            header: Header::new(Purpose::BatchResult, &key.collective_id, BATCH_VALIDITY_MS),
            job_id: key.job_id.clone(),
            round: key.round,
            rule: spec.rule.clone(),
            aggregate: aggregate.update,
            examples,
            counts,
            metrics,
            filter_report: aggregate.report,
            dp: dp_report,
        };
        Signed::sign(&result, &self.keys.signing).map_err(|e| CloseError::Failed(e.to_string()))
    }
}

/// Checks an opened update against the round.
fn validate(payload: &UpdatePayload, model_len: usize) -> std::result::Result<(), String> {
    if payload.delta.len() != model_len {
        return Err(format!(
            "{} values for a model of {model_len}",
            payload.delta.len()
        ));
    }
    if let Some(i) = payload.delta.iter().position(|v| !v.is_finite()) {
        return Err(format!("value {i} is not finite"));
    }
    if payload.examples == 0 {
        return Err("zero examples".into());
    }
    if payload.metrics.len() > MAX_METRICS
        || payload
            .metrics
            .iter()
            .any(|m| m.name.is_empty() || m.name.len() > MAX_METRIC_NAME || !m.value.is_finite())
    {
        return Err("metrics out of bounds".into());
    }
    Ok(())
}

/// The mean of each metric that every update reports.
fn mean_metrics(updates: &[ValidUpdate]) -> Vec<Metric> {
    let mut sums: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for u in updates {
        for m in &u.metrics {
            let e = sums.entry(m.name.as_str()).or_insert((0.0, 0));
            e.0 += m.value;
            e.1 += 1;
        }
    }
    sums.into_iter()
        .filter(|(_, (_, n))| *n == updates.len())
        .map(|(name, (sum, n))| Metric::new(name, sum / n as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_an_open_round_again_changes_nothing() {
        let aggregator = Aggregator::new(AggregatorKeys::generate().unwrap());
        let key = RoundKey {
            collective_id: "c".into(),
            job_id: "j".into(),
            round: 1,
        };
        let wallet = |i: u8| {
            let k = SigningKey::generate().unwrap();
            (k.public_key(), format!("digest-{i}"))
        };
        aggregator.open_round(key.clone(), vec![wallet(1), wallet(2), wallet(3)], 4);
        aggregator.open_round(key.clone(), vec![wallet(4)], 4);
        assert_eq!(aggregator.progress(&key), Some((0, 3)));
        aggregator.abandon_round(&key);
        assert_eq!(aggregator.progress(&key), None);
        aggregator.open_round(key.clone(), vec![wallet(5)], 4);
        assert_eq!(aggregator.progress(&key), Some((0, 1)));
    }
}
