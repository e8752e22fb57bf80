//! The automatic privacy check of an algorithm, before any wallet runs it.
//!
//! [`audit`] runs a component in the sandbox on synthetic tables drawn from
//! a manifest's data requirements ([`synthetic_table`]), turns each result
//! into a contribution exactly as the wallet and the aggregator do (clipped
//! to the manifest's norm, declared metrics only, a failure as a zero
//! update), and plays the canary game through the aggregator's own Gaussian
//! mechanism: in each trial a batch of k - 1 synthetic wallets, with or
//! without one canary record, is released with the manifest's noise, and an
//! adversary who knows everything but the canary's presence guesses it from
//! the release. From the guesses' error rates (Clopper-Pearson bounds at
//! 95%, on trials held out from choosing the threshold) comes a lower bound
//! on the epsilon of one release, reported beside the accountant's.
//!
//! It also measures each synthetic record's influence: the norm of its
//! update before clipping. An algorithm whose update reaches the clipping
//! norm on every record, and whose updates do not change when the model
//! does, is flagged: it spends the whole norm on every record whatever it is
//! asked to learn, as an encoder does. Reaching the norm alone is no sign: a
//! learner whose step is larger than the norm (logistic regression at a
//! client learning rate of 0.5 under a clip of 0.1) reaches it on every
//! record too, but its update answers the model it starts from.
//!
//! The audit is a heuristic check, not the guarantee: an algorithm can
//! behave only when it is watched. The guarantee is the mechanism's.

use c2ssi_aggregator::NoiseSource;
use c2ssi_aggregator::mechanism::{Contribution, noised_sums};
use c2ssi_guest_sdk::{Column, ColumnData, ColumnType, Param, Table};
use c2ssi_protocol::{
    AuditSummary, Outcome, PrivacyTerms, TableRequirement, UpdatePayload, privacy,
};
use c2ssi_sandbox::{LoadedComponent, Sandbox, TaskError};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use statrs::distribution::{Beta, ContinuousCDF};

/// How thorough an audit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Canary-game trials (half with the canary, half without).
    pub trials: u32,
    /// Synthetic wallets the batches are drawn from.
    pub pool: usize,
    /// Seed of the synthetic data, the batches and the noise: an audit repeats.
    pub seed: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            trials: 400,
            pool: 64,
            seed: 1,
        }
    }
}

/// Why an audit could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The algorithm has no initial model for these parameters and columns.
    #[error("the algorithm's initial model: {0}")]
    Model(String),
    /// The terms or options make no game.
    #[error("{0}")]
    Setup(String),
}

/// What an audit found.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// The summary the broker keeps and reports.
    pub summary: AuditSummary,
    /// Each synthetic record's update norm before clipping: least, median, most.
    pub influence: (f64, f64, f64),
    /// Records on which the algorithm failed.
    pub failures: usize,
    /// The threshold's false-positive and false-negative rates on the held-out trials.
    pub error_rates: (f64, f64),
    /// Measured only when every record reaches the clipping norm: the median
    /// relative change of a record's update (before clipping) when the model
    /// moves by a unit step. Near 0: the updates ignore the model.
    pub model_response: Option<f64>,
}

impl Audit {
    /// The report, in lines a person reads.
    pub fn lines(&self) -> Vec<String> {
        let s = &self.summary;
        let mut out = vec![
            format!("component        {}", s.sha256),
            format!(
                "influence        update norm before clipping: least {:.4}, median {:.4}, most {:.4}",
                self.influence.0, self.influence.1, self.influence.2
            ),
            format!(
                "at the clip norm {:.1}% of synthetic records",
                100.0 * s.at_clip_bound
            ),
        ];
        if self.failures > 0 {
            out.push(format!(
                "failures         {} synthetic records (each a zero update)",
                self.failures
            ));
        }
        out.push(format!(
            "canary game      {} trials; held-out error rates: {:.3} false positives, {:.3} false negatives",
            s.trials, self.error_rates.0, self.error_rates.1
        ));
        out.push(match s.accountant_epsilon {
            Some(e) => format!(
                "epsilon          empirical lower bound {:.3} per release; the accountant allows {e:.3}",
                s.empirical_epsilon
            ),
            None => format!(
                "epsilon          empirical lower bound {:.3} per release; NO NOISE: the accountant allows any",
                s.empirical_epsilon
            ),
        });
        if let Some(r) = self.model_response {
            out.push(format!(
                "model response   updates change by {:.2}% (median) when the model moves a unit step",
                100.0 * r
            ));
        }
        out.push(if s.flagged_encoding {
            "verdict          FLAGGED: every record's update reaches the clipping norm whatever \
             the model, a sign of encoding records rather than learning from them"
                .into()
        } else {
            "verdict          not flagged".into()
        });
        out
    }

    /// The report on one line (for an error message): the lines joined by
    /// "; ", without their column padding.
    pub fn one_line(&self) -> String {
        self.lines()
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Below this median relative change of the updates when the model moves,
/// an algorithm's updates are taken not to depend on the model.
const MODEL_RESPONSE_FLOOR: f64 = 1e-3;

/// A synthetic table of `rows` rows for `requirement`, each value drawn
/// uniformly from its declared range or levels (an unbounded number from
/// [-1, 1] around its one bound).
pub fn synthetic_table(requirement: &TableRequirement, rows: usize, rng: &mut impl Rng) -> Table {
    let columns = requirement
        .columns
        .iter()
        .map(|spec| {
            let data = match &spec.ty {
                ColumnType::Integer { min, max } => {
                    let lo = min.unwrap_or_else(|| max.map_or(0, |h| h.saturating_sub(100)));
                    let hi = max.unwrap_or_else(|| lo.saturating_add(100)).max(lo);
                    ColumnData::Integer((0..rows).map(|_| rng.random_range(lo..=hi)).collect())
                }
                ColumnType::Real { min, max } => {
                    let lo = min.unwrap_or_else(|| max.map_or(-1.0, |h| h - 2.0));
                    let hi = max.unwrap_or(lo + 2.0).max(lo);
                    ColumnData::Real(
                        (0..rows)
                            .map(|_| lo + (hi - lo) * rng.random::<f64>())
                            .collect(),
                    )
                }
                ColumnType::Boolean => {
                    ColumnData::Boolean((0..rows).map(|_| rng.random()).collect())
                }
                ColumnType::Category { levels } => ColumnData::Category(
                    (0..rows)
                        .map(|_| rng.random_range(0..levels.len().max(1)) as u32)
                        .collect(),
                ),
            };
            Column {
                name: spec.name.clone(),
                ty: spec.ty.clone(),
                data,
            }
        })
        .collect();
    Table::new(&requirement.table, rows, columns)
        .unwrap_or_else(|_| Table::empty(&requirement.table, &requirement.columns))
}

/// One record's contribution, its influence (update norm before clipping)
/// and its update before clipping (none when the algorithm failed).
fn contribute(
    sandbox: &Sandbox,
    component: &LoadedComponent,
    model: &[f32],
    params: &[Param],
    table: &Table,
    seed: u64,
    terms: &PrivacyTerms,
) -> (Contribution, Option<f64>, Option<Vec<f32>>) {
    let report = sandbox.train(component, model, params, table, seed, None);
    let payload = match report.result {
        Ok(checked) => UpdatePayload {
            outcome: Outcome::Trained,
            delta: checked.update.delta,
            metrics: checked.update.metrics,
        },
        Err(_) => UpdatePayload {
            outcome: Outcome::Failed,
            delta: Vec::new(),
            metrics: Vec::new(),
        },
    };
    let influence = (payload.outcome == Outcome::Trained).then(|| {
        payload
            .delta
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
    });
    let contribution = Contribution::from_payload(&payload, terms, model.len())
        .unwrap_or_else(|_| Contribution::failed(terms, model.len()));
    let raw = influence.is_some().then(|| payload.delta.clone());
    (contribution, influence, raw)
}

/// The median relative change of the records' updates (before clipping)
/// when the model moves a unit step along the records' mean update, each
/// record trained with the same seed as before.
fn model_response(
    sandbox: &Sandbox,
    component: &LoadedComponent,
    model: &[f32],
    params: &[Param],
    terms: &PrivacyTerms,
    records: &[(Table, u64, Vec<f32>)],
) -> f64 {
    let mut mean = vec![0f64; model.len()];
    for (_, _, d) in records {
        for (m, &v) in mean.iter_mut().zip(d) {
            *m += f64::from(v);
        }
    }
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    let step: Vec<f64> = if norm > 0.0 && norm.is_finite() {
        mean.iter().map(|v| v / norm).collect()
    } else {
        vec![1.0 / (model.len().max(1) as f64).sqrt(); model.len()]
    };
    let moved: Vec<f32> = model
        .iter()
        .zip(&step)
        .map(|(&m, &s)| (f64::from(m) + s) as f32)
        .collect();
    let mut changes: Vec<f64> = records
        .iter()
        .map(|(table, seed, before)| {
            let (_, _, after) = contribute(sandbox, component, &moved, params, table, *seed, terms);
            let Some(after) = after.filter(|a| a.len() == before.len()) else {
                // Failing at another model is a response to it.
                return 1.0;
            };
            let diff = before
                .iter()
                .zip(&after)
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum::<f64>()
                .sqrt();
            let size = before
                .iter()
                .map(|&a| f64::from(a).powi(2))
                .sum::<f64>()
                .sqrt();
            diff / size.max(f64::MIN_POSITIVE)
        })
        .collect();
    changes.sort_by(f64::total_cmp);
    changes.get(changes.len() / 2).copied().unwrap_or(0.0)
}

/// Clopper-Pearson upper bound, one-sided at `confidence`, on a rate seen
/// `k` times in `n`.
fn upper_bound(k: usize, n: usize, confidence: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    match Beta::new(k as f64 + 1.0, (n - k) as f64) {
        Ok(beta) => beta.inverse_cdf(confidence),
        Err(_) => 1.0,
    }
}

/// The epsilon lower bound that error rates bounded by `fpr` and `fnr`
/// imply for an (epsilon, delta) mechanism.
fn epsilon_from_rates(fpr: f64, fnr: f64, delta: f64) -> f64 {
    let a = if fpr > 0.0 {
        ((1.0 - delta - fnr) / fpr).ln()
    } else {
        0.0
    };
    let b = if fnr > 0.0 {
        ((1.0 - delta - fpr) / fnr).ln()
    } else {
        0.0
    };
    a.max(b).max(0.0)
}

/// Audits `component` for a collective requiring `requirement` under `terms`.
pub fn audit(
    sandbox: &Sandbox,
    component: &LoadedComponent,
    requirement: &TableRequirement,
    terms: &PrivacyTerms,
    params: &[Param],
    options: &AuditOptions,
) -> Result<Audit, AuditError> {
    if options.trials < 20 || options.pool < 2 {
        return Err(AuditError::Setup(
            "an audit needs at least 20 trials and 2 synthetic wallets".into(),
        ));
    }
    let model = sandbox
        .initial_model(component, &requirement.columns, params)
        .map_err(|e: TaskError| AuditError::Model(e.to_string()))?;
    let mut rng = ChaCha20Rng::seed_from_u64(options.seed);
    let rows = requirement.min_rows.max(1) as usize;
    let others = terms.min_batch.saturating_sub(1).max(1) as usize;

    let mut pool = Vec::with_capacity(options.pool);
    let mut norms = Vec::with_capacity(options.pool);
    let mut trained = Vec::with_capacity(options.pool);
    let mut failures = 0;
    for _ in 0..options.pool {
        let table = synthetic_table(requirement, rows, &mut rng);
        let seed = rng.next_u64();
        let (c, influence, raw) =
            contribute(sandbox, component, &model, params, &table, seed, terms);
        match (influence, raw) {
            (Some(n), Some(raw)) => {
                norms.push(n);
                trained.push((table, seed, raw));
            }
            _ => failures += 1,
        }
        pool.push(c);
    }
    let canary = synthetic_table(requirement, rows, &mut rng);

    // Each trial: the adversary knows the other k - 1 contributions and the
    // canary's; it scores the release's excess over the others along the
    // canary's direction.
    let mut noise = NoiseSource::seeded_for_simulation(rng.next_u64());
    let mut scores: Vec<(bool, f64)> = Vec::with_capacity(options.trials as usize);
    for t in 0..options.trials {
        let present = t % 2 == 0;
        let batch: Vec<Contribution> = (0..others)
            .map(|_| pool[rng.random_range(0..pool.len())].clone())
            .collect();
        let (canary_c, _, _) = contribute(
            sandbox,
            component,
            &model,
            params,
            &canary,
            rng.next_u64(),
            terms,
        );
        let direction = canary_c.laid_out(terms);
        let length = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut released_batch = batch.clone();
        if present {
            released_batch.push(canary_c);
        }
        let release = noised_sums(terms, &released_batch, &mut noise)
            .map_err(|e| AuditError::Setup(e.to_string()))?;
        let mut known = vec![0.0f64; release.len()];
        for c in &batch {
            for (k, v) in known.iter_mut().zip(c.laid_out(terms)) {
                *k += v;
            }
        }
        let score = release
            .iter()
            .zip(&known)
            .zip(&direction)
            .map(|((r, k), d)| (r - k) * d)
            .sum::<f64>()
            / length.max(f64::MIN_POSITIVE);
        scores.push((present, score));
    }

    // Choose the threshold on the first half of the trials, measure on the second.
    let (choose, measure) = scores.split_at(scores.len() / 2);
    let rates = |set: &[(bool, f64)], threshold: f64| {
        let (mut fp, mut neg, mut fnn, mut pos) = (0usize, 0usize, 0usize, 0usize);
        for &(present, score) in set {
            if present {
                pos += 1;
                if score <= threshold {
                    fnn += 1;
                }
            } else {
                neg += 1;
                if score > threshold {
                    fp += 1;
                }
            }
        }
        (fp, neg, fnn, pos)
    };
    let estimate = |set: &[(bool, f64)], threshold: f64| {
        let (fp, neg, fnn, pos) = rates(set, threshold);
        epsilon_from_rates(
            upper_bound(fp, neg, 0.95),
            upper_bound(fnn, pos, 0.95),
            terms.delta,
        )
    };
    let mut candidates: Vec<f64> = choose.iter().map(|s| s.1).collect();
    candidates.sort_by(f64::total_cmp);
    let threshold = candidates
        .iter()
        .copied()
        .max_by(|a, b| estimate(choose, *a).total_cmp(&estimate(choose, *b)))
        .unwrap_or(0.0);
    let (fp, neg, fnn, pos) = rates(measure, threshold);
    let empirical = estimate(measure, threshold);

    norms.sort_by(f64::total_cmp);
    let at_bound = norms
        .iter()
        .filter(|&&n| n >= terms.clip_norm * 0.999)
        .count();
    let median = norms.get(norms.len() / 2).copied().unwrap_or(0.0);
    let saturated = !norms.is_empty() && at_bound == options.pool;
    let response =
        saturated.then(|| model_response(sandbox, component, &model, params, terms, &trained));
    let influence = (
        norms.first().copied().unwrap_or(0.0),
        median,
        norms.last().copied().unwrap_or(0.0),
    );
    Ok(Audit {
        summary: AuditSummary {
            sha256: hex_of(component.sha256()),
            trials: options.trials,
            accountant_epsilon: terms.has_noise().then(|| terms.epsilon_after(1)),
            empirical_epsilon: empirical,
            at_clip_bound: if norms.is_empty() {
                0.0
            } else {
                at_bound as f64 / options.pool as f64
            },
            flagged_encoding: response.is_some_and(|r| r < MODEL_RESPONSE_FLOOR),
        },
        influence,
        model_response: response,
        failures,
        error_rates: (
            fp as f64 / neg.max(1) as f64,
            fnn as f64 / pos.max(1) as f64,
        ),
    })
}

fn hex_of(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bound an attribute-inference attack's accuracy should stay under, for
/// an owner to compare: see [`privacy::attribute_inference_bound`].
pub fn inference_bound(terms: &PrivacyTerms, participations: u32) -> f64 {
    privacy::attribute_inference_bound(terms.epsilon_after(participations), terms.delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rates_bound_epsilon() {
        // A perfect distinguisher on 100 + 100 trials still only proves
        // what 100 trials can.
        let e = epsilon_from_rates(upper_bound(0, 100, 0.95), upper_bound(0, 100, 0.95), 1e-5);
        assert!((3.0..4.0).contains(&e), "{e}");
        // Coin flipping proves nothing.
        assert_eq!(
            epsilon_from_rates(upper_bound(50, 100, 0.95), upper_bound(50, 100, 0.95), 1e-5),
            0.0
        );
        assert_eq!(upper_bound(5, 5, 0.95), 1.0);
    }

    #[test]
    fn synthetic_tables_follow_the_requirements() {
        use c2ssi_guest_sdk::ColumnSpec;
        let requirement = TableRequirement {
            table: "t".into(),
            columns: vec![
                ColumnSpec {
                    name: "age".into(),
                    ty: ColumnType::Integer {
                        min: Some(18),
                        max: Some(99),
                    },
                },
                ColumnSpec {
                    name: "x".into(),
                    ty: ColumnType::Real {
                        min: Some(-0.2),
                        max: Some(0.2),
                    },
                },
                ColumnSpec {
                    name: "job".into(),
                    ty: ColumnType::Category {
                        levels: vec!["a".into(), "b".into()],
                    },
                },
            ],
            min_rows: 3,
        };
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let t = synthetic_table(&requirement, 50, &mut rng);
        t.validate().unwrap();
        let ColumnData::Integer(ages) = &t.columns[0].data else {
            panic!()
        };
        assert!(ages.iter().all(|a| (18..=99).contains(a)));
        let ColumnData::Real(xs) = &t.columns[1].data else {
            panic!()
        };
        assert!(xs.iter().all(|x| (-0.2..=0.2).contains(x)));
    }
}
