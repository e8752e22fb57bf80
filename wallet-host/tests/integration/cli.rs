//! The `wallet` binary, run the way a person runs it: create a wallet, import
//! a CSV, look at it, run an algorithm on it, and get clear errors for bad
//! input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct TestWallet {
    _dir: tempfile::TempDir,
    wallet: PathBuf,
    identity: PathBuf,
}

impl TestWallet {
    /// A new wallet unlocked by an identity file (instant, unlike a passphrase).
    fn new() -> TestWallet {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TestWallet {
            wallet: dir.path().join("wallet"),
            identity: dir.path().join("identity.txt"),
            _dir: dir,
        };
        let out = t.wallet(&["init"]);
        assert_success(&out);
        assert!(stdout(&out).contains("wrote a new identity"));
        t
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wallet"));
        cmd.env_remove("WALLET_PASSPHRASE")
            .env_remove("WALLET_DIR")
            .arg("--wallet")
            .arg(&self.wallet)
            .arg("--identity")
            .arg(&self.identity);
        cmd
    }

    fn wallet(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("wallet runs")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

fn assert_failure_with(out: &Output, message: &str) {
    assert!(!out.status.success(), "should fail: {}", stdout(out));
    assert!(
        stderr(out).contains(message),
        "stderr should contain {message:?}:\n{}",
        stderr(out)
    );
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn import_diabetes(t: &TestWallet) {
    let csv = examples().join("diabetes.csv");
    let schema = examples().join("diabetes.schema.json");
    let out = t.wallet(&[
        "import",
        "--table",
        "diabetes",
        "--schema",
        schema.to_str().expect("utf-8 path"),
        csv.to_str().expect("utf-8 path"),
    ]);
    assert_success(&out);
    assert!(stdout(&out).contains("imported 442 rows into table 'diabetes'"));
}

#[test]
fn import_show_export_round_trip() {
    let t = TestWallet::new();
    import_diabetes(&t);
    let out = t.wallet(&["tables"]);
    assert_success(&out);
    assert!(stdout(&out).starts_with("diabetes\t442 rows\t11 columns"));
    let out = t.wallet(&["tables", "--json"]);
    assert_success(&out);
    let tables: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(tables[0]["name"], "diabetes");
    assert_eq!(tables[0]["rows"], 442);
    assert_eq!(tables[0]["columns"][10]["name"], "progression");
    let out = t.wallet(&["show", "diabetes", "--limit", "2", "--json"]);
    assert_success(&out);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(shown["rows"], 442);
    assert_eq!(shown["shown"].as_array().map(Vec::len), Some(2));
    assert!(shown["shown"][0]["progression"].is_number(), "{shown}");
    let out = t.wallet(&["subscriptions", "--json"]);
    assert_success(&out);
    assert_eq!(stdout(&out).trim(), "[]");
    let out = t.wallet(&["show", "diabetes", "--limit", "2"]);
    assert_success(&out);
    assert!(stdout(&out).contains("progression              integer 0..=400"));
    assert!(stdout(&out).contains("... 440 more rows"));
    let out = t.wallet(&["export", "diabetes"]);
    assert_success(&out);
    let original = std::fs::read_to_string(examples().join("diabetes.csv")).expect("csv");
    let exported = stdout(&out);
    assert_eq!(exported.lines().count(), original.lines().count());
    for (i, (a, b)) in exported.lines().zip(original.lines()).enumerate() {
        let same = a.split(',').zip(b.split(',')).all(|(x, y)| {
            x == y || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(p), Ok(q)) if p == q)
        });
        assert!(same, "line {} differs: {a} vs {b}", i + 1);
    }
}

#[test]
fn inferred_types_are_shown_and_json_works() {
    let t = TestWallet::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("career.json");
    std::fs::write(
        &json,
        r#"[{"job_title": "nurse", "manager_eval": 8, "peer_review": 7.5, "remote": true},
            {"job_title": "engineer", "manager_eval": 6, "peer_review": 9, "remote": false}]"#,
    )
    .expect("write");
    let import = |extra: &[&str]| {
        let mut args = vec!["import", "--table", "career.profile"];
        args.extend_from_slice(extra);
        args.push(json.to_str().expect("path"));
        t.wallet(&args)
    };
    // Inferred types are shown, and not written without a yes.
    let out = import(&[]);
    assert_failure_with(
        &out,
        "importing with inferred types needs your confirmation",
    );
    assert!(stdout(&out).contains("job_title                category [engineer, nurse]"));
    assert!(!stdout(&t.wallet(&["tables"])).contains("career.profile"));
    let out = import(&["--yes"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("inferred column types"), "{text}");
    assert!(
        text.contains("job_title                category [engineer, nurse]"),
        "{text}"
    );
    assert!(text.contains("peer_review              real"), "{text}");
    let out = t.wallet(&["export", "career.profile", "--format", "json"]);
    assert_success(&out);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(rows[0]["job_title"], "nurse");
    assert_eq!(rows[1]["peer_review"], 9.0);
}

#[test]
fn a_bad_row_names_row_and_column_and_imports_nothing() {
    let t = TestWallet::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "steps,sleep_hours\n8000,7.5\n9000,seven\n").expect("write");
    let out = t.wallet(&[
        "import",
        "--table",
        "health",
        "--yes",
        csv.to_str().expect("path"),
    ]);
    // Inference never makes a word among numbers a category level.
    assert_failure_with(
        &out,
        "column 'sleep_hours' holds numbers except in 1 cell: row 2 (line 3) 'seven'",
    );
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"columns": [{"name": "steps", "type": "integer", "min": 0, "max": 100000},
                        {"name": "sleep_hours", "type": "real", "min": 0, "max": 24}]}"#,
    )
    .expect("write");
    let out = t.wallet(&[
        "import",
        "--table",
        "health.daily",
        "--schema",
        schema.to_str().expect("path"),
        csv.to_str().expect("path"),
    ]);
    assert_failure_with(
        &out,
        "bad.csv: row 2 (line 3), column 'sleep_hours': 'seven' is not a finite real number",
    );
    let out = t.wallet(&["tables"]);
    assert!(
        !stdout(&out).contains("health.daily"),
        "nothing was imported"
    );

    // Streamed with its declared types, a segment per 65,536 rows: a bad
    // cell in the second segment leaves no segment and no table behind.
    let rows = 70_000;
    let mut text = String::from("steps,sleep_hours\n");
    for i in 0..rows {
        text.push_str(&format!("{},{}\n", i % 100_000, (i % 24) as f64 / 2.0));
    }
    let big = dir.path().join("big.csv");
    std::fs::write(&big, format!("{text}8000,25\n")).expect("write");
    let import_big = |path: &Path| {
        t.wallet(&[
            "import",
            "--table",
            "big",
            "--schema",
            schema.to_str().expect("path"),
            path.to_str().expect("path"),
        ])
    };
    assert_failure_with(
        &import_big(&big),
        &format!(
            "big.csv: row {} (line {}), column 'sleep_hours': 25 is outside",
            rows + 1,
            rows + 2
        ),
    );
    let segments = t.wallet.join("tables");
    let left = std::fs::read_dir(&segments).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "no segment of the refused import is left");
    std::fs::write(&big, &text).expect("write");
    let out = import_big(&big);
    assert_success(&out);
    assert!(
        stdout(&out).contains(&format!("imported {rows} rows into table 'big'")),
        "{}",
        stdout(&out)
    );
    assert_eq!(std::fs::read_dir(&segments).expect("segments").count(), 2);
    let out = t.wallet(&["add", "--table", "big", "steps=1", "sleep_hours=8"]);
    assert_success(&out);
    assert!(stdout(&out).contains(&format!("({} rows now)", rows + 1)));
    let out = t.wallet(&["show", "big", "--limit", "3"]);
    assert_success(&out);
    let shown = stdout(&out);
    assert!(
        shown.contains(&format!("table 'big': {} rows", rows + 1)),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("... {} more rows", rows - 2)),
        "{shown}"
    );
    assert!(
        shown.contains("\n2      1"),
        "the third row, steps 2: {shown}"
    );
}

#[test]
fn add_validates_one_row_against_the_schema() {
    let t = TestWallet::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"[{"name": "job_title", "type": "category", "levels": ["engineer", "nurse"]},
            {"name": "manager_eval", "type": "integer", "min": 0, "max": 10}]"#,
    )
    .expect("write");
    let s = schema.to_str().expect("path");
    let out = t.wallet(&[
        "add",
        "--table",
        "career",
        "--schema",
        s,
        "job_title=nurse",
        "manager_eval=8",
    ]);
    assert_success(&out);
    let out = t.wallet(&[
        "add",
        "--table",
        "career",
        "job_title=pilot",
        "manager_eval=8",
    ]);
    assert_failure_with(
        &out,
        "column 'job_title': 'pilot' is not one of the declared levels (engineer, nurse)",
    );
    let out = t.wallet(&[
        "add",
        "--table",
        "career",
        "job_title=nurse",
        "manager_eval=11",
    ]);
    assert_failure_with(
        &out,
        "column 'manager_eval': 11 is outside the declared range (integer 0..=10)",
    );
    let out = t.wallet(&["add", "--table", "career", "job_title=nurse"]);
    assert_failure_with(
        &out,
        "column 'manager_eval' (integer 0..=10) is declared in the schema but missing",
    );
    let out = t.wallet(&[
        "add",
        "--table",
        "career",
        "job_title=engineer",
        "manager_eval=6",
    ]);
    assert_success(&out);
    assert!(stdout(&out).contains("(2 rows now)"));
}

#[test]
fn concurrent_writers_are_serialized_and_lose_nothing() {
    let t = TestWallet::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"[{"name": "n", "type": "integer"}]"#).expect("write");
    let s = schema.to_str().expect("path");
    assert_success(&t.wallet(&["add", "--table", "t", "--schema", s, "n=0"]));
    let children: Vec<_> = (1..=6)
        .map(|i| {
            t.command()
                .args(["add", "--table", "t", &format!("n={i}")])
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    let out = t.wallet(&["export", "t"]);
    let mut values: Vec<i64> = stdout(&out)
        .lines()
        .skip(1)
        .map(|l| l.parse().expect("integer"))
        .collect();
    values.sort();
    assert_eq!(values, (0..=6).collect::<Vec<_>>());
}

#[test]
fn run_shows_the_update_that_would_leave_the_wallet() {
    let t = TestWallet::new();
    import_diabetes(&t);
    let out = t.wallet(&[
        "run",
        test_guest_artifacts::LINEAR_REGRESSION,
        "--table",
        "diabetes",
        "--params",
        "label=progression",
        "epochs=3",
        "--json",
    ]);
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(report["ok"], true);
    assert_eq!(report["algorithm"]["name"], "linear-regression");
    assert_eq!(report["update"]["examples"], 442);
    assert_eq!(
        report["update"]["delta"].as_array().expect("delta").len(),
        11
    );
    assert!(report["stats"]["fuel_used"].as_u64().expect("fuel") > 0);
    let mse = |name: &str| {
        report["update"]["metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["value"].as_f64())
            .expect("metric")
    };
    assert!(mse("mse_after") < mse("mse_before"));

    let out = t.wallet(&[
        "run",
        test_guest_artifacts::LINEAR_REGRESSION,
        "--table",
        "diabetes",
        "--params",
        "label=progression",
    ]);
    assert_success(&out);
    assert!(stdout(&out).contains("update           11 values, L2 norm"));

    // A model version as `collective model get` writes it is a starting model.
    let dir = tempfile::tempdir().expect("tempdir");
    let version = dir.path().join("model.json");
    let params: Vec<f32> = (0..11).map(|i| i as f32 / 100.0).collect();
    std::fs::write(
        &version,
        serde_json::json!({ "hash": "ab", "params": params, "provenance": {} }).to_string(),
    )
    .expect("write");
    let run_from = |model: &Path| {
        t.wallet(&[
            "run",
            test_guest_artifacts::LINEAR_REGRESSION,
            "--table",
            "diabetes",
            "--params",
            "label=progression",
            "--model",
            model.to_str().expect("utf-8"),
            "--json",
        ])
    };
    let out = run_from(&version);
    assert_success(&out);
    let from_version: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    std::fs::write(&version, serde_json::json!(params).to_string()).expect("write");
    let from_array: serde_json::Value =
        serde_json::from_str(&stdout(&run_from(&version))).expect("json");
    assert_eq!(from_version["update"], from_array["update"]);
}

#[test]
fn run_names_what_is_wrong() {
    let t = TestWallet::new();
    import_diabetes(&t);
    let algo = test_guest_artifacts::LINEAR_REGRESSION;
    let out = t.wallet(&["run", algo, "--table", "diabetes", "--params", "lr=0.1"]);
    assert_failure_with(
        &out,
        "linear-regression takes no hyper-parameter 'lr' (it takes: label, features,",
    );
    let out = t.wallet(&[
        "run",
        algo,
        "--table",
        "diabetes",
        "--params",
        "label=progression",
        "epochs=many",
    ]);
    assert_failure_with(&out, "hyper-parameter 'epochs': 'many' is not an integer");
    let out = t.wallet(&["run", algo, "--table", "health"]);
    assert_failure_with(&out, "no table 'health' in the wallet (it has: diabetes)");
    let out = t.wallet(&[
        "run",
        algo,
        "--table",
        "diabetes",
        "--params",
        "label=glucose",
    ]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains(
        "failed (algorithm): the algorithm reported an error: label column 'glucose' is not in the table"
    ));
    let out = t.wallet(&[
        "run",
        test_guest_artifacts::IMPORT_SOCKETS,
        "--table",
        "diabetes",
    ]);
    assert_failure_with(&out, "wasi:sockets/tcp@0.2");
    assert_failure_with(&out, "which the sandbox does not provide");
    let out = t.wallet(&["run", test_guest_artifacts::PANIC, "--table", "diabetes"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out)
            .contains("failed (panic): the algorithm panicked: this algorithm panics on purpose")
    );
    let out = t.wallet(&["run", "no-such-file.wasm", "--table", "diabetes"]);
    assert_failure_with(&out, "reading the algorithm no-such-file.wasm");
}

#[test]
fn wrong_passphrase_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wallet = dir.path().join("w");
    let (right, wrong) = (dir.path().join("right"), dir.path().join("wrong"));
    std::fs::write(&right, "a long passphrase\n").expect("write");
    std::fs::write(&wrong, "another one\n").expect("write");
    let run = |pass: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wallet"))
            .env_remove("WALLET_PASSPHRASE")
            .env_remove("WALLET_IDENTITY")
            .arg("--wallet")
            .arg(&wallet)
            .arg("--passphrase-file")
            .arg(pass)
            .args(args)
            .output()
            .expect("runs")
    };
    assert_success(&run(&right, &["init"]));
    let out = run(&wrong, &["tables"]);
    assert_failure_with(&out, "wrong passphrase");
    assert_success(&run(&right, &["tables"]));
    let out = Command::new(env!("CARGO_BIN_EXE_wallet"))
        .env_remove("WALLET_PASSPHRASE")
        .env_remove("WALLET_IDENTITY")
        .arg("--wallet")
        .arg(&wallet)
        .arg("tables")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs");
    assert_failure_with(
        &out,
        "no passphrase: give --passphrase-file FILE or WALLET_PASSPHRASE",
    );
}

/// Ten wallets unlocked at once on a small machine all open: a right
/// passphrase that is slow under load is never reported as damage.
#[test]
fn ten_passphrase_wallets_unlocked_at_once_all_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a long passphrase\n").expect("write");
    let wallet = |i: usize| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wallet"));
        cmd.env_remove("WALLET_PASSPHRASE")
            .env_remove("WALLET_IDENTITY")
            .env_remove("WALLET_DIR")
            .arg("--wallet")
            .arg(dir.path().join(format!("w{i}")))
            .arg("--passphrase-file")
            .arg(&pass);
        cmd
    };
    let run_all = |args: &[&str]| {
        let children: Vec<_> = (0..10)
            .map(|i| {
                wallet(i)
                    .args(args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in children {
            assert_success(&child.wait_with_output().expect("wait"));
        }
    };
    run_all(&["init"]);
    run_all(&["tables"]);
}

/// A semicolon-separated export with a byte-order mark and a missing value,
/// as a spreadsheet writes it: the delimiter is detected and said, the missing
/// value is refused by place, and dropped only on request.
#[test]
fn a_spreadsheet_export_is_read_as_it_is_meant() {
    let t = TestWallet::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("export.csv");
    std::fs::write(&csv, "\u{feff}age;sex;bmi\n50;f;22.5\n61;m;n/a\n44;f;30\n").expect("write");
    let path = csv.to_str().expect("path");
    let out = t.wallet(&["import", "--table", "h", "--yes", path]);
    assert_failure_with(
        &out,
        "export.csv: row 2 (line 3), column 'bmi': 'n/a' is a missing value",
    );
    let out = t.wallet(&["import", "--table", "h", "--yes", "--missing", "drop", path]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("export.csv: CSV, delimiter ';' (detected; set it with --delimiter)"),
        "{text}"
    );
    assert!(
        text.contains("left out 1 row with a missing value (--missing drop): row 2"),
        "{text}"
    );
    assert!(text.contains("imported 2 rows into table 'h'"), "{text}");
    assert!(text.contains("age                      integer"), "{text}");
    let out = t.wallet(&["import", "--table", "g", "--yes", "--delimiter", ",", path]);
    assert_failure_with(&out, "is the delimiter ';'? (--delimiter)");
}

/// Completions and the manual come from the same clap definitions as the
/// flags, and `--help` names the environment variables.
#[test]
fn completions_man_page_and_environment_in_help() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wallet"))
            .args(args)
            .output()
            .expect("runs")
    };
    let out = run(&["completions", "bash"]);
    assert_success(&out);
    for word in ["import", "--delimiter", "--missing", "subscriptions"] {
        assert!(stdout(&out).contains(word), "{word} not completed");
    }
    let out = run(&["man"]);
    assert_success(&out);
    assert!(stdout(&out).contains("WALLET_LOG"));
    let out = run(&["--help"]);
    assert_success(&out);
    for var in [
        "WALLET_DIR",
        "WALLET_PASSPHRASE",
        "WALLET_LOG",
        "C2SSI_CA_FILE",
    ] {
        assert!(stdout(&out).contains(var), "{var} not in --help");
    }
}
