//! What a server tells its operator on `GET /metrics`, in the Prometheus
//! (OpenMetrics) text format: every request counted by method, route
//! template and status, with its latency, plus the server's own gauges and
//! counters ([`Metrics::new`] takes them). Routes are labelled by their
//! template (`/collectives/{id}/jobs`), never by the ids in them, so the
//! metrics name no collective, job or wallet.
//!
//! They are the operator's only: counters read at round boundaries would
//! tell how many updates each round took, which a noised release withholds.
//! A request needs `Authorization: Bearer TOKEN`, the token in the file
//! [`MetricsArgs`] names (made, random, on first start; Prometheus reads it
//! with `bearer_token_file`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// The labels of a latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// Work to do before the metrics are read: gauges that are read off a
/// database or another server (run off the async threads).
pub type Refresh = Box<dyn Fn() + Send + Sync>;

/// A server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    refresh: Option<Refresh>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of a server: the request metrics, and whatever
    /// `register` adds to the registry (names under the `c2ssi_` prefix);
    /// `refresh` runs before each read.
    pub fn new(register: impl FnOnce(&mut Registry), refresh: Option<Refresh>) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("c2ssi");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "How long requests took to answer, by route template",
            latency.clone(),
        );
        register(&mut registry);
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            refresh,
        })
    }

    /// The metrics now, as OpenMetrics text.
    pub fn encode(&self) -> String {
        if let Some(refresh) = &self.refresh {
            refresh();
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }
}

/// The middleware that counts each request under its route's template (put
/// it on with `Router::route_layer`, where the template is known).
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // A fixed set of labels: a client cannot add series with made-up methods.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The flag of every server that says where its metrics token is.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// The bearer token `GET /metrics` needs, in this file (made, random,
    /// if it does not exist) [default: metrics.token in the data directory;
    /// without a data directory, /metrics is off]
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<std::path::PathBuf>,
}

impl MetricsArgs {
    /// The token: read from the file (`--metrics-token-file`, or
    /// `metrics.token` in `data`), which is made with a fresh random token,
    /// readable by its owner only, when missing. `None`: no file, metrics off.
    pub fn token(&self, data: Option<&std::path::Path>) -> Result<Option<String>, String> {
        let Some(path) = self
            .metrics_token_file
            .clone()
            .or_else(|| data.map(|d| d.join("metrics.token")))
        else {
            return Ok(None);
        };
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => return Ok(Some(text.trim().to_string())),
            Ok(_) => {
                return Err(format!(
                    "{} is empty: it holds the metrics token",
                    path.display()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| "the operating system gave no random bytes".to_string())?;
        let token = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        write_private(&path, &token).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(Some(token))
    }
}

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// `GET /metrics`, for a bearer of `token` only; with no token, answers
/// that the metrics are off.
pub fn routes<S: Clone + Send + Sync + 'static>(
    metrics: Arc<Metrics>,
    token: Option<String>,
) -> Router<S> {
    let token = token.map(|t| digest(&t));
    Router::new()
        .route("/metrics", get(read))
        .with_state((metrics, token))
}

/// Secrets are compared by digest: the time taken says nothing of them.
fn digest(secret: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

async fn read(
    State((metrics, token)): State<(Arc<Metrics>, Option<[u8; 32]>)>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(token) = token else {
        return crate::ApiError::new(
            c2ssi_protocol::ErrorCode::NotFound,
            "metrics are off: start the server with --metrics-token-file FILE (or a data directory)",
        )
        .into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if digest(presented.trim()) != token {
        return crate::ApiError::new(
            c2ssi_protocol::ErrorCode::Unauthorized,
            "metrics are the operator's: send Authorization: Bearer and the token of the \
             metrics token file",
        )
        .into_response();
    }
    let text = tokio::task::spawn_blocking(move || metrics.encode())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// Events per second over the last minute, counted in one-second buckets
/// (for a status page; `/metrics` has the exact counters).
#[derive(Debug)]
pub struct Rate {
    started: Instant,
    buckets: Mutex<[(u64, u64); 60]>,
}

impl Default for Rate {
    fn default() -> Rate {
        Rate {
            started: Instant::now(),
            buckets: Mutex::new([(u64::MAX, 0); 60]),
        }
    }
}

impl Rate {
    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_secs()
    }

    /// Counts one event now.
    pub fn record(&self) {
        self.record_at(Instant::now());
    }

    fn record_at(&self, at: Instant) {
        let s = self.second(at);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = &mut buckets[(s % 60) as usize];
        if b.0 != s {
            *b = (s, 0);
        }
        b.1 += 1;
    }

    /// Events per second over the last 60 whole seconds.
    pub fn per_second(&self) -> f64 {
        self.per_second_at(Instant::now())
    }

    fn per_second_at(&self, at: Instant) -> f64 {
        let now = self.second(at);
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let events: u64 = buckets
            .iter()
            .filter(|(s, _)| *s != u64::MAX && *s < now && now - *s <= 60)
            .map(|(_, n)| n)
            .sum();
        events as f64 / 60.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_the_last_minute_only() {
        let rate = Rate::default();
        let t0 = rate.started;
        for i in 0..120 {
            rate.record_at(t0 + Duration::from_millis(500 * i));
        }
        // Seconds 0..59 hold two events each; at second 60 they all count.
        assert_eq!(rate.per_second_at(t0 + Duration::from_secs(60)), 2.0);
        // At second 100, only seconds 40..59 are within the minute.
        assert_eq!(
            rate.per_second_at(t0 + Duration::from_secs(100)),
            40.0 / 60.0
        );
        assert_eq!(rate.per_second_at(t0 + Duration::from_secs(200)), 0.0);
        // A bucket reused a minute later starts again from zero.
        rate.record_at(t0 + Duration::from_secs(125));
        assert_eq!(
            rate.per_second_at(t0 + Duration::from_secs(126)),
            1.0 / 60.0
        );
    }

    #[tokio::test]
    async fn a_made_up_method_adds_no_series() {
        use tower::ServiceExt;
        let metrics = Metrics::new(|_| {}, None);
        let app: Router = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn_with_state(metrics.clone(), track));
        for method in ["FOO123", "BAR456", "GET"] {
            let request = axum::http::Request::builder()
                .method(method)
                .uri("/health")
                .body(axum::body::Body::empty())
                .expect("a request");
            app.clone().oneshot(request).await.expect("an answer");
        }
        let text = metrics.encode();
        assert!(
            !text.contains("FOO123") && !text.contains("BAR456"),
            "{text}"
        );
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(text.contains("method=\"GET\""), "{text}");
    }

    #[test]
    fn requests_are_counted_by_route_template() {
        let metrics = Metrics::new(|_| {}, None);
        metrics.observe("GET", "/collectives/{id}", 200, Duration::from_millis(3));
        metrics.observe("GET", "/collectives/{id}", 200, Duration::from_millis(3));
        let text = metrics.encode();
        assert!(
            text.contains(
                "c2ssi_http_requests_total{method=\"GET\",route=\"/collectives/{id}\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("c2ssi_http_request_duration_seconds_count"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
