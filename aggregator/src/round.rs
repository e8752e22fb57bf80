//! The aggregator's rounds. It verifies each wallet's signed envelope, opens
//! the sealed update in memory only, refuses duplicates per (wallet, round)
//! and envelopes that applied other terms than the round's manifest, turns
//! each update into a [`Contribution`] (clipped again, metrics clamped), and
//! when the broker closes the round releases the batch under the manifest's
//! terms (never fewer than k updates) and forgets every individual update.
//! Nothing here is written to disk, and no method returns a single wallet's
//! update, metric or failure.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use c2ssi_protocol::{
    AccessReport, AggregationRule, BatchCounts, BatchResult, CloseOutcome, Header, Outcome,
    PrivacyTerms, PublicKey, Purpose, Refusal, Signed, Unused, UpdateEnvelope, UpdateOutcome,
    UpdatePayload, now_ms,
};

use crate::keys::AggregatorKeys;
use crate::mechanism::{Contribution, ReleaseError, release};
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
}

struct RoundBuffer {
    spec: RoundSpec,
    assigned: HashMap<PublicKey, String>,
    responded: HashSet<PublicKey>,
    contributions: Vec<Contribution>,
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

/// The aggregator.
pub struct Aggregator {
    keys: AggregatorKeys,
    rounds: Mutex<HashMap<RoundKey, RoundBuffer>>,
    noise: Mutex<NoiseSource>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Aggregator {
    /// An aggregator with these keys, drawing noise from `noise`.
    pub fn new(keys: AggregatorKeys, noise: NoiseSource) -> Aggregator {
        Aggregator {
            keys,
            rounds: Mutex::new(HashMap::new()),
            noise: Mutex::new(noise),
        }
    }

    /// Its keys.
    pub fn keys(&self) -> &AggregatorKeys {
        &self.keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoundKey, RoundBuffer>> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a round. A round that is already open stays as it is: a
    /// replayed open message cannot wipe the updates collected so far.
    pub fn open_round(&self, key: RoundKey, spec: RoundSpec) {
        self.lock().entry(key).or_insert_with(|| RoundBuffer {
            assigned: spec.assigned.iter().cloned().collect(),
            spec,
            responded: HashSet::new(),
            contributions: Vec::new(),
            counts: BatchCounts::default(),
        });
    }

    /// The key that signs `key`'s control messages, while it is open.
    pub fn broker_of(&self, key: &RoundKey) -> Option<PublicKey> {
        self.lock().get(key).map(|b| b.spec.broker_key)
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

    /// Drops a round and its updates without a release.
    pub fn abandon_round(&self, key: &RoundKey) {
        self.lock().remove(key);
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
        // Open the sealed update outside the lock: it is the expensive part.
        let payload = body
            .attestation
            .present
            .then(|| UpdatePayload::unseal(&body.sealed, &self.keys.identity, MAX_UPDATE_BYTES));
        let mut rounds = self.lock();
        let Some(buffer) = rounds.get_mut(&key) else {
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
        let outcome = match payload {
            None => UpdateOutcome::Unused(Unused::DataMissing),
            // The wallet attested its data and signed the envelope: the
            // access happened, but its update is unusable.
            Some(Err(_)) => UpdateOutcome::Unused(Unused::Undecryptable),
            Some(Ok(payload)) => {
                let terms = &buffer.spec.terms;
                if payload.outcome == Outcome::Failed && !terms.has_noise() {
                    UpdateOutcome::Unused(Unused::AlgorithmFailed)
                } else {
                    match Contribution::from_payload(&payload, terms, buffer.spec.model_len) {
                        Ok(c) => {
                            buffer.contributions.push(c);
                            UpdateOutcome::Taken
                        }
                        Err(problem) => {
                            tracing::debug!(wallet = %body.wallet.short(), %problem, "invalid update");
                            UpdateOutcome::Unused(Unused::Invalid)
                        }
                    }
                }
            }
        };
        buffer.count(outcome);
        Ok(Accepted {
            wallet: body.wallet,
            job_id: body.job_id,
            round: body.round,
            data_present: body.attestation.present,
            outcome,
        })
    }

    /// Closes a round: with at least k contributions, the signed release
    /// under the round's terms; otherwise nothing. The individual updates
    /// are forgotten either way.
    pub fn close_round(&self, key: &RoundKey, rule: &AggregationRule) -> CloseOutcome {
        let Some(buffer) = self.lock().remove(key) else {
            return CloseOutcome::NotOpen;
        };
        let RoundBuffer {
            spec,
            contributions,
            mut counts,
            ..
        } = buffer;
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
            release(
                &built,
                &rule.to_string(),
                &spec.terms,
                &contributions,
                spec.assigned.len(),
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
        }
    }

    fn envelope(
        aggregator: &Aggregator,
        wallet: &SigningKey,
        task: &str,
        manifest: &str,
        outcome: Outcome,
    ) -> Signed<UpdateEnvelope> {
        let recipient: age::x25519::Recipient = aggregator.keys().recipient().parse().unwrap();
        let payload = UpdatePayload {
            outcome,
            delta: vec![0.3, 0.4],
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
                    rows: 1,
                    present: true,
                    problems: Vec::new(),
                },
                sealed: payload.seal(&recipient).unwrap(),
            },
            wallet,
        )
        .unwrap()
    }

    #[test]
    fn opening_an_open_round_again_changes_nothing() {
        let aggregator = Aggregator::new(AggregatorKeys::generate().unwrap(), NoiseSource::os());
        let w: Vec<PublicKey> = (0..4)
            .map(|_| SigningKey::generate().unwrap().public_key())
            .collect();
        aggregator.open_round(key(), spec(&w[..3], 1.0));
        aggregator.open_round(key(), spec(&w[3..], 1.0));
        assert_eq!(aggregator.progress(&key()), Some((0, 3)));
        aggregator.abandon_round(&key());
        assert_eq!(aggregator.progress(&key()), None);
    }

    #[test]
    fn envelopes_are_refused_by_typed_reason_and_failures_hide_under_noise() {
        let aggregator = Aggregator::new(AggregatorKeys::generate().unwrap(), NoiseSource::os());
        let wallets: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate().unwrap()).collect();
        let keys: Vec<PublicKey> = wallets.iter().map(Signer::public_key).collect();
        aggregator.open_round(key(), spec(&keys[..3], 1.0));
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
        match aggregator.close_round(&key(), &AggregationRule::Mean) {
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
        aggregator.open_round(key(), spec(&keys, 0.0));
        let ok = envelope(&aggregator, &wallets[0], "task-0", "m", Outcome::Trained);
        aggregator.submit("c", &ok).unwrap();
        let failed = envelope(&aggregator, &wallets[1], "task-1", "m", Outcome::Failed);
        assert_eq!(
            aggregator.submit("c", &failed).unwrap().outcome,
            UpdateOutcome::Unused(Unused::AlgorithmFailed)
        );
        assert!(matches!(
            aggregator.close_round(&key(), &AggregationRule::Mean),
            CloseOutcome::TooFew { min_batch: 2 }
        ));
        assert!(matches!(
            aggregator.close_round(&key(), &AggregationRule::Mean),
            CloseOutcome::NotOpen
        ));
    }
}
