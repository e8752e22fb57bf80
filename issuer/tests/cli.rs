//! The `issuer` binary as its users run it: init, issue a credential that
//! verifies and names its status list, revoke it, and a status list that
//! says so; wrong input gets a clear error and a non-zero exit.

use std::process::Command;

use c2ssi_credentials::{Credential, Did, StatusList};

fn issuer(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_issuer"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("C2SSI_CA_FILE")
        .output()
        .expect("issuer runs")
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn issue_revoke_and_publish_a_status_list() {
    let dir = tempfile::tempdir().expect("a directory");
    let home = dir.path().join("issuer");
    let did = ok(issuer(&home, &["init"]));
    let did = did.trim().strip_prefix("issuer DID ").expect("the DID");
    assert_eq!(ok(issuer(&home, &["did"])).trim(), did);
    // A second init refuses to overwrite the key.
    assert!(!issuer(&home, &["init"]).status.success());

    let wallet = Did::from_ed25519([7; 32]);
    let out = dir.path().join("c.json");
    ok(issuer(
        &home,
        &[
            "issue",
            "--subject",
            wallet.as_str(),
            "--out",
            out.to_str().expect("utf-8"),
        ],
    ));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("written")).expect("JSON");
    let credential = Credential::verify(json).expect("it verifies");
    assert_eq!(credential.issuer().as_str(), did);
    assert_eq!(credential.subject(), &wallet);
    assert!(credential.has_type("UniquePersonCredential"));
    let index = credential.status().expect("a status entry").index;

    let list = |home: &std::path::Path| {
        let text = ok(issuer(home, &["status-list"]));
        StatusList::verify(serde_json::from_str(&text).expect("JSON")).expect("it verifies")
    };
    assert!(!list(&home).is_revoked(index));
    ok(issuer(&home, &["revoke", credential.id()]));
    assert!(list(&home).is_revoked(index));
    assert!(ok(issuer(&home, &["list"])).contains("REVOKED"));

    // Bad input: named, non-zero.
    let bad = issuer(&home, &["issue", "--subject", "did:web:example.com"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("did:key"));
    let bad = issuer(&home, &["revoke", "urn:uuid:nothing"]);
    assert!(!bad.status.success());
    let nowhere = issuer(&dir.path().join("none"), &["did"]);
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("issuer init"));
}
