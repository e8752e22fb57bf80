//! The aggregator's rounds. It verifies each wallet's signed envelope, opens
//! the sealed update in memory only, refuses duplicates per (wallet, round)
//! and envelopes that applied other terms than the round's manifest, turns
//! each update into a [`Contribution`] (clipped again, metrics clamped), and
//! when the broker closes the round releases the batch under the manifest's
//! terms (never fewer than k updates) and forgets every individual update.
//! A round releases once: closed rounds are remembered (in a journal when
//! the process has one, which holds round numbers only), never reopened,
//! and an envelope that comes for one is answered late without being
//! opened. No update is written to disk, and no method returns a single
//! wallet's update, metric or failure.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use c2ssi_protocol::{
    AccessReport, AggregationRule, BatchCounts, BatchResult, CloseOutcome, Header, Outcome,
    PrivacyTerms, PublicKey, Purpose, Refusal, Signed, Unused, UpdateEnvelope, UpdateOutcome,
    UpdatePayload, now_ms,
};

use crate::keys::AggregatorKeys;
use crate::mechanism::{Batch, Contribution, ReleaseError, release};
use crate::noise::NoiseSource;
use crate::rules::Rule;

/// How long a batch result's signature stays valid.
const BATCH_VALIDITY_MS: u64 = 24 * 3600 * 1000;
/// How long messages between the broker and the aggregator (round control,
/// access reports) stay valid.
pub const CONTROL_VALIDITY_MS: u64 = 5 * 60 * 1000;
/// The largest sealed update opened.
const MAX_UPDATE_BYTES: usize = 64 << 20;

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

/// What a round is opened with: who may answer, under which terms.
#[derive(Debug, Clone)]
pub struct RoundSpec {
    /// SHA-256 of the signed manifest the tasks were issued under, hex.
    pub manifest_digest: String,
    /// Its privacy terms: k, clipping, noise, metrics.
    pub terms: PrivacyTerms,
    /// The key that signs this round's control messages (the manifest's broker).
    pub broker_key: PublicKey,
    /// The model's length.
    pub model_len: usize,
    /// Each assigned wallet and the digest of its task.
    pub assigned: Vec<(PublicKey, String)>,
    /// When the broker signed the open message: a newer one replaces an
    /// open round's assignment while no wallet has answered it.
    pub issued_at_ms: u64,
}

struct RoundBuffer {
    spec: RoundSpec,
    assigned: HashMap<PublicKey, String>,
    responded: HashSet<PublicKey>,
    contributions: Vec<(PublicKey, Contribution)>,
    counts: BatchCounts,
}

impl RoundBuffer {
    fn count(&mut self, outcome: UpdateOutcome) {
        let name = match outcome {
            UpdateOutcome::Taken => return,
            UpdateOutcome::Unused(u) => u.name(),
            UpdateOutcome::Refused(r) => r.name(),
        };
        *self.counts.rejected.entry(name.to_string()).or_insert(0) += 1;
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
    /// Taken into the batch, or taken but unused.
    pub outcome: UpdateOutcome,
}

/// An envelope the aggregator refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("update refused ({}): {message}", refusal.name())]
pub struct Refused {
    /// Why, typed.
    pub refusal: Refusal,
    /// What was wrong, in words.
    pub message: String,
}

fn refused(refusal: Refusal, message: impl Into<String>) -> Refused {
    Refused {
        refusal,
        message: message.into(),
    }
}

/// The rounds, open and closed, behind one lock.
#[derive(Default)]
struct Rounds {
    open: HashMap<RoundKey, RoundBuffer>,
    /// Rounds closed or abandoned: never opened again, and an envelope
    /// that comes for one is late.
    closed: HashSet<RoundKey>,
}

/// Why a round cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The round was closed or abandoned before; a round releases once.
    #[error("round {round} of job {job_id} was closed already; a round is never opened twice")]
    Closed {
        /// The job.
        job_id: String,
        /// The round.
        round: u32,
    },
}

/// The aggregator.
pub struct Aggregator {
    keys: AggregatorKeys,
    rounds: Mutex<Rounds>,
    noise: Mutex<NoiseSource>,
    /// Where closed rounds are recorded (one JSON line each), so that a
    /// restart cannot reopen them.
    journal: Option<PathBuf>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("keys", &self.keys)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ClosedLine {
    collective: String,
    job: String,
    round: u32,
}

impl Aggregator {
    /// An aggregator with these keys, drawing noise from `noise`, that
    /// remembers closed rounds in memory only.
    pub fn new(keys: AggregatorKeys, noise: NoiseSource) -> Aggregator {
        Aggregator {
            keys,
            rounds: Mutex::new(Rounds::default()),
            noise: Mutex::new(noise),
            journal: None,
        }
    }

    /// How many rounds are open now.
    pub fn open_rounds(&self) -> usize {
        self.rounds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .open
            .len()
    }

    /// The same aggregator, recording closed rounds in the file at `path`
    /// (created if missing) and reading those recorded before.
    pub fn with_journal(mut self, path: &Path) -> std::io::Result<Aggregator> {
        let closed = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        // A line cut short by a crash can only be the last, unterminated
        // one: it is cut off, so that the next line starts clean. The
        // round it named released nothing (it is recorded before release).
        let whole = closed.rfind('\n').map_or(0, |i| i + 1);
        if whole < closed.len() {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(whole as u64)?;
        }
        let mut rounds = self.lock();
        for (n, line) in closed[..whole].lines().enumerate() {
            // Any bad whole line means the file is not ours.
            match serde_json::from_str::<ClosedLine>(line) {
                Ok(l) => {
                    rounds.closed.insert(RoundKey {
                        collective_id: l.collective,
                        job_id: l.job,
                        round: l.round,
                    });
                }
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} line {}: {e}", path.display(), n + 1),
                    ));
                }
            }
        }
        drop(rounds);
        self.journal = Some(path.to_path_buf());
        Ok(self)
    }

    /// Its keys.
    pub fn keys(&self) -> &AggregatorKeys {
        &self.keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `key` closed, in the journal first when there is one.
    fn mark_closed(&self, rounds: &mut Rounds, key: &RoundKey) -> std::io::Result<()> {
        if !rounds.closed.insert(key.clone()) {
            return Ok(());
        }
        let Some(path) = &self.journal else {
            return Ok(());
        };
        let mut line = serde_json::to_string(&ClosedLine {
            collective: key.collective_id.clone(),
            job: key.job_id.clone(),
            round: key.round,
        })
        .map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(line.as_bytes())?;
        file.sync_data()
    }

    /// Opens a round, idempotently. A round that is open stays as it is
    /// (a replayed open message cannot wipe the updates collected so far),
    /// except that a newer message replaces its assignment while no wallet
    /// has answered: the broker's retry after its first message's answer was
    /// lost, with a new sample that only the newer message names. A round
    /// that was closed is never opened again.
    pub fn open_round(&self, key: RoundKey, spec: RoundSpec) -> Result<(), OpenError> {
        let mut rounds = self.lock();
        if rounds.closed.contains(&key) {
            return Err(OpenError::Closed {
                job_id: key.job_id,
                round: key.round,
            });
        }
        let fresh = |spec: RoundSpec| RoundBuffer {
            assigned: spec.assigned.iter().cloned().collect(),
            spec,
            responded: HashSet::new(),
            contributions: Vec::new(),
            counts: BatchCounts::default(),
        };
        match rounds.open.entry(key) {
            Entry::Occupied(mut open) => {
                let buffer = open.get_mut();
                if buffer.responded.is_empty() && spec.issued_at_ms > buffer.spec.issued_at_ms {
                    *buffer = fresh(spec);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(fresh(spec));
            }
        }
        Ok(())
    }

    /// The key that signs `key`'s control messages, while it is open.
    pub fn broker_of(&self, key: &RoundKey) -> Option<PublicKey> {
        self.lock().open.get(key).map(|b| b.spec.broker_key)
    }

    /// Whether the round is open.
    pub fn is_open(&self, key: &RoundKey) -> bool {
        self.lock().open.contains_key(key)
    }

    /// Whether the round was closed or abandoned.
    pub fn is_closed(&self, key: &RoundKey) -> bool {
        self.lock().closed.contains(key)
    }

    /// How many assigned wallets have answered, and how many were assigned.
    pub fn progress(&self, key: &RoundKey) -> Option<(usize, usize)> {
        self.lock()
            .open
            .get(key)
            .map(|b| (b.responded.len(), b.assigned.len()))
    }

    /// Drops a round and its updates without a release; it is never opened
    /// again.
    pub fn abandon_round(&self, key: &RoundKey) -> std::io::Result<()> {
        let mut rounds = self.lock();
        rounds.open.remove(key);
        self.mark_closed(&mut rounds, key)
    }

    /// Signs a report of an envelope this aggregator took, for the broker's
    /// ledger to pay (the wallet's own signed envelope is the evidence).
    pub fn report_access(
        &self,
        collective_id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<Signed<AccessReport>, c2ssi_protocol::ProtocolError> {
        Signed::sign(
            &AccessReport {
                header: Header::new(Purpose::AccessReport, collective_id, CONTROL_VALIDITY_MS),
                envelope: envelope.clone(),
            },
            &self.keys.signing,
        )
    }

    /// Takes one wallet's envelope for `collective_id`.
    pub fn submit(
        &self,
        collective_id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<Accepted, Refused> {
        // The signature first: nothing unsigned is looked at further.
        let body = envelope
            .open(None, Purpose::Update, now_ms())
            .map_err(|e| refused(Refusal::BadSignature, e.to_string()))?;
        if body.wallet != envelope.signer {
            return Err(refused(
                Refusal::BadSignature,
                "the envelope is not signed by its wallet",
            ));
        }
        if body.header.collective_id != collective_id {
            return Err(refused(
                Refusal::WrongCollective,
                "the envelope is for another collective",
            ));
        }
        let key = RoundKey {
            collective_id: collective_id.to_string(),
            job_id: body.job_id.clone(),
            round: body.round,
        };
        let accepted = |outcome| Accepted {
            wallet: body.wallet,
            job_id: body.job_id.clone(),
            round: body.round,
            data_present: body.attestation.present,
            outcome,
        };
        // The cheap checks under the lock, and the wallet's place in the
        // round reserved, before anything is unsealed: a flood of envelopes
        // for a round that is not open, or copies of one envelope, cost a
        // signature check each and no decryption.
        let (terms, model_len) = {
            let mut rounds = self.lock();
            if rounds.closed.contains(&key) {
                // Too late for the batch, and never opened; the access
                // happened all the same, and the broker pays it once it
                // finds the task was assigned.
                return Ok(accepted(UpdateOutcome::Unused(Unused::Late)));
            }
            let Some(buffer) = rounds.open.get_mut(&key) else {
                return Err(refused(
                    Refusal::RoundNotOpen,
                    format!("round {} of job {} is not open", body.round, body.job_id),
                ));
            };
            buffer.counts.received += 1;
            let refusal = match buffer.assigned.get(&body.wallet) {
                None => Some(refused(
                    Refusal::NotAssigned,
                    "this wallet has no task in this round",
                )),
                Some(digest) if *digest != body.task_digest => Some(refused(
                    Refusal::WrongTask,
                    "the envelope answers another task",
                )),
                Some(_) if body.manifest_digest != buffer.spec.manifest_digest => Some(refused(
                    Refusal::WrongTerms,
                    "the wallet applied the terms of another manifest than the round's",
                )),
                Some(_) if !buffer.responded.insert(body.wallet) => Some(refused(
                    Refusal::Duplicate,
                    "this wallet already sent an update for this round",
                )),
                Some(_) => None,
            };
            if let Some(r) = refusal {
                buffer.count(UpdateOutcome::Refused(r.refusal));
                return Err(r);
            }
            (buffer.spec.terms.clone(), buffer.spec.model_len)
        };
        // Open the sealed update outside the lock: it is the expensive part.
        // An update that does not open or is malformed is refused and not
        // paid: an honest wallet checks what the algorithm returned and
        // sends a failure instead, so only a Byzantine wallet sends one, and
        // the algorithm cannot steer this. The wallet's place stays taken.
        let refuse = |refusal: Refusal, message: String| {
            let r = refused(refusal, message);
            if let Some(buffer) = self.lock().open.get_mut(&key) {
                buffer.count(UpdateOutcome::Refused(r.refusal));
            }
            Err(r)
        };
        let usable = if body.attestation.present {
            match UpdatePayload::unseal(&body.sealed, &self.keys.identity, MAX_UPDATE_BYTES) {
                Err(e) => {
                    return refuse(
                        Refusal::Undecryptable,
                        format!("the sealed update does not open: {e}"),
                    );
                }
                Ok(payload) if payload.outcome == Outcome::Failed && !terms.has_noise() => {
                    Err(Unused::AlgorithmFailed)
                }
                Ok(payload) => match Contribution::from_payload(&payload, &terms, model_len) {
                    Ok(c) => Ok(c),
                    Err(problem) => return refuse(Refusal::InvalidUpdate, problem.to_string()),
                },
            }
        } else {
            Err(Unused::DataMissing)
        };
        let (contribution, outcome) = match usable {
            Ok(c) => (Some(c), UpdateOutcome::Taken),
            // Under noise every answer the round takes is a contribution, a
            // failure or missing data as a zero update: then neither the
            // algorithm nor the wallet's data moves the count that k is
            // checked against, and the noised count says nothing of who
            // failed.
            Err(unused) if terms.has_noise() => (
                Some(Contribution::failed(&terms, model_len)),
                UpdateOutcome::Unused(unused),
            ),
            Err(unused) => (None, UpdateOutcome::Unused(unused)),
        };
        let mut rounds = self.lock();
        let Some(buffer) = rounds.open.get_mut(&key) else {
            // The round closed while the update was being opened.
            return Ok(accepted(UpdateOutcome::Unused(Unused::Late)));
        };
        buffer
            .contributions
            .extend(contribution.map(|c| (body.wallet, c)));
        buffer.count(outcome);
        Ok(accepted(outcome))
    }

    /// Closes a round: with at least k contributions, the signed release
    /// under the round's terms; otherwise nothing. The individual updates
    /// are forgotten either way. `center` is where a rule that keeps a
    /// momentum starts: the last aggregate it released for the job.
    pub fn close_round(
        &self,
        key: &RoundKey,
        rule: &AggregationRule,
        center: Option<&[f32]>,
    ) -> CloseOutcome {
        let buffer = {
            let mut rounds = self.lock();
            let Some(buffer) = rounds.open.remove(key) else {
                return CloseOutcome::NotOpen;
            };
            // Recorded before anything is released: a round releases once,
            // across restarts too.
            if let Err(e) = self.mark_closed(&mut rounds, key) {
                // The reason reaches the consumer: no file or system text.
                tracing::error!(error = %e, "recording a closed round");
                return CloseOutcome::Failed {
                    reason: "the aggregator could not record the round as closed; nothing \
                             was released"
                        .into(),
                };
            }
            buffer
        };
        let RoundBuffer {
            spec,
            contributions,
            assigned,
            mut counts,
            ..
        } = buffer;
        let assigned: Vec<PublicKey> = assigned.into_keys().collect();
        let built = match Rule::new(rule) {
            Ok(r) => r,
            Err(e) => {
                return CloseOutcome::Failed {
                    reason: format!("rule {rule}: {e}"),
                };
            }
        };
        let released = {
            let mut noise = self.noise.lock().unwrap_or_else(|e| e.into_inner());
            let shuffle_key = match noise.key() {
                Ok(key) => key,
                Err(e) => {
                    return CloseOutcome::Failed {
                        reason: format!("no shuffle key: {e}"),
                    };
                }
            };
            release(
                &built,
                &rule.to_string(),
                &spec.terms,
                Batch {
                    contributions: &contributions,
                    assigned: &assigned,
                    shuffle_key,
                },
                center,
                &mut noise,
            )
        };
        drop(contributions);
        let released = match released {
            Ok(r) => r,
            Err(ReleaseError::TooFew { min_batch }) => return CloseOutcome::TooFew { min_batch },
            Err(e) => {
                return CloseOutcome::Failed {
                    reason: e.to_string(),
                };
            }
        };
        counts.aggregated = released.updates as u32;
        let result = BatchResult {
            header: Header::new(Purpose::BatchResult, &key.collective_id, BATCH_VALIDITY_MS),
            job_id: key.job_id.clone(),
            round: key.round,
            manifest_digest: spec.manifest_digest,
            rule: rule.clone(),
            aggregate: released.aggregate,
            updates: released.updates,
            metrics: released.metrics,
            // Exact counts only without noise: with noise, how many updates
            // were refused or failed is itself something an algorithm could
            // steer.
            counts: (!spec.terms.has_noise()).then_some(counts),
            report: released.report,
            noise: released.noise,
        };
        match Signed::sign(&result, &self.keys.signing) {
            Ok(signed) => CloseOutcome::Released { result: signed },
            Err(e) => CloseOutcome::Failed {
                reason: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use c2ssi_protocol::{Attestation, Signer, SigningKey};

    use super::*;

    fn key() -> RoundKey {
        RoundKey {
            collective_id: "c".into(),
            job_id: "j".into(),
            round: 1,
        }
    }

    fn spec(wallets: &[PublicKey], noise: f64) -> RoundSpec {
        RoundSpec {
            manifest_digest: "m".into(),
            terms: PrivacyTerms::with_noise(2, 1.0, 1e-5, 1, noise, Vec::new()).unwrap(),
            broker_key: SigningKey::generate().unwrap().public_key(),
            model_len: 2,
            assigned: wallets
                .iter()
                .enumerate()
                .map(|(i, w)| (*w, format!("task-{i}")))
                .collect(),
            issued_at_ms: 1,
        }
    }

    fn envelope(
        aggregator: &Aggregator,
        wallet: &SigningKey,
        task: &str,
        manifest: &str,
        outcome: Outcome,
    ) -> Signed<UpdateEnvelope> {
        envelope_of(
            aggregator,
            wallet,
            task,
            manifest,
            outcome,
            vec![0.3, 0.4],
            true,
        )
    }

    fn envelope_of(
        aggregator: &Aggregator,
        wallet: &SigningKey,
        task: &str,
        manifest: &str,
        outcome: Outcome,
        delta: Vec<f32>,
        present: bool,
    ) -> Signed<UpdateEnvelope> {
        let recipient: age::x25519::Recipient = aggregator.keys().recipient().parse().unwrap();
        let payload = UpdatePayload {
            outcome,
            delta,
            metrics: Vec::new(),
        };
        Signed::sign(
            &UpdateEnvelope {
                header: Header::new(Purpose::Update, "c", 60_000),
                job_id: "j".into(),
                round: 1,
                wallet: wallet.public_key(),
                task_digest: task.into(),
                manifest_digest: manifest.into(),
                attestation: Attestation {
                    requirements_digest: String::new(),
                    table: "t".into(),
                    present,
                },
                sealed: payload.seal(&recipient).unwrap(),
            },
            wallet,
        )
        .unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "c2ssi-round-{name}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_closed_round_is_never_reopened_even_after_a_restart_and_late_envelopes_stay_sealed() {
        let dir = scratch("journal");
        let journal = dir.join("closed-rounds.log");
        let keys_dir = dir.join("keys");
        let start = || {
            Aggregator::new(
                AggregatorKeys::load_or_create(&keys_dir).unwrap(),
                NoiseSource::os(),
            )
            .with_journal(&journal)
            .unwrap()
        };
        let aggregator = start();
        let wallets: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
        let keys: Vec<PublicKey> = wallets.iter().map(Signer::public_key).collect();
        aggregator.open_round(key(), spec(&keys, 1.0)).unwrap();
        for (i, w) in wallets[..2].iter().enumerate() {
            let e = envelope(&aggregator, w, &format!("task-{i}"), "m", Outcome::Trained);
            assert_eq!(
                aggregator.submit("c", &e).unwrap().outcome,
                UpdateOutcome::Taken
            );
        }
        assert!(matches!(
            aggregator.close_round(&key(), &AggregationRule::Mean, None),
            CloseOutcome::Released { .. }
        ));
        // A replayed open message cannot give the round a second release.
        assert_eq!(
            aggregator.open_round(key(), spec(&keys, 1.0)),
            Err(OpenError::Closed {
                job_id: "j".into(),
                round: 1
            })
        );
        // The third wallet answers late: its envelope is not opened (an
        // undecryptable one is late all the same), and the access stands.
        let mut late = envelope(&aggregator, &wallets[2], "task-2", "m", Outcome::Trained);
        let mut body: UpdateEnvelope = serde_json::from_str(&late.payload).unwrap();
        body.sealed = "not age at all".into();
        late = Signed::sign(&body, &wallets[2]).unwrap();
        let accepted = aggregator.submit("c", &late).unwrap();
        assert_eq!(accepted.outcome, UpdateOutcome::Unused(Unused::Late));
        assert!(accepted.data_present);
        // After a restart, and with a line cut short by a crash at the end.
        drop(aggregator);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        file.write_all(b"{\"collective\":\"c\",\"jo").unwrap();
        drop(file);
        let restarted = start();
        assert!(restarted.is_closed(&key()));
        assert!(restarted.open_round(key(), spec(&keys, 1.0)).is_err());
        let other = RoundKey { round: 2, ..key() };
        restarted
            .open_round(other.clone(), spec(&keys, 1.0))
            .unwrap();
        restarted.abandon_round(&other).unwrap();
        assert!(start().is_closed(&other), "an abandoned round stays closed");
        // A journal that is not ours stops the start.
        std::fs::write(&journal, "garbage\n{}\n").unwrap();
        assert!(
            Aggregator::new(AggregatorKeys::generate().unwrap(), NoiseSource::os())
                .with_journal(&journal)
                .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn under_noise_every_answer_counts_toward_k_so_no_one_can_steer_the_release() {
        // k = 3 with three wallets: one trained, one whose algorithm failed
        // (the algorithm's choice), one without the data (the owner's).
        // Under noise all three count: the round releases.
        let run = |noise: f64| {
            let aggregator =
                Aggregator::new(AggregatorKeys::generate().unwrap(), NoiseSource::os());
            let wallets: Vec<SigningKey> =
                (0..3).map(|_| SigningKey::generate().unwrap()).collect();
            let keys: Vec<PublicKey> = wallets.iter().map(Signer::public_key).collect();
            let mut spec = spec(&keys, noise);
            spec.terms = PrivacyTerms::with_noise(3, 1.0, 1e-5, 1, noise, Vec::new()).unwrap();
            aggregator.open_round(key(), spec).unwrap();
            let trained = envelope(&aggregator, &wallets[0], "task-0", "m", Outcome::Trained);
            let failed = envelope(&aggregator, &wallets[1], "task-1", "m", Outcome::Failed);
            let missing = envelope_of(
                &aggregator,
                &wallets[2],
                "task-2",
                "m",
                Outcome::Trained,
                vec![0.0, 0.0],
                false,
            );
            let outcomes: Vec<UpdateOutcome> = [trained, failed, missing]
                .iter()
                .map(|e| aggregator.submit("c", e).unwrap().outcome)
                .collect();
            let failure = if noise > 0.0 {
                UpdateOutcome::Taken
            } else {
                UpdateOutcome::Unused(Unused::AlgorithmFailed)
            };
            assert_eq!(
                outcomes,
                vec![
                    UpdateOutcome::Taken,
                    failure,
                    UpdateOutcome::Unused(Unused::DataMissing)
                ]
            );
            aggregator.close_round(&key(), &AggregationRule::Mean, None)
        };
        assert!(matches!(run(1.0), CloseOutcome::Released { .. }));
        // Without noise only usable updates count, and the counts say why.
        assert!(matches!(run(0.0), CloseOutcome::TooFew { min_batch: 3 }));
    }

    #[test]
    fn a_malformed_or_undecryptable_update_is_refused_unpaid_and_keeps_its_place() {
        let aggregator = Aggregator::new(AggregatorKeys::generate().unwrap(), NoiseSource::os());
        let wallets: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate().unwrap()).collect();
        let keys: Vec<PublicKey> = wallets.iter().map(Signer::public_key).collect();
        aggregator.open_round(key(), spec(&keys, 1.0)).unwrap();
        let refusal = |e: &Signed<UpdateEnvelope>| aggregator.submit("c", e).unwrap_err().refusal;
        for (delta, why) in [(vec![1.0; 7], "wrong length"), (vec![f32::NAN, 0.0], "NaN")] {
            let w = SigningKey::generate().unwrap();
            aggregator
                .open_round(
                    RoundKey {
                        job_id: why.into(),
                        ..key()
                    },
                    spec(&[w.public_key()], 1.0),
                )
                .unwrap();
            let e = envelope_of(
                &aggregator,
                &w,
                "task-0",
                "m",
                Outcome::Trained,
                delta,
                true,
            );
            let mut body: UpdateEnvelope = serde_json::from_str(&e.payload).unwrap();
            body.job_id = why.into();
            let e = Signed::sign(&body, &w).unwrap();
            assert_eq!(refusal(&e), Refusal::InvalidUpdate, "{why}");
        }
        let e = envelope(&aggregator, &wallets[0], "task-0", "m", Outcome::Trained);
        let mut body: UpdateEnvelope = serde_json::from_str(&e.payload).unwrap();
        body.sealed = "bm90IGFnZQ==".into();
        let garbled = Signed::sign(&body, &wallets[0]).unwrap();
        assert_eq!(refusal(&garbled), Refusal::Undecryptable);
        assert_eq!(Refusal::Undecryptable.status(), 422);
        // The place is taken: a second try is a duplicate.
        let honest = envelope(&aggregator, &wallets[0], "task-0", "m", Outcome::Trained);
        assert_eq!(refusal(&honest), Refusal::Duplicate);
    }

    #[test]
    fn opening_an_open_round_again_changes_nothing_but_a_newer_unanswered_assignment() {
        let aggregator = Aggregator::new(AggregatorKeys::generate().unwrap(), NoiseSource::os());
        let wallets: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate().unwrap()).collect();
        let w: Vec<PublicKey> = wallets.iter().map(Signer::public_key).collect();
        let at = |wallets: &[PublicKey], issued_at_ms: u64| RoundSpec {
            issued_at_ms,
            ..spec(wallets, 1.0)
        };
        aggregator.open_round(key(), at(&w[..3], 1)).unwrap();
        // The same message again, or an older one: nothing changes.
        aggregator.open_round(key(), at(&w[3..], 1)).unwrap();
        aggregator.open_round(key(), at(&w[3..], 0)).unwrap();
        assert_eq!(aggregator.progress(&key()), Some((0, 3)));
        // The broker's retry with a new sample, before anyone answered.
        aggregator.open_round(key(), at(&w[1..], 2)).unwrap();
        assert_eq!(aggregator.progress(&key()), Some((0, 3)));
        let e = envelope(&aggregator, &wallets[3], "task-2", "m", Outcome::Trained);
        assert_eq!(
            aggregator.submit("c", &e).unwrap().outcome,
            UpdateOutcome::Taken
        );
        // Once a wallet answered, even a newer message changes nothing.
        aggregator.open_round(key(), at(&w[..1], 3)).unwrap();
        assert_eq!(aggregator.progress(&key()), Some((1, 3)));
        aggregator.abandon_round(&key()).unwrap();
        assert_eq!(aggregator.progress(&key()), None);
    }

    #[test]
    fn envelopes_are_refused_by_typed_reason_and_failures_hide_under_noise() {
        let aggregator = Aggregator::new(AggregatorKeys::generate().unwrap(), NoiseSource::os());
        let wallets: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate().unwrap()).collect();
        let keys: Vec<PublicKey> = wallets.iter().map(Signer::public_key).collect();
        aggregator.open_round(key(), spec(&keys[..3], 1.0)).unwrap();
        let refusal = |e: Result<Accepted, Refused>| e.unwrap_err().refusal;

        let first = envelope(&aggregator, &wallets[0], "task-0", "m", Outcome::Trained);
        assert_eq!(
            aggregator.submit("c", &first).unwrap().outcome,
            UpdateOutcome::Taken
        );
        assert_eq!(refusal(aggregator.submit("c", &first)), Refusal::Duplicate);
        assert_eq!(
            refusal(aggregator.submit("d", &first)),
            Refusal::WrongCollective
        );
        let stranger = envelope(&aggregator, &wallets[3], "task-3", "m", Outcome::Trained);
        assert_eq!(
            refusal(aggregator.submit("c", &stranger)),
            Refusal::NotAssigned
        );
        let wrong_task = envelope(&aggregator, &wallets[1], "task-0", "m", Outcome::Trained);
        assert_eq!(
            refusal(aggregator.submit("c", &wrong_task)),
            Refusal::WrongTask
        );
        let wrong_terms = envelope(
            &aggregator,
            &wallets[1],
            "task-1",
            "other",
            Outcome::Trained,
        );
        assert_eq!(
            refusal(aggregator.submit("c", &wrong_terms)),
            Refusal::WrongTerms
        );
        // Under noise a failure is a zero update like any other: taken.
        let failed = envelope(&aggregator, &wallets[2], "task-2", "m", Outcome::Failed);
        assert_eq!(
            aggregator.submit("c", &failed).unwrap().outcome,
            UpdateOutcome::Taken
        );
        match aggregator.close_round(&key(), &AggregationRule::Mean, None) {
            CloseOutcome::Released { result } => {
                let body = result
                    .open(
                        Some(&aggregator.keys().public_key()),
                        Purpose::BatchResult,
                        now_ms(),
                    )
                    .unwrap();
                assert!(body.counts.is_none(), "no exact counts under noise");
                assert!(body.noise.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert!(!aggregator.is_open(&key()));
    }

    #[test]
    fn without_noise_failures_are_counted_and_too_few_releases_nothing() {
        let aggregator = Aggregator::new(AggregatorKeys::generate().unwrap(), NoiseSource::os());
        let wallets: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate().unwrap()).collect();
        let keys: Vec<PublicKey> = wallets.iter().map(Signer::public_key).collect();
        aggregator.open_round(key(), spec(&keys, 0.0)).unwrap();
        let ok = envelope(&aggregator, &wallets[0], "task-0", "m", Outcome::Trained);
        aggregator.submit("c", &ok).unwrap();
        let failed = envelope(&aggregator, &wallets[1], "task-1", "m", Outcome::Failed);
        assert_eq!(
            aggregator.submit("c", &failed).unwrap().outcome,
            UpdateOutcome::Unused(Unused::AlgorithmFailed)
        );
        assert!(matches!(
            aggregator.close_round(&key(), &AggregationRule::Mean, None),
            CloseOutcome::TooFew { min_batch: 2 }
        ));
        assert!(matches!(
            aggregator.close_round(&key(), &AggregationRule::Mean, None),
            CloseOutcome::NotOpen
        ));
    }
}
