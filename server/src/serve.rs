//! Serving a router with every connection bounded: a client must send each
//! request's head within a timeout (an idle keep-alive connection too), and
//! at most so many connections are open at once; ctrl-c or SIGTERM stops
//! accepting and lets open requests finish.
//!
//! `axum::serve` sets neither bound (one slow client per connection could
//! hold the server's sockets for ever), so connections are driven here with
//! hyper's HTTP/1 builder, which has both the timeout and a timer for it.
//! With [`Tls`], each connection is a rustls server session first; its
//! handshake is bounded by the same timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

/// How connections are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's head, counted from
    /// when the connection is ready for one: a client that sends its
    /// headers a byte at a time, or keeps a connection open and idle, is
    /// cut off after this.
    pub header_read_timeout: Duration,
    /// The most connections open at once; past it, new ones wait in the
    /// listener's backlog until one closes.
    pub max_connections: usize,
    /// How long open requests may take to finish after a stop signal.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A server's TLS setting: its certificate chain and private key.
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1); an error names the file and what is wrong with it.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: holds no certificate", cert.display()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| {
                format!(
                    "{} and {}: the key does not go with the certificate: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

/// The TLS flags of every server (`broker serve`, `aggregator serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); clients
    /// trust a private CA with C2SSI_CA_FILE
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// UNSAFE: serve plain HTTP on an address other than loopback (reads,
    /// and when messages travel, in the clear)
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plain_http: bool,
}

impl TlsArgs {
    /// Refuses to serve plain HTTP on `address` unless it is a loopback
    /// address or --insecure-plain-http says so.
    pub fn check_plain(&self, address: std::net::SocketAddr) -> Result<(), String> {
        if self.tls_cert.is_none() && !address.ip().is_loopback() && !self.insecure_plain_http {
            return Err(format!(
                "{address} is reachable from other machines: serve it with --tls-cert and \
                 --tls-key, or pass --insecure-plain-http (unsafe)"
            ));
        }
        if self.insecure_plain_http && !address.ip().is_loopback() {
            eprintln!("warning: --insecure-plain-http: serving plain HTTP on {address}");
        }
        Ok(())
    }

    /// The TLS setting, or `None` for plain HTTP.
    pub fn load(&self) -> Result<Option<Tls>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Tls::from_pem_files(cert, key).map(Some),
            _ => Ok(None),
        }
    }
}

/// Serves `router` on `listener` with the default [`ConnectionLimits`]
/// until ctrl-c or SIGTERM, over TLS when `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Tls>,
) -> std::io::Result<()> {
    serve_with(
        listener,
        router,
        ConnectionLimits::default(),
        tls,
        stop_signal(),
    )
    .await
}

/// Drives one connection's HTTP/1 under `limits`, watched for shutdown.
async fn drive<IO>(
    io: IO,
    router: Router,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// Serves `router` on `listener` under `limits` until `stop` completes,
/// over TLS when `tls` is given.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<Tls>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait for some
                    // connection to close rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => drive(stream, router, limits, watcher).await,
                Some(Tls(acceptor)) => {
                    // A client that never finishes its handshake is cut
                    // off like one that never sends its headers.
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => drive(stream, router, limits, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("open connections did not finish in time after the stop signal");
        }
    }
    Ok(())
}

/// Completes on ctrl-c or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
