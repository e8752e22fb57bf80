//! The consumer writes the algorithm: here it writes the attacks of
//! `test-guests/examples/attack_*.rs` and tries each on twelve wallets of
//! the diabetes collective, with the example manifest's terms (k = 5,
//! updates clipped to 0.1, epsilon 2 per job), against the real processes.
//! It reads only what it may read: the released model versions (its server
//! optimizer has learning rate 1 and no momentum, so consecutive versions
//! differ by exactly the released aggregate) and the job status.
//!
//! - sparse slots by seed, slots by a hash of the record: no record
//!   recovered (the same decoding reads every record out of an exact sum);
//! - 32 metrics with the label in one: only the declared metric leaves,
//!   noised; no label recovered;
//! - a claimed example count: every wallet weighs one; no label recovered;
//! - deliberate failures: every round still releases, no failure is
//!   counted anywhere;
//! - one attribute with the whole clipping norm: refused at submission by
//!   the privacy audit; the stealthy version runs, and what it gets is the
//!   noise the manifest states, measured on the releases; asking for the
//!   median instead, it gets noise calibrated to the median (a wallet moves
//!   it by its whole update), measured on the releases too.

use c2ssi_guest_sdk::{Column, ColumnData, ColumnType, Table};
use serde_json::Value;
use test_guests::attacks;

use crate::support::{Service, WalletDir, diabetes_rows, run, run_ok, wallets};

const PEOPLE: usize = 12;
const FIRST: usize = 120;

/// Person `i`'s row as the algorithm sees it (the manifest's columns and ranges).
fn table_of(person: usize) -> Table {
    let (header, rows) = diabetes_rows();
    let names: Vec<&str> = header.split(',').collect();
    let values: Vec<&str> = rows[person % rows.len()].split(',').collect();
    let columns = names
        .iter()
        .zip(&values)
        .map(|(name, value)| {
            if *name == "progression" {
                Column {
                    name: (*name).into(),
                    ty: ColumnType::Integer {
                        min: Some(0),
                        max: Some(400),
                    },
                    data: ColumnData::Integer(vec![value.parse().expect("an integer")]),
                }
            } else {
                Column {
                    name: (*name).into(),
                    ty: ColumnType::Real {
                        min: Some(-0.2),
                        max: Some(0.2),
                    },
                    data: ColumnData::Real(vec![value.parse().expect("a real")]),
                }
            }
        })
        .collect();
    Table::new("diabetes", 1, columns).expect("a table")
}

/// Each released aggregate of a job, with the number of wallets it is the
/// mean of (every round assigns all twelve): consecutive model versions'
/// differences.
fn releases(service: &Service, job: &str) -> Vec<(Vec<f32>, f64)> {
    let mut versions: Vec<Value> = service.models(job);
    versions.sort_by_key(|m| m["provenance"]["round"].as_u64());
    let params = |m: &Value| -> Vec<f32> {
        let hash = m["hash"].as_str().expect("a hash");
        let full: Value = service
            .client()
            .get(&format!(
                "/collectives/{}/models/{hash}",
                service.collective
            ))
            .expect("the version");
        full["params"]
            .as_array()
            .expect("params")
            .iter()
            .map(|v| v.as_f64().expect("a number") as f32)
            .collect()
    };
    versions
        .windows(2)
        .map(|pair| {
            let (before, after) = (params(&pair[0]), params(&pair[1]));
            let aggregate = after.iter().zip(&before).map(|(a, b)| a - b).collect();
            assert!(pair[1]["provenance"]["updates"].as_f64().is_some());
            (aggregate, PEOPLE as f64)
        })
        .collect()
}

fn train(service: &Service, algorithm: &str, rounds: u32) -> Value {
    let job = service.train_with(
        algorithm,
        &["label=progression"],
        (rounds, PEOPLE as u32),
        "10",
        60_000,
    );
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    status
}

pub(crate) fn the_consumers_own_attacks_recover_nothing_beyond_what_the_noise_allows() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = Service::start(dir.path(), "100");

    // The whole-norm attribute attack is refused at submission.
    let out = run(&mut service.operator(&[
        "algorithm",
        "add",
        test_guest_artifacts::ATTACK_ATTRIBUTE,
        "--params",
        "label=progression",
    ]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("privacy audit refused") && err.contains("FLAGGED"),
        "{err}"
    );

    let mut sha = std::collections::BTreeMap::new();
    for (name, path) in test_guest_artifacts::ATTACKS {
        if *name == "attack-attribute" {
            continue;
        }
        let hash = run_ok(&mut service.operator(&[
            "algorithm",
            "add",
            path,
            "--params",
            "label=progression",
        ]));
        sha.insert(*name, hash.trim().to_string());
    }
    let people = wallets(dir.path(), "a", FIRST, PEOPLE);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    let _agents: Vec<_> = people.iter().map(WalletDir::agent).collect();
    let records: Vec<Table> = (0..PEOPLE).map(|i| table_of(FIRST + i)).collect();
    let chunks: Vec<Vec<u16>> = records.iter().map(attacks::chunks).collect();
    let labels: Vec<f64> = records
        .iter()
        .map(|t| attacks::value(t, "progression"))
        .collect();

    // Records written into slots: none read back.
    for attack in ["attack-sparse-slot", "attack-row-hash"] {
        let status = train(&service, &sha[attack], 3);
        let mut recovered = 0;
        for (aggregate, updates) in releases(&service, status["id"].as_str().expect("id")) {
            let sum: Vec<f32> = aggregate.iter().map(|a| a * updates as f32).collect();
            for block in attacks::read(&sum, chunks[0].len()).into_iter().flatten() {
                recovered += chunks.iter().filter(|c| **c == block).count();
            }
        }
        assert_eq!(recovered, 0, "{attack} recovered {recovered} records");
    }

    // The metric channel: only the declared metric, noised, no label.
    let status = train(&service, &sha["attack-metric"], 3);
    let text = status.to_string();
    assert!(
        !text.contains("\"m00\"") && !text.contains("\"m31\""),
        "{text}"
    );
    for round in status["rounds"].as_array().expect("rounds") {
        for m in round["metrics"].as_array().expect("metrics") {
            assert_eq!(m["name"], "mse_before", "{m}");
            let v = m["value"].as_f64().expect("a value");
            assert!(!labels.contains(&v), "a label was released exactly: {v}");
        }
    }

    // The example count buys no weight.
    let status = train(&service, &sha["attack-examples"], 3);
    for (aggregate, _) in releases(&service, status["id"].as_str().expect("id")) {
        let read = (f64::from(aggregate[0]) / 1e-6).round();
        assert!(
            !labels.contains(&read),
            "one wallet's label came through: {read}"
        );
    }

    // Failures: every round releases, nothing counts them.
    let status = train(&service, &sha["attack-failure"], 3);
    assert_eq!(status["rounds_done"], 3, "{status:#}");
    for round in status["rounds"].as_array().expect("rounds") {
        assert!(
            round["counts"].is_null(),
            "exact counts under noise: {round}"
        );
        assert!(!round.to_string().contains("failed"), "{round}");
    }

    // One attribute, spending nine tenths of the norm or so on most
    // records: the releases carry the noise the manifest states.
    let rounds = 10;
    let status = train(&service, &sha["attack-attribute-stealthy"], rounds);
    let releases = releases(&service, status["id"].as_str().expect("id"));
    assert_eq!(releases.len(), rounds as usize, "{status:#}");
    let firsts: Vec<f64> = releases.iter().map(|(a, n)| f64::from(a[0]) * n).collect();
    let mean = firsts.iter().sum::<f64>() / firsts.len() as f64;
    let spread =
        (firsts.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (firsts.len() - 1) as f64).sqrt();
    let sigma = service
        .models(status["id"].as_str().expect("id"))
        .into_iter()
        .find(|m| m["provenance"]["round"] == 1)
        .and_then(|m| m["provenance"]["noise"]["sigma"].as_f64())
        .expect("round 1's release states its noise");
    // The sum of the attack's slot moves between rounds by the noise alone
    // (every wallet takes part in every round): its spread is the noise's.
    assert!(
        spread > 0.3 * sigma && spread < 2.0 * sigma,
        "the released slot spreads {spread}, the noise's sigma is {sigma}"
    );
    // The strong adversary, who knows everyone but the target: its guess
    // of each wallet's attribute, from the sum over rounds.
    let sexes: Vec<bool> = records
        .iter()
        .map(|t| attacks::value(t, "sex") > 0.0)
        .collect();
    let guesses = attacks::guess_bits(&firsts, &sexes, &[0.098; PEOPLE]);
    let right = guesses.iter().zip(&sexes).filter(|(g, s)| g == s).count();
    eprintln!(
        "attribute inference by the strong adversary: {right} of {PEOPLE} right; the releases \
         spread {spread:.4} against sigma {sigma:.4}"
    );

    // The same attack asking for the median, which one wallet can move by
    // its whole update: the aggregator wraps the median in noise calibrated
    // to that, so the released slot itself (not times the twelve wallets,
    // as under the mean) spreads by the noise's sigma.
    let job = run_ok(&mut service.operator(&[
        "train",
        "--algorithm",
        &sha["attack-attribute-stealthy"],
        "--params",
        "label=progression",
        "--rounds",
        &rounds.to_string(),
        "--wallets-per-round",
        &PEOPLE.to_string(),
        "--budget",
        "10",
        "--momentum",
        "0",
        "--lr-schedule",
        "constant",
        "--filter",
        "median",
    ]))
    .trim()
    .to_string();
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    assert!(
        status
            .to_string()
            .contains("Gaussian mechanism around median"),
        "{status:#}"
    );
    let medians: Vec<f64> = self::releases(&service, &job)
        .iter()
        .map(|(a, _)| f64::from(a[0]))
        .collect();
    assert_eq!(medians.len(), rounds as usize, "{status:#}");
    let mean = medians.iter().sum::<f64>() / medians.len() as f64;
    let median_spread = (medians.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
        / (medians.len() - 1) as f64)
        .sqrt();
    eprintln!("the released median spreads {median_spread:.4} against sigma {sigma:.4}");
    assert!(
        median_spread > 0.3 * sigma && median_spread < 2.0 * sigma,
        "the released median spreads {median_spread}; with noise calibrated to the median it \
         spreads by sigma {sigma}, with the mean's by sigma / {PEOPLE}"
    );
}
