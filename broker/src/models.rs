//! Model versions (table `models`): the server optimizer step that applies
//! each released aggregate, and the versions it produces, content-addressed,
//! stored with their provenance.

use crate::database::Sql;
use crate::params;
use c2ssi_protocol::{JobSpec, ModelSummary, ModelVersion, Provenance, model_hash};

use crate::database::Database;
use crate::error::{BrokerError, Result};

/// Parameters as little-endian bytes.
pub fn to_bytes(params: &[f32]) -> Vec<u8> {
    params.iter().flat_map(|p| p.to_le_bytes()).collect()
}

/// Parameters from little-endian bytes.
pub fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The job's optimizer step for `round`: the new model and the optimizer's
/// state (kept in `jobs.velocity`: FedAvgM's velocity, or the adaptive
/// optimizers' two moments one after the other), at the rate the job's
/// schedule gives that round.
pub fn server_step(
    spec: &JobSpec,
    round: u32,
    model: &[f32],
    state: &[f32],
    aggregate: &[f32],
) -> (Vec<f32>, Vec<f32>, f64) {
    let lr = spec.schedule.rate(spec.server_lr, round, spec.rounds);
    // A state of another shape (none yet) starts afresh.
    let state = if state.len() == spec.optimizer.state_per_parameter() * model.len() {
        state
    } else {
        &[]
    };
    let (model, state) = spec
        .optimizer
        .step(model, state, aggregate, lr, spec.momentum);
    (model, state, lr)
}

/// The model store.
#[derive(Clone, Debug)]
pub struct Models {
    db: Database,
}

impl Models {
    /// The store in `db`.
    pub fn new(db: Database) -> Models {
        Models { db }
    }

    /// Stores a version inside the caller's transaction: one per (job,
    /// round); the same parameters in two jobs are two versions with one
    /// content address.
    pub fn insert_in(
        tx: &Sql<'_>,
        collective_id: &str,
        params_: &[f32],
        provenance: &Provenance,
    ) -> Result<String> {
        let hash = model_hash(params_);
        tx.execute(
            "INSERT INTO models
             (hash, collective_id, job_id, round, parent_hash, params, provenance, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                hash,
                collective_id,
                provenance.job_id,
                provenance.round,
                provenance.parent,
                to_bytes(params_),
                serde_json::to_string(provenance)?,
                c2ssi_protocol::now_ms() as i64
            ],
        )?;
        Ok(hash)
    }

    /// Every version of a collective, oldest first.
    pub fn list(&self, collective_id: &str, job_id: Option<&str>) -> Result<Vec<ModelSummary>> {
        self.db.read(|c| {
            let rows = c.query_map(
                "SELECT hash, length(params), provenance, created_ms FROM models
                 WHERE collective_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR job_id = ?2)
                 ORDER BY created_ms, round",
                params![collective_id, job_id],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<i64>(1)?,
                        r.get::<String>(2)?,
                        r.get::<i64>(3)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (hash, len, provenance, created) = row;
                out.push(ModelSummary {
                    hash,
                    parameters: len as usize / 4,
                    provenance: serde_json::from_str(&provenance)?,
                    created_ms: created as u64,
                });
            }
            Ok(out)
        })
    }

    /// One version, with its parameters.
    pub fn get(&self, collective_id: &str, hash: &str) -> Result<ModelVersion> {
        self.db.read(|c| {
            let row: Option<(Vec<u8>, String, i64)> = c
                .query_opt(
                    "SELECT params, provenance, created_ms FROM models WHERE collective_id = ?1 AND hash = ?2
                     ORDER BY created_ms LIMIT 1",
                    params![collective_id, hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
            let (params_, provenance, created) = row.ok_or_else(|| {
                BrokerError::NotFound(format!("collective '{collective_id}' has no model {hash}"))
            })?;
            Ok(ModelVersion {
                hash: hash.to_string(),
                params: from_bytes(&params_),
                provenance: serde_json::from_str(&provenance)?,
                created_ms: created as u64,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use c2ssi_protocol::{LrSchedule, ServerOptimizer};

    fn spec(optimizer: ServerOptimizer, schedule: LrSchedule, lr: f64) -> JobSpec {
        JobSpec {
            algorithm_sha256: String::new(),
            table: String::new(),
            params: Vec::new(),
            rounds: 3,
            wallets_per_round: 10,
            round_deadline_ms: 1000,
            rule: c2ssi_protocol::AggregationRule::Mean,
            server_lr: lr,
            momentum: if optimizer.is_fed_avg_m() { 0.9 } else { 0.0 },
            optimizer,
            schedule,
            budget: c2ssi_protocol::Amount(1),
            initial_model: None,
        }
    }

    #[test]
    fn momentum_accumulates_and_the_learning_rate_scales() {
        let s = spec(ServerOptimizer::FedAvgM, LrSchedule::Constant, 1.0);
        let (w, v, lr) = server_step(&s, 1, &[1.0, 1.0], &[0.0, 0.0], &[0.5, -1.0]);
        assert_eq!((w, v.clone(), lr), (vec![1.5, 0.0], vec![0.5, -1.0], 1.0));
        let s = spec(ServerOptimizer::FedAvgM, LrSchedule::Constant, 0.5);
        let (w, v, _) = server_step(&s, 2, &[1.5, 0.0], &v, &[0.5, -1.0]);
        assert!((v[0] - 0.95).abs() < 1e-6 && (w[0] - 1.975).abs() < 1e-6);
    }

    #[test]
    fn the_schedule_sets_each_rounds_rate_and_adaptive_state_has_two_moments() {
        let s = spec(
            ServerOptimizer::FED_ADAM,
            LrSchedule::Cosine { floor: 0.0 },
            1.0,
        );
        let (_, state, lr) = server_step(&s, 1, &[0.0, 0.0], &[], &[1.0, 1.0]);
        assert_eq!((state.len(), lr), (4, 1.0));
        // Round 3 of 3: (1 + cos(2 pi / 3)) / 2 = 1/4 of the rate.
        let (_, _, lr) = server_step(&s, 3, &[0.0, 0.0], &state, &[1.0, 1.0]);
        assert!((lr - 0.25).abs() < 1e-12, "{lr}");
        // A FedAvgM-shaped state is not read as moments.
        let (_, state, _) = server_step(&s, 2, &[0.0, 0.0], &[5.0, 5.0], &[1.0, 1.0]);
        assert_eq!(state.len(), 4);
    }

    #[test]
    fn parameters_round_trip_through_bytes() {
        assert_eq!(from_bytes(&to_bytes(&[0.5, -3.0])), vec![0.5, -3.0]);
    }
}
