//! One simulation: a consumer, a broker, an aggregator and one encrypted
//! wallet per person, in one process, over the same code paths as the real
//! processes (the sandbox, the consumer's signed manifest and commands, the
//! broker's tasks and ledger in SQLite, the wallet agent itself with its
//! checks, clipping, privacy budget and sealed updates, the aggregator's
//! checks and noise), with the HTTP hops replaced by calls. At the end: the held-out metric beside a
//! centralized linfa fit on the same split, the epsilon the job cost each
//! wallet, the ledger's totals, and a chart of the curve.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use c2ssi_aggregator::process::AggregatorState;
use c2ssi_aggregator::{Aggregator, AggregatorKeys, NoiseSource};
use c2ssi_audit::AuditOptions;
use c2ssi_broker::database::Database;
use c2ssi_broker::distributor::Randomness;
use c2ssi_broker::{Broker, BrokerConfig, RoundEnd, RoundStart};
use c2ssi_guest_sdk::encode::select_features;
use c2ssi_guest_sdk::{Column, ColumnSpec, ColumnType, Evaluation, Param, ParamValue, Params};
use c2ssi_protocol::{
    AggregationRule, AllowedAlgorithm, Amount, Command, DataRequirements, Header, JobSpec,
    LrSchedule, ManifestSubmission, OperatorCommand, PrivacyTerms, PublicKey, Purpose,
    ServerOptimizer, Signed, Signer, SigningKey, Subscription, TableRequirement, Task,
    collective_id, now_ms,
};
use c2ssi_sandbox::{Sandbox, SandboxLimits, TaskError};
use collective::manifest_file::{ManifestFile, TermsFile, build};
use serde::Serialize;
use wallet_host::agent::worker::{PassReport, Worker};
use wallet_host::agent::{
    POLICY_FILE, Policy, SUBSCRIPTIONS_FILE, SubscriptionRecord, Subscriptions,
};
use wallet_host::store::{IfExists, KeyProtection, Wallet};

use crate::attack::{self, Attack};
use crate::baseline::{self, Problem};
use crate::chart::{self, Point};
use crate::data::{self, DataSource, People};
use crate::error::{Result, SimError};
use crate::links::{InProcessAggregator, InProcessBroker, InProcessTransport};

/// The algorithms of `algorithms/`, embedded at build time.
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// Where the algorithm comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AlgorithmSource {
    /// One of [`embedded::EMBEDDED`], by name.
    Embedded(String),
    /// A component file.
    File(PathBuf),
}

impl AlgorithmSource {
    fn bytes(&self) -> Result<Vec<u8>> {
        match self {
            AlgorithmSource::Embedded(name) => embedded::EMBEDDED
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.to_vec())
                .ok_or_else(|| {
                    SimError::Invalid(format!(
                        "no algorithm '{name}' (built in: {})",
                        embedded::EMBEDDED
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
            AlgorithmSource::File(path) => std::fs::read(path)
                .map_err(|e| SimError::Invalid(format!("reading {}: {e}", path.display()))),
        }
    }
}

/// The privacy terms of the simulated collective.
#[derive(Debug, Clone, PartialEq)]
pub enum PrivacySetting {
    /// No noise: exact releases, no guarantee (research only).
    Off,
    /// Noise calibrated so that one job costs each wallet at most `epsilon`.
    On {
        /// Epsilon per job, at `delta`.
        epsilon: f64,
        /// The norm each wallet clips its update to.
        clip_norm: f64,
        /// The delta.
        delta: f64,
        /// The most rounds one wallet takes part in; `None`: every round.
        rounds_per_wallet: Option<u32>,
    },
}

/// Everything a simulation can be told.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// The people.
    pub data: DataSource,
    /// The algorithm.
    pub algorithm: AlgorithmSource,
    /// Hyper-parameters beyond the defaults for the algorithm.
    pub params: Vec<Param>,
    /// Rounds.
    pub rounds: u32,
    /// Wallets sampled per round; `None`: every wallet.
    pub wallets_per_round: Option<u32>,
    /// k.
    pub min_batch: u32,
    /// The aggregation rule.
    pub rule: AggregationRule,
    /// Server learning rate.
    pub server_lr: f64,
    /// Server momentum (FedAvgM's).
    pub momentum: f64,
    /// The server optimizer.
    pub optimizer: ServerOptimizer,
    /// The server learning rate's schedule.
    pub schedule: LrSchedule,
    /// Fraction of wallets that attack.
    pub attackers: f64,
    /// Their attack.
    pub attack: Attack,
    /// Its strength; `None`: the attack's default.
    pub attack_scale: Option<f64>,
    /// The privacy terms.
    pub privacy: PrivacySetting,
    /// Held-out fraction of the people.
    pub test_fraction: f64,
    /// This many wallets, each holding a person drawn with replacement from
    /// the training people (a scale test); `None`: one wallet per training person.
    pub wallets: Option<usize>,
    /// Seed of everything the simulation draws.
    pub seed: u64,
    /// Where wallets (on disk) and the broker's state go; `None`: wallets in memory, the
    /// broker's state in a temporary directory.
    pub workdir: Option<PathBuf>,
    /// Where to draw the chart; `None`: no chart.
    pub chart: Option<PathBuf>,
    /// Threads that run wallets' tasks.
    pub threads: usize,
    /// Keep every released aggregate in the summary (for the privacy attacks).
    pub keep_releases: bool,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions {
            data: DataSource::Diabetes,
            algorithm: AlgorithmSource::Embedded("linear-regression".into()),
            params: Vec::new(),
            rounds: 60,
            wallets_per_round: None,
            min_batch: 10,
            rule: AggregationRule::Mean,
            server_lr: 1.0,
            momentum: 0.9,
            optimizer: ServerOptimizer::FedAvgM,
            schedule: LrSchedule::Cosine { floor: 0.0 },
            attackers: 0.0,
            attack: Attack::SignFlip,
            attack_scale: None,
            privacy: PrivacySetting::On {
                epsilon: 2.0,
                clip_norm: 0.1,
                delta: 1e-5,
                rounds_per_wallet: None,
            },
            test_fraction: 0.2,
            wallets: None,
            seed: 7,
            workdir: None,
            chart: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            keep_releases: false,
        }
    }
}

/// One round's release, as the consumer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// The round.
    pub round: u32,
    /// The aggregate (the difference of consecutive model versions, with
    /// server learning rate 1 and no momentum).
    pub aggregate: Vec<f32>,
    /// Wallets sampled for the round (the aggregate's denominator).
    pub sampled: u32,
}

/// Progress, reported as the simulation goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// Wallets created so far, of all.
    Wallets(usize, usize),
    /// A round ended.
    Round {
        /// The round.
        round: u32,
        /// Of how many.
        rounds: u32,
        /// The held-out metric now.
        held_out: f64,
    },
}

/// What a simulation found.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The dataset.
    pub dataset: String,
    /// The algorithm.
    pub algorithm: String,
    /// The held-out metric's name: `mse` or `accuracy` when the algorithm
    /// predicts (scored by the host, as the centralized fit is), else the
    /// algorithm's loss.
    pub metric: String,
    /// The name of the loss the algorithm's `evaluate` reports (each point's
    /// `loss`).
    pub loss: String,
    /// Whether lower is better.
    pub lower_is_better: bool,
    /// The federated model's held-out metric.
    pub federated: f64,
    /// The centralized linfa fit's held-out metric.
    pub centralized: Option<f64>,
    /// Which linfa fit.
    pub centralized_model: Option<String>,
    /// `federated / centralized - 1`.
    pub relative_difference: Option<f64>,
    /// Rounds run.
    pub rounds: u32,
    /// Rounds that released a batch.
    pub rounds_released: u32,
    /// Wallets sampled per round.
    pub wallets_per_round: u32,
    /// Wallets (people with a wallet).
    pub wallets: usize,
    /// Held-out people.
    pub held_out: usize,
    /// The rule.
    pub rule: String,
    /// Attacking wallets.
    pub attackers: usize,
    /// Their attack.
    pub attack: Option<Attack>,
    /// Whether the releases were noised.
    pub noise: bool,
    /// The noise multiplier of the terms.
    pub noise_multiplier: f64,
    /// The clipping norm of the terms.
    pub clip_norm: f64,
    /// Epsilon the job cost each wallet, at `delta` (`None`: no noise, no bound).
    pub epsilon: Option<f64>,
    /// The delta.
    pub delta: f64,
    /// Accesses paid.
    pub accesses_paid: u64,
    /// What they cost.
    pub budget_spent: Amount,
    /// The budget deposited.
    pub budget: Amount,
    /// Ledger entries, all verified.
    pub ledger_entries: u64,
    /// The curve.
    pub points: Vec<Point>,
    /// Where the chart is.
    pub chart: Option<PathBuf>,
    /// Seconds to create the wallets.
    pub setup_seconds: f64,
    /// Seconds of training.
    pub training_seconds: f64,
    /// Longest round, in seconds.
    pub slowest_round_seconds: f64,
    /// The process's peak resident memory, when known.
    pub peak_memory_bytes: Option<u64>,
    /// Every release, when asked for.
    #[serde(skip)]
    pub releases: Vec<Release>,
    /// The people behind the wallets, as rows of the dataset, in wallet order.
    #[serde(skip)]
    pub owners: Vec<usize>,
}

impl Summary {
    /// The released sums, as an attacker who reads the releases gets them:
    /// each aggregate times the wallets it is the mean of.
    pub fn released_sums(&self) -> Vec<Vec<f32>> {
        self.releases
            .iter()
            .map(|r| r.aggregate.iter().map(|a| a * r.sampled as f32).collect())
            .collect()
    }

    /// Each wallet's record in `people` (the dataset the run drew from), as
    /// the algorithm saw it, in wallet order.
    pub fn owner_records(&self, people: &People) -> Vec<c2ssi_guest_sdk::Table> {
        self.owners
            .iter()
            .map(|&row| data::rows(&people.table, &[row]))
            .collect()
    }
}

/// The process's peak resident set (Linux), in bytes.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The algorithms whose updates are whole Newton steps, which the server
/// must apply as they are.
const NEWTON_ALGORITHMS: &[&str] = &["logistic-newton", "softmax-newton"];

struct SimWallet {
    wallet: Wallet,
    attacker: bool,
}

fn default_params(
    algorithm: &str,
    label: &str,
    label_ty: &ColumnType,
    terms: &PrivacyTerms,
) -> Vec<Param> {
    let mut params = vec![Param::new("label", ParamValue::Text(label.into()))];
    match algorithm {
        // Updates scaled to the terms' clipping norm, so that none is
        // clipped (clipping would weigh people unequally).
        "least-squares" | "logistic-newton" | "softmax-newton" => {
            params.push(Param::new(
                "update_norm",
                ParamValue::Real(terms.clip_norm.min(1.0)),
            ));
        }
        "linear-regression" => {
            params.push(Param::new("learning_rate", ParamValue::Real(0.1)));
            params.push(Param::new("epochs", ParamValue::Integer(1)));
        }
        "logistic-regression" | "softmax-regression" => {
            params.push(Param::new("learning_rate", ParamValue::Real(0.5)));
            params.push(Param::new("epochs", ParamValue::Integer(1)));
        }
        _ => {}
    }
    if algorithm == "softmax-regression" || algorithm == "softmax-newton" {
        let classes = match label_ty {
            ColumnType::Category { levels } => levels.len() as i64,
            ColumnType::Boolean => 2,
            ColumnType::Integer {
                min: Some(lo),
                max: Some(hi),
            } => hi - lo + 1,
            _ => 2,
        };
        params.push(Param::new("classes", ParamValue::Integer(classes)));
    }
    params
}

fn merge(mut base: Vec<Param>, extra: &[Param]) -> Vec<Param> {
    for p in extra {
        base.retain(|b| b.name != p.name);
        base.push(p.clone());
    }
    base
}

fn internal(e: impl std::fmt::Display) -> SimError {
    SimError::Internal(e.to_string())
}

/// Every column of `schema` but the label.
fn features_of_all(schema: &[ColumnSpec], label: &str) -> Vec<String> {
    schema
        .iter()
        .filter(|c| c.name != label)
        .map(|c| c.name.clone())
        .collect()
}

/// The simulation's terms for a job of `rounds` rounds.
fn terms(options: &SimulateOptions) -> Result<PrivacyTerms> {
    let terms = match &options.privacy {
        PrivacySetting::Off => PrivacyTerms::with_noise(
            options.min_batch,
            1e6,
            1e-5,
            options.rounds,
            0.0,
            Vec::new(),
        ),
        PrivacySetting::On {
            epsilon,
            clip_norm,
            delta,
            rounds_per_wallet,
        } => PrivacyTerms::with_epsilon(
            options.min_batch,
            *clip_norm,
            *delta,
            rounds_per_wallet.unwrap_or(options.rounds),
            *epsilon,
            Vec::new(),
        ),
    };
    terms.map_err(|e| SimError::Invalid(e.to_string()))
}

/// Runs a simulation.
pub fn run(options: &SimulateOptions, progress: &(dyn Fn(Progress) + Sync)) -> Result<Summary> {
    let started = Instant::now();
    let people: People = data::load(&options.data)?;
    let (train_rows, test_rows) =
        data::split(people.table.row_count, options.test_fraction, options.seed);
    let schema = data::schema(&people.table);
    let label_ty = people
        .table
        .column(&people.label)
        .map_err(|e| SimError::Invalid(e.to_string()))?
        .ty
        .clone();
    let test_table = data::rows(&people.table, &test_rows);
    let train_table = data::rows(&people.table, &train_rows);
    let terms = terms(options)?;

    let temp;
    let workdir = match &options.workdir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().map_err(internal)?;
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&workdir)
        .map_err(|e| SimError::Internal(format!("{}: {e}", workdir.display())))?;

    // The aggregator and the broker, each behind the same checks as between
    // their processes.
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default()).map_err(internal)?);
    let broker_link = Arc::new(InProcessBroker::default());
    let aggregator = AggregatorState::with_link(
        Aggregator::new(
            AggregatorKeys::seeded_for_simulation(options.seed)?,
            NoiseSource::seeded_for_simulation(options.seed ^ 0x0015e),
        ),
        "in-process",
        broker_link.clone(),
    );
    let db = Database::open_with(&workdir.join("broker.db"), false)?;
    let broker = Arc::new(Broker::new(
        db,
        Arc::new(SigningKey::from_seed_for_simulation(
            options.seed,
            "broker",
        )?),
        sandbox.clone(),
        Arc::new(InProcessAggregator::new(aggregator.clone())),
        Randomness::seeded_for_simulation(options.seed),
        BrokerConfig {
            liveness_ms: u64::MAX / 4,
            allow_without_noise: !terms.has_noise(),
            audit: AuditOptions {
                seed: options.seed,
                ..AuditOptions::default()
            },
            ..BrokerConfig::default()
        },
    ));
    broker_link.connect(&broker);
    let transport = InProcessTransport::new(broker.clone(), aggregator.clone());

    let bytes = options.algorithm.bytes()?;
    let component = sandbox
        .load(&bytes)
        .map_err(|e| SimError::Invalid(format!("the algorithm was refused: {e}")))?;
    let info = sandbox
        .describe(&component)
        .into_result()
        .map_err(|e| SimError::Invalid(e.to_string()))?;
    if NEWTON_ALGORITHMS.contains(&info.name.as_str())
        && !(options.optimizer.is_fed_avg_m()
            && options.momentum == 0.0
            && options.schedule.is_constant()
            && options.server_lr == 1.0)
    {
        return Err(SimError::Invalid(format!(
            "{} takes Newton steps, which the server must apply as they are: give \
                 --momentum 0 --lr-schedule constant (with fedavgm at server rate 1); momentum \
                 repeats every step and the fit diverges",
            info.name
        )));
    }
    let params = merge(
        default_params(&info.name, &people.label, &label_ty, &terms),
        &options.params,
    );
    let resolved = Params::resolve(&info.params, params.clone())
        .map_err(|e| SimError::Invalid(format!("{}: {e}", info.name)))?;
    let features = select_features(
        &schema,
        resolved.text_list("features").unwrap_or(&[]),
        Some(&people.label),
    );

    // The consumer: its key, its signed manifest (with the algorithm), a deposit.
    let consumer = SigningKey::from_seed_for_simulation(options.seed, "consumer")?;
    let id = collective_id(&consumer.public_key());
    let sha = hex::encode(c2ssi_protocol::sha256(&bytes));
    let file = ManifestFile {
        name: format!("{}-simulation", options.data.name()),
        description: format!(
            "Simulated collective training {} on {}: predicts '{}'.",
            info.name,
            options.data.name(),
            people.label
        ),
        rate: "0.005".into(),
        requirements: DataRequirements {
            tables: vec![TableRequirement {
                table: people.table.name.clone(),
                columns: schema.clone(),
                min_rows: 1,
            }],
        },
        privacy: TermsFile::default(),
        // Simulated people are one key each by construction.
        credential: None,
    };
    let manifest = build(
        &file,
        terms.clone(),
        &consumer,
        &broker.keys(),
        1,
        vec![AllowedAlgorithm {
            sha256: sha.clone(),
            name: info.name.clone(),
            version: info.version.clone(),
        }],
    )
    .map_err(|e| SimError::Invalid(format!("{e:#}")))?;
    let signed_manifest = Signed::sign(&manifest, &consumer)?;
    {
        use base64::Engine as _;
        broker.submit_manifest(
            &id,
            &ManifestSubmission {
                manifest: signed_manifest.clone(),
                components_base64: vec![base64::engine::general_purpose::STANDARD.encode(&bytes)],
                audit_params: params.clone(),
            },
        )?;
    }
    let command = |command: Command| {
        Signed::sign(
            &OperatorCommand {
                header: Header::new(Purpose::OperatorCommand, &id, 60_000),
                command,
            },
            &consumer,
        )
    };

    // One wallet per person, subscribed, with a policy that takes
    // the simulation's terms.
    let owners: Vec<usize> = match options.wallets {
        None => (0..train_rows.len()).collect(),
        Some(n) => {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(options.seed ^ 0xa11ce);
            (0..n)
                .map(|_| rng.random_range(0..train_rows.len()))
                .collect()
        }
    };
    let n = owners.len();
    let wallets_per_round = options.wallets_per_round.unwrap_or(n as u32).min(n as u32);
    let budget = Amount(
        "0.005".parse::<Amount>()?.0 * u64::from(options.rounds) * u64::from(wallets_per_round),
    );
    broker.command(&id, &command(Command::Deposit { amount: budget })?)?;
    let policy = Policy {
        max_epsilon_per_job: terms
            .epsilon
            .unwrap_or(1.0)
            .max(Policy::default().max_epsilon_per_job),
        max_epsilon_per_year: terms
            .epsilon
            .unwrap_or(1.0)
            .max(Policy::default().max_epsilon_per_year),
        require_noise: terms.has_noise(),
        min_k: options.min_batch.min(Policy::default().min_k),
        ..Policy::default()
    };
    let attackers = ((options.attackers.clamp(0.0, 1.0)) * n as f64).round() as usize;
    let wallet_dir = workdir.join("wallets");
    let made = std::sync::atomic::AtomicUsize::new(0);
    let digest = hex::encode(signed_manifest.digest());
    let create = |i: usize| -> Result<SimWallet> {
        let label = format!("{i:06}");
        // Keys from the seed, so that sampling (which orders wallets by key)
        // repeats; stores in memory unless a work directory keeps them.
        let wallet = match &options.workdir {
            Some(_) => Wallet::init_for_simulation(
                &wallet_dir.join(&label),
                &KeyProtection::Identity(age::x25519::Identity::generate()),
                options.seed,
                &label,
            )?,
            None => Wallet::in_memory_for_simulation(options.seed, &label)?,
        };
        let mine = data::rows(&train_table, &[owners[i]]);
        wallet.put_table(mine, IfExists::Fail)?;
        wallet.update_document(POLICY_FILE, |p: &mut Policy| {
            *p = policy.clone();
            Ok(())
        })?;
        let subscription = Subscription {
            header: Header::new(Purpose::Subscription, &id, 60_000),
            wallet: Signer::public_key(wallet.keys()),
            manifest_digest: digest.clone(),
            consent: "simulated consent".into(),
            credentials: Vec::new(),
        };
        broker.subscribe(&id, &Signed::sign(&subscription, wallet.keys())?)?;
        wallet.update_document(SUBSCRIPTIONS_FILE, |subs: &mut Subscriptions| {
            subs.collectives.insert(
                id.clone(),
                SubscriptionRecord {
                    url: "in-process".into(),
                    manifest: signed_manifest.clone(),
                    subscribed_ms: now_ms(),
                    receipts_after: 0,
                    pending: None,
                },
            );
            Ok(())
        })?;
        let done = made.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if done.is_multiple_of(50) || done == n {
            progress(Progress::Wallets(done, n));
        }
        Ok(SimWallet {
            wallet,
            attacker: false,
        })
    };
    let mut wallets = parallel_map(n, options.threads, create)?;
    let mut order: Vec<usize> = (0..n).collect();
    {
        use rand::SeedableRng;
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(options.seed ^ 0xbad);
        c2ssi_guest_sdk::sgd::shuffle(&mut order, &mut rng);
    }
    for &i in order.iter().take(attackers) {
        wallets[i].attacker = true;
    }
    let by_key: HashMap<PublicKey, usize> = wallets
        .iter()
        .enumerate()
        .map(|(i, w)| (Signer::public_key(w.wallet.keys()), i))
        .collect();
    let keys: Vec<PublicKey> = by_key.keys().copied().collect();
    broker.subscriptions().touch(&id, &keys)?;
    let setup_seconds = started.elapsed().as_secs_f64();

    // Training.
    let training_started = Instant::now();
    let spec = JobSpec {
        algorithm_sha256: sha.clone(),
        table: people.table.name.clone(),
        params: params.clone(),
        rounds: options.rounds,
        wallets_per_round,
        round_deadline_ms: 10 * 60 * 1000,
        rule: options.rule.clone(),
        server_lr: options.server_lr,
        momentum: if options.optimizer.is_fed_avg_m() {
            options.momentum
        } else {
            0.0
        },
        optimizer: options.optimizer,
        schedule: options.schedule,
        budget,
        initial_model: None,
    };
    let job = match broker.command(&id, &command(Command::StartJob(spec))?)? {
        c2ssi_protocol::CommandOutcome::JobStarted { job_id } => job_id,
        other => return Err(SimError::Internal(format!("the broker answered {other:?}"))),
    };
    // The held-out measures, named by type, never guessed from names: the
    // algorithm's own loss from `evaluate`, and, when it predicts, its
    // predictions for the held-out rows without their label, scored by the
    // host against the truth as the centralized fit's are (mean squared
    // error for a real prediction, accuracy for classes). An algorithm that
    // does not predict (the privacy attacks) is compared with nothing.
    let truth = test_table
        .column(&people.label)
        .map_err(|e| SimError::Invalid(e.to_string()))?
        .clone();
    let label_spec = truth.spec();
    let unlabelled = test_table
        .project(&features_of_all(&schema, &people.label))
        .map_err(internal)?;
    let evaluate = |model: &[f32]| -> Result<Evaluation> {
        sandbox
            .evaluate(&component, model, &params, &test_table)
            .into_result()
            .map_err(|e| SimError::Internal(format!("evaluation failed: {e}")))
    };
    let predict = |model: &[f32]| -> Result<Option<Column>> {
        match sandbox
            .predict(&component, model, &params, &unlabelled, &label_spec)
            .into_result()
        {
            Ok(mut columns) => Ok(Some(columns.swap_remove(0))),
            Err(TaskError::Algorithm(message)) => {
                tracing::warn!(%message, "the algorithm does not predict: nothing to compare with the centralized fit");
                Ok(None)
            }
            Err(e) => Err(SimError::Internal(format!("prediction failed: {e}"))),
        }
    };
    let status = broker.job_status(&id, &job)?;
    let initial = broker.model(&id, &status.model_hash)?;
    let initial_evaluation = evaluate(&initial.params)?;
    let loss_name = initial_evaluation.loss.name.clone();
    let problem =
        predict(&initial.params)?.map(|p| Problem::of_prediction(&p, &schema, &people.label));

    // The centralized baseline, for the problem the predictions answer.
    let (centralized, centralized_model) = match problem.map(|problem| {
        baseline::centralized(
            problem,
            &schema,
            &features,
            &people.label,
            &train_table,
            &test_table,
        )
    }) {
        Some(Ok((v, m))) => (Some(v), Some(m.to_string())),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "no centralized baseline");
            (None, None)
        }
        None => (None, None),
    };
    let metric = problem.map_or(loss_name.clone(), |p| p.metric().to_string());
    let measure = |model: &[f32], evaluation: Option<Evaluation>| -> Result<(f64, f64)> {
        let loss = match evaluation {
            Some(e) => e.loss.value,
            None => evaluate(model)?.loss.value,
        };
        let held_out = match problem {
            Some(problem) => predict(model)?.map_or(f64::NAN, |p| problem.measure(&p, &truth)),
            None => loss,
        };
        Ok((held_out, loss))
    };
    let (held_out, loss) = measure(&initial.params, Some(initial_evaluation))?;
    let mut points = vec![Point {
        round: 0,
        held_out,
        loss,
        training_loss: None,
    }];
    let scale = options
        .attack_scale
        .unwrap_or_else(|| options.attack.default_scale());
    let mut slowest = 0f64;
    let mut releases = Vec::new();
    loop {
        let round_started = Instant::now();
        let round = match broker.open_round(&job)? {
            RoundStart::Opened { round, .. } => round,
            RoundStart::Waiting(why) => {
                return Err(SimError::Internal(format!("stalled: {why}")));
            }
            RoundStart::Finished(_) => break,
        };
        let tasks = broker.push_tasks(&job, round)?;
        run_round(
            &transport, &id, &tasks, &wallets, &by_key, &sandbox, options, scale, round,
        )?;
        let end = broker.close_round(&job, round)?;
        let status = broker.job_status(&id, &job)?;
        let model = broker.model(&id, &status.model_hash)?;
        if options.keep_releases
            && let RoundEnd::Released(summary) = &end
        {
            let parent = summary
                .model_hash
                .as_deref()
                .map(|h| broker.model(&id, h))
                .transpose()?
                .and_then(|m| m.provenance.parent);
            if let Some(parent) = parent {
                let before = broker.model(&id, &parent)?;
                releases.push(Release {
                    round,
                    aggregate: model
                        .params
                        .iter()
                        .zip(&before.params)
                        .map(|(a, b)| a - b)
                        .collect(),
                    sampled: summary.sampled,
                });
            }
        }

        // The sampled wallets' mean loss before training, by the name the
        // algorithm's evaluation gives its loss.
        let training_loss = match &end {
            RoundEnd::Released(s) => s
                .metrics
                .iter()
                .find(|m| m.name == format!("{loss_name}_before"))
                .map(|m| m.value),
            RoundEnd::NothingReleased(_) => None,
        };
        let (held_out, loss) = measure(&model.params, None)?;
        points.push(Point {
            round,
            held_out,
            loss,
            training_loss,
        });
        slowest = slowest.max(round_started.elapsed().as_secs_f64());
        progress(Progress::Round {
            round,
            rounds: options.rounds,
            held_out,
        });
    }
    let training_seconds = training_started.elapsed().as_secs_f64();
    let status = broker.job_status(&id, &job)?;
    let ledger = broker.verify_ledger(&id)?;
    let federated = points.last().map(|p| p.held_out).unwrap_or(f64::NAN);
    let chart = match &options.chart {
        Some(path) => {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            chart::draw(
                path,
                &format!(
                    "{} on {}: {} wallets, {}{}",
                    info.name,
                    options.data.name(),
                    n,
                    match status.epsilon_spent {
                        Some(e) => format!("epsilon {e:.2}"),
                        None => "no noise".into(),
                    },
                    if attackers > 0 {
                        format!(", {attackers} attackers ({:?})", options.attack)
                    } else {
                        String::new()
                    }
                ),
                &metric,
                &points,
                centralized,
                metric == loss_name,
            )?;
            Some(path.clone())
        }
        None => None,
    };
    Ok(Summary {
        dataset: options.data.name(),
        algorithm: info.name.clone(),
        metric: metric.clone(),
        loss: loss_name.clone(),
        lower_is_better: problem.is_none_or(|p| p.lower_is_better()),
        federated,
        relative_difference: centralized.map(|c| federated / c - 1.0),
        centralized,
        centralized_model,
        rounds: options.rounds,
        rounds_released: status.rounds_done,
        wallets_per_round,
        wallets: n,
        held_out: test_rows.len(),
        rule: options.rule.to_string(),
        attackers,
        attack: (attackers > 0).then_some(options.attack),
        noise: terms.has_noise(),
        noise_multiplier: terms.noise_multiplier,
        clip_norm: terms.clip_norm,
        epsilon: status.epsilon_spent,
        delta: terms.delta,
        accesses_paid: ledger.payments,
        budget_spent: ledger.paid,
        budget,
        ledger_entries: ledger.entries,
        points,
        chart,
        setup_seconds,
        training_seconds,
        slowest_round_seconds: slowest,
        peak_memory_bytes: peak_memory_bytes(),
        releases,
        owners: owners.iter().map(|&o| train_rows[o]).collect(),
    })
}

/// `f(0..n)` on `threads` threads, in order.
fn parallel_map<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let threads = threads.clamp(1, 64);
    let chunk = n.div_ceil(threads).max(1);
    let results: Vec<Result<Vec<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                let f = &f;
                s.spawn(move || {
                    (start..(start + chunk).min(n))
                        .map(f)
                        .collect::<Result<Vec<T>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(SimError::Internal("a worker thread panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(n);
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// One round from the wallets' side. Each honest wallet runs the real
/// wallet agent ([`Worker::handle`]) on the task the broker pushed to it,
/// which is what its check-in would have handed it: it checks the task,
/// trains and applies the manifest's terms, seals, sends the envelope to the
/// aggregator, keeps the receipt and logs the access. Attackers tamper with
/// what they send.
#[allow(
    clippy::too_many_arguments,
    reason = "one round's whole context, passed once"
)]
fn run_round(
    transport: &InProcessTransport,
    id: &str,
    tasks: &[(PublicKey, Signed<Task>)],
    wallets: &[SimWallet],
    by_key: &HashMap<PublicKey, usize>,
    sandbox: &Sandbox,
    options: &SimulateOptions,
    scale: f64,
    round: u32,
) -> Result<()> {
    // The transport keeps the algorithm for every wallet; nothing is
    // written to each wallet's directory.
    let worker = |w: usize| {
        Worker::new(&wallets[w].wallet, sandbox)
            .through(transport)
            .keeping_algorithms_in(None)
    };
    let told = |report: PassReport| {
        for denial in &report.denied {
            tracing::warn!(%denial, "a wallet denied its task");
        }
        for error in &report.errors {
            tracing::warn!(%error, "a wallet's update did not go through");
        }
    };
    let wallet_of = |i: usize| by_key.get(&tasks[i].0).copied();

    // An attacker is a Byzantine client, not the agent: whoever attacks
    // writes their own client, so it does not run `Worker::handle`. Here it
    // takes the agent's steps up to the honest update (the checks, its
    // privacy cost, the training), the colluding attackers then replace
    // their updates together (ALIE needs all of theirs), and each seals and
    // sends what it made with the agent's last step.
    let attacking: Vec<(usize, usize)> = (0..tasks.len())
        .filter_map(|i| {
            wallet_of(i)
                .filter(|&w| wallets[w].attacker)
                .map(|w| (i, w))
        })
        .collect();
    let computed = parallel_map(attacking.len(), options.threads, |j| {
        let (i, w) = attacking[j];
        let task = &tasks[i].1;
        let worker = worker(w);
        let mut report = PassReport::default();
        let prepared = match worker.check(id, task, &mut report)? {
            Some(verified) => worker
                .compute(transport, id, task, &verified, &mut report)?
                .map(|computed| (i, w, verified, computed)),
            None => None,
        };
        told(report);
        Ok(prepared)
    })?;
    let mut computed: Vec<_> = computed.into_iter().flatten().collect();
    let tampering: Vec<usize> = computed
        .iter()
        .enumerate()
        .filter(|(_, (_, _, _, c))| c.payload.as_ref().is_some_and(|p| !p.delta.is_empty()))
        .map(|(k, _)| k)
        .collect();
    let honest: Vec<Vec<f32>> = tampering
        .iter()
        .filter_map(|&k| computed[k].3.payload.as_ref().map(|p| p.delta.clone()))
        .collect();
    let tampered = attack::tamper(
        options.attack,
        &honest,
        scale,
        tasks.len(),
        options.seed ^ u64::from(round),
    );
    for (&k, delta) in tampering.iter().zip(tampered) {
        if let Some(p) = computed[k].3.payload.as_mut() {
            p.delta = delta;
        }
    }
    let mut attacks: Vec<Option<_>> = (0..tasks.len()).map(|_| None).collect();
    for (i, _, verified, c) in computed {
        attacks[i] = Some((verified, c));
    }
    let attacks = std::sync::Mutex::new(attacks);

    // Every wallet sends: the honest ones by the agent, the attackers what
    // they made.
    parallel_map(tasks.len(), options.threads, |i| {
        let Some(w) = wallet_of(i) else {
            return Ok(());
        };
        let task = &tasks[i].1;
        let worker = worker(w);
        let mut report = PassReport::default();
        if wallets[w].attacker {
            let attack = attacks.lock().unwrap_or_else(|e| e.into_inner())[i].take();
            if let Some((verified, computed)) = attack {
                worker.send(transport, id, task, &verified, computed, &mut report)?;
            }
        } else {
            worker.handle(transport, id, task, &mut report)?;
        }
        told(report);
        Ok(())
    })?;
    Ok(())
}
