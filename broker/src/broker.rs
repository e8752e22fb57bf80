//! The broker: one service's operations over the registry, the components,
//! the subscriptions, the distributor, the jobs and rounds, the ledger and
//! the model store, with the aggregator it drives. The HTTP API calls these,
//! and so does the simulation, so both run the same code.
//!
//! A training round: [`Broker::open_round`] samples wallets that consented
//! to the current manifest, signs a task for each (with a seed from the OS
//! generator) and opens the round at the aggregator; wallets pick their task
//! up at check-in and send their envelope to the aggregator, which reports
//! each access here for payment ([`Broker::record_access`]);
//! [`Broker::close_round`] gets the aggregator's signed release and applies
//! it with the server optimizer, storing the new model version, its ledger
//! entry and the job's progress in one transaction.

use std::sync::Arc;

use base64::Engine as _;
use c2ssi_audit::AuditOptions;
use c2ssi_protocol::{
    AccessReport, Amount, Assignment, AuditSummary, Balance, BatchResult, BrokerKeys, CheckIn,
    CheckInResponse, CloseOutcome, CloseRound, CollectiveSummary, Command, CommandOutcome,
    EntryKind, Header, JobSpec, JobState, JobStatus, LedgerEntry, LedgerSummary, Manifest,
    ManifestSubmission, ModelSummary, ModelVersion, OpenRound, OperatorCommand, ProgressQuery,
    Provenance, PublicKey, Purpose, Receipt, RoundStatus, RoundSummary, Signed, Signer, SigningKey,
    SubmissionOutcome, Subscription, Task, Unsubscription, now_ms, privacy,
};
use c2ssi_sandbox::Sandbox;

use crate::aggregator_link::AggregatorLink;
use crate::algorithms::Algorithms;
use crate::database::Database;
use crate::distributor::{self, NewAssignment, Randomness};
use crate::error::{BrokerError, Result};
use crate::job_spec;
use crate::jobs::{self, JobRow};
use crate::ledger::Ledger;
use crate::models::{Models, server_step};
use crate::nonces;
use crate::payments::{Payment, Payments};
use crate::registry::{Registry, Stored};
use crate::rounds;
use crate::status_lists;
use crate::subscriptions::Subscriptions;

/// How long round control messages stay valid.
const CONTROL_VALIDITY_MS: u64 = 5 * 60 * 1000;
/// How long past the round's deadline a task stays valid.
const TASK_SLACK_MS: u64 = 2_000;
/// The most components one submission may carry.
const MAX_COMPONENTS: usize = 8;

/// Settings of a broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// A wallet counts as live this long after its last check-in.
    pub liveness_ms: u64,
    /// How long a wallet agent waits between check-ins.
    pub checkin_retry_ms: u64,
    /// Whether manifests without noise are taken (UNSAFE: their releases
    /// carry no privacy guarantee). Off unless asked for.
    pub allow_without_noise: bool,
    /// How thorough the privacy audit of each component is.
    pub audit: AuditOptions,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            liveness_ms: 30_000,
            checkin_retry_ms: 500,
            allow_without_noise: false,
            audit: AuditOptions::default(),
        }
    }
}

/// What opening a round did.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundStart {
    /// The round is open.
    Opened {
        /// The round.
        round: u32,
        /// How many wallets got a task.
        sampled: usize,
        /// When it closes at the latest.
        deadline_ms: u64,
    },
    /// Not enough live wallets yet.
    Waiting(String),
    /// The job has ended.
    Finished(JobState),
}

/// What closing a round did.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundEnd {
    /// A batch was released and applied.
    Released(RoundSummary),
    /// Nothing was released.
    NothingReleased(RoundSummary),
}

/// The broker.
pub struct Broker {
    db: Database,
    key: Arc<SigningKey>,
    registry: Registry,
    algorithms: Algorithms,
    subscriptions: Subscriptions,
    ledger: Ledger,
    payments: Payments,
    models: Models,
    sandbox: Arc<Sandbox>,
    aggregator: Arc<dyn AggregatorLink>,
    randomness: Randomness,
    config: BrokerConfig,
    driver: String,
}

/// How long a broker's lease on driving a job lasts unless renewed; a job
/// whose broker died is taken over by another after this.
pub const JOB_LEASE_MS: u64 = 15_000;

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("key", &self.key.public_key())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", &c2ssi_protocol::new_nonce()[..16])
}

fn internal(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Internal(e.to_string())
}

impl Broker {
    /// A broker over `db` that signs with `key`, checks components in
    /// `sandbox`, drives `aggregator` and draws samples and seeds from
    /// `randomness`.
    pub fn new(
        db: Database,
        key: Arc<SigningKey>,
        sandbox: Arc<Sandbox>,
        aggregator: Arc<dyn AggregatorLink>,
        randomness: Randomness,
        config: BrokerConfig,
    ) -> Broker {
        let ledger = Ledger::new(db.clone(), key.clone());
        // One SQLite file has one broker, which takes its jobs back at once
        // after a restart; brokers sharing PostgreSQL are told apart.
        let driver = match db.dialect() {
            crate::database::Dialect::Sqlite => "sqlite".to_string(),
            crate::database::Dialect::Postgres => new_id("broker"),
        };
        Broker {
            driver,
            registry: Registry::new(db.clone()),
            algorithms: Algorithms::new(db.clone()),
            subscriptions: Subscriptions::new(db.clone(), config.liveness_ms),
            payments: Payments::new(db.clone(), ledger.clone()),
            models: Models::new(db.clone()),
            ledger,
            db,
            key,
            sandbox,
            aggregator,
            randomness,
            config,
        }
    }

    /// Takes or renews this broker's lease on driving `job_id`; false when
    /// the job has ended or another broker drives it.
    pub fn lease_job(&self, job_id: &str) -> Result<bool> {
        let now = now_ms();
        self.db
            .write(|tx| jobs::lease_in(tx, job_id, &self.driver, now, now + JOB_LEASE_MS))
    }

    /// A job's state.
    pub fn job_state(&self, job_id: &str) -> Result<JobState> {
        Ok(self.db.read(|c| jobs::load(c, job_id))?.state)
    }

    /// Running jobs no other broker drives now.
    pub fn jobs_to_drive(&self) -> Result<Vec<String>> {
        self.db.read(|c| jobs::to_drive(c, &self.driver, now_ms()))
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The subscriptions.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// The settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The keys a consumer names in its manifest.
    pub fn keys(&self) -> BrokerKeys {
        BrokerKeys {
            broker_key: self.key.public_key(),
            aggregator: self.aggregator.identity().clone(),
        }
    }

    // Collectives and their manifests.

    /// Takes a new collective, or a new version of one: the manifest signed
    /// by the collective's key, naming this broker and its aggregator, one
    /// version past the current one; every newly allowed component checked
    /// in the sandbox and audited for privacy.
    pub fn submit_manifest(
        &self,
        id: &str,
        submission: &ManifestSubmission,
    ) -> Result<SubmissionOutcome> {
        let stored = Stored::open(submission.manifest.clone(), id)?;
        let manifest = &stored.manifest;
        if manifest.broker_key != self.key.public_key() {
            return Err(BrokerError::Forbidden(
                "the manifest names another broker (GET /keys gives this one's)".into(),
            ));
        }
        let identity = self.aggregator.identity();
        if manifest.aggregator_key != identity.public_key
            || manifest.aggregator_recipient != identity.recipient
        {
            return Err(BrokerError::Forbidden(
                "the manifest names another aggregator than this broker's (GET /keys gives it)"
                    .into(),
            ));
        }
        if !manifest.privacy.has_noise() && !self.config.allow_without_noise {
            return Err(BrokerError::Forbidden(
                "terms without noise carry no privacy guarantee; this broker refuses them \
                 (a broker started with --allow-without-noise takes them, for research)"
                    .into(),
            ));
        }
        let previous = self.registry.current(id).ok();
        match &previous {
            None if manifest.version != 1 => {
                return Err(BrokerError::NotFound(format!(
                    "no collective '{id}': a new collective starts at version 1"
                )));
            }
            Some(p) if manifest.version != p.manifest.version + 1 => {
                return Err(BrokerError::Conflict(format!(
                    "version {} does not follow the current version {}",
                    manifest.version, p.manifest.version
                )));
            }
            _ => {}
        }
        if submission.components_base64.len() > MAX_COMPONENTS {
            return Err(BrokerError::Invalid(format!(
                "at most {MAX_COMPONENTS} components per submission"
            )));
        }
        let mut components = Vec::new();
        for (i, text) in submission.components_base64.iter().enumerate() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| {
                    BrokerError::Invalid(format!("component {} is not base64: {e}", i + 1))
                })?;
            let sha = hex::encode(c2ssi_protocol::sha256(&bytes));
            if manifest.allows(&sha).is_none() {
                return Err(BrokerError::Invalid(format!(
                    "component {} (sha256 {sha}) is not among the manifest's algorithms",
                    i + 1
                )));
            }
            components.push((sha, bytes));
        }
        // Every algorithm this version allows anew is checked and audited
        // under this collective's requirements and terms.
        let mut audits = Vec::new();
        let mut new_components = Vec::new();
        for allowed in &manifest.allowed_algorithms {
            let known = previous
                .as_ref()
                .is_some_and(|p| p.manifest.allows(&allowed.sha256).is_some());
            if known {
                continue;
            }
            let bytes = match components.iter().find(|(s, _)| *s == allowed.sha256) {
                Some((_, b)) => b.clone(),
                None if self.algorithms.has(&allowed.sha256)? => {
                    self.algorithms.bytes(&allowed.sha256)?
                }
                None => {
                    return Err(BrokerError::Invalid(format!(
                        "algorithm {} ({}) is allowed but its component was not sent",
                        allowed.name, allowed.sha256
                    )));
                }
            };
            let (info, audit) = self.check_component(manifest, &bytes, &submission.audit_params)?;
            if info.name != allowed.name || info.version != allowed.version {
                return Err(BrokerError::Invalid(format!(
                    "component {} describes itself as {} {}, the manifest says {} {}",
                    allowed.sha256, info.name, info.version, allowed.name, allowed.version
                )));
            }
            audits.push(audit);
            new_components.push((allowed.clone(), bytes));
        }
        self.db.write(|tx| {
            // Checked again inside the transaction: two submissions racing
            // for the same version cannot both win.
            let current = Registry::current_or_none_in(tx, id)?;
            let expected = current.map_or(1, |c| c.manifest.version + 1);
            if manifest.version != expected {
                return Err(BrokerError::Conflict(format!(
                    "version {} does not follow the current version {}",
                    manifest.version,
                    expected - 1
                )));
            }
            Registry::put_in(tx, &stored)?;
            for (allowed, bytes) in &new_components {
                Algorithms::put_in(tx, &allowed.sha256, &allowed.name, &allowed.version, bytes)?;
            }
            for audit in &audits {
                Algorithms::put_audit_in(tx, id, audit)?;
            }
            Ok(())
        })?;
        Ok(SubmissionOutcome {
            collective_id: id.to_string(),
            version: manifest.version,
            digest: stored.digest,
            audits,
        })
    }

    /// Checks a component in the sandbox (size, imports, the world, its
    /// self-description) and audits it on the manifest's first required
    /// table; a component flagged as encoding records is refused.
    fn check_component(
        &self,
        manifest: &Manifest,
        bytes: &[u8],
        params: &[c2ssi_guest_sdk::Param],
    ) -> Result<(c2ssi_guest_sdk::AlgorithmInfo, AuditSummary)> {
        let loaded = self
            .sandbox
            .load(bytes)
            .map_err(|e| BrokerError::Invalid(format!("the algorithm was refused: {e}")))?;
        let info =
            self.sandbox.describe(&loaded).into_result().map_err(|e| {
                BrokerError::Invalid(format!("the algorithm's describe failed: {e}"))
            })?;
        let requirement = manifest
            .requirements
            .tables
            .first()
            .ok_or_else(|| BrokerError::Invalid("the manifest requires no data".into()))?;
        let audit = self.audit(&loaded, requirement, manifest, params)?;
        Ok((info, audit))
    }

    fn audit(
        &self,
        loaded: &c2ssi_sandbox::LoadedComponent,
        requirement: &c2ssi_protocol::TableRequirement,
        manifest: &Manifest,
        params: &[c2ssi_guest_sdk::Param],
    ) -> Result<AuditSummary> {
        let audit = c2ssi_audit::audit(
            &self.sandbox,
            loaded,
            requirement,
            &manifest.privacy,
            params,
            &self.config.audit,
        )
        .map_err(|e| BrokerError::Invalid(format!("the privacy audit could not run: {e}")))?;
        if audit.summary.flagged_encoding {
            return Err(BrokerError::Forbidden(format!(
                "the privacy audit refused the algorithm: {}",
                audit.one_line()
            )));
        }
        Ok(audit.summary)
    }

    /// The current signed manifest.
    pub fn manifest(&self, id: &str) -> Result<Signed<Manifest>> {
        Ok(self.registry.current(id)?.signed)
    }

    /// A version of the manifest, by digest.
    pub fn manifest_version(&self, id: &str, digest: &str) -> Result<Signed<Manifest>> {
        Ok(self.registry.by_digest(id, digest)?.signed)
    }

    /// The collective at a glance.
    pub fn summary(&self, id: &str) -> Result<CollectiveSummary> {
        let current = self.registry.current(id)?;
        let (subscribers, consented) = self.subscriptions.counts(id, &current.digest)?;
        let jobs = self.db.read(|c| jobs::ids(c, id))?.len() as u64;
        Ok(CollectiveSummary {
            collective_id: id.to_string(),
            manifest_version: current.manifest.version,
            manifest_digest: current.digest,
            subscribers,
            consented_to_current: consented,
            balance: self.balance(id)?,
            jobs,
        })
    }

    /// The collective's number of subscribers over time (the last 1,000
    /// changes, a minute apart at the closest).
    pub fn subscriber_history(&self, id: &str) -> Result<Vec<c2ssi_protocol::SubscriberCount>> {
        self.registry.current(id)?;
        self.db.read(|c| crate::subscriptions::history(c, id, 1000))
    }

    /// The audits of the collective's components.
    pub fn audits(&self, id: &str) -> Result<Vec<AuditSummary>> {
        self.registry.current(id)?;
        self.algorithms.audits(id)
    }

    /// A component for a wallet of collective `id`.
    pub fn algorithm(&self, id: &str, sha256: &str) -> Result<Vec<u8>> {
        self.algorithms.for_collective(&self.registry, id, sha256)
    }

    // The consumer's commands.

    /// Checks a command: signed by the collective's key, for this
    /// collective, unexpired, never seen before.
    fn authorize(&self, id: &str, request: &Signed<OperatorCommand>) -> Result<OperatorCommand> {
        let current = self.registry.current(id)?;
        let body = request.open(
            Some(&current.manifest.collective_key),
            Purpose::OperatorCommand,
            now_ms(),
        )?;
        if body.header.collective_id != id {
            return Err(BrokerError::Unauthorized(format!(
                "the command is for collective '{}', not '{id}'",
                body.header.collective_id
            )));
        }
        self.db
            .write(|tx| nonces::remember_in(tx, &request.signer, &body.header))?;
        Ok(body)
    }

    /// Runs the consumer's signed command.
    pub fn command(&self, id: &str, request: &Signed<OperatorCommand>) -> Result<CommandOutcome> {
        let command = self.authorize(id, request)?;
        match command.command {
            Command::Deposit { amount } => {
                let entry = self.payments.deposit(id, amount, &command.header.nonce)?;
                let (deposited, paid) = self.payments.balance(id)?;
                Ok(CommandOutcome::Deposited {
                    entry_seq: entry.seq,
                    deposited,
                    paid,
                })
            }
            Command::StartJob(spec) => Ok(CommandOutcome::JobStarted {
                job_id: self.start_job(id, spec)?,
            }),
            Command::StopJob { job_id } => {
                self.stop_job(id, &job_id)?;
                Ok(CommandOutcome::StopRequested { job_id })
            }
        }
    }

    /// Checks a job against the current manifest, audits its algorithm with
    /// the job's hyper-parameters, and starts it: the initial model (from
    /// the spec, or the algorithm's `init-model`), version 0 stored, the
    /// start recorded in the ledger.
    pub fn start_job(&self, id: &str, spec: JobSpec) -> Result<String> {
        let current = self.registry.current(id)?;
        let requirement = job_spec::validate(&spec, &current.manifest)
            .map_err(BrokerError::Invalid)?
            .clone();
        let bytes = self.algorithms.bytes(&spec.algorithm_sha256)?;
        let component = self
            .sandbox
            .load(&bytes)
            .map_err(|e| BrokerError::Invalid(e.to_string()))?;
        let audit = self.audit(&component, &requirement, &current.manifest, &spec.params)?;
        let model = match &spec.initial_model {
            Some(m) => m.clone(),
            None => self
                .sandbox
                .initial_model(&component, &requirement.columns, &spec.params)
                .map_err(|e| BrokerError::Invalid(format!("the initial model: {e}")))?,
        };
        let job_id = new_id("j");
        let provenance = Provenance {
            job_id: job_id.clone(),
            round: 0,
            parent: None,
            algorithm_sha256: spec.algorithm_sha256.clone(),
            manifest_digest: current.digest.clone(),
            updates: 0.0,
            metrics: Vec::new(),
            noise: None,
            report: format!(
                "initial model; privacy audit with the job's hyper-parameters: empirical epsilon \
                 {:.3} per release",
                audit.empirical_epsilon
            ),
            rule: None,
            server_lr: spec.schedule.rate(spec.server_lr, 1, spec.rounds),
            momentum: spec.momentum,
            optimizer: spec.optimizer,
        };
        self.db.write(|tx| {
            let hash = Models::insert_in(tx, id, &model, &provenance)?;
            jobs::insert_in(tx, &job_id, id, &spec, &hash)?;
            Algorithms::put_audit_in(tx, id, &audit)?;
            self.ledger.append_in(
                tx,
                id,
                EntryKind::JobStarted {
                    job_id: job_id.clone(),
                    budget: spec.budget,
                },
            )?;
            self.ledger.append_in(
                tx,
                id,
                EntryKind::ModelVersion {
                    job_id: job_id.clone(),
                    round: 0,
                    model_hash: hash,
                    parent_hash: None,
                },
            )?;
            Ok(())
        })?;
        Ok(job_id)
    }

    fn job_of(&self, id: &str, job_id: &str) -> Result<JobRow> {
        let job = self.db.read(|c| jobs::load(c, job_id))?;
        if job.collective_id != id {
            return Err(BrokerError::NotFound(format!(
                "no job '{job_id}' in '{id}'"
            )));
        }
        Ok(job)
    }

    /// Asks a job to stop after its current round.
    pub fn stop_job(&self, id: &str, job_id: &str) -> Result<()> {
        self.job_of(id, job_id)?;
        self.db.write(|tx| jobs::request_stop_in(tx, job_id))
    }

    // Wallets.

    /// Whether `wallet` has standing at collective `id`: subscribed, or
    /// paid there once (it may check its receipts against the ledger).
    pub fn has_standing(&self, id: &str, wallet: &PublicKey) -> Result<bool> {
        Ok(self.subscriptions.is_subscribed(id, wallet)? || self.payments.ever_paid(id, wallet)?)
    }

    /// Subscribes a wallet to the current manifest.
    pub fn subscribe(&self, id: &str, request: &Signed<Subscription>) -> Result<()> {
        let current = self.registry.current(id)?;
        self.subscriptions.subscribe(
            id,
            &current.digest,
            current.manifest.credential.as_ref(),
            request,
        )
    }

    /// Takes an issuer's status list (anyone may push one; its proof and its
    /// issuer are checked) and ends the subscriptions it revokes; returns how
    /// many ended.
    pub fn put_status_list(&self, json: serde_json::Value) -> Result<u64> {
        let list = c2ssi_credentials::StatusList::verify(json)
            .map_err(|e| BrokerError::Invalid(format!("the status list: {e}")))?;
        let named = self.registry().issuer_is_named(list.issuer())?;
        self.db.write(|tx| status_lists::put_in(tx, &list, named))
    }

    /// Unsubscribes a wallet.
    pub fn unsubscribe(&self, id: &str, request: &Signed<Unsubscription>) -> Result<()> {
        self.registry.current(id)?;
        self.subscriptions.unsubscribe(id, request)
    }

    /// A wallet agent checks in: its task, if it has one in an open round,
    /// and its new receipts.
    pub fn check_in(&self, id: &str, request: &Signed<CheckIn>) -> Result<CheckInResponse> {
        // One read for the manifest, the subscription, a waiting task and
        // new receipts; a write only to hand out a task.
        let (body, (version, has_task, receipts)) =
            self.subscriptions.check_in(id, request, |c, body| {
                let current = self.registry.current_with(c, id)?;
                Ok((
                    current.manifest.version,
                    distributor::has_task(c, id, &body.wallet)?,
                    crate::payments::receipts_in(c, id, &body.wallet, body.receipts_after)?,
                ))
            })?;
        let task = if has_task {
            self.db
                .write(|tx| distributor::take_task_in(tx, id, &body.wallet))?
        } else {
            None
        };
        Ok(CheckInResponse {
            task,
            receipts,
            manifest_version: version,
            retry_after_ms: self.config.checkin_retry_ms,
        })
    }

    /// Pays an access the aggregator reports, after checking the
    /// aggregator's and the wallet's signatures and the task it answers.
    /// Paying the same access again returns the first receipt.
    pub fn record_access(
        &self,
        id: &str,
        report: &Signed<AccessReport>,
    ) -> Result<Signed<Receipt>> {
        let current = self.registry.current(id)?;
        let body = report.open(
            Some(&current.manifest.aggregator_key),
            Purpose::AccessReport,
            now_ms(),
        )?;
        if body.header.collective_id != id {
            return Err(BrokerError::Unauthorized(
                "the report is for another collective".into(),
            ));
        }
        let envelope = body.envelope.open(None, Purpose::Update, now_ms())?;
        if envelope.wallet != body.envelope.signer || envelope.header.collective_id != id {
            return Err(BrokerError::Unauthorized(
                "the reported envelope is not the wallet's".into(),
            ));
        }
        if !envelope.attestation.present {
            return Err(BrokerError::Invalid(
                "the wallet lacked the required data; the access is not paid".into(),
            ));
        }
        let job = self.job_of(id, &envelope.job_id)?;
        let assigned = self.db.read(|c| {
            distributor::task_digest(c, &envelope.job_id, envelope.round, &envelope.wallet)
        })?;
        match assigned {
            None => {
                return Err(BrokerError::Forbidden("no such task was assigned".into()));
            }
            Some(d) if d != envelope.task_digest => {
                return Err(BrokerError::Forbidden(
                    "the envelope answers another task".into(),
                ));
            }
            Some(_) => {}
        }
        let payment = self.payments.pay(
            id,
            &envelope.job_id,
            envelope.round,
            &envelope.wallet,
            current.manifest.rate,
            job.spec.budget,
        )?;
        Ok(match payment {
            Payment::Paid(r) | Payment::AlreadyPaid(r) => r,
        })
    }

    /// A wallet's receipts (the simulation's wallets fetch them without HTTP).
    pub fn receipts(
        &self,
        id: &str,
        wallet: &PublicKey,
        after: u64,
    ) -> Result<Vec<Signed<Receipt>>> {
        self.payments.receipts(id, wallet, after)
    }

    // Rounds.

    fn finish(&self, job: &JobRow, state: JobState, reason: &str) -> Result<()> {
        self.db.write(|tx| {
            if jobs::finish_in(tx, &job.id, state, reason)? {
                self.ledger.append_in(
                    tx,
                    &job.collective_id,
                    EntryKind::JobEnded {
                        job_id: job.id.clone(),
                        reason: format!("{}: {reason}", state.as_str()),
                    },
                )?;
            }
            Ok(())
        })
    }

    /// Opens the job's next round: samples live wallets that consented to
    /// the current manifest and have rounds of this job left, within the
    /// budget; signs their tasks; opens the round at the aggregator.
    pub fn open_round(&self, job_id: &str) -> Result<RoundStart> {
        let job = self.db.read(|c| jobs::load(c, job_id))?;
        if job.state != JobState::Running {
            return Ok(RoundStart::Finished(job.state));
        }
        if job.stop_requested {
            self.finish(&job, JobState::Stopped, "stopped by the consumer")?;
            return Ok(RoundStart::Finished(JobState::Stopped));
        }
        if job.next_round > job.spec.rounds {
            // A job that released nothing has trained nothing: it failed,
            // whatever the reason each round gave.
            if job.rounds_done == 0 {
                let reason = format!(
                    "no round released a batch (each round's report says why: fewer than \
                     k = {} accepted updates, or the aggregator released nothing); the model \
                     is the initial one",
                    self.registry
                        .current(&job.collective_id)?
                        .manifest
                        .privacy
                        .min_batch
                );
                self.finish(&job, JobState::Failed, &reason)?;
                return Ok(RoundStart::Finished(JobState::Failed));
            }
            self.finish(&job, JobState::Completed, "all rounds ran")?;
            return Ok(RoundStart::Finished(JobState::Completed));
        }
        let id = &job.collective_id;
        let current = self.registry.current(id)?;
        let manifest = &current.manifest;
        if manifest.allows(&job.spec.algorithm_sha256).is_none() {
            let reason = "the current manifest no longer allows the job's algorithm";
            self.finish(&job, JobState::Failed, reason)?;
            return Ok(RoundStart::Finished(JobState::Failed));
        }
        let rate = manifest.rate;
        let (deposited, paid) = self.payments.balance(id)?;
        let available = deposited
            .0
            .saturating_sub(paid.0)
            .saturating_sub(self.payments.reserved(id, job_id, rate)?);
        let job_left = job.spec.budget.0.saturating_sub(job.spent.0);
        let capacity = (available.min(job_left) / rate.0) as usize;
        let k = manifest.privacy.min_batch as usize;
        if capacity < k {
            let reason = format!(
                "the budget is spent: {} left in the job, {} available in the collective, \
                 a batch of {k} costs {}",
                Amount(job_left),
                Amount(available),
                Amount(rate.0 * k as u64)
            );
            self.finish(&job, JobState::BudgetExhausted, &reason)?;
            return Ok(RoundStart::Finished(JobState::BudgetExhausted));
        }
        // Check-ins this process holds in memory count too.
        self.subscriptions.write_check_ins()?;
        let since = now_ms().saturating_sub(self.config.liveness_ms);
        let live = self.subscriptions.live(id, &current.digest, since)?;
        let saturated = self
            .db
            .read(|c| distributor::saturated(c, job_id, manifest.privacy.rounds_per_wallet))?;
        let eligible: Vec<PublicKey> = live
            .iter()
            .filter(|w| !saturated.contains(w))
            .copied()
            .collect();
        let m = (job.spec.wallets_per_round as usize)
            .min(eligible.len())
            .min(capacity);
        if m < k {
            return Ok(RoundStart::Waiting(format!(
                "{} live wallets consented to the current manifest, {} of them with rounds of \
                 this job left; {k} needed for a batch",
                live.len(),
                eligible.len()
            )));
        }
        let round = job.next_round;
        let sampled = self.randomness.sample(&eligible, m)?;
        let model = self.models.get(id, &job.model_hash)?;
        let deadline = now_ms() + job.spec.round_deadline_ms;
        let update_url = self.aggregator.identity().url.clone();
        // Seeds in sampling order (repeatable); the tasks signed on every core.
        let seeds = sampled
            .iter()
            .map(|_| self.randomness.task_seed())
            .collect::<Result<Vec<u64>>>()?;
        let sign = |(wallet, seed): (&PublicKey, u64)| -> Result<NewAssignment> {
            let task = Task {
                header: Header {
                    purpose: Purpose::Task,
                    collective_id: id.clone(),
                    issued_at_ms: now_ms(),
                    expires_at_ms: deadline + TASK_SLACK_MS,
                    nonce: c2ssi_protocol::new_nonce(),
                },
                job_id: job_id.to_string(),
                round,
                wallet: *wallet,
                manifest_digest: current.digest.clone(),
                algorithm_sha256: job.spec.algorithm_sha256.clone(),
                table: job.spec.table.clone(),
                params: job.spec.params.clone(),
                model: model.params.clone(),
                seed,
                update_url: update_url.clone(),
            };
            let signed = Signed::sign(&task, self.key.as_ref())?;
            Ok(NewAssignment {
                wallet: *wallet,
                digest: hex::encode(signed.digest()),
                task: serde_json::to_string(&signed)?,
            })
        };
        let assignments = {
            use rayon::prelude::*;
            sampled
                .par_iter()
                .zip(seeds)
                .map(sign)
                .collect::<Result<Vec<NewAssignment>>>()?
        };
        let open = Signed::sign(
            &OpenRound {
                header: Header::new(Purpose::OpenRound, id, CONTROL_VALIDITY_MS),
                job_id: job_id.to_string(),
                round,
                manifest_digest: current.digest.clone(),
                model_len: model.params.len() as u32,
                assigned: assignments
                    .iter()
                    .map(|a| Assignment {
                        wallet: a.wallet,
                        task_digest: a.digest.clone(),
                    })
                    .collect(),
            },
            self.key.as_ref(),
        )?;
        // The aggregator first: if it cannot be reached, no round is
        // recorded and the same round is tried again later.
        self.aggregator.open_round(id, &open)?;
        self.db.write(|tx| {
            rounds::open_in(
                tx,
                job_id,
                round,
                &current.digest,
                sampled.len() as u32,
                deadline,
            )?;
            distributor::insert_in(tx, job_id, round, &assignments)
        })?;
        Ok(RoundStart::Opened {
            round,
            sampled: sampled.len(),
            deadline_ms: deadline,
        })
    }

    /// Every undelivered task of a round, marked delivered: the distributor
    /// handing tasks to wallets in this process (the simulation). Not part
    /// of the HTTP API, which never says who was sampled.
    pub fn push_tasks(&self, job_id: &str, round: u32) -> Result<Vec<(PublicKey, Signed<Task>)>> {
        self.db.write(|tx| distributor::push_in(tx, job_id, round))
    }

    /// Opens a round again at the aggregator, with the tasks it was opened
    /// with but those already paid: the aggregator restarted and lost it,
    /// and the wallets still to answer are then taken and paid (those that
    /// answered before will not answer again, and the round need not wait
    /// for them). A round it closed, it refuses.
    pub fn reopen_round(&self, job_id: &str, round: u32) -> Result<()> {
        let job = self.db.read(|c| jobs::load(c, job_id))?;
        let id = &job.collective_id;
        let (digest, _) = self.db.read(|c| rounds::opened(c, job_id, round))?;
        let paid = self.payments.paid_in_round(job_id, round)?;
        let mut assigned = self.db.read(|c| distributor::assigned(c, job_id, round))?;
        assigned.retain(|(wallet, _)| !paid.contains(wallet));
        let model = self.models.get(id, &job.model_hash)?;
        let open = Signed::sign(
            &OpenRound {
                header: Header::new(Purpose::OpenRound, id, CONTROL_VALIDITY_MS),
                job_id: job_id.to_string(),
                round,
                manifest_digest: digest,
                model_len: model.params.len() as u32,
                assigned: assigned
                    .into_iter()
                    .map(|(wallet, task_digest)| Assignment {
                        wallet,
                        task_digest,
                    })
                    .collect(),
            },
            self.key.as_ref(),
        )?;
        self.aggregator.open_round(id, &open)
    }

    /// Assigned wallets of an open round that answered, and assigned wallets.
    pub fn round_progress(&self, job_id: &str, round: u32) -> Result<Option<(usize, usize)>> {
        let job = self.db.read(|c| jobs::load(c, job_id))?;
        let query = Signed::sign(
            &ProgressQuery {
                header: Header::new(
                    Purpose::RoundProgress,
                    &job.collective_id,
                    CONTROL_VALIDITY_MS,
                ),
                job_id: job_id.to_string(),
                round,
            },
            self.key.as_ref(),
        )?;
        let p = self.aggregator.progress(&job.collective_id, &query)?;
        Ok(p.open.then_some((p.answered, p.assigned)))
    }

    /// Closes an open round: applies the release (or records that there was
    /// none) and moves the job on, in one transaction.
    pub fn close_round(&self, job_id: &str, round: u32) -> Result<RoundEnd> {
        let job = self.db.read(|c| jobs::load(c, job_id))?;
        let id = job.collective_id.clone();
        let (digest, sampled) = self.db.read(|c| rounds::opened(c, job_id, round))?;
        let round_manifest = self.registry.by_digest(&id, &digest)?.manifest;
        let close = Signed::sign(
            &CloseRound {
                header: Header::new(Purpose::CloseRound, &id, CONTROL_VALIDITY_MS),
                job_id: job_id.to_string(),
                round,
                rule: job.spec.rule.clone(),
                center: momentum_center(&job),
            },
            self.key.as_ref(),
        )?;
        let outcome = self.aggregator.close_round(&id, &close)?;
        let nothing = |report: String| RoundSummary {
            round,
            status: RoundStatus::NothingReleased,
            sampled,
            updates: None,
            metrics: Vec::new(),
            counts: None,
            report,
            model_hash: None,
        };
        let signed = match outcome {
            CloseOutcome::Released { result } => result,
            CloseOutcome::TooFew { min_batch } => {
                return self.nothing_released(
                    &job,
                    nothing(format!(
                        "fewer than k = {min_batch} updates arrived: nothing released"
                    )),
                );
            }
            CloseOutcome::NotOpen => {
                return self.nothing_released(
                    &job,
                    nothing("the aggregator did not have the round open".into()),
                );
            }
            CloseOutcome::Failed { reason } => {
                return self.nothing_released(&job, nothing(reason));
            }
        };
        let batch: BatchResult = signed.open(
            Some(&round_manifest.aggregator_key),
            Purpose::BatchResult,
            now_ms(),
        )?;
        let model = self.models.get(&id, &job.model_hash)?;
        if batch.job_id != job_id
            || batch.round != round
            || batch.manifest_digest != digest
            || batch.aggregate.len() != model.params.len()
        {
            return Err(internal("the batch result does not match the round"));
        }
        let state = job.velocity.clone().unwrap_or_default();
        let (params, velocity, lr) =
            server_step(&job.spec, round, &model.params, &state, &batch.aggregate);
        if params.iter().any(|v| !v.is_finite()) {
            return self.nothing_released(
                &job,
                nothing("the model diverged (not finite); the release is not applied".into()),
            );
        }
        let provenance = Provenance {
            job_id: job_id.to_string(),
            round,
            parent: Some(job.model_hash.clone()),
            algorithm_sha256: job.spec.algorithm_sha256.clone(),
            manifest_digest: digest.clone(),
            updates: batch.updates,
            metrics: batch.metrics.clone(),
            noise: batch.noise,
            report: batch.report.clone(),
            rule: Some(batch.rule.clone()),
            server_lr: lr,
            momentum: job.spec.momentum,
            optimizer: job.spec.optimizer,
        };
        let summary = self.db.write(|tx| {
            let hash = Models::insert_in(tx, &id, &params, &provenance)?;
            self.ledger.append_in(
                tx,
                &id,
                EntryKind::ModelVersion {
                    job_id: job_id.to_string(),
                    round,
                    model_hash: hash.clone(),
                    parent_hash: Some(job.model_hash.clone()),
                },
            )?;
            let summary = RoundSummary {
                round,
                status: RoundStatus::Released,
                sampled,
                updates: Some(batch.updates),
                metrics: batch.metrics.clone(),
                counts: batch.counts.clone(),
                report: batch.report.clone(),
                model_hash: Some(hash.clone()),
            };
            rounds::close_in(tx, job_id, &summary)?;
            distributor::forget_in(tx, job_id, round)?;
            jobs::released_in(tx, job_id, round, &hash, &velocity)?;
            Ok(summary)
        })?;
        Ok(RoundEnd::Released(summary))
    }

    /// Records that an open round released nothing, without the aggregator
    /// (which could not be reached to close it).
    pub fn give_up_round(&self, job_id: &str, round: u32, reason: &str) -> Result<()> {
        let job = self.db.read(|c| jobs::load(c, job_id))?;
        let (_, sampled) = self.db.read(|c| rounds::opened(c, job_id, round))?;
        self.nothing_released(
            &job,
            RoundSummary {
                round,
                status: RoundStatus::NothingReleased,
                sampled,
                updates: None,
                metrics: Vec::new(),
                counts: None,
                report: reason.to_string(),
                model_hash: None,
            },
        )?;
        Ok(())
    }

    fn nothing_released(&self, job: &JobRow, summary: RoundSummary) -> Result<RoundEnd> {
        self.db.write(|tx| {
            rounds::close_in(tx, &job.id, &summary)?;
            distributor::forget_in(tx, &job.id, summary.round)?;
            jobs::skipped_in(tx, &job.id, summary.round)
        })?;
        Ok(RoundEnd::NothingReleased(summary))
    }

    /// The running jobs (after a restart, the runner resumes each, and a
    /// round left open is waited for and closed like any other: the
    /// aggregator kept its updates unless it restarted too).
    pub fn running_jobs(&self) -> Result<Vec<String>> {
        self.db.read(jobs::running)
    }

    /// How many rounds are open, over every job.
    pub fn open_rounds(&self) -> Result<u64> {
        self.db.read(rounds::count_open)
    }

    /// Whether the aggregator answers now.
    pub fn aggregator_reachable(&self) -> std::result::Result<(), String> {
        self.aggregator.reachable()
    }

    /// The aggregator's URL, where wallets send their updates.
    pub fn aggregator_url(&self) -> String {
        self.aggregator.identity().url.clone()
    }

    /// The job's open round, if it has one: its number and deadline.
    pub fn open_round_of(&self, job_id: &str) -> Result<Option<(u32, u64)>> {
        self.db.read(|c| rounds::open_of(c, job_id))
    }

    // What anyone may read.

    /// Epsilon the job has cost any one wallet so far, and its bound, at
    /// the current terms' delta: each wallet took part in at most
    /// `rounds_per_wallet` of the released rounds, so the worst wallet paid
    /// for the costliest of them. `None` when a release carried no noise.
    fn job_epsilon(&self, id: &str, job_id: &str) -> Result<(Option<f64>, Option<f64>, f64)> {
        let current = self.registry.current(id)?.manifest;
        let digests = self.db.read(|c| rounds::released_digests(c, job_id))?;
        let mut rhos = Vec::with_capacity(digests.len());
        let mut limit = current.privacy.rounds_per_wallet;
        for d in &digests {
            let terms = self.registry.by_digest(id, d)?.manifest.privacy;
            limit = limit.max(terms.rounds_per_wallet);
            rhos.push(terms.rho_per_round());
        }
        rhos.sort_by(|a, b| b.total_cmp(a));
        let rho: f64 = rhos.iter().take(limit as usize).sum();
        let delta = current.privacy.delta;
        let spent = (rho.is_finite()).then(|| privacy::epsilon_of_rho(rho, delta));
        Ok((spent, current.privacy.epsilon, delta))
    }

    /// A job's status.
    pub fn job_status(&self, id: &str, job_id: &str) -> Result<JobStatus> {
        let job = self.job_of(id, job_id)?;
        let rounds = self.db.read(|c| rounds::list(c, job_id))?;
        let (epsilon_spent, epsilon_bound, delta) = self.job_epsilon(id, job_id)?;
        Ok(JobStatus {
            id: job.id,
            collective_id: job.collective_id,
            state: job.state,
            reason: job.reason,
            spec: job.spec,
            rounds_done: job.rounds_done,
            next_round: job.next_round,
            spent: job.spent,
            model_hash: job.model_hash,
            epsilon_spent,
            epsilon_bound,
            delta,
            rounds,
        })
    }

    /// The jobs of a collective.
    pub fn jobs(&self, id: &str) -> Result<Vec<JobStatus>> {
        self.registry.current(id)?;
        let ids = self.db.read(|c| jobs::ids(c, id))?;
        ids.iter().map(|j| self.job_status(id, j)).collect()
    }

    /// Model versions.
    pub fn models(&self, id: &str, job_id: Option<&str>) -> Result<Vec<ModelSummary>> {
        self.registry.current(id)?;
        self.models.list(id, job_id)
    }

    /// One model version.
    pub fn model(&self, id: &str, hash: &str) -> Result<ModelVersion> {
        self.models.get(id, hash)
    }

    /// The ledger's entries.
    pub fn ledger_entries(&self, id: &str) -> Result<Vec<LedgerEntry>> {
        self.registry.current(id)?;
        self.ledger.entries(id)
    }

    /// The ledger, verified.
    pub fn verify_ledger(&self, id: &str) -> Result<LedgerSummary> {
        self.registry.current(id)?;
        self.ledger.verify(id)
    }

    /// Deposits and payments.
    pub fn balance(&self, id: &str) -> Result<Balance> {
        let (deposited, paid) = self.payments.balance(id)?;
        Ok(Balance {
            deposited,
            paid,
            balance: Amount(deposited.0.saturating_sub(paid.0)),
        })
    }
}

/// Where a rule that keeps the job's momentum starts: the last aggregate it
/// released, which the broker keeps as FedAvgM's velocity (at the server
/// momentum of 0 that such a rule requires, the velocity is the aggregate
/// itself); none for every other rule, and before the first release.
fn momentum_center(job: &JobRow) -> Option<Vec<f32>> {
    if job.spec.rule.keeps_momentum() {
        job.velocity.clone()
    } else {
        None
    }
}
