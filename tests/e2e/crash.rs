//! Killing the broker (SIGKILL) in the middle of a job and starting it
//! again loses no model version and no ledger entry, and pays no access
//! twice; the round it left open is closed by the aggregator, which kept it.
//! Killing the aggregator in the middle of rounds loses no payment: the
//! broker opens a lost round again and wallets keep trying to deliver.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Service, WalletDir, aggregator_command, assert_paid_once, eventually, receipts, start_server,
    wallets,
};

pub(crate) fn a_killed_service_restarts_without_losing_or_repeating_anything() {
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
    let before = service.verify_ledger_offline();
    assert!(before.contains("verifies"), "{before}");
    let ledger_before: Vec<(u64, String)> = {
        let db = service.open_database();
        c2ssi_broker::ledger::read_entries(&db, &service.collective)
            .expect("the entries")
            .into_iter()
            .map(|e| (e.seq, e.hash))
            .collect()
    };
    assert!(!ledger_before.is_empty());

    service.restart_broker();
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

pub(crate) fn a_killed_aggregator_loses_no_payment_and_the_job_completes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut service = Service::start(dir.path(), "10");
    let people = wallets(dir.path(), "g", 300, 8);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    let _agents: Vec<_> = people.iter().map(WalletDir::agent).collect();
    // Ten rounds (the most the example manifest lets one wallet take part
    // in) and ten kills: one in each round.
    let job = service.train(10, 8, "1");
    // The same address again: the broker and the wallets know it by it.
    let address = service
        .aggregator_url
        .trim_start_matches("https://")
        .to_string();
    let mut kills = 0;
    for kill in 0..10usize {
        // Round kill + 1 is open, or the job has ended.
        let ended = eventually("a round to open", || {
            let status = service.status(&job);
            let rounds = status["rounds"].as_array().cloned().unwrap_or_default();
            let closed = rounds.iter().filter(|r| r["status"] != "open").count();
            if status["state"] != "running" {
                Some(true)
            } else {
                (closed >= kill && rounds.len() > kill).then_some(false)
            }
        });
        if ended {
            break;
        }
        service._aggregator.kill();
        kills += 1;
        std::thread::sleep(Duration::from_millis(300));
        let (process, url) = start_server(
            aggregator_command(&service.aggregator_data, &address, &service.url, None),
            "aggregator serve (restarted)",
        );
        assert_eq!(url, service.aggregator_url);
        service._aggregator = process;
    }
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    assert!(
        kills >= 5,
        "only {kills} kills happened before the job ended"
    );
    eprintln!("the aggregator was killed {kills} times; the job completed");
    service.verify_ledger();
    assert_paid_once(&service.ledger());
    // Every access of the job in which the data was present (the algorithm
    // trained or failed) is paid, in the ledger and in the wallet's
    // receipts (some reach it at a later check-in).
    for w in &people {
        let unpaid = || -> Vec<Value> {
            let paid: HashSet<(String, u64)> = receipts(w).into_iter().collect();
            w.log()
                .into_iter()
                .filter(|r| r["job_id"].as_str() == Some(job.as_str()))
                .filter(|r| matches!(r["outcome"]["kind"].as_str(), Some("trained" | "failed")))
                .filter(|r| !paid.contains(&(job.clone(), r["round"].as_u64().unwrap_or(u64::MAX))))
                .collect()
        };
        let mut left = unpaid();
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            left = unpaid();
        }
        if !left.is_empty() {
            let log = std::fs::read_to_string(w.dir.join("agent.log")).unwrap_or_default();
            panic!("accesses not paid: {left:#?}\nthe agent's log:\n{log}");
        }
    }
}
