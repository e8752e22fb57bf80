//! What the end-to-end tests share: the real `collective` and `wallet`
//! binaries (built by `cargo test --workspace` next to this test), processes
//! that are killed when dropped, a collective service on 127.0.0.1 with an
//! operator, and wallets holding one person of the diabetes data each.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any wait in these tests may take before it fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

/// A binary of this workspace, next to this test's own executable.
pub(crate) fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build --workspace`) first",
        path.display()
    );
    path
}

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub(crate) struct Running {
    /// The process.
    pub(crate) child: Child,
    /// What it is, for messages.
    pub(crate) name: String,
}

impl std::fmt::Display for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.name, self.child.id())
    }
}

impl Running {
    /// Kills it at once (SIGKILL), as a crash would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command to its end; panics with its output when it fails.
pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command to its end.
pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Starts a server process and waits for the line that says where it
/// listens (`... on http://ADDR ...`); returns the process and `http://ADDR`.
pub(crate) fn start_server(mut cmd: Command, name: &str) -> (Running, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut running = Running {
        child,
        name: name.to_string(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so that the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => {
            running.kill();
            panic!("{running} did not say where it listens");
        }
    };
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("{name} printed {line:?}"))
        .to_string();
    (running, url)
}

/// A collective service, its operator's key, and one collective.
#[derive(Debug)]
pub(crate) struct Service {
    /// The process.
    pub(crate) process: Running,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// Its data directory.
    pub(crate) data: PathBuf,
    /// The operator's key file.
    pub(crate) operator_key: PathBuf,
    /// The collective, once created.
    pub(crate) collective: String,
    /// The linear-regression algorithm's SHA-256.
    pub(crate) algorithm: String,
}

/// How a service is started.
pub(crate) fn serve_command(data: &Path, listen: &str, aggregator: Option<&str>) -> Command {
    let mut cmd = Command::new(binary("collective"));
    cmd.arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(listen)
        .args(["--liveness-ms", "600000", "--checkin-retry-ms", "100"]);
    if let Some(url) = aggregator {
        cmd.arg("--aggregator").arg(url);
    }
    cmd
}

impl Service {
    /// Starts `collective serve` in `dir` on 127.0.0.1 (any port), creates
    /// the diabetes collective, deposits `deposit` and allows linear regression.
    pub(crate) fn start(dir: &Path, deposit: &str) -> Service {
        Service::start_on(dir, deposit, "127.0.0.1:0", None)
    }

    /// [`Service::start`] listening on `listen`, with the aggregator at
    /// `aggregator` when there is one elsewhere.
    pub(crate) fn start_on(
        dir: &Path,
        deposit: &str,
        listen: &str,
        aggregator: Option<&str>,
    ) -> Service {
        let data = dir.join("service");
        let (process, url) =
            start_server(serve_command(&data, listen, aggregator), "collective serve");
        let operator_key = dir.join("operator.key");
        let mut service = Service {
            process,
            url,
            data,
            operator_key,
            collective: String::new(),
            algorithm: String::new(),
        };
        let manifest = repo().join("examples/diabetes-collective.json");
        service.collective = run_ok(&mut service.operator(&[
            "create",
            "--manifest",
            manifest.to_str().expect("utf-8 path"),
        ]))
        .trim()
        .to_string();
        run_ok(&mut service.operator(&["deposit", deposit]));
        service.algorithm = run_ok(&mut service.operator(&[
            "algorithm",
            "add",
            test_guest_artifacts::LINEAR_REGRESSION,
        ]))
        .trim()
        .to_string();
        service
    }

    /// `collective ARGS...` as this collective's operator.
    pub(crate) fn operator(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("collective"));
        cmd.args(args)
            .env("COLLECTIVE_URL", &self.url)
            .env("COLLECTIVE_KEY", &self.operator_key)
            .env_remove("COLLECTIVE_LOG");
        if !self.collective.is_empty() {
            cmd.env("COLLECTIVE_ID", &self.collective);
        }
        cmd
    }

    /// Starts a training job of linear regression with k = 5 and a round
    /// deadline of a minute; returns its id.
    pub(crate) fn train(&self, rounds: u32, wallets_per_round: u32, budget: &str) -> String {
        let (rounds, wallets_per_round) = (rounds.to_string(), wallets_per_round.to_string());
        let args = [
            "train",
            "--algorithm",
            &self.algorithm,
            "--params",
            "label=progression",
            "learning_rate=0.1",
            "epochs=1",
            "--rounds",
            &rounds,
            "--wallets-per-round",
            &wallets_per_round,
            "--k",
            "5",
            "--deadline-ms",
            "60000",
            "--budget",
            budget,
        ];
        run_ok(&mut self.operator(&args)).trim().to_string()
    }

    /// The client of the service's API.
    pub(crate) fn client(&self) -> c2ssi_client::Client {
        c2ssi_client::Client::new(&self.url)
    }

    /// The job's model versions, as the API lists them.
    pub(crate) fn models(&self, job: &str) -> Vec<Value> {
        self.client()
            .get(&format!(
                "/collectives/{}/models?job={job}",
                self.collective
            ))
            .expect("model list")
    }

    /// The job's status, as `collective status JOB --json` prints it.
    pub(crate) fn status(&self, job: &str) -> Value {
        let out = run_ok(&mut self.operator(&["status", job, "--json"]));
        serde_json::from_str(&out).expect("status --json is JSON")
    }

    /// Waits until the job is no longer running; returns its status.
    pub(crate) fn wait_for_end(&self, job: &str) -> Value {
        let started = Instant::now();
        loop {
            let status = self.status(job);
            if status["state"] != "running" {
                return status;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "job {job} still running after {PATIENCE:?}: {status:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wallets sampled over all rounds of a job status: a round samples up
    /// to its size from the wallets that had checked in when it opened.
    pub(crate) fn sampled(status: &Value) -> usize {
        status["rounds"]
            .as_array()
            .expect("rounds")
            .iter()
            .map(|r| r["sampled"].as_u64().expect("sampled") as usize)
            .sum()
    }

    /// `collective ledger verify`; panics if it does not verify.
    pub(crate) fn verify_ledger(&self) -> String {
        run_ok(&mut self.operator(&["ledger", "verify"]))
    }

    /// The ledger's entries, as the API returns them.
    pub(crate) fn ledger(&self) -> Vec<Value> {
        self.client()
            .get(&format!("/collectives/{}/ledger", self.collective))
            .expect("the ledger")
    }
}

impl std::ops::Deref for Service {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.process
    }
}

/// The rows of `examples/diabetes.csv`: the header and one line per person.
pub(crate) fn diabetes_rows() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(repo().join("examples/diabetes.csv")).expect("diabetes.csv");
    let mut lines = text.lines().map(str::to_string);
    let header = lines.next().expect("a header");
    (header, lines.collect())
}

/// A wallet directory unlocked by an age identity file.
#[derive(Debug, Clone)]
pub(crate) struct WalletDir {
    /// The wallet.
    pub(crate) dir: PathBuf,
    /// Its identity file.
    pub(crate) identity: PathBuf,
}

impl WalletDir {
    /// Creates a wallet holding person `person` of the diabetes data.
    pub(crate) fn create(parent: &Path, name: &str, person: usize) -> WalletDir {
        let wallet = WalletDir {
            dir: parent.join(name),
            identity: parent.join(format!("{name}.age")),
        };
        run_ok(&mut wallet.command(&["init"]));
        let (header, rows) = diabetes_rows();
        let csv = parent.join(format!("{name}.csv"));
        std::fs::write(&csv, format!("{header}\n{}\n", rows[person % rows.len()]))
            .expect("writing the person's row");
        let schema = repo().join("examples/diabetes.schema.json");
        run_ok(&mut wallet.command(&[
            "import",
            "--table",
            "diabetes",
            "--schema",
            schema.to_str().expect("utf-8"),
            csv.to_str().expect("utf-8"),
        ]));
        std::fs::remove_file(&csv).expect("removing the plaintext row");
        wallet
    }

    /// `wallet ARGS...` on this wallet.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("wallet"));
        cmd.arg("--wallet")
            .arg(&self.dir)
            .arg("--identity")
            .arg(&self.identity)
            .args(args)
            .env_remove("WALLET_PASSPHRASE")
            .env_remove("WALLET_DIR");
        cmd
    }

    /// Subscribes to the collective at `url`.
    pub(crate) fn subscribe(&self, url: &str, collective: &str) {
        run_ok(&mut self.command(&["subscribe", url, collective, "--yes"]));
    }

    /// Starts `wallet agent`.
    pub(crate) fn agent(&self) -> Running {
        let mut cmd = self.command(&["agent", "--max-poll-ms", "200"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Running {
            child: cmd.spawn().expect("starting wallet agent"),
            name: format!("agent of {}", self.dir.display()),
        }
    }

    /// `wallet log --json`.
    pub(crate) fn log(&self) -> Vec<Value> {
        serde_json::from_str(&run_ok(&mut self.command(&["log", "--json"])))
            .expect("log --json is JSON")
    }

    /// `wallet earnings --online --json`: the receipts, each checked
    /// against the collective's ledger.
    pub(crate) fn earnings(&self) -> Value {
        serde_json::from_str(&run_ok(
            &mut self.command(&["earnings", "--online", "--json"]),
        ))
        .expect("earnings --json is JSON")
    }
}

/// Creates `n` wallets (persons `first..first + n`), in parallel.
pub(crate) fn wallets(parent: &Path, prefix: &str, first: usize, n: usize) -> Vec<WalletDir> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                s.spawn(move || WalletDir::create(parent, &format!("{prefix}{i:02}"), first + i))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("creating a wallet"))
            .collect()
    })
}

/// Polls `check` until it returns `Some`, for at most [`PATIENCE`].
pub(crate) fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Payments in a ledger, as (job, round, payee commitment).
pub(crate) fn payments(ledger: &[Value]) -> Vec<(String, u64, String)> {
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

/// Panics if the ledger pays any (job, round, payee) twice.
pub(crate) fn assert_paid_once(ledger: &[Value]) {
    let all = payments(ledger);
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an access was paid twice");
}

/// Every receipt a wallet kept, each found in the collective's ledger, as
/// (job, round); panics if the wallet holds two for one access.
pub(crate) fn receipts(wallet: &WalletDir) -> Vec<(String, u64)> {
    let earnings = wallet.earnings();
    let mine: Vec<(String, u64)> = earnings["receipts"]
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
        .collect();
    let unique: std::collections::HashSet<_> = mine.iter().collect();
    assert_eq!(
        unique.len(),
        mine.len(),
        "a wallet holds two receipts for one access"
    );
    mine
}
