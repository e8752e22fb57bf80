//! A throwaway PostgreSQL server: `initdb` and `postgres` in a temporary
//! directory on a free loopback port, for the tests, the benchmarks and for
//! trying the broker on PostgreSQL. It needs the server's binaries (Debian's
//! `postgresql` package); as root it runs them as the `postgres` user, since
//! PostgreSQL refuses to run as root. The server stops when this handle is
//! dropped or when the process that started it exits, and its directory
//! is removed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the server's binaries are: `$C2SSI_POSTGRES_BIN`, or the newest
/// `/usr/lib/postgresql/*/bin`, or `initdb` on the `PATH`.
pub fn binaries() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("C2SSI_POSTGRES_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").exists() {
            Ok(dir)
        } else {
            Err(format!(
                "C2SSI_POSTGRES_BIN={} has no initdb",
                dir.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return Ok(dir);
        }
    }
    Err(
        "no PostgreSQL server binaries (initdb, postgres): install Debian's `postgresql` \
         package, or set C2SSI_POSTGRES_BIN to the directory that holds them"
            .into(),
    )
}

/// One server for this whole process, started on first use: the tests of
/// one test binary share it, each in a database of its own.
pub fn shared() -> Result<&'static ScratchPostgres, String> {
    static SERVER: std::sync::OnceLock<Result<ScratchPostgres, String>> =
        std::sync::OnceLock::new();
    SERVER
        .get_or_init(ScratchPostgres::start)
        .as_ref()
        .map_err(Clone::clone)
}

/// A new empty database on the [`shared`] server, named `PREFIX_N`; its URL.
pub fn fresh_database(prefix: &str) -> Result<String, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    shared()?.create_database(&format!("{prefix}_{n}"))
}

/// A running throwaway server.
#[derive(Debug)]
pub struct ScratchPostgres {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| format!("id {flag} postgres: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                "running as root, and there is no `postgres` user to run the server".into()
            })
    };
    Ok((id("-u")?, id("-g")?))
}

impl ScratchPostgres {
    /// Initializes and starts a server (C locale, UTF-8, trust
    /// authentication on loopback only); waits until it takes connections.
    pub fn start() -> Result<ScratchPostgres, String> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("c2ssi-postgres-")
            .tempdir()
            .map_err(|e| format!("a temporary directory: {e}"))?;
        let data = dir.path().join("data");
        let root = is_root();
        if root {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("handing {} to postgres: {e}", dir.path().display()))?;
        }
        let init = as_server_user(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--locale=C",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        // The server is the child of a shell that stops it when its
        // standard input closes: when this handle drops, or when this
        // process exits however it exits.
        // It removes the directory too: a server kept in a static is never
        // dropped.
        let script = r#"postgres="$1"; dir="$2"; shift 2
"$postgres" "$@" &
pid=$!
cat > /dev/null
kill -INT "$pid"
wait "$pid"
rm -rf "$dir""#;
        let log_path = dir.path().join("server.log");
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut child = as_server_user(Path::new("sh"), root)
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(bin.join("postgres"))
            .arg(dir.path())
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let server = ScratchPostgres {
            child: {
                let started = Instant::now();
                loop {
                    if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                        let err = std::fs::read_to_string(&log_path).unwrap_or_default();
                        return Err(format!("postgres exited ({status}): {err}"));
                    }
                    if postgres::Client::connect(
                        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
                        postgres::NoTls,
                    )
                    .is_ok()
                    {
                        break child;
                    }
                    if started.elapsed() > Duration::from_secs(60) {
                        let _ = child.kill();
                        return Err("postgres did not take connections within 60 s".into());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            },
            port,
            _dir: dir,
        };
        Ok(server)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a new empty database; its URL.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        let plain = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(format!("database name {name:?}: use a-z, 0-9 and _"));
        }
        let mut client = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .map_err(|e| format!("connecting: {e}"))?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| format!("creating database {name}: {e}"))?;
        Ok(self.url(name))
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        // Closing the shell's input stops the server; wait for it.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
