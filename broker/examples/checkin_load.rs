//! The check-in load benchmark: a real aggregator and broker (the
//! workspace's binaries, on SQLite or on a scratch PostgreSQL server), one
//! collective, and N simulated wallets, each subscribed and each polling
//! `POST /collectives/{id}/checkin` over its own keep-alive connection every
//! interval with a freshly signed check-in, as wallet agents do. It prints
//! the check-ins served per second and their latency percentiles.
//!
//! ```text
//! cargo build --workspace
//! cargo run -p c2ssi-broker --example checkin_load -- --store sqlite
//! cargo run -p c2ssi-broker --example checkin_load -- --store postgres
//! ```
//!
//! `scripts/checkin-load.sh` runs both; `docs/ROBUSTNESS.md` has the figures.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use c2ssi_protocol::{
    CheckIn, Header, Manifest, Purpose, Signed, Signer, SigningKey, Subscription,
};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

#[derive(Debug, Parser)]
struct Args {
    /// Where the broker keeps its state: sqlite or postgres
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Simulated wallets
    #[arg(long, default_value_t = 1000)]
    wallets: usize,
    /// How often each wallet checks in, in milliseconds
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// How long the measurement runs, after a warm-up of 5 s
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the example runs from target/<profile>/examples")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build --workspace` first",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts a server and waits for the line that says where it listens.
fn start(mut cmd: Command, name: &str) -> anyhow::Result<Server> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(line)) if line.contains(" on http") => {}
        other => bail!("{name} did not start: {other:?}"),
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(Server(child))
}

fn pid_stat(pid: u32) -> (f64, u64) {
    // CPU seconds (user + system) and resident KiB, from /proc.
    let ticks = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let cpu = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum::<f64>() / ticks)
        .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(port: u16) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn post(sender: &mut Sender, path: &str, body: Vec<u8>) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let request = hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn main() -> anyhow::Result<()> {
    c2ssi_sandbox::compile_child_hook();
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let postgres = match args.store.as_str() {
        "sqlite" => None,
        "postgres" => Some(
            c2ssi_broker::scratch_postgres::ScratchPostgres::start().map_err(anyhow::Error::msg)?,
        ),
        other => bail!("--store {other}: give sqlite or postgres"),
    };
    let database = match &postgres {
        Some(server) => Some(server.create_database("load").map_err(anyhow::Error::msg)?),
        None => None,
    };
    let (aggregator_port, broker_port) = (free_port()?, free_port()?);
    let broker_url = format!("http://127.0.0.1:{broker_port}");
    let _aggregator = start(
        {
            let mut cmd = Command::new(binary("aggregator")?);
            cmd.arg("serve")
                .arg("--data")
                .arg(dir.path().join("aggregator"))
                .args(["--listen", &format!("127.0.0.1:{aggregator_port}")])
                .args(["--broker", &broker_url]);
            cmd
        },
        "aggregator",
    )?;
    let broker = start(
        {
            let mut cmd = Command::new(binary("broker")?);
            cmd.arg("serve");
            match &database {
                Some(url) => cmd.arg("--database").arg(url),
                None => cmd.arg("--data").arg(dir.path().join("broker")),
            };
            cmd.args(["--listen", &format!("127.0.0.1:{broker_port}")])
                .args([
                    "--aggregator",
                    &format!("http://127.0.0.1:{aggregator_port}"),
                ])
                .args(["--checkin-retry-ms", &args.interval_ms.to_string()])
                .arg("--anyone-may-create");
            cmd
        },
        "broker",
    )?;
    let manifest_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/diabetes-collective.json");
    let out = Command::new(binary("collective")?)
        .args(["create", "--manifest"])
        .arg(&manifest_file)
        .env("BROKER_URL", &broker_url)
        .env("COLLECTIVE_HOME", dir.path().join("consumer"))
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("collective create failed");
    }
    let id = String::from_utf8(out.stdout)?.trim().to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let broker_pid = broker.0.id();
    runtime.block_on(async move {
        let manifest: Signed<Manifest> = {
            let mut sender = connect(broker_port).await?;
            sender.ready().await?;
            let request = hyper::Request::get(format!("/collectives/{id}/manifest"))
                .header("host", "127.0.0.1")
                .body(Full::new(Bytes::new()))?;
            let body = sender
                .send_request(request)
                .await?
                .into_body()
                .collect()
                .await?
                .to_bytes();
            serde_json::from_slice(&body)?
        };
        let digest = hex::encode(manifest.digest());
        eprintln!("subscribing {} wallets to {id}", args.wallets);
        let keys: Vec<Arc<SigningKey>> = (0..args.wallets)
            .map(|_| SigningKey::generate().map(Arc::new))
            .collect::<Result<_, _>>()?;
        let mut sender = connect(broker_port).await?;
        for key in &keys {
            let subscription = Signed::sign(
                &Subscription {
                    header: Header::new(Purpose::Subscription, &id, 60_000),
                    wallet: key.public_key(),
                    manifest_digest: digest.clone(),
                    consent: "yes".into(),
                    credentials: Vec::new(),
                },
                key.as_ref(),
            )?;
            let (status, body) = post(
                &mut sender,
                &format!("/collectives/{id}/subscriptions"),
                serde_json::to_vec(&subscription)?,
            )
            .await?;
            if status != 200 && status != 201 {
                bail!("subscribing: {status} {}", String::from_utf8_lossy(&body));
            }
        }
        let warm_up = Duration::from_secs(5);
        let started = Instant::now();
        let measure_from = started + warm_up;
        let stop_at = measure_from + Duration::from_secs(args.seconds);
        let interval = Duration::from_millis(args.interval_ms);
        let path = format!("/collectives/{id}/checkin");
        let mut tasks = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let (path, id) = (path.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                // Spread the wallets over the interval.
                let offset = interval.mul_f64(i as f64 / args.wallets as f64);
                tokio::time::sleep(offset).await;
                let mut sender = connect(broker_port).await?;
                let mut latencies = Vec::new();
                let mut failures: Vec<u16> = Vec::new();
                let mut next = Instant::now();
                while Instant::now() < stop_at {
                    let check_in = Signed::sign(
                        &CheckIn {
                            header: Header::new(Purpose::CheckIn, &id, 60_000),
                            wallet: key.public_key(),
                            receipts_after: 0,
                        },
                        key.as_ref(),
                    )?;
                    let body = serde_json::to_vec(&check_in)?;
                    let sent = Instant::now();
                    let (status, _) = post(&mut sender, &path, body).await?;
                    let took = sent.elapsed();
                    if sent >= measure_from {
                        if status == 200 {
                            latencies.push(took);
                        } else {
                            failures.push(status);
                        }
                    }
                    next += interval;
                    let now = Instant::now();
                    if next > now {
                        tokio::time::sleep(next - now).await;
                    } else {
                        // Late: the next check-in goes at once.
                        next = now;
                    }
                }
                anyhow::Ok((latencies, failures))
            }));
        }
        tokio::time::sleep_until(measure_from.into()).await;
        let (cpu_before, _) = pid_stat(broker_pid);
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        for task in tasks {
            let (l, f) = task.await??;
            latencies.extend(l);
            failures.extend(f);
        }
        let (cpu_after, rss) = pid_stat(broker_pid);
        let cpu = cpu_after - cpu_before;
        latencies.sort();
        let seconds = args.seconds as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "store {}: {} wallets every {} ms for {} s: {} check-ins served ({:.0}/s), {} refused; \
             latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; broker CPU {:.0}% \
             of one core, resident {} MiB",
            args.store,
            args.wallets,
            args.interval_ms,
            args.seconds,
            latencies.len(),
            latencies.len() as f64 / seconds,
            failures.len(),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.90)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default()),
            100.0 * cpu / seconds,
            rss / 1024,
        );
        if !failures.is_empty() {
            let mut kinds = failures.clone();
            kinds.sort();
            kinds.dedup();
            println!("refused with statuses {kinds:?}");
        }
        anyhow::Ok(())
    })?;
    drop(broker);
    Ok(())
}
