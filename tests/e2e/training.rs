//! An aggregator, a broker and twenty wallet agents train linear regression
//! on diabetes over HTTP under the manifest's privacy terms; a revoked
//! wallet is never run and never paid; spent budget stops a job.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{Service, WalletDir, assert_paid_once, payments, receipts, run_ok, wallets};

pub(crate) fn twenty_wallet_agents_train_linear_regression_and_a_revoked_wallet_is_never_paid() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = Service::start(dir.path(), "10");
    let people = wallets(dir.path(), "w", 0, 21);
    for w in &people {
        w.subscribe(&service.url, &service.collective);
    }
    // The last one changes its mind: its key is deleted at once, then it
    // unsubscribes remotely. Its agent runs all the same.
    let revoked = &people[20];
    run_ok(&mut revoked.command(&["revoke", &service.collective]));
    let info = run_ok(&mut service.operator(&["info"]));
    assert!(info.contains("subscribers 20 "), "{info}");
    let _agents: Vec<_> = people.iter().map(WalletDir::agent).collect();

    let job = service.train(3, 10, "1");
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    assert_eq!(status["rounds_done"], 3, "{status:#}");

    // Model versions with their provenance: the initial one and one per round.
    let models = service.models(&job);
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
        // Released under the manifest's noise: the count itself is noised.
        assert!(
            m["provenance"]["noise"]["sigma"].as_f64() > Some(0.0),
            "{m}"
        );
        assert!(m["provenance"]["updates"].as_f64().is_some(), "{m}");
    }
    assert!(status["epsilon_spent"].as_f64() > Some(0.0), "{status:#}");
    assert!(
        status["epsilon_spent"].as_f64() <= status["epsilon_bound"].as_f64(),
        "{status:#}"
    );
    let latest = status["model_hash"].as_str().expect("a model hash");
    let fetched: Value = service
        .client()
        .get(&format!(
            "/collectives/{}/models/{latest}",
            service.collective
        ))
        .expect("the latest model");
    assert_eq!(fetched["params"].as_array().map(Vec::len), Some(11));
    // The CLI takes the 12 characters that `collective status` shows.
    let by_prefix = run_ok(&mut service.operator(&["model", "get", &latest[..12]]));
    let by_prefix: Value = serde_json::from_str(&by_prefix).expect("the model as JSON");
    assert_eq!(by_prefix["hash"], latest);
    let listed: Value = serde_json::from_str(&run_ok(
        &mut service.operator(&["model", "list", "--job", &job, "--json"]),
    ))
    .expect("model list --json is JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(models.len()));

    // The model as a file to use elsewhere: safetensors weights and a card.
    let export = dir.path().join("model");
    run_ok(&mut service.operator(&[
        "model",
        "export",
        &latest[..12],
        "--out",
        export.to_str().expect("utf-8"),
    ]));
    let card: Value =
        serde_json::from_slice(&std::fs::read(export.join("card.json")).expect("the card"))
            .expect("the card is JSON");
    assert_eq!(card["format"], "c2ssi-model-card/1");
    assert_eq!(card["model_hash"], latest);
    assert_eq!(card["algorithm"]["name"], "linear-regression");
    assert_eq!(card["label"]["name"], "progression");
    assert_eq!(card["features"].as_array().map(Vec::len), Some(10));
    assert_eq!(card["encoded_width"], 10);
    assert_eq!(card["provenance"]["job"], job.as_str());
    let weights = c2ssi_protocol::model_file::read_weights(
        &std::fs::read(export.join("model.safetensors")).expect("the weights"),
    )
    .expect("safetensors");
    let fetched_params: Vec<f32> = fetched["params"]
        .as_array()
        .expect("params")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect();
    assert_eq!(weights, fetched_params);
    // The consumer evaluates it on held-out rows of its own, in the sandbox.
    let (header, rows) = crate::support::diabetes_rows();
    let held_out = dir.path().join("held-out.csv");
    std::fs::write(
        &held_out,
        format!("{header}\n{}\n", rows[380..440].join("\n")),
    )
    .expect("writing the held-out rows");
    let evaluated: Value = serde_json::from_str(&run_ok(&mut service.operator(&[
        "model",
        "evaluate",
        &latest[..12],
        "--data",
        held_out.to_str().expect("utf-8"),
        "--json",
    ])))
    .expect("model evaluate --json is JSON");
    assert_eq!(evaluated["rows"], 60, "{evaluated}");
    assert_eq!(evaluated["loss"]["name"], "mse", "{evaluated}");
    assert_eq!(evaluated["score"]["name"], "r2", "{evaluated}");
    let mse = evaluated["loss"]["value"].as_f64().expect("the loss");
    assert!(mse > 0.0, "{evaluated}");
    assert_eq!(evaluated["metrics"]["mse"].as_f64(), Some(mse));
    // ... and predicts the same rows in the label's own units: their squared
    // error is the loss `evaluate` reported.
    let predicted = run_ok(&mut service.operator(&[
        "model",
        "predict",
        &latest[..12],
        "--data",
        held_out.to_str().expect("utf-8"),
    ]));
    let mut lines = predicted.lines();
    assert_eq!(lines.next(), Some("row,progression"), "{predicted}");
    let truth: Vec<f64> = rows[380..440]
        .iter()
        .map(|r| {
            r.rsplit(',')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a label")
        })
        .collect();
    let mut se = 0.0;
    for (i, line) in lines.enumerate() {
        let (row, value) = line.split_once(',').expect("row,value");
        assert_eq!(row, (i + 1).to_string());
        se += (value.parse::<f64>().expect("a number") - truth[i]).powi(2);
    }
    let from_predictions = se / truth.len() as f64;
    assert!(
        (from_predictions - mse).abs() <= 1e-3 * mse,
        "predictions give {from_predictions}, evaluate {mse}"
    );
    // Rows without the label, as JSON into a new file, never over one.
    let features_only = dir.path().join("to-predict.csv");
    let strip = |line: &str| line.rsplit_once(',').expect("a label column").0.to_string();
    let unlabelled: Vec<String> = rows[440..442].iter().map(|r| strip(r)).collect();
    std::fs::write(
        &features_only,
        format!("{}\n{}\n", strip(&header), unlabelled.join("\n")),
    )
    .expect("writing rows to predict");
    let out = dir.path().join("predictions.json");
    let predict_json = [
        "model",
        "predict",
        &latest[..12],
        "--data",
        features_only.to_str().expect("utf-8"),
        "--json",
        "--out",
        out.to_str().expect("utf-8"),
    ];
    run_ok(&mut service.operator(&predict_json));
    let written: Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the predictions")).expect("JSON");
    assert_eq!(written["label"], "progression", "{written}");
    let values = written["predictions"].as_array().expect("predictions");
    assert_eq!(values.len(), 2, "{written}");
    assert!(
        values
            .iter()
            .all(|v| v["progression"].as_f64().is_some_and(f64::is_finite))
    );
    let again = service.operator(&predict_json).output().expect("runs");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{again:?}"
    );
    // A wallet starts from it as it is.
    run_ok(&mut people[0].command(&[
        "run",
        test_guest_artifacts::LINEAR_REGRESSION,
        "--table",
        "diabetes",
        "--params",
        "label=progression",
        "--model",
        export.to_str().expect("utf-8"),
    ]));

    // The ledger verifies; every sampled wallet's access (10 a round, or
    // fewer if some agent had not checked in yet) paid once, each receipt
    // kept by its wallet.
    let sampled = Service::sampled(&status);
    assert!((15..=30).contains(&sampled), "{status:#}");
    let verified = service.verify_ledger();
    assert!(verified.contains("verifies"), "{verified}");
    let ledger = service.ledger();
    assert_paid_once(&ledger);
    let paid = payments(&ledger);
    assert_eq!(paid.len(), sampled);
    let mut kept = 0;
    for w in &people[..20] {
        let mine = receipts(w);
        let trained = w
            .log()
            .iter()
            .filter(|r| r["outcome"]["kind"] == "trained")
            .count();
        assert_eq!(trained, mine.len(), "one receipt per training run");
        kept += mine.len();
    }
    assert_eq!(kept, sampled);

    // The revoked wallet was never run and never paid.
    assert!(revoked.log().is_empty(), "{:#?}", revoked.log());
    assert!(receipts(revoked).is_empty());

    // A second job whose budget covers 6 accesses stops when it is spent:
    // one round of 5 is paid, a second would not be paid in full, so it
    // never opens, and nothing goes below zero.
    let job = service.train(5, 5, "0.03");
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
