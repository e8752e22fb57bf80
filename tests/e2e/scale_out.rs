//! Two broker processes on one PostgreSQL database serve one collective,
//! with the wallets spread across both; the broker driving the job is
//! killed mid-job and started again: the job completes, nothing is paid
//! twice or lost, and both brokers serve the same ledger, which verifies.

use std::collections::BTreeSet;

use crate::support::{
    Service, Store, WalletDir, assert_paid_once, broker_command, eventually, payments, receipts,
    start_server, wallets,
};

pub(crate) fn two_brokers_on_one_database_pay_each_access_once_through_a_crash() {
    assert_eq!(crate::support::store(), Store::Postgres);
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Broker A (with the aggregator), then broker B on the same database.
    let mut service = Service::start(dir.path(), "10");
    let (_b, b_url) = start_server(
        broker_command(
            &dir.path().join("broker-b"),
            service.database.as_deref(),
            "127.0.0.1:0",
            &service.aggregator_url,
        ),
        "broker serve (B)",
    );
    // B knows the collective A created, and serves its manifest.
    let manifest: serde_json::Value = c2ssi_client::Client::new(&b_url)
        .get(&format!("/collectives/{}/manifest", service.collective))
        .expect("B serves A's collective");
    assert!(manifest.get("signature").is_some(), "{manifest}");

    let people = wallets(dir.path(), "s", 400, 16);
    for (i, w) in people.iter().enumerate() {
        let url = if i % 2 == 0 { &service.url } else { &b_url };
        w.subscribe(url, &service.collective);
    }
    let info = crate::support::run_ok(&mut service.operator(&["info"]));
    assert!(info.contains("subscribers 16 "), "{info}");
    let _agents: Vec<_> = people.iter().map(WalletDir::agent).collect();

    let job = service.train(4, 8, "1");
    eventually("a round to close", || {
        (service.status(&job)["rounds_done"].as_u64() >= Some(1)).then_some(())
    });
    // A dies mid-job and comes back at its address; the job goes on (B or
    // the new A takes it once A's lease has run out).
    service.process.kill();
    service.restart_broker();
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");

    // One ledger, the same through either broker, verified by each.
    let ledger = service.ledger();
    let through_b: Vec<serde_json::Value> = {
        let key = c2ssi_protocol::SigningKey::read_from(
            &service.home.join(format!("{}.key", service.collective)),
        )
        .expect("the collective's key");
        c2ssi_client::Client::new(&b_url)
            .signed_by(std::sync::Arc::new(key))
            .get(&format!("/collectives/{}/ledger", service.collective))
            .expect("B's ledger")
    };
    assert_eq!(ledger, through_b);
    service.verify_ledger();
    let verified = service.verify_ledger_offline();
    assert!(verified.contains("verifies"), "{verified}");
    assert_paid_once(&ledger);

    // Wallets of both brokers took part and were paid, each access once,
    // and every receipt is in the ledger.
    let paid = payments(&ledger).len();
    let mut received = 0;
    let mut on = BTreeSet::new();
    for (i, w) in people.iter().enumerate() {
        let mine = receipts(w);
        if !mine.is_empty() {
            on.insert(i % 2);
        }
        received += mine.len();
    }
    assert!(paid > 0);
    assert_eq!(
        on,
        BTreeSet::from([0, 1]),
        "wallets of one broker only were paid"
    );
    // A receipt can reach its wallet after the job's end: wait for them all.
    eventually("every payment to reach its wallet", || {
        let now: usize = people.iter().map(|w| receipts(w).len()).sum();
        (now == paid).then_some(())
    });
    assert!(received <= paid);
}
