//! One task in the wallet: [`verify_task`] checks it and reserves its
//! privacy cost, [`compute`] runs it in the sandbox and applies the
//! manifest's terms to what would leave, [`seal`] encrypts that to the
//! aggregator and signs the envelope.
//!
//! What leaves the wallet is decided here, not by the algorithm: the update
//! clipped to the manifest's norm, only the metrics the manifest declares
//! (clamped to their ranges), never the example count, and for a failed run
//! nothing but the fact that it failed (the aggregator counts it as a zero
//! update, so a failure says nothing either).

use c2ssi_guest_sdk::Metric;
use c2ssi_protocol::{
    Attestation, Header, Manifest, Outcome, PublicKey, Purpose, Signed, Signer, Task,
    UpdateEnvelope, UpdatePayload, check_requirement, now_ms,
};
use c2ssi_sandbox::{HashedComponent, Sandbox, TaskError};

use super::budget::{Participation, Policy, over_budget};
use super::{AccessLog, AccessOutcome, AccessRecord, SubscriptionRecord};
use crate::store::{Records, WalletKeys};

/// How long an update envelope is valid.
const ENVELOPE_VALIDITY_MS: u64 = 10 * 60 * 1000;

/// Why a task was not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// No subscription: never subscribed, or revoked.
    #[error("not subscribed to collective '{0}' (or the subscription was revoked)")]
    NotSubscribed(String),
    /// A newer manifest waits for the owner's consent.
    #[error(
        "the collective changed its manifest; nothing of it runs until you consent \
         (`wallet consent {0}`)"
    )]
    ConsentPending(String),
    /// The task is issued under a manifest version the owner did not consent to.
    #[error("the task is issued under manifest {0}, not the version you consented to")]
    TermsNotConsented(String),
    /// The signature does not verify with the consented manifest's broker key.
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
    /// The owner's policy refuses the terms or the task.
    #[error("refused by your policy: {0}")]
    Policy(String),
    /// The owner's privacy budget (or the manifest's rounds per job) is spent.
    #[error("privacy budget: {0}")]
    Budget(String),
}

impl Denial {
    /// A short name for the log.
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::NotSubscribed(_) => "not-subscribed",
            Denial::ConsentPending(_) => "consent-pending",
            Denial::TermsNotConsented(_) => "terms-not-consented",
            Denial::Forged(_) => "forged",
            Denial::Expired(_) => "expired",
            Denial::Misdirected(_) => "misdirected",
            Denial::Replayed => "replayed",
            Denial::AlgorithmNotAllowed(_) => "algorithm-not-allowed",
            Denial::AlgorithmRefused(_) => "algorithm-refused",
            Denial::Policy(_) => "policy",
            Denial::Budget(_) => "budget",
        }
    }

    /// The log's outcome for this denial.
    pub fn outcome(&self) -> AccessOutcome {
        AccessOutcome::Denied {
            denial: self.kind().to_string(),
            detail: self.to_string(),
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
    /// The manifest the owner consented to, whose terms apply.
    pub manifest: Manifest,
    /// Its digest, hex.
    pub manifest_digest: String,
}

/// Checks a task against the wallet's subscription, the owner's policy and
/// privacy budget, records its nonce in `log` and reserves its privacy cost
/// there. Nothing is run.
pub fn verify_task(
    wallet: &PublicKey,
    subscription: Option<&SubscriptionRecord>,
    collective_id: &str,
    signed: &Signed<Task>,
    log: &mut AccessLog,
    policy: &Policy,
) -> Result<VerifiedTask, Denial> {
    let Some(subscription) = subscription else {
        return Err(Denial::NotSubscribed(collective_id.to_string()));
    };
    if subscription.pending.is_some() {
        return Err(Denial::ConsentPending(collective_id.to_string()));
    }
    let manifest = subscription
        .manifest()
        .map_err(|e| Denial::Forged(format!("the stored manifest does not verify: {e}")))?;
    let task = signed
        .open(Some(&manifest.broker_key), Purpose::Task, now_ms())
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
    let manifest_digest = subscription.digest();
    if task.manifest_digest != manifest_digest {
        return Err(Denial::TermsNotConsented(task.manifest_digest.clone()));
    }
    if !log.remember(&task.header.nonce, task.header.expires_at_ms) {
        return Err(Denial::Replayed);
    }
    if manifest.allows(&task.algorithm_sha256).is_none() {
        return Err(Denial::AlgorithmNotAllowed(task.algorithm_sha256.clone()));
    }
    if task.model.len() > policy.max_model_params {
        return Err(Denial::Policy(format!(
            "a model of {} parameters is more than the {} you allow",
            task.model.len(),
            policy.max_model_params
        )));
    }
    let refused = policy.refuses(&manifest);
    if !refused.is_empty() {
        return Err(Denial::Policy(refused.join("; ")));
    }
    let now = now_ms();
    if let Some(why) = over_budget(log, policy, &manifest, collective_id, &task.job_id, now) {
        return Err(Denial::Budget(why));
    }
    log.participations.push(Participation {
        time_ms: now,
        collective_id: collective_id.to_string(),
        job_id: task.job_id.clone(),
        round: task.round,
        rho: manifest
            .privacy
            .has_noise()
            .then(|| manifest.privacy.rho_per_round()),
    });
    Ok(VerifiedTask {
        digest: hex::encode(signed.digest()),
        task,
        manifest,
        manifest_digest,
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

/// A task's result before it is sealed: the attestation, what would leave
/// (none when the data was missing) and the log entry.
#[derive(Debug)]
pub struct Computed {
    /// The wallet's statement about its data.
    pub attestation: Attestation,
    /// What leaves, sealed, when the data was present.
    pub payload: Option<UpdatePayload>,
    /// The log entry.
    pub record: AccessRecord,
}

/// The declared metrics among `metrics`, each clamped to its range; every
/// other metric stays in the wallet.
fn declared_metrics(manifest: &Manifest, metrics: &[Metric]) -> Vec<Metric> {
    manifest
        .privacy
        .metrics
        .iter()
        .filter_map(|bound| {
            metrics
                .iter()
                .find(|m| m.name == bound.name)
                .map(|m| Metric::new(&bound.name, m.value.clamp(bound.min, bound.max)))
        })
        .collect()
}

/// Runs a verified task: checks the wallet's data against the requirement
/// (only an attestation that the data is missing, when it is), runs the
/// algorithm in the sandbox on the required columns only, and applies the
/// manifest's terms to the result. `algorithm` is the component's bytes.
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
        outcome: AccessOutcome::DataMissing {
            problems: Vec::new(),
        },
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
    let attestation = |present: bool| Attestation {
        requirements_digest: manifest.requirements.digest(),
        table: task.table.clone(),
        present,
    };
    let table = match check_requirement(requirement, own) {
        Err(problems) => {
            record.outcome = AccessOutcome::DataMissing { problems };
            return Ok(Computed {
                attestation: attestation(false),
                payload: None,
                record,
            });
        }
        Ok(table) => table,
    };
    let hashed = HashedComponent::new(algorithm);
    if hashed.digest() != hex_digest(&task.algorithm_sha256) {
        return Err(Denial::AlgorithmRefused(
            "its bytes do not match the SHA-256 in the task".into(),
        ));
    }
    let component = sandbox
        .load_hashed(&hashed)
        .map_err(|e| Denial::AlgorithmRefused(e.to_string()))?;
    // The wallet clips to the manifest's norm itself: never left to the
    // algorithm, never taken from the task.
    let report = sandbox.train(
        &component,
        &task.model,
        &task.params,
        &table,
        task.seed,
        Some(manifest.privacy.clip_norm),
    );
    record.fuel = report.stats.fuel_used;
    record.elapsed_ms = report.stats.elapsed.as_secs_f64() * 1e3;
    let payload = match report.result {
        Ok(checked) => {
            record.outcome = AccessOutcome::Trained {
                clipped: checked.clipped,
            };
            UpdatePayload {
                outcome: Outcome::Trained,
                delta: checked.update.delta,
                metrics: declared_metrics(manifest, &checked.update.metrics),
            }
        }
        Err(e) => {
            record.outcome = AccessOutcome::Failed {
                failure: failure(&e),
            };
            UpdatePayload {
                outcome: Outcome::Failed,
                delta: Vec::new(),
                metrics: Vec::new(),
            }
        }
    };
    Ok(Computed {
        attestation: attestation(true),
        payload: Some(payload),
        record,
    })
}

/// Seals a computed result to the aggregator and signs the envelope.
pub fn seal(
    keys: &WalletKeys,
    verified: &VerifiedTask,
    computed: Computed,
) -> Result<Handled, Denial> {
    let VerifiedTask {
        task,
        digest,
        manifest,
        manifest_digest,
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
        manifest_digest: manifest_digest.clone(),
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
        outcome: denial.outcome(),
        fuel: 0,
        elapsed_ms: 0.0,
        delivered: None,
    }
}

#[cfg(test)]
mod tests {
    use c2ssi_protocol::{
        Amount, DataRequirements, Manifest, PrivacyTerms, SigningKey, collective_id, privacy,
    };

    use super::*;
    use crate::agent::SubscriptionRecord;

    struct World {
        collective: SigningKey,
        broker: SigningKey,
        wallet: PublicKey,
        signed: Signed<Manifest>,
    }

    fn world(terms: PrivacyTerms) -> World {
        let collective = SigningKey::generate().unwrap();
        let broker = SigningKey::generate().unwrap();
        let wallet = SigningKey::generate().unwrap().public_key();
        let id = collective_id(&collective.public_key());
        let manifest = Manifest {
            header: Header::new(Purpose::Manifest, &id, 3_600_000),
            version: 1,
            name: "n".into(),
            description: "d".into(),
            requirements: DataRequirements { tables: Vec::new() },
            allowed_algorithms: vec![c2ssi_protocol::AllowedAlgorithm {
                sha256: "a".repeat(64),
                name: "algo".into(),
                version: "1".into(),
            }],
            rate: Amount(1),
            privacy: terms,
            collective_key: collective.public_key(),
            broker_key: broker.public_key(),
            aggregator_key: broker.public_key(),
            aggregator_recipient: age::x25519::Identity::generate().to_public().to_string(),
            credential: None,
        };
        let signed = Signed::sign(&manifest, &collective).unwrap();
        World {
            collective,
            broker,
            wallet,
            signed,
        }
    }

    fn record(w: &World) -> SubscriptionRecord {
        SubscriptionRecord {
            url: "http://127.0.0.1:9".into(),
            manifest: w.signed.clone(),
            subscribed_ms: 0,
            receipts_after: 0,
            pending: None,
        }
    }

    fn task(w: &World, job: &str, round: u32, signer: &SigningKey) -> Signed<Task> {
        let id = collective_id(&w.collective.public_key());
        Signed::sign(
            &Task {
                header: Header::new(Purpose::Task, &id, 60_000),
                job_id: job.into(),
                round,
                wallet: w.wallet,
                manifest_digest: hex::encode(w.signed.digest()),
                algorithm_sha256: "a".repeat(64),
                table: "t".into(),
                params: Vec::new(),
                model: vec![0.0; 3],
                seed: 1,
                update_url: "http://127.0.0.1:9".into(),
            },
            signer,
        )
        .unwrap()
    }

    fn verify(
        w: &World,
        r: &SubscriptionRecord,
        t: &Signed<Task>,
        log: &mut AccessLog,
    ) -> Result<VerifiedTask, Denial> {
        let id = collective_id(&w.collective.public_key());
        verify_task(&w.wallet, Some(r), &id, t, log, &Policy::default())
    }

    #[test]
    fn a_task_runs_only_under_the_consented_manifest_and_the_brokers_key() {
        let w = world(privacy::default_terms());
        let mut log = AccessLog::default();
        let r = record(&w);
        verify(&w, &r, &task(&w, "j", 1, &w.broker), &mut log).unwrap();
        assert_eq!(log.participations.len(), 1, "the round is reserved");

        let stranger = SigningKey::generate().unwrap();
        let forged = verify(&w, &r, &task(&w, "j", 2, &stranger), &mut log);
        assert_eq!(forged.unwrap_err().kind(), "forged");
        // Signed by the collective itself: not the broker the manifest names.
        let by_consumer = verify(&w, &r, &task(&w, "j", 2, &w.collective), &mut log);
        assert_eq!(by_consumer.unwrap_err().kind(), "forged");

        let mut pending = record(&w);
        pending.pending = Some(w.signed.clone());
        let waiting = verify(&w, &pending, &task(&w, "j", 2, &w.broker), &mut log);
        assert_eq!(waiting.unwrap_err().kind(), "consent-pending");

        let other = world(privacy::default_terms());
        let mut elsewhere = task(&w, "j", 3, &w.broker);
        let mut body: Task = serde_json::from_str(&elsewhere.payload).unwrap();
        body.manifest_digest = hex::encode(other.signed.digest());
        elsewhere = Signed::sign(&body, &w.broker).unwrap();
        let unconsented = verify(&w, &r, &elsewhere, &mut log);
        assert_eq!(unconsented.unwrap_err().kind(), "terms-not-consented");
    }

    #[test]
    fn rounds_per_job_and_the_owners_policy_decline_tasks() {
        let terms = PrivacyTerms::with_epsilon(10, 1.0, 1e-5, 2, 2.0, Vec::new()).unwrap();
        let w = world(terms);
        let r = record(&w);
        let mut log = AccessLog::default();
        verify(&w, &r, &task(&w, "j", 1, &w.broker), &mut log).unwrap();
        verify(&w, &r, &task(&w, "j", 2, &w.broker), &mut log).unwrap();
        let third = verify(&w, &r, &task(&w, "j", 3, &w.broker), &mut log);
        assert_eq!(third.unwrap_err().kind(), "budget");
        assert_eq!(
            log.participations.len(),
            2,
            "a declined task reserves nothing"
        );

        let loose = PrivacyTerms::with_epsilon(10, 1.0, 1e-5, 2, 8.0, Vec::new()).unwrap();
        let w = world(loose);
        let mut log = AccessLog::default();
        let refused = verify(&w, &record(&w), &task(&w, "j", 1, &w.broker), &mut log);
        assert_eq!(refused.unwrap_err().kind(), "policy");
    }
}
