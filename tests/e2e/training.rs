//! A collective service and twenty wallet agents train linear regression on
//! diabetes over HTTP; a revoked wallet is never run and never paid; spent
//! budget stops a job; the aggregator can run as its own process.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use crate::support::{Service, WalletDir, run_ok, start_server, wallets};

/// Payments in the ledger, as (job, round, payee commitment).
fn payments(ledger: &[Value]) -> Vec<(String, u64, String)> {
    ledger
        .iter()
        .filter(|e| e["kind"]["kind"] == "payment")
        .map(|e| {
            (
                e["kind"]["job_id"].as_str().unwrap_or_default().to_string(),
                e["kind"]["round"].as_u64().unwrap_or(u64::MAX),
                e["kind"]["payee_commitment"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Every receipt a wallet kept, checked, as (job, round).
fn receipts(wallet: &WalletDir) -> Vec<(String, u64)> {
    let earnings = wallet.earnings();
    earnings["receipts"]
        .as_array()
        .expect("receipts")
        .iter()
        .map(|r| {
            assert_eq!(
                r["status"], "in the ledger",
                "a receipt does not check: {r}"
            );
            (
                r["job"].as_str().unwrap_or_default().to_string(),
                r["round"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

fn assert_paid_once(ledger: &[Value]) {
    let all = payments(ledger);
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an access was paid twice");
}

#[test]
fn twenty_wallet_agents_train_linear_regression_and_a_revoked_wallet_is_never_paid() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = Service::start(dir.path(), "10", None);
    let people = wallets(dir.path(), "w", 0, 21);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    // The last one changes its mind: its key is deleted at once, then it
    // unsubscribes remotely. Its agent runs all the same.
    let revoked = &people[20];
    run_ok(&mut revoked.command(&["revoke", &service.collective]));
    let subscribers = run_ok(&mut service.operator(&["subscribers"]));
    assert_eq!(subscribers.lines().count(), 20, "{subscribers}");
    let _agents: Vec<_> = people.iter().map(WalletDir::agent).collect();

    let job = service.train(&[
        "--rounds",
        "3",
        "--wallets-per-round",
        "10",
        "--k",
        "5",
        "--deadline-ms",
        "60000",
        "--budget",
        "1",
        "--seed",
        "3",
    ]);
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    assert_eq!(status["rounds_done"], 3, "{status:#}");

    // Model versions with their provenance: the initial one and one per round.
    let client = wallet_host::agent::client::Client::new(&service.url);
    let models: Vec<Value> = client
        .get(&format!(
            "/collectives/{}/models?job={job}",
            service.collective
        ))
        .expect("model list");
    assert_eq!(models.len(), 4, "{models:#?}");
    let rounds: BTreeSet<u64> = models
        .iter()
        .filter_map(|m| m["provenance"]["round"].as_u64())
        .collect();
    assert!(
        rounds.is_superset(&BTreeSet::from([1, 2, 3])),
        "{models:#?}"
    );
    for m in models.iter().filter(|m| m["provenance"]["round"] != 0) {
        assert!(
            m["provenance"]["updates_aggregated"].as_u64() >= Some(5),
            "{m}"
        );
    }
    let latest = status["model_hash"].as_str().expect("a model hash");
    let fetched: Value = client
        .get(&format!(
            "/collectives/{}/models/{latest}",
            service.collective
        ))
        .expect("the latest model");
    assert_eq!(fetched["params"].as_array().map(Vec::len), Some(11));

    // The ledger verifies; 30 accesses, each paid once, each receipt kept
    // by its wallet.
    let verified = service.verify_ledger();
    assert!(verified.contains("verifies"), "{verified}");
    let ledger = service.ledger();
    assert_paid_once(&ledger);
    let paid = payments(&ledger);
    assert_eq!(paid.len(), 30, "3 rounds x 10 wallets");
    let mut kept = 0;
    for w in &people[..20] {
        let mine = receipts(w);
        let unique: HashSet<_> = mine.iter().collect();
        assert_eq!(unique.len(), mine.len(), "a wallet was paid twice");
        let trained = w.log().iter().filter(|r| r["outcome"] == "trained").count();
        assert_eq!(trained, mine.len(), "one receipt per training run");
        kept += mine.len();
    }
    assert_eq!(kept, 30);

    // The revoked wallet was never run and never paid.
    assert!(revoked.log().is_empty(), "{:#?}", revoked.log());
    assert!(receipts(revoked).is_empty());

    // A second job whose budget covers 6 accesses stops when it is spent:
    // one round of 5 is paid, a second would not be paid in full, so it
    // never opens, and nothing goes below zero.
    let job = service.train(&[
        "--rounds",
        "5",
        "--wallets-per-round",
        "5",
        "--k",
        "5",
        "--deadline-ms",
        "60000",
        "--budget",
        "0.03",
    ]);
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "budget-exhausted", "{status:#}");
    assert_eq!(status["rounds_done"], 1, "{status:#}");
    assert_eq!(status["spent"], 25_000, "{status:#}");
    assert!(
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains("budget is spent")),
        "{status:#}"
    );
    let ledger = service.ledger();
    assert_paid_once(&ledger);
    let second = payments(&ledger)
        .into_iter()
        .filter(|(j, _, _)| *j == job)
        .count();
    assert_eq!(second, 5);
    service.verify_ledger();
}

#[test]
fn the_aggregator_runs_as_its_own_process() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut cmd = std::process::Command::new(crate::support::binary("collective"));
    cmd.arg("aggregator")
        .arg("--data")
        .arg(dir.path().join("aggregator"))
        .args(["--listen", "127.0.0.1:0", "--service"]);
    // The aggregator learns the service's address only when the service
    // runs; it is told through a port chosen in advance.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("its address").port()
    };
    cmd.arg(format!("http://127.0.0.1:{port}"));
    let (_aggregator, aggregator_url) = start_server(cmd, "collective aggregator");

    let data = dir.path().join("service");
    let (process, url) = start_server(
        crate::support::serve_command(&data, &format!("127.0.0.1:{port}"), Some(&aggregator_url)),
        "collective serve",
    );
    let mut service = Service {
        process,
        url,
        data,
        operator_key: dir.path().join("operator.key"),
        collective: String::new(),
        algorithm: String::new(),
    };
    let manifest = crate::support::repo().join("examples/diabetes-collective.json");
    service.collective =
        run_ok(&mut service.operator(&["create", "--manifest", manifest.to_str().expect("utf-8")]))
            .trim()
            .to_string();
    run_ok(&mut service.operator(&["deposit", "1"]));
    service.algorithm = run_ok(&mut service.operator(&[
        "algorithm",
        "add",
        test_guest_artifacts::LINEAR_REGRESSION,
    ]))
    .trim()
    .to_string();

    let people = wallets(dir.path(), "r", 100, 6);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    let _agents: Vec<_> = people.iter().map(WalletDir::agent).collect();
    let job = service.train(&[
        "--rounds",
        "2",
        "--wallets-per-round",
        "6",
        "--k",
        "5",
        "--deadline-ms",
        "60000",
        "--budget",
        "1",
    ]);
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    assert_eq!(status["rounds_done"], 2, "{status:#}");
    // The updates went to the aggregator, which had the service's ledger pay
    // each access and handed the receipts to the wallets.
    let ledger = service.ledger();
    assert_paid_once(&ledger);
    assert_eq!(payments(&ledger).len(), 12);
    let kept: usize = people.iter().map(|w| receipts(w).len()).sum();
    assert_eq!(kept, 12);
    service.verify_ledger();
}
