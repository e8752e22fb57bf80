//! The coordinator: one collective service's operations, over the registry,
//! the distributor, the aggregator, the ledger and the model store. The HTTP
//! service calls these, and so does the simulation, so both run the same code.
//!
//! A training round: [`Coordinator::open_round`] samples wallets, signs a task
//! for each and opens the round at the aggregator; wallets pick their task up
//! at check-in and send their envelope to [`Coordinator::accept_update`], which
//! has the aggregator take it and the ledger pay the access at once;
//! [`Coordinator::close_round`] gets the signed batch result and applies it
//! with the server optimizer, storing the new model version, its ledger entry
//! and the job's progress in one transaction.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use c2ssi_guest_sdk::encode::{feature_count, select_features};
use c2ssi_guest_sdk::{FEATURES, LABEL, Metric, Params};
use c2ssi_protocol::{
    AccessReport, Amount, BatchCounts, BatchResult, CheckIn, CheckInResponse, Command,
    CreateCollective, EntryKind, Header, JobSpec, LedgerEntry, LedgerSummary, Manifest,
    OperatorCommand, PublicKey, Purpose, Receipt, Signed, SigningKey, Subscription, Task,
    Unsubscription, UpdateEnvelope, UpdateResponse, now_ms,
};
use c2ssi_sandbox::{Sandbox, sha256};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::aggregator::{Accepted, Aggregator, CloseError, CloseSpec, Rejection, RoundKey};
use crate::database::Database;
use crate::distributor;
use crate::error::{CollectiveError, Result};
use crate::ledger::{Ledger, Payment};
use crate::models::{ModelSummary, ModelVersion, Models, Provenance, from_bytes, server_step};
use crate::registry::{Registry, ServiceKeys};

/// What the coordinator needs from an aggregator, wherever it runs.
pub trait AggregatorHandle: Send + Sync + fmt::Debug {
    /// The key batch results are signed with, and the recipient updates are sealed to.
    fn keys(&self) -> (PublicKey, String);
    /// Opens a round for the assigned wallets (each with its task's digest);
    /// `signer` is the collective's key, which an aggregator elsewhere checks.
    fn open_round(
        &self,
        signer: &SigningKey,
        key: RoundKey,
        assigned: Vec<(PublicKey, String)>,
        model_len: usize,
    ) -> Result<()>;
    /// Assigned wallets that answered, and assigned wallets.
    fn progress(&self, key: &RoundKey) -> Result<Option<(usize, usize)>>;
    /// Closes a round.
    fn close_round(
        &self,
        signer: &SigningKey,
        key: &RoundKey,
        spec: &CloseSpec,
    ) -> Result<Signed<BatchResult>, CloseError>;
    /// Takes an envelope, when the aggregator runs in this process; `None`
    /// when wallets send their updates to an aggregator elsewhere.
    fn submit(
        &self,
        collective_id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Option<Result<Accepted, Rejection>>;
}

impl AggregatorHandle for Aggregator {
    fn keys(&self) -> (PublicKey, String) {
        (self.keys().public_key(), self.keys().recipient())
    }
    fn open_round(
        &self,
        _signer: &SigningKey,
        key: RoundKey,
        assigned: Vec<(PublicKey, String)>,
        model_len: usize,
    ) -> Result<()> {
        Aggregator::open_round(self, key, assigned, model_len);
        Ok(())
    }
    fn progress(&self, key: &RoundKey) -> Result<Option<(usize, usize)>> {
        Ok(Aggregator::progress(self, key))
    }
    fn close_round(
        &self,
        _signer: &SigningKey,
        key: &RoundKey,
        spec: &CloseSpec,
    ) -> Result<Signed<BatchResult>, CloseError> {
        Aggregator::close_round(self, key, spec)
    }
    fn submit(
        &self,
        collective_id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Option<Result<Accepted, Rejection>> {
        Some(Aggregator::submit(self, collective_id, envelope))
    }
}

/// Settings of a coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// A wallet counts as live this long after its last check-in.
    pub liveness_ms: u64,
    /// How long a wallet agent waits between check-ins.
    pub checkin_retry_ms: u64,
    /// Where wallets send updates, when not to this service.
    pub update_url: Option<String>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            liveness_ms: 30_000,
            checkin_retry_ms: 500,
            update_url: None,
        }
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Rounds are running.
    Running,
    /// All rounds ran.
    Completed,
    /// The operator stopped it.
    Stopped,
    /// The budget (the job's or the collective's) is spent.
    BudgetExhausted,
    /// It cannot go on.
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Stopped => "stopped",
            JobState::BudgetExhausted => "budget-exhausted",
            JobState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> JobState {
        match text {
            "running" => JobState::Running,
            "completed" => JobState::Completed,
            "stopped" => JobState::Stopped,
            "budget-exhausted" => JobState::BudgetExhausted,
            _ => JobState::Failed,
        }
    }
}

/// What happened in a round, as the collective may know it: counts and the
/// batch's mean metrics, never which wallets took part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSummary {
    /// The round.
    pub round: u32,
    /// `open`, `closed`, `failed` (fewer than k) or `abandoned` (a restart).
    pub status: String,
    /// Wallets sampled.
    pub sampled: u32,
    /// Received, rejected and aggregated counts.
    pub counts: BatchCounts,
    /// The batch's mean metrics.
    pub metrics: Vec<Metric>,
    /// What the rule did, or why the round failed.
    pub report: String,
    /// The model version it produced.
    pub model_hash: Option<String>,
}

/// A job, as its status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Its id.
    pub id: String,
    /// The collective.
    pub collective_id: String,
    /// Its state.
    pub state: JobState,
    /// Why it ended, when it did.
    pub reason: Option<String>,
    /// What it runs.
    pub spec: JobSpec,
    /// Rounds that released a batch.
    pub rounds_done: u32,
    /// The next round to open.
    pub next_round: u32,
    /// What it has paid.
    pub spent: Amount,
    /// The current model version.
    pub model_hash: String,
    /// Differential privacy spent so far.
    pub epsilon: Option<f64>,
    /// Every round.
    pub rounds: Vec<RoundSummary>,
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
    Applied(RoundSummary),
    /// Nothing was released (fewer than k valid updates).
    Failed(RoundSummary),
}

/// The coordinator.
pub struct Coordinator {
    db: Database,
    registry: Registry,
    ledger: Ledger,
    models: Models,
    sandbox: Arc<Sandbox>,
    aggregator: Arc<dyn AggregatorHandle>,
    config: CoordinatorConfig,
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", &c2ssi_protocol::new_nonce()[..16])
}

const TASK_SLACK_MS: u64 = 2_000;

impl Coordinator {
    /// A coordinator over `db`, whose ledger signs with `ledger_key`.
    pub fn new(
        db: Database,
        ledger_key: Arc<SigningKey>,
        sandbox: Arc<Sandbox>,
        aggregator: Arc<dyn AggregatorHandle>,
        config: CoordinatorConfig,
    ) -> Coordinator {
        Coordinator {
            registry: Registry::new(db.clone()),
            ledger: Ledger::new(db.clone(), ledger_key),
            models: Models::new(db.clone()),
            db,
            sandbox,
            aggregator,
            config,
        }
    }

    /// The service's ledger key, loaded from the database or created.
    pub fn ledger_key(db: &Database) -> Result<SigningKey> {
        let existing: Option<Vec<u8>> = db.read(|c| {
            Ok(c.query_row(
                "SELECT pkcs8 FROM service_keys WHERE name = 'ledger'",
                [],
                |r| r.get(0),
            )
            .optional()?)
        })?;
        if let Some(pkcs8) = existing {
            return Ok(SigningKey::from_pkcs8(&pkcs8)?);
        }
        let key = SigningKey::generate()?;
        db.write(|tx| {
            tx.execute(
                "INSERT INTO service_keys (name, pkcs8) VALUES ('ledger', ?1)",
                params![key.pkcs8()],
            )?;
            Ok(())
        })?;
        Ok(key)
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The model store.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// The settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The keys every manifest publishes.
    pub fn service_keys(&self) -> ServiceKeys {
        let (aggregator_key, aggregator_recipient) = self.aggregator.keys();
        ServiceKeys {
            aggregator_key,
            aggregator_recipient,
            ledger_key: self.ledger.public_key(),
        }
    }

    /// Creates a collective.
    pub fn create_collective(
        &self,
        request: &Signed<CreateCollective>,
    ) -> Result<Signed<Manifest>> {
        self.registry.create(request, &self.service_keys())
    }

    /// Runs an operator's command (other than adding an algorithm, which
    /// carries bytes: [`Coordinator::add_algorithm`]); returns its result as JSON.
    pub fn command(
        &self,
        collective_id: &str,
        request: &Signed<OperatorCommand>,
    ) -> Result<serde_json::Value> {
        let command = self.registry.authorize(collective_id, request)?;
        match command.command {
            Command::Deposit { amount } => {
                let entry = self
                    .ledger
                    .deposit(collective_id, amount, &command.header.nonce)?;
                let (deposited, paid) = self.ledger.balance(collective_id)?;
                Ok(serde_json::json!({
                    "entry": entry,
                    "deposited": deposited,
                    "paid": paid,
                }))
            }
            Command::StartJob(spec) => {
                let id = self.start_job(collective_id, spec)?;
                Ok(serde_json::json!({ "job_id": id }))
            }
            Command::StopJob { job_id } => {
                self.stop_job(collective_id, &job_id)?;
                Ok(serde_json::json!({ "job_id": job_id, "stop_requested": true }))
            }
            Command::AddAlgorithm { .. } => Err(CollectiveError::Invalid(
                "add an algorithm with its component: POST .../algorithms".into(),
            )),
        }
    }

    /// Adds an algorithm: the command must name the component's SHA-256, and
    /// the component must pass the sandbox's checks (the world exported,
    /// imports on the allow-list, size) and describe itself.
    pub fn add_algorithm(
        &self,
        collective_id: &str,
        request: &Signed<OperatorCommand>,
        component: &[u8],
    ) -> Result<Signed<Manifest>> {
        let command = self.registry.authorize(collective_id, request)?;
        let Command::AddAlgorithm { sha256: claimed } = command.command else {
            return Err(CollectiveError::Invalid(
                "expected an add-algorithm command".into(),
            ));
        };
        let actual = hex::encode(sha256(component));
        if actual != claimed {
            return Err(CollectiveError::Invalid(format!(
                "the component's SHA-256 is {actual}, the signed command says {claimed}"
            )));
        }
        let loaded = self
            .sandbox
            .load(component)
            .map_err(|e| CollectiveError::Invalid(format!("the algorithm was refused: {e}")))?;
        let info = self.sandbox.describe(&loaded).into_result().map_err(|e| {
            CollectiveError::Invalid(format!("the algorithm's describe failed: {e}"))
        })?;
        self.registry
            .add_algorithm(collective_id, &actual, component, &info)
    }

    /// Subscribes a wallet.
    pub fn subscribe(&self, collective_id: &str, request: &Signed<Subscription>) -> Result<()> {
        self.registry.subscribe(collective_id, request)
    }

    /// Unsubscribes a wallet.
    pub fn unsubscribe(&self, collective_id: &str, request: &Signed<Unsubscription>) -> Result<()> {
        self.registry.unsubscribe(collective_id, request)
    }

    /// A wallet agent checks in: its task, if it has one in an open round,
    /// and its new receipts.
    pub fn check_in(
        &self,
        collective_id: &str,
        request: &Signed<CheckIn>,
    ) -> Result<CheckInResponse> {
        let body: CheckIn = self.registry.check_in(collective_id, request)?;
        let task = self.take_task(collective_id, &body.wallet)?;
        let receipts = self
            .ledger
            .receipts(collective_id, &body.wallet, body.receipts_after)?;
        let manifest = self.registry.manifest_body(collective_id)?;
        Ok(CheckInResponse {
            task,
            receipts,
            manifest_version: manifest.version,
            retry_after_ms: self.config.checkin_retry_ms,
        })
    }

    /// The wallet's undelivered task in an open round, marked delivered.
    pub fn take_task(
        &self,
        collective_id: &str,
        wallet: &PublicKey,
    ) -> Result<Option<Signed<Task>>> {
        self.db.write(|tx| {
            let row: Option<(String, i64, String)> = tx
                .query_row(
                    "SELECT a.job_id, a.round, a.task FROM assignments a
                     JOIN rounds r ON r.job_id = a.job_id AND r.round = a.round
                     JOIN jobs j ON j.id = a.job_id
                     WHERE j.collective_id = ?1 AND a.wallet = ?2 AND a.delivered = 0
                       AND r.status = 'open' AND r.deadline_ms > ?3
                     ORDER BY r.opened_ms LIMIT 1",
                    params![collective_id, wallet.to_hex(), now_ms() as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((job, round, task)) = row else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE assignments SET delivered = 1 WHERE job_id = ?1 AND round = ?2 AND wallet = ?3",
                params![job, round, wallet.to_hex()],
            )?;
            Ok(Some(serde_json::from_str(&task)?))
        })
    }

    fn job_row(&self, job_id: &str) -> Result<JobRow> {
        self.db.read(|c| load_job(c, job_id))
    }

    /// Takes a wallet's envelope (the aggregator in this process) and pays
    /// the access when the wallet attested its data.
    pub fn accept_update(
        &self,
        collective_id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<UpdateResponse> {
        let Some(result) = self.aggregator.submit(collective_id, envelope) else {
            return Err(CollectiveError::Invalid(
                "updates go to the aggregator named in the task, not to this service".into(),
            ));
        };
        match result {
            Ok(accepted) => self.pay_access(collective_id, &accepted, None),
            Err(rejection) if rejection.reason == "round-not-open" => {
                self.late_access(collective_id, envelope, rejection)
            }
            Err(rejection) => Ok(UpdateResponse {
                accepted: false,
                reason: Some(rejection.to_string()),
                receipt: None,
            }),
        }
    }

    /// Pays an access an aggregator in another process reports, after
    /// checking the aggregator's and the wallet's signatures.
    pub fn record_access(
        &self,
        collective_id: &str,
        report: &Signed<AccessReport>,
    ) -> Result<UpdateResponse> {
        let manifest = self.registry.manifest_body(collective_id)?;
        let body = report.open(
            Some(&manifest.aggregator_key),
            Purpose::AccessReport,
            now_ms(),
        )?;
        let envelope = body.envelope.open(None, Purpose::Update, now_ms())?;
        if envelope.wallet != body.envelope.signer || envelope.header.collective_id != collective_id
        {
            return Err(CollectiveError::Unauthorized(
                "the reported envelope is not the wallet's".into(),
            ));
        }
        let accepted = Accepted {
            wallet: envelope.wallet,
            job_id: envelope.job_id.clone(),
            round: envelope.round,
            data_present: envelope.attestation.present,
        };
        self.pay_access(collective_id, &accepted, Some(&envelope.task_digest))
    }

    fn pay_access(
        &self,
        collective_id: &str,
        accepted: &Accepted,
        task_digest: Option<&str>,
    ) -> Result<UpdateResponse> {
        if !accepted.data_present {
            return Ok(UpdateResponse {
                accepted: true,
                reason: Some("the wallet lacked the required data; the access is not paid".into()),
                receipt: None,
            });
        }
        let job = self.job_row(&accepted.job_id)?;
        if job.collective_id != collective_id {
            return Err(CollectiveError::NotFound(format!(
                "no job {} here",
                accepted.job_id
            )));
        }
        let assigned: Option<String> = self.db.read(|c| {
            Ok(c.query_row(
                "SELECT task_digest FROM assignments WHERE job_id = ?1 AND round = ?2 AND wallet = ?3",
                params![accepted.job_id, accepted.round, accepted.wallet.to_hex()],
                |r| r.get(0),
            )
            .optional()?)
        })?;
        match (assigned, task_digest) {
            (None, _) => {
                return Err(CollectiveError::Forbidden(
                    "no such task was assigned".into(),
                ));
            }
            (Some(d), Some(claimed)) if d != claimed => {
                return Err(CollectiveError::Forbidden(
                    "the envelope answers another task".into(),
                ));
            }
            _ => {}
        }
        let manifest = self.registry.manifest_body(collective_id)?;
        let payment = self.ledger.pay(
            collective_id,
            &accepted.job_id,
            accepted.round,
            &accepted.wallet,
            manifest.rate,
            job.spec.budget,
        )?;
        let reason = match &payment {
            Payment::Paid(_) => None,
            Payment::AlreadyPaid(_) => Some("this access was already paid".to_string()),
        };
        Ok(UpdateResponse {
            accepted: true,
            reason,
            receipt: Some(payment.receipt().clone()),
        })
    }

    /// An envelope for a round that is no longer open: when the round was
    /// abandoned by a restart and the wallet was assigned to it and attests
    /// its data, the access happened and is paid (once); its update is not used.
    fn late_access(
        &self,
        collective_id: &str,
        envelope: &Signed<UpdateEnvelope>,
        rejection: Rejection,
    ) -> Result<UpdateResponse> {
        let body = envelope.open(None, Purpose::Update, now_ms())?;
        if body.wallet != envelope.signer || body.header.collective_id != collective_id {
            return Err(CollectiveError::Unauthorized(
                "the envelope is not the wallet's".into(),
            ));
        }
        let status: Option<String> = self.db.read(|c| {
            Ok(c.query_row(
                "SELECT status FROM rounds WHERE job_id = ?1 AND round = ?2",
                params![body.job_id, body.round],
                |r| r.get(0),
            )
            .optional()?)
        })?;
        if status.as_deref() == Some("abandoned") {
            let accepted = Accepted {
                wallet: body.wallet,
                job_id: body.job_id.clone(),
                round: body.round,
                data_present: body.attestation.present,
            };
            let mut response =
                self.pay_access(collective_id, &accepted, Some(&body.task_digest))?;
            response.reason = Some(format!(
                "round {} was abandoned by a restart: the access is paid, the update not used",
                body.round
            ));
            return Ok(response);
        }
        Ok(UpdateResponse {
            accepted: false,
            reason: Some(rejection.to_string()),
            receipt: None,
        })
    }

    /// Checks a job and starts it: the initial model (from the spec, or the
    /// algorithm's `init-model` in this service's sandbox), version 0 stored,
    /// the start recorded in the ledger.
    pub fn start_job(&self, collective_id: &str, spec: JobSpec) -> Result<String> {
        let manifest = self.registry.manifest_body(collective_id)?;
        let invalid = |m: String| Err(CollectiveError::Invalid(m));
        if manifest.allows(&spec.algorithm_sha256).is_none() {
            return invalid(format!(
                "algorithm {} is not allowed by the manifest (add it first)",
                spec.algorithm_sha256
            ));
        }
        let Some(requirement) = manifest.requirements.table(&spec.table) else {
            return invalid(format!(
                "table '{}' is not among the data requirements",
                spec.table
            ));
        };
        if spec.rounds == 0 {
            return invalid("a job needs at least one round".into());
        }
        if spec.min_batch < manifest.min_batch {
            return invalid(format!(
                "k = {} is below the collective's minimum batch of {}",
                spec.min_batch, manifest.min_batch
            ));
        }
        if spec.wallets_per_round < spec.min_batch {
            return invalid(format!(
                "{} wallets per round can never make a batch of k = {}",
                spec.wallets_per_round, spec.min_batch
            ));
        }
        if spec.round_deadline_ms < 100 {
            return invalid("the round deadline must be at least 100 ms".into());
        }
        if spec.budget.0 < manifest.rate.0.saturating_mul(u64::from(spec.min_batch)) {
            return invalid(format!(
                "a budget of {} cannot pay even one batch of {} accesses at {}",
                spec.budget, spec.min_batch, manifest.rate
            ));
        }
        if !(spec.server_lr.is_finite() && spec.server_lr > 0.0) {
            return invalid("the server learning rate must be positive".into());
        }
        if !(0.0..1.0).contains(&spec.momentum) {
            return invalid("the server momentum must be within [0, 1)".into());
        }
        if let Some(dp) = &spec.dp {
            crate::aggregation::check_dp(&spec.rule, dp)
                .map_err(|e| CollectiveError::Invalid(e.to_string()))?;
        }
        // A rule with impossible parameters fails here, not in round 1.
        crate::aggregation::aggregate(&spec.rule, &vec![vec![0.0f32]; 8], &[1.0; 8], None)
            .map_err(|e| CollectiveError::Invalid(format!("rule {}: {e}", spec.rule)))?;

        let bytes = self
            .registry
            .algorithm(collective_id, &spec.algorithm_sha256)?;
        let component = self
            .sandbox
            .load(&bytes)
            .map_err(|e| CollectiveError::Invalid(e.to_string()))?;
        let info = self
            .sandbox
            .describe(&component)
            .into_result()
            .map_err(|e| CollectiveError::Invalid(format!("describe failed: {e}")))?;
        let resolved = Params::resolve(&info.params, spec.params.clone())
            .map_err(|e| CollectiveError::Invalid(format!("{}: {e}", info.name)))?;
        let model = match &spec.initial_model {
            Some(m) => m.clone(),
            None => {
                let schema = &requirement.columns;
                let label = info.spec(LABEL).and_then(|_| resolved.text(LABEL).ok());
                let requested = if info.spec(FEATURES).is_some() {
                    resolved
                        .text_list(FEATURES)
                        .map(<[String]>::to_vec)
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let features = select_features(schema, &requested, label);
                let count = feature_count(schema, &features).map_err(|e| {
                    CollectiveError::Invalid(format!("table '{}': {e}", spec.table))
                })?;
                self.sandbox
                    .init_model(&component, &spec.params, count)
                    .into_result()
                    .map_err(|e| CollectiveError::Invalid(format!("init-model failed: {e}")))?
            }
        };
        if model.is_empty() || model.iter().any(|v| !v.is_finite()) {
            return invalid("the initial model is empty or not finite".into());
        }
        let id = new_id("j");
        let provenance = Provenance {
            job_id: id.clone(),
            round: 0,
            parent: None,
            algorithm_sha256: spec.algorithm_sha256.clone(),
            updates_aggregated: 0,
            examples: 0,
            counts: BatchCounts::default(),
            rule: None,
            filter_report: "initial model".into(),
            metrics: Vec::new(),
            dp: None,
            server_lr: spec.server_lr,
            momentum: spec.momentum,
        };
        self.db.write(|tx| {
            let hash = Models::insert_in(tx, collective_id, &model, &provenance)?;
            let now = now_ms() as i64;
            tx.execute(
                "INSERT INTO jobs (id, collective_id, spec, status, rounds_done, next_round, model_hash,
                                   created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 'running', 0, 1, ?4, ?5, ?5)",
                params![id, collective_id, serde_json::to_string(&spec)?, hash, now],
            )?;
            self.ledger.append_in(
                tx,
                collective_id,
                EntryKind::JobStarted {
                    job_id: id.clone(),
                    budget: spec.budget,
                },
            )?;
            self.ledger.append_in(
                tx,
                collective_id,
                EntryKind::ModelVersion {
                    job_id: id.clone(),
                    round: 0,
                    model_hash: hash,
                    parent_hash: None,
                },
            )?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Asks a job to stop after its current round.
    pub fn stop_job(&self, collective_id: &str, job_id: &str) -> Result<()> {
        let job = self.job_row(job_id)?;
        if job.collective_id != collective_id {
            return Err(CollectiveError::NotFound(format!(
                "no job '{job_id}' in '{collective_id}'"
            )));
        }
        self.db.write(|tx| {
            tx.execute(
                "UPDATE jobs SET stop_requested = 1 WHERE id = ?1",
                params![job_id],
            )?;
            Ok(())
        })
    }

    /// Budget that open rounds of other jobs may still pay.
    fn reserved(&self, collective_id: &str, except_job: &str, rate: Amount) -> Result<u64> {
        self.db.read(|c| {
            let sampled: i64 = c.query_row(
                "SELECT COALESCE(SUM(r.sampled), 0) FROM rounds r JOIN jobs j ON j.id = r.job_id
                 WHERE j.collective_id = ?1 AND r.status = 'open' AND j.id <> ?2",
                params![collective_id, except_job],
                |r| r.get(0),
            )?;
            let paid: i64 = c.query_row(
                "SELECT COUNT(*) FROM payments p JOIN rounds r ON r.job_id = p.job_id AND r.round = p.round
                 WHERE p.collective_id = ?1 AND r.status = 'open' AND p.job_id <> ?2",
                params![collective_id, except_job],
                |r| r.get(0),
            )?;
            Ok((sampled - paid).max(0) as u64 * rate.0)
        })
    }

    /// Opens the job's next round: samples live wallets within the budget,
    /// signs their tasks, and opens the round at the aggregator.
    pub fn open_round(&self, job_id: &str) -> Result<RoundStart> {
        let job = self.job_row(job_id)?;
        if job.state != JobState::Running {
            return Ok(RoundStart::Finished(job.state));
        }
        if job.stop_requested {
            self.finish(&job, JobState::Stopped, "stopped by the operator")?;
            return Ok(RoundStart::Finished(JobState::Stopped));
        }
        if job.next_round > job.spec.rounds {
            self.finish(&job, JobState::Completed, "all rounds ran")?;
            return Ok(RoundStart::Finished(JobState::Completed));
        }
        let collective_id = &job.collective_id;
        let manifest = self.registry.manifest_body(collective_id)?;
        let rate = manifest.rate;
        let (deposited, paid) = self.ledger.balance(collective_id)?;
        let available = deposited
            .0
            .saturating_sub(paid.0)
            .saturating_sub(self.reserved(collective_id, job_id, rate)?);
        let job_left = job.spec.budget.0.saturating_sub(job.spent.0);
        let capacity = (available.min(job_left) / rate.0) as usize;
        let k = job.spec.min_batch as usize;
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
        let since = now_ms().saturating_sub(self.config.liveness_ms);
        let live = self.registry.live_wallets(collective_id, since)?;
        let m = (job.spec.wallets_per_round as usize)
            .min(live.len())
            .min(capacity);
        if m < k {
            return Ok(RoundStart::Waiting(format!(
                "{} live wallets, {k} needed for a batch",
                live.len()
            )));
        }
        let round = job.next_round;
        let sampled = distributor::sample(&live, m, job.spec.seed, round);
        let model = self.models.get(collective_id, &job.model_hash)?;
        let key = self.registry.collective_key(collective_id)?;
        let deadline = now_ms() + job.spec.round_deadline_ms;
        let mut tasks = Vec::with_capacity(sampled.len());
        for wallet in &sampled {
            let task = Task {
                header: Header {
                    purpose: Purpose::Task,
                    collective_id: collective_id.clone(),
                    issued_at_ms: now_ms(),
                    expires_at_ms: deadline + TASK_SLACK_MS,
                    nonce: c2ssi_protocol::new_nonce(),
                },
                job_id: job_id.to_string(),
                round,
                wallet: *wallet,
                algorithm_sha256: job.spec.algorithm_sha256.clone(),
                table: job.spec.table.clone(),
                params: job.spec.params.clone(),
                model: model.params.clone(),
                seed: distributor::task_seed(job.spec.seed, round, wallet),
                clip_norm: job.spec.clip_norm,
                update_url: self.config.update_url.clone(),
            };
            let signed = Signed::sign(&task, &key)?;
            tasks.push((
                *wallet,
                hex::encode(signed.digest()),
                serde_json::to_string(&signed)?,
            ));
        }
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO rounds (job_id, round, status, sampled, opened_ms, deadline_ms)
                 VALUES (?1, ?2, 'open', ?3, ?4, ?5)",
                params![job_id, round, sampled.len() as i64, now_ms() as i64, deadline as i64],
            )?;
            for (wallet, digest, task) in &tasks {
                tx.execute(
                    "INSERT INTO assignments (job_id, round, wallet, task, task_digest) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![job_id, round, wallet.to_hex(), task, digest],
                )?;
            }
            Ok(())
        })?;
        self.aggregator.open_round(
            &key,
            RoundKey {
                collective_id: collective_id.clone(),
                job_id: job_id.to_string(),
                round,
            },
            tasks.into_iter().map(|(w, d, _)| (w, d)).collect(),
            model.params.len(),
        )?;
        Ok(RoundStart::Opened {
            round,
            sampled: sampled.len(),
            deadline_ms: deadline,
        })
    }

    /// Every task of a round, undelivered ones marked delivered: the
    /// distributor pushing tasks to wallets in this process (the simulation).
    /// Not part of the HTTP API, which never says who was sampled.
    pub fn push_tasks(&self, job_id: &str, round: u32) -> Result<Vec<(PublicKey, Signed<Task>)>> {
        self.db.write(|tx| {
            let rows: Vec<(String, String)> = {
                let mut stmt = tx.prepare(
                    "SELECT wallet, task FROM assignments WHERE job_id = ?1 AND round = ?2 AND delivered = 0",
                )?;
                let rows = stmt.query_map(params![job_id, round], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            tx.execute(
                "UPDATE assignments SET delivered = 1 WHERE job_id = ?1 AND round = ?2",
                params![job_id, round],
            )?;
            rows.into_iter()
                .map(|(w, t)| Ok((PublicKey::from_hex(&w)?, serde_json::from_str(&t)?)))
                .collect()
        })
    }

    /// Assigned wallets of an open round that answered, and assigned wallets.
    pub fn round_progress(&self, job_id: &str, round: u32) -> Result<Option<(usize, usize)>> {
        let job = self.job_row(job_id)?;
        self.aggregator.progress(&RoundKey {
            collective_id: job.collective_id,
            job_id: job_id.to_string(),
            round,
        })
    }

    /// Closes an open round: applies the batch result (or records that there
    /// was none) and moves the job on, in one transaction.
    pub fn close_round(&self, job_id: &str, round: u32) -> Result<RoundEnd> {
        let job = self.job_row(job_id)?;
        let collective_id = job.collective_id.clone();
        let manifest = self.registry.manifest_body(&collective_id)?;
        let key = RoundKey {
            collective_id: collective_id.clone(),
            job_id: job_id.to_string(),
            round,
        };
        let subscribers = self.registry.subscribers(&collective_id)?.len().max(1);
        let sampled: i64 = self.db.read(|c| {
            Ok(c.query_row(
                "SELECT sampled FROM rounds WHERE job_id = ?1 AND round = ?2",
                params![job_id, round],
                |r| r.get(0),
            )?)
        })?;
        let spec = CloseSpec {
            rule: job.spec.rule.clone(),
            min_batch: job.spec.min_batch,
            previous: job.previous_aggregate.clone(),
            dp: job.spec.dp,
            sampling_rate: (sampled as f64 / subscribers as f64).min(1.0),
            rounds_before: job.dp_rounds,
        };
        let signer = self.registry.collective_key(&collective_id)?;
        let outcome = self.aggregator.close_round(&signer, &key, &spec);
        let model = self.models.get(&collective_id, &job.model_hash)?;
        match outcome {
            Ok(signed) => {
                let batch = signed.open(
                    Some(&manifest.aggregator_key),
                    Purpose::BatchResult,
                    now_ms(),
                )?;
                if batch.job_id != job_id
                    || batch.round != round
                    || batch.aggregate.len() != model.params.len()
                {
                    return Err(CollectiveError::Internal(
                        "the batch result does not match the round".into(),
                    ));
                }
                let velocity = job
                    .velocity
                    .clone()
                    .unwrap_or_else(|| vec![0.0; model.params.len()]);
                let (params_, velocity) = server_step(
                    &model.params,
                    &velocity,
                    &batch.aggregate,
                    job.spec.server_lr,
                    job.spec.momentum,
                );
                if params_.iter().any(|v| !v.is_finite()) {
                    return self.fail_round(
                        &job,
                        round,
                        sampled,
                        batch.counts,
                        "the model diverged (not finite)",
                    );
                }
                let provenance = Provenance {
                    job_id: job_id.to_string(),
                    round,
                    parent: Some(job.model_hash.clone()),
                    algorithm_sha256: job.spec.algorithm_sha256.clone(),
                    updates_aggregated: batch.counts.aggregated,
                    examples: batch.examples,
                    counts: batch.counts.clone(),
                    rule: Some(batch.rule.clone()),
                    filter_report: batch.filter_report.clone(),
                    metrics: batch.metrics.clone(),
                    dp: batch.dp,
                    server_lr: job.spec.server_lr,
                    momentum: job.spec.momentum,
                };
                let summary = self.db.write(|tx| {
                    let hash = Models::insert_in(tx, &collective_id, &params_, &provenance)?;
                    self.ledger.append_in(
                        tx,
                        &collective_id,
                        EntryKind::ModelVersion {
                            job_id: job_id.to_string(),
                            round,
                            model_hash: hash.clone(),
                            parent_hash: Some(job.model_hash.clone()),
                        },
                    )?;
                    let summary = RoundSummary {
                        round,
                        status: "closed".into(),
                        sampled: sampled as u32,
                        counts: batch.counts.clone(),
                        metrics: batch.metrics.clone(),
                        report: batch.filter_report.clone(),
                        model_hash: Some(hash.clone()),
                    };
                    tx.execute(
                        "UPDATE rounds SET status = 'closed', closed_ms = ?3, outcome = ?4 WHERE job_id = ?1 AND round = ?2",
                        params![job_id, round, now_ms() as i64, serde_json::to_string(&summary)?],
                    )?;
                    tx.execute(
                        "UPDATE jobs SET model_hash = ?2, velocity = ?3, previous_aggregate = ?4,
                                rounds_done = rounds_done + 1, next_round = ?5,
                                dp_rounds = dp_rounds + ?6, epsilon = COALESCE(?7, epsilon), updated_ms = ?8
                         WHERE id = ?1",
                        params![
                            job_id,
                            hash,
                            to_blob(&velocity),
                            to_blob(&batch.aggregate),
                            round + 1,
                            i64::from(batch.dp.is_some()),
                            batch.dp.map(|d| d.epsilon),
                            now_ms() as i64
                        ],
                    )?;
                    Ok(summary)
                })?;
                Ok(RoundEnd::Applied(summary))
            }
            Err(CloseError::TooFew { valid, counts, .. }) => {
                let reason = format!(
                    "{valid} valid updates, fewer than k = {}: nothing released",
                    job.spec.min_batch
                );
                self.fail_round(&job, round, sampled, counts, &reason)
            }
            Err(CloseError::NotOpen(_)) => self.fail_round(
                &job,
                round,
                sampled,
                BatchCounts::default(),
                "the aggregator did not have the round open",
            ),
            Err(e) => self.fail_round(&job, round, sampled, BatchCounts::default(), &e.to_string()),
        }
    }

    fn fail_round(
        &self,
        job: &JobRow,
        round: u32,
        sampled: i64,
        counts: BatchCounts,
        reason: &str,
    ) -> Result<RoundEnd> {
        let summary = RoundSummary {
            round,
            status: "failed".into(),
            sampled: sampled as u32,
            counts,
            metrics: Vec::new(),
            report: reason.to_string(),
            model_hash: None,
        };
        self.db.write(|tx| {
            tx.execute(
                "UPDATE rounds SET status = 'failed', closed_ms = ?3, outcome = ?4 WHERE job_id = ?1 AND round = ?2",
                params![job.id, round, now_ms() as i64, serde_json::to_string(&summary)?],
            )?;
            tx.execute(
                "UPDATE jobs SET next_round = ?2, updated_ms = ?3 WHERE id = ?1",
                params![job.id, round + 1, now_ms() as i64],
            )?;
            Ok(())
        })?;
        Ok(RoundEnd::Failed(summary))
    }

    fn finish(&self, job: &JobRow, state: JobState, reason: &str) -> Result<()> {
        self.db.write(|tx| {
            let changed = tx.execute(
                "UPDATE jobs SET status = ?2, reason = ?3, updated_ms = ?4 WHERE id = ?1 AND status = 'running'",
                params![job.id, state.as_str(), reason, now_ms() as i64],
            )?;
            if changed > 0 {
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

    /// After a restart: every round left open is abandoned (its updates were
    /// only in memory; the accesses already paid stay paid), and its job goes
    /// on with the next round. Returns the running jobs.
    pub fn recover(&self) -> Result<Vec<String>> {
        self.db.write(|tx| {
            let open: Vec<(String, i64)> = {
                let mut stmt = tx.prepare("SELECT job_id, round FROM rounds WHERE status = 'open'")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            for (job, round) in open {
                let summary = RoundSummary {
                    round: round as u32,
                    status: "abandoned".into(),
                    sampled: 0,
                    counts: BatchCounts::default(),
                    metrics: Vec::new(),
                    report: "the service restarted during the round; its updates were lost".into(),
                    model_hash: None,
                };
                tx.execute(
                    "UPDATE rounds SET status = 'abandoned', closed_ms = ?3, outcome = ?4 WHERE job_id = ?1 AND round = ?2",
                    params![job, round, now_ms() as i64, serde_json::to_string(&summary)?],
                )?;
                tx.execute(
                    "UPDATE jobs SET next_round = MAX(next_round, ?2) WHERE id = ?1",
                    params![job, round + 1],
                )?;
            }
            let mut stmt = tx.prepare("SELECT id FROM jobs WHERE status = 'running' ORDER BY created_ms")?;
            let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
            Ok(ids)
        })
    }

    /// A job's status.
    pub fn job_status(&self, collective_id: &str, job_id: &str) -> Result<JobStatus> {
        let job = self.job_row(job_id)?;
        if job.collective_id != collective_id {
            return Err(CollectiveError::NotFound(format!(
                "no job '{job_id}' in '{collective_id}'"
            )));
        }
        let rounds: Vec<RoundSummary> = self.db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT round, status, sampled, outcome FROM rounds WHERE job_id = ?1 ORDER BY round",
            )?;
            let rows = stmt.query_map(params![job_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<String>>(3)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (round, status, sampled, outcome) = row?;
                out.push(match outcome {
                    Some(text) => serde_json::from_str(&text)?,
                    None => RoundSummary {
                        round: round as u32,
                        status,
                        sampled: sampled as u32,
                        counts: BatchCounts::default(),
                        metrics: Vec::new(),
                        report: String::new(),
                        model_hash: None,
                    },
                });
            }
            Ok(out)
        })?;
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
            epsilon: job.epsilon,
            rounds,
        })
    }

    /// The jobs of a collective.
    pub fn jobs(&self, collective_id: &str) -> Result<Vec<JobStatus>> {
        let ids: Vec<String> = self.db.read(|c| {
            let mut stmt =
                c.prepare("SELECT id FROM jobs WHERE collective_id = ?1 ORDER BY created_ms")?;
            let ids = stmt
                .query_map(params![collective_id], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(ids)
        })?;
        ids.iter()
            .map(|id| self.job_status(collective_id, id))
            .collect()
    }

    /// Model versions.
    pub fn model_versions(
        &self,
        collective_id: &str,
        job_id: Option<&str>,
    ) -> Result<Vec<ModelSummary>> {
        self.registry.manifest(collective_id)?;
        self.models.list(collective_id, job_id)
    }

    /// One model version.
    pub fn model(&self, collective_id: &str, hash: &str) -> Result<ModelVersion> {
        self.models.get(collective_id, hash)
    }

    /// The ledger's entries.
    pub fn ledger_entries(&self, collective_id: &str) -> Result<Vec<LedgerEntry>> {
        self.registry.manifest(collective_id)?;
        self.ledger.entries(collective_id)
    }

    /// The ledger, verified.
    pub fn verify_ledger(&self, collective_id: &str) -> Result<LedgerSummary> {
        self.registry.manifest(collective_id)?;
        self.ledger.verify(collective_id)
    }

    /// A wallet's receipts (the simulation's wallets fetch them without HTTP).
    pub fn receipts(
        &self,
        collective_id: &str,
        wallet: &PublicKey,
        after: u64,
    ) -> Result<Vec<Signed<Receipt>>> {
        self.ledger.receipts(collective_id, wallet, after)
    }

    /// Payments per job and round, counted (never naming the wallets).
    pub fn payment_counts(&self, collective_id: &str) -> Result<BTreeMap<String, u64>> {
        self.db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT job_id, COUNT(*) FROM payments WHERE collective_id = ?1 GROUP BY job_id",
            )?;
            let rows = stmt.query_map(params![collective_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (job, n) = row?;
                out.insert(job, n as u64);
            }
            Ok(out)
        })
    }
}

fn to_blob(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

struct JobRow {
    id: String,
    collective_id: String,
    spec: JobSpec,
    state: JobState,
    reason: Option<String>,
    rounds_done: u32,
    next_round: u32,
    model_hash: String,
    velocity: Option<Vec<f32>>,
    previous_aggregate: Option<Vec<f32>>,
    dp_rounds: u32,
    epsilon: Option<f64>,
    spent: Amount,
    stop_requested: bool,
}

fn load_job(c: &rusqlite::Connection, job_id: &str) -> Result<JobRow> {
    let row = c
        .query_row(
            "SELECT collective_id, spec, status, reason, rounds_done, next_round, model_hash, velocity,
                    previous_aggregate, dp_rounds, epsilon, spent, stop_requested
             FROM jobs WHERE id = ?1",
            params![job_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<Vec<u8>>>(7)?,
                    r.get::<_, Option<Vec<u8>>>(8)?,
                    r.get::<_, i64>(9)?,
                    r.get::<_, Option<f64>>(10)?,
                    r.get::<_, i64>(11)?,
                    r.get::<_, i64>(12)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| CollectiveError::NotFound(format!("no job '{job_id}'")))?;
    Ok(JobRow {
        id: job_id.to_string(),
        collective_id: row.0,
        spec: serde_json::from_str(&row.1)?,
        state: JobState::parse(&row.2),
        reason: row.3,
        rounds_done: row.4 as u32,
        next_round: row.5 as u32,
        model_hash: row.6,
        velocity: row.7.map(|b| from_bytes(&b)),
        previous_aggregate: row.8.map(|b| from_bytes(&b)),
        dp_rounds: row.9 as u32,
        epsilon: row.10,
        spent: Amount(row.11 as u64),
        stop_requested: row.12 != 0,
    })
}
