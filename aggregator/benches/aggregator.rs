//! Aggregator benchmarks (criterion): throughput of a whole round through
//! signature verification, decryption, validation and the mean, on one
//! thread and on every core; and the cost of each robust rule as a ratio to
//! the plain mean, at d = 1,000 and d = 100,000.
//!
//! `cargo bench -p c2ssi-aggregator --bench aggregator`; results in
//! `docs/PERFORMANCE.md`.

use std::hint::black_box;
use std::time::Duration;

use c2ssi_aggregator::rules::aggregate;
use c2ssi_aggregator::{Aggregator, AggregatorKeys, NoiseSource, RoundKey, RoundSpec};
use c2ssi_protocol::{
    AggregationRule, Attestation, CloseOutcome, Header, Outcome, PrivacyTerms, Purpose, Signed,
    Signer, SigningKey, UpdateEnvelope, UpdatePayload, privacy,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};

const COLLECTIVE: &str = "c-bench";

fn random_update(d: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `n` wallets' signed, sealed envelopes for round 1 of job `j`.
fn envelopes(
    aggregator: &Aggregator,
    n: usize,
    d: usize,
) -> Vec<(c2ssi_protocol::PublicKey, String, Signed<UpdateEnvelope>)> {
    let recipient: age::x25519::Recipient = aggregator
        .keys()
        .recipient()
        .parse()
        .expect("the aggregator's recipient");
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
    (0..n)
        .map(|i| {
            let key = SigningKey::generate().expect("a key");
            let wallet = key.public_key();
            let payload = UpdatePayload {
                outcome: Outcome::Trained,
                delta: random_update(d, &mut rng),
                metrics: Vec::new(),
            };
            let digest = format!("{i:064x}");
            let envelope = UpdateEnvelope {
                header: Header::new(Purpose::Update, COLLECTIVE, 3_600_000),
                job_id: "j".into(),
                round: 1,
                wallet,
                task_digest: digest.clone(),
                manifest_digest: "m".into(),
                attestation: Attestation {
                    requirements_digest: String::new(),
                    table: "t".into(),
                    present: true,
                },
                sealed: payload.seal(&recipient).expect("sealing"),
            };
            (
                wallet,
                digest,
                Signed::sign(&envelope, &key).expect("signing"),
            )
        })
        .collect()
}

fn round_throughput(c: &mut Criterion) {
    let d = 1_000;
    let n = 2_000;
    // A round is released once: each iteration is a fresh aggregator with
    // the same keys (loading them is a fraction of a millisecond).
    let dir = std::env::temp_dir().join(format!("c2ssi-aggregator-bench-{}", std::process::id()));
    let fresh = || {
        Aggregator::new(
            AggregatorKeys::load_or_create(&dir).expect("keys"),
            NoiseSource::os(),
        )
    };
    let batch = envelopes(&fresh(), n, d);
    let key = RoundKey {
        collective_id: COLLECTIVE.into(),
        job_id: "j".into(),
        round: 1,
    };
    let terms: PrivacyTerms = privacy::default_terms();
    let assigned: Vec<_> = batch.iter().map(|(w, d, _)| (*w, d.clone())).collect();
    let spec = RoundSpec {
        manifest_digest: "m".into(),
        terms,
        broker_key: SigningKey::generate().expect("a key").public_key(),
        model_len: d,
        assigned,
        issued_at_ms: 1,
    };
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut group = c.benchmark_group("aggregator_round_d1000");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for workers in [1, threads] {
        group.bench_function(
            BenchmarkId::new("verify_decrypt_clip_noised_mean", workers),
            |b| {
                b.iter(|| {
                    let aggregator = fresh();
                    aggregator
                        .open_round(key.clone(), spec.clone())
                        .expect("a new round");
                    let chunk = n.div_ceil(workers);
                    std::thread::scope(|s| {
                        for part in batch.chunks(chunk) {
                            let aggregator = &aggregator;
                            s.spawn(move || {
                                for (_, _, envelope) in part {
                                    let accepted = aggregator.submit(COLLECTIVE, envelope);
                                    assert!(accepted.is_ok(), "{accepted:?}");
                                }
                            });
                        }
                    });
                    let released = aggregator.close_round(&key, &AggregationRule::Mean, None);
                    assert!(matches!(released, CloseOutcome::Released { .. }));
                    black_box(released)
                })
            },
        );
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn rule_cost(c: &mut Criterion) {
    let n = 50;
    let rules = [
        AggregationRule::Mean,
        AggregationRule::ClippedMean { clip_norm: 1.0 },
        AggregationRule::Median,
        AggregationRule::TrimmedMean { trim: 0.2 },
        AggregationRule::MultiKrum {
            byzantine: Some(15),
            selected: None,
        },
        AggregationRule::CenteredClipping {
            radius: 0.1,
            iterations: 10,
        },
    ];
    for d in [1_000usize, 100_000] {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(2);
        let updates: Vec<Vec<f32>> = (0..n).map(|_| random_update(d, &mut rng)).collect();
        let mut group = c.benchmark_group(format!("rule_n50_d{d}"));
        group.sample_size(10);
        for rule in &rules {
            group.bench_function(rule.to_string(), |b| {
                b.iter(|| black_box(aggregate(rule, &updates).expect("aggregated")))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, round_throughput, rule_cost);
criterion_main!(benches);
