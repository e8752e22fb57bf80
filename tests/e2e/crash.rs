//! Killing the broker (SIGKILL) in the middle of a job and starting it
//! again loses no model version and no ledger entry, and pays no access
//! twice; the round it left open is closed by the aggregator, which kept it.

use std::collections::HashSet;

use crate::support::{
    Service, WalletDir, assert_paid_once, binary, broker_command, eventually, receipts, run_ok,
    start_server, wallets,
};

#[test]
fn a_killed_service_restarts_without_losing_or_repeating_anything() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut service = Service::start(dir.path(), "10");
    let people = wallets(dir.path(), "c", 200, 8);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    let _agents: Vec<_> = people.iter().map(WalletDir::agent).collect();
    let job = service.train(6, 8, "1");
    eventually("two rounds to close", || {
        (service.status(&job)["rounds_done"].as_u64() >= Some(2)).then_some(())
    });
    service.process.kill();

    // What the database holds after the crash.
    let db = service.data.join("broker.db");
    let before = run_ok(
        std::process::Command::new(binary("broker"))
            .arg("verify-ledger")
            .arg("--db")
            .arg(&db)
            .args(["--collective", &service.collective]),
    );
    assert!(before.contains("verifies"), "{before}");
    let ledger_before: Vec<(u64, String)> = {
        let db = c2ssi_broker::database::Database::open(&db).expect("the database");
        c2ssi_broker::ledger::read_entries(&db, &service.collective)
            .expect("the entries")
            .into_iter()
            .map(|e| (e.seq, e.hash))
            .collect()
    };
    assert!(!ledger_before.is_empty());

    // The same address again: the wallets know the service by it.
    let address = service.url.trim_start_matches("http://").to_string();
    let (process, url) = start_server(
        broker_command(&service.data, &address, &service.aggregator_url),
        "broker serve (restarted)",
    );
    service.process = process;
    assert_eq!(url, service.url);
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    // The round the crash interrupted was closed after the restart (the
    // aggregator kept its updates) or released nothing; the others were released.
    let done = status["rounds_done"].as_u64().expect("rounds done");
    assert!((5..=6).contains(&done), "{status:#}");

    // Every entry from before the crash is still there, unchanged, at its place.
    let ledger = service.ledger();
    for (seq, hash) in &ledger_before {
        let entry = ledger
            .iter()
            .find(|e| e["seq"].as_u64() == Some(*seq))
            .unwrap_or_else(|| panic!("entry {seq} was lost"));
        assert_eq!(
            entry["hash"].as_str(),
            Some(hash.as_str()),
            "entry {seq} changed"
        );
    }
    service.verify_ledger();

    // No access paid twice, in the ledger or in the wallets' receipts.
    assert_paid_once(&ledger);
    for w in &people {
        receipts(w);
    }

    // Every model version of the ledger can still be fetched, and one per
    // released round plus the initial one exists.
    let models = service.models(&job);
    let hashes: HashSet<&str> = models.iter().filter_map(|m| m["hash"].as_str()).collect();
    for e in ledger
        .iter()
        .filter(|e| e["kind"]["kind"] == "model-version")
    {
        let hash = e["kind"]["model_hash"].as_str().expect("a hash");
        if e["kind"]["job_id"].as_str() == Some(job.as_str()) {
            assert!(
                hashes.contains(hash),
                "model {hash} of the ledger is missing"
            );
        }
    }
    assert_eq!(models.len() as u64, done + 1, "{models:#?}");
}
