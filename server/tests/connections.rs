//! The server's connections, against a real socket on 127.0.0.1: clients
//! that send their headers a byte at a time, or nothing at all, are cut
//! off after the header-read timeout and do not starve a real client, even
//! past the connection limit; a stop lets the server return.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use c2ssi_server::{ConnectionLimits, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one step may take before the test calls it stuck (a
/// liveness bound, far above what a loaded machine needs).
const STUCK: Duration = Duration::from_secs(60);

async fn start(
    limits: ConnectionLimits,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address").to_string();
    let router = Router::new().route("/health", get(|| async { "ok" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(listener, router, limits, None, async move {
        let _ = stopped.await;
    }));
    (address, stop, server)
}

/// Limits with a short header-read timeout, for the tests to wait on.
fn limits(max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(500),
        max_connections,
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Signals the server to stop and waits for it to return.
async fn stop_server(
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
) {
    stop.send(()).expect("the server runs");
    tokio::time::timeout(STUCK, server)
        .await
        .expect("the server stops")
        .expect("the server task")
        .expect("serving");
}

/// A whole request; the status line of the answer.
async fn get_health(address: &str) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connecting");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("writing");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("reading");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A connection that has sent half a request head and nothing more.
async fn slow_client(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connecting");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: te")
        .await
        .expect("writing");
    stream
}

/// Whether the server closed the connection (end of stream or reset).
async fn closed_by_server(mut stream: TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(STUCK, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A 408 or similar before the close is fine.
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether the server has closed the connection already (without waiting).
fn closed_now(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            // A 408 or similar before the close.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_and_do_not_starve_a_real_one() {
    let (address, stop, server) = start(limits(1024)).await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(slow_client(&address).await);
    }
    let idle = TcpStream::connect(&address).await.expect("connecting");
    // A real client is answered while the slow ones hang on.
    let status = tokio::time::timeout(STUCK, get_health(&address))
        .await
        .expect("a real client is answered");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // Every slow and idle connection is closed by the server.
    slow.push(idle);
    for stream in slow {
        assert!(
            closed_by_server(stream).await,
            "a slow client stayed connected"
        );
    }
    stop_server(stop, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_a_client_waits_for_a_slot_and_is_then_answered() {
    let (address, stop, server) = start(limits(4)).await;
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(slow_client(&address).await);
    }
    // Every slot is held by a slow client; the real one is accepted once
    // the timeout frees a slot.
    let status = tokio::time::timeout(STUCK, get_health(&address))
        .await
        .expect("a real client is answered once a slot frees");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // It was answered only once a slot was free: by then the server had cut
    // off at least one slow client (without the limit, the answer comes
    // while all of them are still connected).
    let already_closed = slow.iter().filter(|s| closed_now(s)).count();
    assert!(already_closed >= 1, "the real client got a fifth slot");
    for stream in slow {
        assert!(closed_by_server(stream).await);
    }
    stop_server(stop, server).await;
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM
/// files in `dir`: (certificate, key).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("a certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("writing the certificate");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("writing the key");
    (cert, key)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_those_who_trust_the_certificate_and_bounds_the_handshake() {
    let dir = tempfile::tempdir().expect("a directory");
    let (cert, key) = self_signed(dir.path());
    let tls = c2ssi_server::Tls::from_pem_files(&cert, &key).expect("the certificate loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address").to_string();
    let router = Router::new().route("/health", get(|| async { "ok" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(
        listener,
        router,
        limits(64),
        Some(tls),
        async move {
            let _ = stopped.await;
        },
    ));

    let pem = std::fs::read(&cert).expect("the certificate");
    let url = format!("https://{address}/health");
    let answers = tokio::task::spawn_blocking(move || {
        let roots = c2ssi_client::certificates(&pem).expect("the test certificate");
        let trusting: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                    .build(),
            )
            .build()
            .into();
        let trusted = trusting
            .get(&url)
            .call()
            .map(|mut r| r.body_mut().read_to_string().unwrap_or_default());
        // A client with the public roots only refuses the self-signed server.
        let untrusted = ureq::get(&url).call().map(|_| ());
        // Plain HTTP to the TLS port gets no HTTP answer.
        let plain = ureq::get(url.replacen("https", "http", 1))
            .call()
            .map(|_| ());
        (trusted, untrusted, plain)
    })
    .await
    .expect("the clients");
    assert_eq!(answers.0.expect("a trusting client is served"), "ok");
    assert!(answers.1.is_err(), "a client without the CA must refuse");
    assert!(answers.2.is_err(), "plain HTTP must not be answered");

    // A client that opens a connection and never starts its handshake is
    // cut off after the header-read timeout, like a slow HTTP client.
    let mut idle = TcpStream::connect(&address).await.expect("connecting");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(STUCK, idle.read(&mut buf))
        .await
        .expect("the server closes it");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    stop_server(stop, server).await;
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_with_both_files_named() {
    let dir = tempfile::tempdir().expect("a directory");
    let (cert, _) = self_signed(dir.path());
    let other = tempfile::tempdir().expect("a directory");
    let (_, other_key) = self_signed(other.path());
    let err = c2ssi_server::Tls::from_pem_files(&cert, &other_key).expect_err("refused");
    assert!(err.contains("cert.pem") && err.contains("key.pem"), "{err}");
    let err = c2ssi_server::Tls::from_pem_files(&other_key, &other_key).expect_err("refused");
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn plain_http_is_refused_off_loopback_unless_asked_for() {
    use clap::Parser;
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        tls: c2ssi_server::TlsArgs,
    }
    let plain = Flags::parse_from(["serve"]).tls;
    let outside: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("an address");
    let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("an address");
    let err = plain.check_plain(outside).expect_err("refused");
    assert!(err.contains("--tls-cert"), "{err}");
    plain.check_plain(loopback).expect("loopback is fine");
    let unsafe_flag = Flags::parse_from(["serve", "--insecure-plain-http"]).tls;
    unsafe_flag.check_plain(outside).expect("asked for");
}
