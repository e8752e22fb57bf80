//! Sybil resistance as its users run it: an `issuer` vouches for one
//! wallet's DID, the collective requires that credential, the wallet
//! imports it and subscribes; a second wallet (a Sybil) cannot subscribe
//! without one, cannot import or present the first one's, and a revocation
//! the issuer publishes ends the subscription at the broker. 300 keys that
//! present the one credential past the wallet program are all refused, and
//! in a job of five credentialed people no round pays more than five.

use std::process::Command;

use crate::support::*;

fn issuer(home: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary("issuer"));
    cmd.arg("--home").arg(home).args(args);
    trusting(&mut cmd);
    cmd
}

/// The DID `wallet credential list` prints.
fn did_of(wallet: &WalletDir) -> String {
    let out = run_ok(&mut wallet.command(&["credential", "list"]));
    out.lines()
        .find_map(|l| l.strip_prefix("this wallet's DID: "))
        .expect("the DID is printed")
        .trim()
        .to_string()
}

pub(crate) fn one_credential_admits_one_wallet_and_its_revocation_ends_the_subscription() {
    let dir = tempfile::tempdir().expect("a directory");
    let service = Service::start(dir.path(), "10");
    let issuer_home = dir.path().join("issuer");
    let init = run_ok(&mut issuer(&issuer_home, &["init"]));
    let issuer_did = init
        .trim()
        .strip_prefix("issuer DID ")
        .expect("init prints the DID")
        .to_string();

    // The collective now requires a UniquePersonCredential from this issuer.
    let mut file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/diabetes-collective.json"))
            .expect("the example manifest"),
    )
    .expect("JSON");
    file["credential"] = serde_json::json!({
        "credential_type": "UniquePersonCredential",
        "issuers": [issuer_did],
    });
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, file.to_string()).expect("writing the manifest");
    run_ok(&mut service.operator(&["update", "--manifest", manifest.to_str().expect("utf-8")]));
    // Its status list reaches the broker before any credential is used.
    let published = run_ok(&mut issuer(&issuer_home, &["publish", &service.url]));
    assert!(published.contains("0 subscription(s) ended"), "{published}");

    let person = WalletDir::create(dir.path(), "person", 0);
    let sybil = WalletDir::create(dir.path(), "sybil", 1);

    // Without a credential, neither subscribes; nothing is consented to.
    let out = run(&mut person.command(&["subscribe", &service.url, &service.collective, "--yes"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UniquePersonCredential"), "{stderr}");
    assert!(stderr.contains("wallet credential import"), "{stderr}");

    // The issuer vouches for the person's DID; the person imports it.
    let credential = dir.path().join("person-credential.json");
    run_ok(&mut issuer(
        &issuer_home,
        &[
            "issue",
            "--subject",
            &did_of(&person),
            "--out",
            credential.to_str().expect("utf-8"),
        ],
    ));
    let imported =
        run_ok(&mut person.command(&["credential", "import", credential.to_str().expect("utf-8")]));
    assert!(imported.contains("UniquePersonCredential"), "{imported}");
    let listed = run_ok(&mut person.command(&["credential", "list"]));
    assert!(listed.contains(&issuer_did), "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&run_ok(&mut person.command(&[
        "credential",
        "list",
        "--json",
    ])))
    .expect("credential list --json is JSON");
    assert_eq!(listed["credentials"][0]["issuer"], issuer_did.as_str());
    assert!(listed["credentials"][0]["problem"].is_null(), "{listed}");
    person.subscribe(&service.url, &service.collective);

    // The Sybil cannot import the person's credential: it is about another DID.
    let out =
        run(&mut sybil.command(&["credential", "import", credential.to_str().expect("utf-8")]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not about this wallet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&mut sybil.command(&["subscribe", &service.url, &service.collective, "--yes"]));
    assert!(!out.status.success());
    let info = run_ok(&mut service.operator(&["info"]));
    assert!(info.contains("subscribers 1 "), "{info}");

    // 300 Sybil keys present the person's credential past the wallet
    // program, each subscription signed by its own key: none is admitted
    // (the credential is about another DID, and its subject has its one
    // subscription), so only the person's wallet can be sampled and paid,
    // at most once per round.
    let credential_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&credential).expect("the credential"))
            .expect("JSON");
    let client = c2ssi_client::Client::new(&service.url);
    let digest = hex::encode(
        client
            .manifest(&service.collective)
            .expect("the manifest")
            .digest(),
    );
    use c2ssi_protocol::Signer;
    let mut admitted = 0;
    let mut sybils = Vec::new();
    for _ in 0..300 {
        let key = c2ssi_protocol::SigningKey::generate().expect("a key");
        let subscription = c2ssi_protocol::Signed::sign(
            &c2ssi_protocol::Subscription {
                header: c2ssi_protocol::Header::new(
                    c2ssi_protocol::Purpose::Subscription,
                    &service.collective,
                    60_000,
                ),
                wallet: key.public_key(),
                manifest_digest: digest.clone(),
                consent: "yes".into(),
                credentials: vec![credential_json.clone()],
            },
            &key,
        )
        .expect("signed");
        match client.subscribe(&service.collective, &subscription) {
            Ok(_) => admitted += 1,
            Err(c2ssi_client::ClientError::Refused { status, .. }) => {
                assert!((400..500).contains(&status), "{status}")
            }
            Err(e) => panic!("{e}"),
        }
        sybils.push(key);
    }
    assert_eq!(
        admitted, 0,
        "a Sybil key was admitted with another's credential"
    );
    let info = run_ok(&mut service.operator(&["info"]));
    assert!(info.contains("subscribers 1 "), "{info}");

    // A real job: four more people, each with a credential of their own,
    // beside the 300 Sybil keys, which cannot even check in. Each round
    // pays each of the five at most once.
    let mut people = vec![person];
    for i in 1..5 {
        let other = WalletDir::create(dir.path(), &format!("person{i}"), 10 + i);
        let file = dir.path().join(format!("person{i}-credential.json"));
        run_ok(&mut issuer(
            &issuer_home,
            &[
                "issue",
                "--subject",
                &did_of(&other),
                "--out",
                file.to_str().expect("utf-8"),
            ],
        ));
        run_ok(&mut other.command(&["credential", "import", file.to_str().expect("utf-8")]));
        other.subscribe(&service.url, &service.collective);
        people.push(other);
    }
    let agents: Vec<_> = people.iter().map(WalletDir::agent).collect();
    let job = service.train(2, 5, "1");
    for key in &sybils[..10] {
        let check_in = c2ssi_protocol::Signed::sign(
            &c2ssi_protocol::CheckIn {
                header: c2ssi_protocol::Header::new(
                    c2ssi_protocol::Purpose::CheckIn,
                    &service.collective,
                    60_000,
                ),
                wallet: key.public_key(),
                receipts_after: 0,
            },
            key,
        )
        .expect("signed");
        assert!(matches!(
            client.check_in(&service.collective, &check_in),
            Err(c2ssi_client::ClientError::Refused { status: 403, .. })
        ));
    }
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");
    drop(agents);
    let ledger = service.ledger();
    assert_paid_once(&ledger);
    let paid = payments(&ledger);
    for round in 1..=2 {
        let in_round = paid
            .iter()
            .filter(|(j, r, _)| *j == job && *r == round)
            .count();
        assert!(in_round <= 5, "round {round} paid {in_round} accesses");
    }
    let received: usize = people.iter().map(|w| receipts(w).len()).sum();
    assert!(
        0 < received && received <= paid.len(),
        "{received} of {}",
        paid.len()
    );
    let person = &people[0];

    // The issuer revokes the first person's and publishes: the broker ends
    // that subscription, and only that one.
    let id = std::fs::read_to_string(&credential).expect("the credential");
    let id: serde_json::Value = serde_json::from_str(&id).expect("JSON");
    let id = id["id"].as_str().expect("an id");
    run_ok(&mut issuer(&issuer_home, &["revoke", id]));
    let published = run_ok(&mut issuer(&issuer_home, &["publish", &service.url]));
    assert!(published.contains("1 subscription(s) ended"), "{published}");
    let info = run_ok(&mut service.operator(&["info"]));
    assert!(info.contains("subscribers 4 "), "{info}");
    let out = run(&mut person.command(&["subscribe", &service.url, &service.collective, "--yes"]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
