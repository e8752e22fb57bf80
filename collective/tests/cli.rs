//! The `collective` program as its operator runs it, without a broker:
//! a manifest file with a mistake is refused with its place named and
//! nothing written, and the privacy audit runs locally on a component.

use std::process::Command;

fn collective() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_collective"));
    cmd.env_remove("COLLECTIVE_KEY")
        .env_remove("COLLECTIVE_ID")
        .env("BROKER_URL", "http://127.0.0.1:9");
    cmd
}

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn a_mistaken_manifest_is_refused_with_its_place_and_no_key_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    std::fs::write(
        &manifest,
        "{\"name\": \"n\", \"description\": \"d\", \"rate\": \"0.1\",\n \"requirements\": {\"tables\": []},\n \"privacy\": {\"epsilon\": 2, \"noise_multiplyer\": 1}}",
    )
    .unwrap();
    let out = collective()
        .args(["create", "--manifest"])
        .arg(&manifest)
        .env("COLLECTIVE_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("noise_multiplyer") && err.contains("line 3"),
        "{err}"
    );
    assert!(!dir.path().join("home").exists(), "nothing was written");
}

#[test]
fn the_audit_runs_locally_and_passes_a_learner() {
    let out = collective()
        .args([
            "algorithm",
            "audit",
            test_guest_artifacts::LINEAR_REGRESSION,
            "--manifest",
        ])
        .arg(repo().join("examples/diabetes-collective.json"))
        .args(["--params", "label=progression", "--trials", "100"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("not flagged"), "{text}");
    assert!(text.contains("accountant allows"), "{text}");
}
