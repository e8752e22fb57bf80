//! Malformed requests against the real broker and aggregator over TLS, as
//! `scripts/malformed.py` sends them by hand: every route, with ids and
//! segments that are not ids (control characters percent-encoded, dots,
//! 5,000 characters), bodies that are not JSON or are JSON of the wrong
//! shape, wrong methods and garbage `Authorization` headers. Every request
//! is answered, and none with a 5xx.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::support::{Service, tls_files};

/// Requests sent to each server (and each store).
const REQUESTS: usize = 400;
/// Not a status: the server closed while the body was being sent.
const CUT_OFF: u16 = 0;

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&tls_files().0).expect("the test certificate")
            {
                roots
                    .add(cert.expect("a certificate"))
                    .expect("a root certificate");
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// One request as raw bytes over TLS (no client library would send these
/// paths); the status, or why there was none.
fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<u16, String> {
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(tls_config(), name).map_err(|e| e.to_string())?;
    let socket = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, socket);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // A server may answer (a 404, a 401) and close before the body is all
    // sent, and its close may reset the connection before its answer is
    // read: a request it cut off while its body was being sent is not a
    // finding (the server still answers the next ones, and the test checks
    // that it still serves at the end).
    let written = tls
        .write_all(head.as_bytes())
        .and_then(|()| tls.write_all(body))
        .and_then(|()| tls.flush());
    let mut status = String::new();
    match (BufReader::new(tls).read_line(&mut status), written) {
        (Ok(_), _) => {}
        (Err(_), Err(_)) => return Ok(CUT_OFF),
        (Err(e), Ok(())) => return Err(e.to_string()),
    }
    status
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {status:?}"))
}

/// `REQUESTS` malformed requests to the server on `port`; the findings
/// (a 5xx, or no answer).
fn hammer(rng: &mut rand_chacha::ChaCha8Rng, port: u16, routes: &[(&str, &str)]) -> Vec<String> {
    let good = format!("c-{}", "0".repeat(24));
    let long = "x".repeat(5000);
    let ids = [
        good.as_str(),
        "%00",
        "%2e%2e",
        "..",
        "c-",
        "c-gggggggggggggggggggggggg",
        "C-000000000000000000000000",
        long.as_str(),
        "%ff%fe",
        "c-000000000000000000000000%0a",
        "%25",
        "c-000000000000000000000000;",
    ];
    let segment_300 = "x".repeat(300);
    let digest = "0".repeat(64);
    let segments = [
        "j-1",
        "%00",
        "..",
        "a%2Fb",
        segment_300.as_str(),
        "",
        "%ff",
        digest.as_str(),
    ];
    let big = format!("\"{}\"", "x".repeat(100_000));
    let nul = serde_json::json!({ "a": "\u{0}".repeat(10) }).to_string();
    let shaped = serde_json::json!({
        "payload": "{}", "signer": "0".repeat(64), "signature": "0".repeat(128)
    })
    .to_string();
    let bodies: [&[u8]; 11] = [
        b"",
        b"{",
        b"null",
        b"[]",
        b"{}",
        b"{\"payload\": 1}",
        b"{\"payload\":\"x\",\"signer\":\"00\",\"signature\":\"zz\"}",
        nul.as_bytes(),
        b"\xff\xfe",
        big.as_bytes(),
        shaped.as_bytes(),
    ];
    let many = "k=v,".repeat(1000);
    let garbage_key = format!("C2SSI-Ed25519 {many}");
    let auths = [
        None,
        Some("garbage"),
        Some("C2SSI-Ed25519 "),
        Some("C2SSI-Ed25519 key=00,at=1,nonce=,sig="),
        Some(garbage_key.as_str()),
    ];
    let types = ["application/json", "text/plain", ""];
    let methods = ["PUT", "DELETE", "PATCH", "GET", "POST"];
    let mut findings = Vec::new();
    let mut cut_off = 0;
    for _ in 0..REQUESTS {
        let (mut method, route) = routes[rng.random_range(0..routes.len())];
        if rng.random_bool(0.1) {
            method = methods[rng.random_range(0..methods.len())];
        }
        let path = route
            .replace("{id}", ids[rng.random_range(0..ids.len())])
            .replace("{s}", segments[rng.random_range(0..segments.len())]);
        let body = if method == "GET" {
            &b""[..]
        } else {
            bodies[rng.random_range(0..bodies.len())]
        };
        let mut headers = vec![("Content-Type", types[rng.random_range(0..types.len())])];
        if let Some(auth) = auths[rng.random_range(0..auths.len())] {
            headers.push(("Authorization", auth));
        }
        match send(port, method, &path, &headers, body) {
            Ok(CUT_OFF) => cut_off += 1,
            Ok(status) if status < 500 => {}
            Ok(status) => findings.push(format!("{method} {:.80}: {status}", path)),
            Err(e) => findings.push(format!("{method} {:.80}: no answer ({e})", path)),
        }
    }
    assert!(
        cut_off < REQUESTS / 10,
        "{cut_off} of {REQUESTS} requests were cut off while sending"
    );
    findings
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

pub(crate) fn malformed_requests_get_no_5xx_from_either_server() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = Service::start(dir.path(), "10");
    let broker_routes = [
        ("GET", "/collectives/{id}"),
        ("GET", "/collectives/{id}/manifest"),
        ("POST", "/collectives/{id}/manifest"),
        ("GET", "/collectives/{id}/manifests/{s}"),
        ("POST", "/collectives/{id}/commands"),
        ("GET", "/collectives/{id}/algorithms/{s}"),
        ("GET", "/collectives/{id}/audits"),
        ("POST", "/collectives/{id}/subscriptions"),
        ("POST", "/collectives/{id}/unsubscribe"),
        ("POST", "/collectives/{id}/checkin"),
        ("POST", "/collectives/{id}/accesses"),
        ("GET", "/collectives/{id}/jobs"),
        ("GET", "/collectives/{id}/jobs/{s}"),
        ("GET", "/collectives/{id}/models"),
        ("GET", "/collectives/{id}/models/{s}"),
        ("GET", "/collectives/{id}/ledger"),
        ("GET", "/collectives/{id}/ledger/balance"),
        ("GET", "/collectives/{id}/ledger/verify"),
        ("POST", "/status-lists"),
        ("GET", "/keys"),
        ("GET", "/collectives"),
        ("GET", "/health"),
    ];
    let aggregator_routes = [
        ("POST", "/collectives/{id}/rounds/open"),
        ("POST", "/collectives/{id}/rounds/close"),
        ("POST", "/collectives/{id}/rounds/progress"),
        ("POST", "/collectives/{id}/updates"),
        ("GET", "/key"),
        ("GET", "/health"),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let broker = hammer(&mut rng, port_of(&service.url), &broker_routes);
    let aggregator = hammer(
        &mut rng,
        port_of(&service.aggregator_url),
        &aggregator_routes,
    );
    assert!(broker.is_empty(), "the broker: {broker:#?}");
    assert!(aggregator.is_empty(), "the aggregator: {aggregator:#?}");
    // Both still serve.
    service.verify_ledger();
    assert_eq!(
        send(port_of(&service.aggregator_url), "GET", "/health", &[], b""),
        Ok(200)
    );
}
