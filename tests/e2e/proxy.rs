//! A man in the middle between wallet agents and the broker or the
//! aggregator, on 127.0.0.1: it passes every request on unchanged, except
//! the check-ins and updates that a test's [`Meddler`] rewrites. It plays
//! the attacker the wallet's checks (and the aggregator's) are there for.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// What a test does to the traffic: called with the path and the service's
/// answer to a check-in, or with an update envelope on its way.
pub(crate) trait Meddler: Send + Sync + 'static {
    /// Rewrites the service's answer to a check-in.
    fn check_in(&self, answer: Value) -> Value {
        answer
    }
    /// Sees an update on its way; `forward` sends any body to the service
    /// and returns its status and answer. Returns what the wallet gets.
    fn update(&self, body: Value, forward: &dyn Fn(&Value) -> (u16, Value)) -> (u16, Value) {
        forward(&body)
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    agent: ureq::Agent,
    meddler: Arc<dyn Meddler>,
}

/// A running proxy; it stops with the test process.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

/// Starts a proxy in front of `upstream`, on any port.
pub(crate) fn start(upstream: &str, meddler: Arc<dyn Meddler>) -> Proxy {
    start_on(0, upstream, meddler)
}

/// Starts a proxy in front of `upstream` on `port` of 127.0.0.1.
pub(crate) fn start_on(port: u16, upstream: &str, meddler: Arc<dyn Meddler>) -> Proxy {
    // The attacker holds the service's certificate's trust (it terminated
    // TLS): what is left to stop it is the wallet's and aggregator's checks.
    let pem = std::fs::read(&crate::support::tls_files().0).expect("the test certificate");
    let roots = c2ssi_client::certificates(&pem).expect("the test certificate");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build(),
        )
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        // Under the servers' 5 s idle cut-off, as the real client does.
        .max_idle_age(Duration::from_secs(2))
        .build()
        .into();
    let state = ProxyState {
        upstream: upstream.trim_end_matches('/').to_string(),
        agent,
        meddler,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("binding the proxy");
            let address = listener.local_addr().expect("its address");
            tx.send(format!("http://{address}"))
                .expect("telling the test");
            let app = Router::new().fallback(handle).with_state(state);
            axum::serve(listener, app).await.expect("the proxy");
        });
    });
    Proxy {
        url: rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy started"),
    }
}

fn send(state: &ProxyState, method: &Method, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let url = format!("{}{path}", state.upstream);
    let result = if method == Method::GET {
        state.agent.get(&url).call()
    } else {
        state
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
    };
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let bytes = response
                .body_mut()
                .with_config()
                .limit(128 << 20)
                .read_to_vec()
                .unwrap_or_default();
            (status, content_type, bytes)
        }
        Err(e) => (502, "text/plain".into(), e.to_string().into_bytes()),
    }
}

async fn handle(State(state): State<ProxyState>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let body: Bytes = match axum::body::to_bytes(request.into_body(), 128 << 20).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let (status, content_type, bytes) = tokio::task::spawn_blocking(move || {
        let is_post = method == Method::POST;
        if is_post && path.ends_with("/checkin") {
            let (status, content_type, bytes) = send(&state, &method, &path, &body);
            if status != 200 {
                return (status, content_type, bytes);
            }
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let answer = state.meddler.check_in(answer);
            (200, content_type, answer.to_string().into_bytes())
        } else if is_post && path.ends_with("/updates") {
            let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let forward = |b: &Value| {
                let (s, _, bytes) = send(&state, &method, &path, b.to_string().as_bytes());
                (s, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            };
            let (s, answer) = state.meddler.update(envelope, &forward);
            (
                s,
                "application/json".into(),
                answer.to_string().into_bytes(),
            )
        } else {
            send(&state, &method, &path, &body)
        }
    })
    .await
    .unwrap_or((500, "text/plain".into(), b"proxy worker failed".to_vec()));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, [("content-type", content_type)], bytes).into_response()
}
