//! The checks a job must pass against its collective's manifest before it
//! starts: a pure function, so that every refusal is unit-tested.

use c2ssi_protocol::{JobSpec, Manifest, TableRequirement};

/// The most rounds a job may ask for.
pub const MAX_ROUNDS: u32 = 100_000;
/// The most wallets a round may sample.
pub const MAX_WALLETS_PER_ROUND: u32 = 1_000_000;
/// The longest a round may wait, in milliseconds (a day).
pub const MAX_ROUND_DEADLINE_MS: u64 = 24 * 3600 * 1000;
/// The most hyper-parameters a job may pass.
pub const MAX_PARAMS: usize = 256;
/// The most parameters an initial model may have.
pub const MAX_MODEL_PARAMS: usize = 4 << 20;

/// Checks `spec` against `manifest`; on success, the required table it
/// trains on. Each refusal says what to change.
pub fn validate<'m>(
    spec: &JobSpec,
    manifest: &'m Manifest,
) -> Result<&'m TableRequirement, String> {
    if manifest.allows(&spec.algorithm_sha256).is_none() {
        return Err(format!(
            "algorithm {} is not allowed by the manifest (add it first)",
            spec.algorithm_sha256
        ));
    }
    let Some(requirement) = manifest.requirements.table(&spec.table) else {
        return Err(format!(
            "table '{}' is not among the data requirements",
            spec.table
        ));
    };
    if spec.rounds == 0 || spec.rounds > MAX_ROUNDS {
        return Err(format!("a job runs 1 to {MAX_ROUNDS} rounds"));
    }
    let k = manifest.privacy.min_batch;
    if spec.wallets_per_round < k || spec.wallets_per_round > MAX_WALLETS_PER_ROUND {
        return Err(format!(
            "{} wallets per round: the manifest's k = {k} needs at least {k} (and at most \
             {MAX_WALLETS_PER_ROUND})",
            spec.wallets_per_round
        ));
    }
    if spec.round_deadline_ms < 100 || spec.round_deadline_ms > MAX_ROUND_DEADLINE_MS {
        return Err(format!(
            "the round deadline must be within 100 ms and {} s",
            MAX_ROUND_DEADLINE_MS / 1000
        ));
    }
    if spec.budget.0 < manifest.rate.0.saturating_mul(u64::from(k)) {
        return Err(format!(
            "a budget of {} cannot pay even one batch of {k} accesses at {}",
            spec.budget, manifest.rate
        ));
    }
    if !(spec.server_lr.is_finite() && spec.server_lr > 0.0) {
        return Err("the server learning rate must be positive".into());
    }
    if !(0.0..1.0).contains(&spec.momentum) {
        return Err("the server momentum must be within [0, 1)".into());
    }
    spec.optimizer.check()?;
    if !spec.optimizer.is_fed_avg_m() && spec.momentum != 0.0 {
        return Err(format!(
            "the server momentum is FedAvgM's; {} has its own (beta1): give momentum 0",
            spec.optimizer
        ));
    }
    spec.schedule.check()?;
    spec.rule
        .check()
        .map_err(|e| format!("rule {}: {e}", spec.rule))?;
    if spec.rule.keeps_momentum() && !(spec.optimizer.is_fed_avg_m() && spec.momentum == 0.0) {
        return Err(format!(
            "rule {} keeps the job's momentum itself: use the fedavgm optimizer with server \
             momentum 0 (`--momentum 0`)",
            spec.rule
        ));
    }
    if spec.params.len() > MAX_PARAMS {
        return Err(format!("more than {MAX_PARAMS} hyper-parameters"));
    }
    if let Some(model) = &spec.initial_model
        && (model.is_empty()
            || model.len() > MAX_MODEL_PARAMS
            || model.iter().any(|v| !v.is_finite()))
    {
        return Err(format!(
            "the initial model must have 1 to {MAX_MODEL_PARAMS} finite parameters"
        ));
    }
    Ok(requirement)
}

#[cfg(test)]
mod tests {
    use c2ssi_guest_sdk::{ColumnSpec, ColumnType};
    use c2ssi_protocol::{
        AggregationRule, AllowedAlgorithm, Amount, DataRequirements, Header, LrSchedule,
        PrivacyTerms, Purpose, ServerOptimizer, Signer, SigningKey, collective_id, privacy,
    };

    use super::*;

    fn manifest(terms: PrivacyTerms) -> Manifest {
        let key = SigningKey::generate().unwrap().public_key();
        Manifest {
            header: Header::new(Purpose::Manifest, &collective_id(&key), 60_000),
            version: 1,
            name: "n".into(),
            description: "d".into(),
            requirements: DataRequirements {
                tables: vec![TableRequirement {
                    table: "t".into(),
                    columns: vec![ColumnSpec {
                        name: "x".into(),
                        ty: ColumnType::Boolean,
                    }],
                    min_rows: 1,
                }],
            },
            allowed_algorithms: vec![AllowedAlgorithm {
                sha256: "a".repeat(64),
                name: "algo".into(),
                version: "1".into(),
            }],
            rate: Amount(10),
            privacy: terms,
            collective_key: key,
            broker_key: key,
            aggregator_key: key,
            aggregator_recipient: String::new(),
            credential: None,
        }
    }

    fn spec() -> JobSpec {
        JobSpec {
            algorithm_sha256: "a".repeat(64),
            table: "t".into(),
            params: Vec::new(),
            rounds: 3,
            wallets_per_round: 10,
            round_deadline_ms: 1000,
            rule: AggregationRule::Mean,
            server_lr: 1.0,
            momentum: 0.0,
            optimizer: ServerOptimizer::FedAvgM,
            schedule: LrSchedule::Constant,
            budget: Amount(1000),
            initial_model: None,
        }
    }

    #[test]
    fn a_good_job_passes() {
        let m = manifest(privacy::default_terms());
        assert_eq!(validate(&spec(), &m).unwrap().table, "t");
    }

    #[test]
    fn each_refusal_says_what_is_wrong() {
        let m = manifest(privacy::default_terms());
        let cases: Vec<(JobSpec, &str)> = vec![
            (
                JobSpec {
                    algorithm_sha256: "b".repeat(64),
                    ..spec()
                },
                "not allowed",
            ),
            (
                JobSpec {
                    table: "u".into(),
                    ..spec()
                },
                "not among the data requirements",
            ),
            (
                JobSpec {
                    rounds: 0,
                    ..spec()
                },
                "rounds",
            ),
            (
                JobSpec {
                    wallets_per_round: 9,
                    ..spec()
                },
                "k = 10",
            ),
            (
                JobSpec {
                    round_deadline_ms: 5,
                    ..spec()
                },
                "deadline",
            ),
            (
                JobSpec {
                    budget: Amount(99),
                    ..spec()
                },
                "cannot pay even one batch",
            ),
            (
                JobSpec {
                    server_lr: f64::NAN,
                    ..spec()
                },
                "learning rate",
            ),
            (
                JobSpec {
                    momentum: 1.0,
                    ..spec()
                },
                "momentum",
            ),
            (
                JobSpec {
                    rule: AggregationRule::TrimmedMean { trim: 0.7 },
                    ..spec()
                },
                "trim fraction",
            ),
            (
                JobSpec {
                    initial_model: Some(vec![f32::INFINITY]),
                    ..spec()
                },
                "finite parameters",
            ),
        ];
        for (job, words) in cases {
            let err = validate(&job, &m).unwrap_err();
            assert!(err.contains(words), "{err} does not say '{words}'");
        }
    }

    #[test]
    fn optimizers_and_schedules_are_checked() {
        let m = manifest(privacy::default_terms());
        let adam = JobSpec {
            optimizer: ServerOptimizer::FED_ADAM,
            schedule: LrSchedule::Cosine { floor: 0.1 },
            ..spec()
        };
        validate(&adam, &m).unwrap();
        let err = validate(
            &JobSpec {
                momentum: 0.9,
                ..adam.clone()
            },
            &m,
        )
        .unwrap_err();
        assert!(err.contains("beta1"), "{err}");
        let err = validate(
            &JobSpec {
                optimizer: ServerOptimizer::FedYogi {
                    beta1: 0.9,
                    beta2: 1.5,
                    tau: 1e-3,
                },
                ..spec()
            },
            &m,
        )
        .unwrap_err();
        assert!(err.contains("beta2"), "{err}");
        let err = validate(
            &JobSpec {
                schedule: LrSchedule::Cosine { floor: -1.0 },
                ..spec()
            },
            &m,
        )
        .unwrap_err();
        assert!(err.contains("floor"), "{err}");
    }

    #[test]
    fn every_rule_runs_with_noise_and_without() {
        for terms in [
            privacy::default_terms(),
            PrivacyTerms::with_noise(10, 1.0, 1e-5, 1, 0.0, Vec::new()).unwrap(),
        ] {
            let m = manifest(terms);
            for rule in [
                "median",
                "trimmed-mean:0.1",
                "multi-krum",
                "bucketing:2:median",
            ] {
                let job = JobSpec {
                    rule: rule.parse().unwrap(),
                    ..spec()
                };
                validate(&job, &m).unwrap();
            }
        }
    }

    #[test]
    fn a_rule_that_keeps_the_momentum_takes_no_server_momentum() {
        let m = manifest(PrivacyTerms::with_noise(10, 1.0, 1e-5, 1, 0.0, Vec::new()).unwrap());
        let rule: AggregationRule = "bucketing:2:centered-clipping-momentum:0.01:0.9"
            .parse()
            .unwrap();
        let job = JobSpec {
            rule: rule.clone(),
            ..spec()
        };
        validate(&job, &m).unwrap();
        for refused in [
            JobSpec {
                momentum: 0.9,
                ..job.clone()
            },
            JobSpec {
                optimizer: ServerOptimizer::FED_ADAM,
                ..job.clone()
            },
        ] {
            let err = validate(&refused, &m).unwrap_err();
            assert!(err.contains("keeps the job's momentum"), "{err}");
        }
    }
}
