//! The blocking HTTP client (ureq) of compute-to-ssi's services: the broker
//! and the aggregator. Their APIs report errors as
//! `{"error": {"code", "message"}}`; they come back here as
//! [`ClientError::Refused`] with the typed code and the message. Every path
//! segment taken from outside (an id, a hash) is percent-encoded.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::time::Duration;

use c2ssi_protocol::{
    AccessReport, AggregatorIdentity, Balance, BrokerKeys, CheckIn, CheckInResponse, CloseOutcome,
    CloseRound, CollectiveSummary, CommandOutcome, ErrorBody, ErrorCode, JobStatus, LedgerEntry,
    LedgerSummary, Manifest, ManifestSubmission, ModelSummary, ModelVersion, OpenRound,
    OperatorCommand, ProgressQuery, Receipt, RoundProgress, Signed, SubmissionOutcome,
    Subscription, Unsubscription, UpdateEnvelope, UpdateResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest algorithm component downloaded.
const MAX_COMPONENT_BYTES: u64 = 64 << 20;
/// Largest JSON response read.
const MAX_JSON_BYTES: u64 = 256 << 20;

/// What went wrong talking to a service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The service could not be reached.
    #[error("cannot reach {url}: {message}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The service answered with an error.
    #[error("{url} refused ({status}): {message}")]
    Refused {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error's code, when the body had one.
        code: Option<ErrorCode>,
        /// The service's message.
        message: String,
    },
    /// The answer was not what the protocol says.
    #[error("{url} answered something unexpected: {message}")]
    Unexpected {
        /// The URL.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// The CA file could not be used.
    #[error("the CA file {path}: {message}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
}

/// The environment variable that names a PEM file of CA certificates to trust
/// instead of the public web's roots (for a deployment with its own CA, or a
/// self-signed test setup).
pub const CA_FILE_ENV: &str = "C2SSI_CA_FILE";

/// The roots every [`Client`] of this process trusts, once set.
static TRUSTED_ROOTS: std::sync::OnceLock<Vec<ureq::tls::Certificate<'static>>> =
    std::sync::OnceLock::new();

/// Makes every later [`Client`] of this process trust the CA certificates
/// in the PEM file `path`, and only them. The first call wins.
pub fn trust_ca_file(path: &std::path::Path) -> Result<(), ClientError> {
    let fail = |message: String| ClientError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let roots = certificates(&pem).map_err(fail)?;
    let _ = TRUSTED_ROOTS.set(roots);
    Ok(())
}

/// The certificates of a PEM file's text, at least one.
pub fn certificates(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut roots = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| e.to_string())? {
            roots.push(c);
        }
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(roots)
}

/// [`trust_ca_file`] with the file [`CA_FILE_ENV`] names, if it is set.
pub fn trust_ca_file_from_env() -> Result<(), ClientError> {
    match std::env::var_os(CA_FILE_ENV) {
        Some(path) if !path.is_empty() => trust_ca_file(std::path::Path::new(&path)),
        _ => Ok(()),
    }
}

impl ClientError {
    /// The error's code, when the service gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => *code,
            _ => None,
        }
    }
}

/// Percent-encodes one path segment (RFC 3986: everything but unreserved
/// characters).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client for one service.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// Who signs the requests' `Authorization` header, if anyone.
    signer: Option<std::sync::Arc<dyn c2ssi_protocol::Signer + Send + Sync>>,
    /// How long a request that finds nothing listening is tried again.
    patience: Duration,
}

/// Whether `error` means that nothing listens at the address: the request
/// never reached a server, so sending it again cannot repeat anything.
fn nothing_listening(error: &ureq::Error) -> bool {
    matches!(error, ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("signer", &self.signer.as_ref().map(|s| s.public_key()))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the service at `base` (`http://127.0.0.1:8080`); a
    /// request may take up to 60 s.
    pub fn new(base: &str) -> Client {
        Client::with_timeout(base, Duration::from_secs(60))
    }

    /// A client whose requests give up after `timeout` (a health check's).
    pub fn with_timeout(base: &str, timeout: Duration) -> Client {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(roots) = TRUSTED_ROOTS.get() {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(roots));
        }
        let config = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            // The servers close a connection that stays idle for 5 s
            // (`c2ssi_server::ConnectionLimits`): a pooled one is reused
            // well before that, never as it is being closed.
            .max_idle_age(Duration::from_secs(2))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent: config.into(),
            signer: None,
            patience: Duration::ZERO,
        }
    }

    /// This client, trying a request again for up to `patience` while
    /// nothing listens at the service's address (it is starting, or
    /// restarting). Only a refused connection is tried again: such a request
    /// never reached a server. For the command-line tools, which a person or
    /// a script may run a moment after starting the service.
    pub fn patient(mut self, patience: Duration) -> Client {
        self.patience = patience;
        self
    }

    /// Calls `send` until it reaches a server or the patience runs out.
    fn call(
        &self,
        send: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let start = std::time::Instant::now();
        let mut wait = Duration::from_millis(50);
        loop {
            match send() {
                Err(e) if nothing_listening(&e) && start.elapsed() + wait <= self.patience => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                result => return result,
            }
        }
    }

    /// This client, signing every request's `Authorization` header with
    /// `signer`: the collective's key for the consumer's reads and changes,
    /// a wallet's key for what only a paid or subscribed wallet may read.
    pub fn signed_by(
        mut self,
        signer: std::sync::Arc<dyn c2ssi_protocol::Signer + Send + Sync>,
    ) -> Client {
        self.signer = Some(signer);
        self
    }

    /// The `Authorization` header for `method` on `path`, if this client signs.
    fn authorization(&self, method: &str, path: &str) -> Option<String> {
        self.signer.as_ref().map(|s| {
            c2ssi_protocol::request::sign_request(
                s.as_ref(),
                method,
                path,
                c2ssi_protocol::now_ms(),
            )
        })
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn read(
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut response = result.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_JSON_BYTES)
            .read_to_vec()
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        Ok((status, body))
    }

    fn refused(url: &str, status: u16, body: &[u8]) -> ClientError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => ClientError::Refused {
                url: url.to_string(),
                status,
                code: Some(e.error.code),
                message: e.error.message,
            },
            Err(_) => ClientError::Refused {
                url: url.to_string(),
                status,
                code: None,
                message: String::from_utf8_lossy(&body[..body.len().min(1000)]).into_owned(),
            },
        }
    }

    fn parse<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Unexpected {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    fn finish<T: DeserializeOwned>(
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let (status, body) = Client::read(url, result)?;
        if !(200..300).contains(&status) {
            return Err(Client::refused(url, status, &body));
        }
        Client::parse(url, &body)
    }

    /// GETs JSON from `path` on the service (segments already encoded).
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let authorization = self.authorization("GET", path);
        let result = self.call(|| {
            let mut request = self.agent.get(&url);
            if let Some(value) = &authorization {
                request = request.header("authorization", value);
            }
            request.call()
        });
        Client::finish(&url, result)
    }

    /// POSTs `body` as JSON to `path` and reads JSON back.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let authorization = self.authorization("POST", path);
        let result = self.call(|| {
            let mut request = self.agent.post(&url);
            if let Some(value) = &authorization {
                request = request.header("authorization", value);
            }
            request.send_json(body)
        });
        Client::finish(&url, result)
    }

    fn collective(id: &str, rest: &str) -> String {
        format!("/collectives/{}{rest}", segment(id))
    }

    // The broker's API.

    /// The broker's keys and its aggregator.
    pub fn broker_keys(&self) -> Result<BrokerKeys, ClientError> {
        self.get("/keys")
    }

    /// Registers a new collective, or a new version of one.
    pub fn submit_manifest(
        &self,
        id: &str,
        submission: &ManifestSubmission,
    ) -> Result<SubmissionOutcome, ClientError> {
        self.post(&Client::collective(id, "/manifest"), submission)
    }

    /// The collective's current signed manifest.
    pub fn manifest(&self, id: &str) -> Result<Signed<Manifest>, ClientError> {
        self.get(&Client::collective(id, "/manifest"))
    }

    /// One version of the collective's manifest, by its digest.
    pub fn manifest_version(
        &self,
        id: &str,
        digest: &str,
    ) -> Result<Signed<Manifest>, ClientError> {
        self.get(&Client::collective(
            id,
            &format!("/manifests/{}", segment(digest)),
        ))
    }

    /// The collective at a glance.
    pub fn summary(&self, id: &str) -> Result<CollectiveSummary, ClientError> {
        self.get(&Client::collective(id, ""))
    }

    /// Sends the consumer's signed command.
    pub fn command(
        &self,
        id: &str,
        command: &Signed<OperatorCommand>,
    ) -> Result<CommandOutcome, ClientError> {
        self.post(&Client::collective(id, "/commands"), command)
    }

    /// The number of subscribers over time (signed as the collective).
    pub fn subscriber_history(
        &self,
        id: &str,
    ) -> Result<Vec<c2ssi_protocol::SubscriberCount>, ClientError> {
        self.get(&Client::collective(id, "/subscribers"))
    }

    /// Every job.
    pub fn jobs(&self, id: &str) -> Result<Vec<JobStatus>, ClientError> {
        self.get(&Client::collective(id, "/jobs"))
    }

    /// One job.
    pub fn job(&self, id: &str, job: &str) -> Result<JobStatus, ClientError> {
        self.get(&Client::collective(id, &format!("/jobs/{}", segment(job))))
    }

    /// Model versions, of one job or all.
    pub fn models(&self, id: &str, job: Option<&str>) -> Result<Vec<ModelSummary>, ClientError> {
        let query = job
            .map(|j| format!("?job={}", segment(j)))
            .unwrap_or_default();
        self.get(&Client::collective(id, &format!("/models{query}")))
    }

    /// One model version.
    pub fn model(&self, id: &str, hash: &str) -> Result<ModelVersion, ClientError> {
        self.get(&Client::collective(
            id,
            &format!("/models/{}", segment(hash)),
        ))
    }

    /// The ledger.
    pub fn ledger(&self, id: &str) -> Result<Vec<LedgerEntry>, ClientError> {
        self.get(&Client::collective(id, "/ledger"))
    }

    /// The ledger verified by the broker.
    pub fn verify_ledger(&self, id: &str) -> Result<LedgerSummary, ClientError> {
        self.get(&Client::collective(id, "/ledger/verify"))
    }

    /// Deposits and payments.
    pub fn balance(&self, id: &str) -> Result<Balance, ClientError> {
        self.get(&Client::collective(id, "/ledger/balance"))
    }

    /// Pushes an issuer's signed status list; returns how many subscriptions
    /// it ended.
    pub fn put_status_list(&self, list: &serde_json::Value) -> Result<u64, ClientError> {
        let answer: serde_json::Value = self.post("/status-lists", list)?;
        Ok(answer["ended_subscriptions"].as_u64().unwrap_or(0))
    }

    /// Subscribes a wallet.
    pub fn subscribe(
        &self,
        id: &str,
        subscription: &Signed<Subscription>,
    ) -> Result<serde_json::Value, ClientError> {
        self.post(&Client::collective(id, "/subscriptions"), subscription)
    }

    /// Unsubscribes.
    pub fn unsubscribe(
        &self,
        id: &str,
        request: &Signed<Unsubscription>,
    ) -> Result<serde_json::Value, ClientError> {
        self.post(&Client::collective(id, "/unsubscribe"), request)
    }

    /// Checks in for a task and receipts.
    pub fn check_in(
        &self,
        id: &str,
        request: &Signed<CheckIn>,
    ) -> Result<CheckInResponse, ClientError> {
        self.post(&Client::collective(id, "/checkin"), request)
    }

    /// The aggregator reports an access; the broker's receipt comes back.
    pub fn report_access(
        &self,
        id: &str,
        report: &Signed<AccessReport>,
    ) -> Result<Signed<Receipt>, ClientError> {
        self.post(&Client::collective(id, "/accesses"), report)
    }

    /// An allowed algorithm's component.
    pub fn algorithm(&self, id: &str, sha256: &str) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&Client::collective(
            id,
            &format!("/algorithms/{}", segment(sha256)),
        ));
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ClientError::Refused {
                url,
                status,
                code: None,
                message: "the algorithm is not available".into(),
            });
        }
        response
            .body_mut()
            .with_config()
            .limit(MAX_COMPONENT_BYTES)
            .read_to_vec()
            .map_err(|e| ClientError::Unreachable {
                url,
                message: e.to_string(),
            })
    }

    // The aggregator's API.

    /// The aggregator's keys and URL.
    pub fn aggregator_identity(&self) -> Result<AggregatorIdentity, ClientError> {
        self.get("/key")
    }

    /// Opens a round at the aggregator.
    pub fn open_round(&self, id: &str, message: &Signed<OpenRound>) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(&Client::collective(id, "/rounds/open"), message)?;
        Ok(())
    }

    /// Closes a round at the aggregator.
    pub fn close_round(
        &self,
        id: &str,
        message: &Signed<CloseRound>,
    ) -> Result<CloseOutcome, ClientError> {
        self.post(&Client::collective(id, "/rounds/close"), message)
    }

    /// A round's progress at the aggregator (asked by the broker that
    /// opened it, signed).
    pub fn round_progress(
        &self,
        id: &str,
        query: &Signed<ProgressQuery>,
    ) -> Result<RoundProgress, ClientError> {
        self.post(&Client::collective(id, "/rounds/progress"), query)
    }

    /// Sends an update envelope to the aggregator at `update_url`. A refused
    /// envelope is an answer too (its typed outcome), not an error.
    pub fn send_update(
        update_url: &str,
        id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<UpdateResponse, ClientError> {
        let client = Client::new(update_url);
        let url = client.url(&Client::collective(id, "/updates"));
        let (status, body) = Client::read(&url, client.agent.post(&url).send_json(envelope))?;
        match serde_json::from_slice::<UpdateResponse>(&body) {
            Ok(response) => Ok(response),
            Err(_) if !(200..300).contains(&status) => Err(Client::refused(&url, status, &body)),
            Err(e) => Err(ClientError::Unexpected {
                url,
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("c-0a1b"), "c-0a1b");
        assert_eq!(segment("%00/../x y"), "%2500%2F..%2Fx%20y");
        assert_eq!(segment("é"), "%C3%A9");
    }

    /// A server that starts 300 ms late, on a port that refused until then:
    /// a patient client reaches it, an impatient one is told it is unreachable.
    #[test]
    fn a_patient_client_waits_for_a_service_that_is_starting() {
        use std::io::{Read, Write};
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = format!("http://127.0.0.1:{port}");
        assert!(matches!(
            Client::new(&url).get::<serde_json::Value>("/x"),
            Err(ClientError::Unreachable { .. })
        ));
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind again");
            let (mut stream, _) = l.accept().expect("accept");
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let body = b"{\"ok\":true}";
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).expect("write");
            stream.write_all(body).expect("write");
        });
        let got: serde_json::Value = Client::new(&url)
            .patient(Duration::from_secs(10))
            .get("/x")
            .expect("reached once it listens");
        assert_eq!(got["ok"], true);
        server.join().expect("server");
    }
}
