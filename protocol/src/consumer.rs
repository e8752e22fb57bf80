//! What the consumer (the collective) sends the broker: its signed manifests
//! with the components they add, and its commands (deposits, jobs), and
//! what the broker answers.

use c2ssi_guest_sdk::Param;
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::manifest::Manifest;
use crate::optimizer::{LrSchedule, ServerOptimizer};
use crate::rule::AggregationRule;
use crate::signing::{Header, Signed};

/// A new collective, or a new version of one: the manifest signed by the
/// collective's key, and every component it allows that the broker does
/// not hold yet.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManifestSubmission {
    /// The signed manifest (version 1 for a new collective, else the
    /// current version plus one).
    pub manifest: Signed<Manifest>,
    /// Components, base64, each one an allowed algorithm the broker does
    /// not hold yet.
    #[serde(default)]
    pub components_base64: Vec<String>,
    /// Hyper-parameters for the broker's privacy audit of the new
    /// components (a label, say); the audit also runs again, with the
    /// job's own hyper-parameters, when a job starts.
    #[serde(default)]
    pub audit_params: Vec<Param>,
}

/// The consumer's signed command to its collective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorCommand {
    /// Purpose `operator-command`.
    pub header: Header,
    /// What to do.
    pub command: Command,
}

/// The consumer's commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// Add budget.
    Deposit {
        /// How much.
        amount: Amount,
    },
    /// Start a training job.
    StartJob(JobSpec),
    /// Stop a job after its current round.
    StopJob {
        /// The job.
        job_id: String,
    },
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum CommandOutcome {
    /// The deposit is in the ledger.
    Deposited {
        /// Its ledger entry.
        entry_seq: u64,
        /// All deposits so far.
        deposited: Amount,
        /// All payments so far.
        paid: Amount,
    },
    /// The job started.
    JobStarted {
        /// Its id.
        job_id: String,
    },
    /// The job stops after its current round.
    StopRequested {
        /// The job.
        job_id: String,
    },
}

/// A training job. The privacy terms (k, clipping, noise, rounds per
/// wallet) are the manifest's, never the job's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// SHA-256 of an allowed algorithm, hex.
    pub algorithm_sha256: String,
    /// The required table it trains on.
    pub table: String,
    /// Hyper-parameters.
    pub params: Vec<Param>,
    /// Rounds to run.
    pub rounds: u32,
    /// Wallets sampled per round.
    pub wallets_per_round: u32,
    /// How long a round waits for updates.
    pub round_deadline_ms: u64,
    /// The aggregation rule (with noise, wrapped in the Gaussian mechanism
    /// calibrated to the rule's sensitivity).
    pub rule: AggregationRule,
    /// The server's learning rate on the aggregate.
    pub server_lr: f64,
    /// The server's momentum (FedAvgM's; the adaptive optimizers have their own).
    pub momentum: f64,
    /// How each release moves the model: FedAvgM when absent.
    #[serde(default, skip_serializing_if = "ServerOptimizer::is_fed_avg_m")]
    pub optimizer: ServerOptimizer,
    /// How the server learning rate changes over the rounds: constant when absent.
    #[serde(default, skip_serializing_if = "LrSchedule::is_constant")]
    pub schedule: LrSchedule,
    /// The most this job may spend.
    pub budget: Amount,
    /// The starting model; `None`: the algorithm's `init-model`.
    pub initial_model: Option<Vec<f32>>,
}
