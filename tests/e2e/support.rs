//! What the end-to-end tests share: the real `aggregator`, `broker`,
//! `collective` and `wallet` binaries (built by `cargo test --workspace`
//! next to this test), processes that are killed when dropped, a deployment
//! on 127.0.0.1 (an aggregator, a broker, a consumer with one collective),
//! and wallets holding one person of the diabetes data each.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where a test's broker keeps its state; every test runs on each (see
/// `main.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    /// A SQLite file in the broker's data directory (the default).
    Sqlite,
    /// A database of its own on the test run's PostgreSQL server.
    Postgres,
}

thread_local! {
    static STORE: std::cell::Cell<Store> = const { std::cell::Cell::new(Store::Sqlite) };
}

/// Runs `test` with its brokers on `store`.
pub(crate) fn on(store: Store, test: fn()) {
    STORE.with(|s| s.set(store));
    test();
}

/// The store of the test running on this thread.
pub(crate) fn store() -> Store {
    STORE.with(std::cell::Cell::get)
}

/// A new database on the test run's PostgreSQL server (started on first
/// use, stopped when the run exits); its URL.
pub(crate) fn new_postgres_database() -> String {
    c2ssi_broker::scratch_postgres::fresh_database("e2e")
        .unwrap_or_else(|e| panic!("the end-to-end tests run on PostgreSQL too: {e}"))
}

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
    /// Sends it `signal` (`STOP`, `CONT`, ...) with kill(1).
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {self}");
    }

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

/// The test run's TLS certificate (self-signed, for 127.0.0.1) and its key,
/// made once: every server of these tests serves HTTPS with it, and every
/// client (the binaries through `C2SSI_CA_FILE`, this process's own
/// `c2ssi_client`) trusts it and nothing else.
pub(crate) fn tls_files() -> &'static (PathBuf, PathBuf) {
    static FILES: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir()
            .expect("a directory for the certificate")
            .keep();
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .expect("a certificate");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).expect("writing the certificate");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("writing the key");
        c2ssi_client::trust_ca_file(&cert).expect("the test CA loads");
        (cert, key)
    })
}

/// `cmd`, trusting the test run's certificate.
pub(crate) fn trusting(cmd: &mut Command) -> &mut Command {
    cmd.env(c2ssi_client::CA_FILE_ENV, &tls_files().0)
}

/// Starts a server process and waits for the line that says where it
/// listens (`... on http(s)://ADDR ...`); returns the process and its URL.
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
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("{name} printed {line:?}"))
        .to_string();
    (running, url)
}

/// A port on 127.0.0.1 that was free a moment ago: the aggregator must be
/// told the broker's address before the broker runs, and the reverse.
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

/// A deployment: the aggregator and the broker as their own processes, a
/// consumer (its data directory) with one collective.
#[derive(Debug)]
pub(crate) struct Service {
    /// The broker's process.
    pub(crate) process: Running,
    /// The aggregator's process (it lives as long as the deployment).
    pub(crate) _aggregator: Running,
    /// The broker: `https://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The aggregator's own URL.
    pub(crate) aggregator_url: String,
    /// The broker's data directory (its SQLite file, unless `database`).
    pub(crate) data: PathBuf,
    /// The broker's PostgreSQL database, when the test runs on one.
    pub(crate) database: Option<String>,
    /// The aggregator's data directory.
    pub(crate) aggregator_data: PathBuf,
    /// The consumer's data directory (`COLLECTIVE_HOME`).
    pub(crate) home: PathBuf,
    /// The collective, once created.
    pub(crate) collective: String,
    /// The linear-regression algorithm's SHA-256.
    pub(crate) algorithm: String,
}

/// The broker's creators file (the consumer keys it admits), beside its
/// data directory.
pub(crate) fn creators_file(data: &Path) -> PathBuf {
    data.with_extension("creators")
}

/// How a broker is started: its state in `database` (PostgreSQL) when
/// given, else in `data`; its creators file is beside `data` either way.
pub(crate) fn broker_command(
    data: &Path,
    database: Option<&str>,
    listen: &str,
    aggregator: &str,
) -> Command {
    let mut cmd = Command::new(binary("broker"));
    cmd.arg("serve");
    match database {
        Some(url) => cmd.arg("--database").arg(url),
        None => cmd.arg("--data").arg(data),
    };
    cmd.arg("--listen")
        .arg(listen)
        .arg("--aggregator")
        .arg(aggregator)
        .args(["--liveness-ms", "600000", "--checkin-retry-ms", "100"])
        .arg("--creators")
        .arg(creators_file(data))
        .arg("--tls-cert")
        .arg(&tls_files().0)
        .arg("--tls-key")
        .arg(&tls_files().1)
        .env_remove("BROKER_LOG");
    trusting(&mut cmd);
    cmd
}

/// How an aggregator is started: wallets reach it at `public_url` (a proxy,
/// say) when given.
pub(crate) fn aggregator_command(
    data: &Path,
    listen: &str,
    broker: &str,
    public_url: Option<&str>,
) -> Command {
    let mut cmd = Command::new(binary("aggregator"));
    cmd.arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(listen)
        .arg("--broker")
        .arg(broker)
        .arg("--tls-cert")
        .arg(&tls_files().0)
        .arg("--tls-key")
        .arg(&tls_files().1)
        .env_remove("AGGREGATOR_LOG");
    trusting(&mut cmd);
    if let Some(url) = public_url {
        cmd.arg("--public-url").arg(url);
    }
    cmd
}

impl Service {
    /// Starts an aggregator and a broker in `dir` on 127.0.0.1, creates the
    /// diabetes collective (the example manifest), deposits `deposit` and
    /// allows linear regression.
    pub(crate) fn start(dir: &Path, deposit: &str) -> Service {
        Service::start_with(dir, deposit, None)
    }

    /// [`Service::start`], with wallets reaching the aggregator at
    /// `aggregator_public` (a port chosen in advance) when given.
    pub(crate) fn start_with(dir: &Path, deposit: &str, aggregator_public: Option<u16>) -> Service {
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let aggregator_data = dir.join("aggregator");
        let public = aggregator_public.map(|p| format!("http://127.0.0.1:{p}"));
        let (aggregator, aggregator_url) = start_server(
            aggregator_command(&aggregator_data, "127.0.0.1:0", &url, public.as_deref()),
            "aggregator serve",
        );
        let data = dir.join("broker");
        let database = (store() == Store::Postgres).then(new_postgres_database);
        let (process, broker_url) = start_server(
            broker_command(
                &data,
                database.as_deref(),
                &format!("127.0.0.1:{port}"),
                &aggregator_url,
            ),
            "broker serve",
        );
        assert_eq!(broker_url, url);
        let mut service = Service {
            process,
            _aggregator: aggregator,
            url,
            aggregator_url,
            data,
            database,
            aggregator_data,
            home: dir.join("consumer"),
            collective: String::new(),
            algorithm: String::new(),
        };
        // The broker admits this consumer: its key goes in the creators file.
        let consumer = run_ok(&mut service.operator(&["whoami"]));
        std::fs::write(creators_file(&service.data), consumer).expect("the creators file");
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
            "--params",
            "label=progression",
        ]))
        .trim()
        .to_string();
        service
    }

    /// Starts the broker again (after a kill) on its state and at its
    /// address: the wallets know it by it.
    pub(crate) fn restart_broker(&mut self) {
        let address = self.url.trim_start_matches("https://").to_string();
        let (process, url) = start_server(
            broker_command(
                &self.data,
                self.database.as_deref(),
                &address,
                &self.aggregator_url,
            ),
            "broker serve (restarted)",
        );
        self.process = process;
        assert_eq!(url, self.url);
    }

    /// The broker's database, opened from this process.
    pub(crate) fn open_database(&self) -> c2ssi_broker::database::Database {
        match &self.database {
            Some(url) => c2ssi_broker::database::Database::connect(url),
            None => c2ssi_broker::database::Database::open(&self.data.join("broker.db")),
        }
        .expect("the broker's database")
    }

    /// `broker verify-ledger` on the broker's database, offline.
    pub(crate) fn verify_ledger_offline(&self) -> String {
        let mut cmd = Command::new(binary("broker"));
        cmd.arg("verify-ledger");
        match &self.database {
            Some(url) => cmd.arg("--database").arg(url),
            None => cmd.arg("--db").arg(self.data.join("broker.db")),
        };
        run_ok(cmd.args(["--collective", &self.collective]))
    }

    /// `collective ARGS...` as this collective's consumer.
    pub(crate) fn operator(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("collective"));
        cmd.args(args)
            .env("BROKER_URL", &self.url)
            .env("COLLECTIVE_HOME", &self.home)
            .env_remove("COLLECTIVE_KEY")
            .env_remove("COLLECTIVE_LOG");
        trusting(&mut cmd);
        if !self.collective.is_empty() {
            cmd.env("COLLECTIVE_ID", &self.collective);
        }
        cmd
    }

    /// Starts a training job of linear regression with a round deadline of
    /// a minute; returns its id.
    pub(crate) fn train(&self, rounds: u32, wallets_per_round: u32, budget: &str) -> String {
        self.train_with(
            &self.algorithm,
            &["label=progression", "learning_rate=0.1", "epochs=1"],
            (rounds, wallets_per_round),
            budget,
            60_000,
        )
    }

    /// Starts a training job of `algorithm` with `params`, `(rounds,
    /// wallets per round)` and a round deadline; returns its id.
    pub(crate) fn train_with(
        &self,
        algorithm: &str,
        params: &[&str],
        (rounds, wallets_per_round): (u32, u32),
        budget: &str,
        deadline_ms: u64,
    ) -> String {
        let (rounds, wallets_per_round) = (rounds.to_string(), wallets_per_round.to_string());
        let deadline = deadline_ms.to_string();
        let mut args = vec!["train", "--algorithm", algorithm, "--params"];
        args.extend_from_slice(params);
        args.extend_from_slice(&[
            "--rounds",
            &rounds,
            "--wallets-per-round",
            &wallets_per_round,
            "--deadline-ms",
            &deadline,
            "--budget",
            budget,
            // Plain FedAvg at a constant rate of 1: a model version minus
            // the one before is the released aggregate, which the tests
            // read back (the default cosine schedule would shrink it).
            "--momentum",
            "0",
            "--lr-schedule",
            "constant",
        ]);
        run_ok(&mut self.operator(&args)).trim().to_string()
    }

    /// Adds the algorithm `component` (a new manifest version) and waits
    /// until each of `wallets` holds that version as pending; its SHA-256.
    pub(crate) fn add_algorithm_pending_in(
        &self,
        component: &str,
        wallets: &[WalletDir],
    ) -> String {
        let sha = run_ok(&mut self.operator(&[
            "algorithm",
            "add",
            component,
            "--params",
            "label=progression",
        ]))
        .trim()
        .to_string();
        for w in wallets {
            eventually("the new manifest to wait for consent", || {
                let out = run_ok(&mut w.command(&["subscriptions"]));
                out.contains("PENDING").then_some(())
            });
        }
        sha
    }

    /// The client of the broker's API, signing as the collective (its key
    /// in the consumer's directory), as `collective` does.
    pub(crate) fn client(&self) -> c2ssi_client::Client {
        let client = c2ssi_client::Client::new(&self.url);
        if self.collective.is_empty() {
            return client;
        }
        let key = c2ssi_protocol::SigningKey::read_from(
            &self.home.join(format!("{}.key", self.collective)),
        )
        .expect("the collective's key");
        client.signed_by(std::sync::Arc::new(key))
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
        trusting(&mut cmd);
        cmd
    }

    /// Subscribes to the collective at the broker at `url`.
    pub(crate) fn subscribe(&self, url: &str, collective: &str) {
        run_ok(&mut self.command(&["subscribe", url, collective, "--yes"]));
    }

    /// Consents to the collective's newer manifest.
    pub(crate) fn consent(&self, collective: &str) {
        run_ok(&mut self.command(&["consent", collective, "--yes"]));
    }

    /// Starts `wallet agent`.
    pub(crate) fn agent(&self) -> Running {
        self.agent_polling(200)
    }

    /// Starts `wallet agent`, checking in at least every `poll_ms`.
    pub(crate) fn agent_polling(&self, poll_ms: u64) -> Running {
        let poll = poll_ms.to_string();
        let mut cmd = self.command(&["agent", "--max-poll-ms", &poll]);
        // Its log stays in its directory, for a failing test to point at.
        let log = std::fs::File::create(self.dir.join("agent.log")).expect("the agent's log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .env("WALLET_LOG", "info");
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
