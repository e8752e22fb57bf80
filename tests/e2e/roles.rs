//! The trust boundaries between the roles, against the real processes: the
//! consumer's process and data directory hold no wallet key, no task seed
//! and no aggregator private key, and the broker's data directory holds no
//! aggregator private key either; a changed manifest runs nothing until the
//! owner consents; the owner's privacy budget stops its wallet, which says
//! why in its log.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use std::process::Command;

use crate::support::{
    Service, WalletDir, binary, creators_file, repo, run, run_ok, trusting, wallets,
};

/// Every file under `dir`, read.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn wallet_id(w: &WalletDir) -> String {
    let meta: Value = serde_json::from_slice(
        &std::fs::read(w.dir.join("wallet.json")).expect("the wallet's public facts"),
    )
    .expect("JSON");
    meta["wallet_id"].as_str().expect("an id").to_string()
}

pub(crate) fn a_consumer_sees_no_wallet_key_seed_or_private_key() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = Service::start(dir.path(), "10");
    let people = wallets(dir.path(), "r", 40, 6);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    let _agents: Vec<_> = people.iter().map(WalletDir::agent).collect();
    let job = service.train(2, 6, "1");
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");

    // Everything the consumer can see: its own files, what its program
    // prints, and every answer the broker gives about the collective.
    let mut seen: Vec<(String, Vec<u8>)> = files(&service.home);
    for args in [
        vec!["info"],
        vec!["status", "--json"],
        vec!["status", &job, "--json"],
        vec!["model", "list"],
        vec!["ledger", "show"],
        vec!["algorithm", "list"],
    ] {
        seen.push((
            format!("collective {args:?}"),
            run_ok(&mut service.operator(&args)).into_bytes(),
        ));
    }
    let id = &service.collective;
    for path in [
        "/collectives".to_string(),
        format!("/collectives/{id}"),
        format!("/collectives/{id}/manifest"),
        format!("/collectives/{id}/jobs"),
        format!("/collectives/{id}/models"),
        format!("/collectives/{id}/ledger"),
        format!("/collectives/{id}/audits"),
    ] {
        let body: Value = service.client().get(&path).expect("the broker answers");
        seen.push((path, body.to_string().into_bytes()));
    }
    for m in service.models(&job) {
        let hash = m["hash"].as_str().expect("a hash");
        let out = run_ok(&mut service.operator(&["model", "get", hash]));
        seen.push((format!("model {hash}"), out.into_bytes()));
    }

    let aggregator_identity = std::fs::read_to_string(service.aggregator_data.join("identity.txt"))
        .expect("its identity");
    let aggregator_signing =
        std::fs::read(service.aggregator_data.join("signing.pkcs8")).expect("its signing key");
    let wallet_ids: Vec<String> = people.iter().map(wallet_id).collect();
    for (what, bytes) in &seen {
        for wid in &wallet_ids {
            assert!(
                !contains(bytes, wid.as_bytes()),
                "{what} names wallet {wid}"
            );
        }
        assert!(!contains(bytes, b"\"seed\""), "{what} carries a task seed");
        assert!(
            !contains(bytes, b"AGE-SECRET-KEY"),
            "{what} holds an age secret key"
        );
        assert!(
            !contains(bytes, aggregator_identity.trim().as_bytes()),
            "{what} holds the aggregator's identity"
        );
        assert!(
            !contains(bytes, &aggregator_signing),
            "{what} holds the aggregator's signing key"
        );
    }
    // The consumer's data directory holds its own key, the collective's key,
    // and nothing else.
    let own = files(&service.home);
    let mut names: Vec<String> = own
        .iter()
        .map(|f| {
            Path::new(&f.0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    names.sort();
    assert_eq!(names, vec![format!("{id}.key"), "consumer.key".to_string()]);

    // The broker holds the wallets' keys (it must, to sample them) but no
    // aggregator private key.
    for (what, bytes) in files(&service.data) {
        assert!(
            !contains(&bytes, aggregator_identity.trim().as_bytes()),
            "{what}"
        );
        assert!(!contains(&bytes, &aggregator_signing), "{what}");
    }
}

pub(crate) fn consent_and_the_owners_budget_are_enforced_by_the_wallet() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = Service::start(dir.path(), "10");
    let people = wallets(dir.path(), "o", 60, 5);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    let agents: Vec<_> = people.iter().map(WalletDir::agent).collect();

    // A new algorithm is a new manifest version: every wallet holds it as
    // pending, and nothing of the collective runs until its owner consents.
    let elm = service.add_algorithm_pending_in(test_guest_artifacts::ELM_RIDGE, &people);
    let job = service.train_with(&elm, &["label=progression"], (1, 5), "1", 60_000);
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(3) {
        let status = service.status(&job);
        assert!(
            status["rounds"].as_array().is_some_and(Vec::is_empty),
            "{status:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for w in &people {
        assert!(
            w.log().is_empty(),
            "nothing ran before consent: {:#?}",
            w.log()
        );
    }
    // One owner also caps its yearly epsilon at about one round's cost.
    let frugal = &people[0];
    run_ok(&mut frugal.command(&["policy", "max-epsilon-per-year=0.6"]));
    for w in &people {
        w.consent(&service.collective);
    }
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    assert_eq!(status["rounds_done"], 1, "{status:#}");

    // A second job of three rounds: the frugal wallet declines once its
    // budget is spent, says why, and the rounds without it release nothing
    // (k = 5 of 5).
    let job = service.train_with(
        &service.algorithm,
        &["label=progression", "learning_rate=0.1", "epochs=1"],
        (3, 5),
        "1",
        5_000,
    );
    let status = service.wait_for_end(&job);
    // Its owner's budget keeps the frugal wallet out of every round, so no
    // round has k: a job that released nothing trained nothing, and it ends
    // as failed, saying why; watching it exits non-zero.
    assert_eq!(status["rounds_done"], 0, "{status:#}");
    assert_eq!(status["state"], "failed", "{status:#}");
    assert!(
        status["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("no round released a batch")),
        "{status:#}"
    );
    let out = run(&mut service.operator(&["status", job.as_str(), "--watch"]));
    assert!(
        !out.status.success(),
        "watching a failed job exits non-zero"
    );
    let log = frugal.log();
    let declined: Vec<&Value> = log
        .iter()
        .filter(|r| r["outcome"]["denial"] == "budget")
        .collect();
    assert!(!declined.is_empty(), "{log:#?}");
    assert!(
        declined[0]["outcome"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("per year")),
        "{declined:#?}"
    );
    let privacy: Value = serde_json::from_str(&run_ok(&mut frugal.command(&["privacy", "--json"])))
        .expect("privacy --json is JSON");
    assert!(
        privacy["last_365_days"]["epsilon"].as_f64() <= Some(0.6),
        "{privacy:#}"
    );
    let others: Value =
        serde_json::from_str(&run_ok(&mut people[1].command(&["privacy", "--json"])))
            .expect("JSON");
    assert!(
        others["total"]["rounds"].as_u64() > privacy["total"]["rounds"].as_u64(),
        "{others:#} {privacy:#}"
    );
    drop(agents);

    // The owner's policy refuses weaker terms at subscription, and says why.
    let strict = &people[1];
    run_ok(&mut strict.command(&["policy", "max-epsilon-per-job=0.5"]));
    run_ok(&mut strict.command(&["revoke", &service.collective]));
    let out = run(&mut strict.command(&["subscribe", &service.url, &service.collective, "--yes"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("your policy refuses") && err.contains("per job"),
        "{err}"
    );
}

pub(crate) fn only_an_admitted_consumer_creates_and_only_the_collective_reads_its_jobs() {
    let dir = tempfile::tempdir().expect("a directory");
    let service = Service::start(dir.path(), "10");
    // Another consumer, whose key the operator did not list: refused, with
    // the key to give the operator.
    let stranger = dir.path().join("stranger");
    let mut create = Command::new(binary("collective"));
    create
        .args(["create", "--manifest"])
        .arg(repo().join("examples/diabetes-collective.json"))
        .env("BROKER_URL", &service.url)
        .env("COLLECTIVE_HOME", &stranger)
        .env_remove("COLLECTIVE_ID")
        .env_remove("COLLECTIVE_KEY");
    trusting(&mut create);
    let out = run(&mut create);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("collective whoami"), "{stderr}");
    // Once listed, the same consumer creates one.
    let mut whoami = Command::new(binary("collective"));
    whoami.arg("whoami").env("COLLECTIVE_HOME", &stranger);
    let key = run_ok(&mut whoami);
    let creators = creators_file(&service.data);
    let mut listed = std::fs::read_to_string(&creators).expect("the creators file");
    listed.push_str(&key);
    std::fs::write(&creators, listed).expect("the creators file");
    let id = run_ok(&mut create).trim().to_string();
    assert!(id.starts_with("c-"), "{id}");
    // Its jobs are its own: the first collective's key does not read them,
    // and nobody reads them unsigned.
    let err = service
        .client()
        .jobs(&id)
        .expect_err("another collective's key");
    assert_eq!(
        err.code(),
        Some(c2ssi_protocol::ErrorCode::Forbidden),
        "{err}"
    );
    let err = c2ssi_client::Client::new(&service.url)
        .jobs(&id)
        .expect_err("unsigned");
    assert_eq!(
        err.code(),
        Some(c2ssi_protocol::ErrorCode::Unauthorized),
        "{err}"
    );
}
