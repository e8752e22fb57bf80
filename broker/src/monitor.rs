//! What the broker's operator watches: `GET /metrics` (Prometheus text, for
//! the bearer of the metrics token only) and `GET /status`, a public page
//! that reads without JavaScript and refreshes itself with it: health,
//! running jobs, open rounds, access reports (one per update a wallet sent)
//! per second over the last minute, and whether the aggregator answers.
//! The page carries totals over every collective only (no collective, job,
//! wallet or round membership), no error text, and is read at most once a
//! second whatever the traffic: a flood of requests cannot make the broker
//! query its database or its aggregator more often.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use c2ssi_server::metrics::{Metrics, Rate};
use c2ssi_web::{NavItem, Page};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::broker::Broker;

/// The broker's counters and gauges.
#[derive(Debug)]
pub struct Monitor {
    started: Instant,
    /// Access reports recorded (each is an update a wallet sent, and a
    /// payment).
    access_reports: Counter,
    /// Check-ins answered.
    check_ins: Counter,
    /// Access reports in the last minute.
    rate: Rate,
    /// The Prometheus registry, with the request metrics.
    metrics: Arc<Metrics>,
    /// The bearer token `/metrics` needs (`None`: metrics off).
    token: Option<String>,
    /// The status page's last reading, and when it was taken.
    last: Mutex<Option<(Instant, Arc<Snapshot>)>>,
}

/// How long the status page reuses a reading.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// What the status page and the gauges read at one moment.
#[derive(Debug)]
struct Snapshot {
    jobs_running: Result<usize, String>,
    rounds_open: Result<u64, String>,
    aggregator: Result<(), String>,
    aggregator_url: String,
}

fn snapshot(broker: &Broker) -> Snapshot {
    Snapshot {
        jobs_running: broker
            .running_jobs()
            .map(|j| j.len())
            .map_err(|e| e.to_string()),
        rounds_open: broker.open_rounds().map_err(|e| e.to_string()),
        aggregator: broker.aggregator_reachable(),
        aggregator_url: broker.aggregator_url(),
    }
}

impl Monitor {
    /// The monitor of `broker`; `/metrics` needs `token` (`None`: off).
    pub fn new(broker: Arc<Broker>, token: Option<String>) -> Arc<Monitor> {
        let access_reports = Counter::default();
        let check_ins = Counter::default();
        let jobs_running = Gauge::<i64>::default();
        let rounds_open = Gauge::<i64>::default();
        let aggregator_up = Gauge::<i64>::default();
        let (reports, checks) = (access_reports.clone(), check_ins.clone());
        let (jobs, rounds, up) = (
            jobs_running.clone(),
            rounds_open.clone(),
            aggregator_up.clone(),
        );
        let refresh = Box::new(move || {
            let now = snapshot(&broker);
            jobs.set(now.jobs_running.map_or(-1, |n| n as i64));
            rounds.set(now.rounds_open.map_or(-1, |n| n as i64));
            up.set(i64::from(now.aggregator.is_ok()));
        });
        let metrics = Metrics::new(
            |r| {
                r.register(
                    "access_reports",
                    "Access reports recorded: updates wallets sent, each paid",
                    reports,
                );
                r.register("check_ins", "Wallet check-ins answered", checks);
                r.register(
                    "jobs_running",
                    "Jobs running (-1: the database could not be read)",
                    jobs_running,
                );
                r.register(
                    "rounds_open",
                    "Rounds open over every job (-1: the database could not be read)",
                    rounds_open,
                );
                r.register(
                    "aggregator_up",
                    "Whether the aggregator answered its health check (1) or not (0)",
                    aggregator_up,
                );
            },
            Some(refresh),
        );
        Arc::new(Monitor {
            started: Instant::now(),
            access_reports,
            check_ins,
            rate: Rate::default(),
            metrics,
            token,
            last: Mutex::new(None),
        })
    }

    /// Counts an access report recorded.
    pub fn access_reported(&self) {
        self.access_reports.inc();
        self.rate.record();
    }

    /// Counts a check-in answered.
    pub fn checked_in(&self) {
        self.check_ins.inc();
    }

    /// The Prometheus metrics (and the middleware's counters).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The status page's reading: the last one if it is recent, else a new
    /// one (one reader at a time; the others wait for it and reuse it).
    fn reading(&self, broker: &Broker) -> Arc<Snapshot> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, snapshot)) = last.as_ref()
            && at.elapsed() < STATUS_EVERY
        {
            return snapshot.clone();
        }
        let snapshot = Arc::new(snapshot(broker));
        *last = Some((Instant::now(), snapshot.clone()));
        snapshot
    }
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusView {
    uptime: String,
    jobs_running: String,
    rounds_open: String,
    reports_per_second: String,
    reports_total: u64,
    check_ins_total: u64,
    aggregator_url: String,
    aggregator_ok: bool,
}

/// The status page and `/metrics`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    broker: Arc<Broker>,
    monitor: Arc<Monitor>,
) -> Router<S> {
    Router::new()
        .route("/status", get(status))
        .with_state((broker, monitor.clone()))
        .merge(c2ssi_web::assets())
        .layer(axum::middleware::map_response(c2ssi_web::secure_layer))
        .merge(c2ssi_server::metrics::routes(
            monitor.metrics(),
            monitor.token.clone(),
        ))
}

static NAV: &[NavItem] = &[];

async fn status(State((broker, monitor)): State<(Arc<Broker>, Arc<Monitor>)>) -> Response {
    let reader = monitor.clone();
    let now = match tokio::task::spawn_blocking(move || reader.reading(&broker)).await {
        Ok(now) => now,
        Err(e) => {
            tracing::error!(error = %e, "the status page's work stopped");
            return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    // Errors go to the log, never to the public page.
    let shown = |r: &Result<String, String>| match r {
        Ok(v) => v.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "the status page could not read a figure");
            "unavailable".to_string()
        }
    };
    let secs = monitor.started.elapsed().as_secs();
    let view = StatusView {
        uptime: format!("{}h {:02}m {:02}s", secs / 3600, secs / 60 % 60, secs % 60),
        jobs_running: shown(
            &now.jobs_running
                .as_ref()
                .map(|n| n.to_string())
                .map_err(Clone::clone),
        ),
        rounds_open: shown(
            &now.rounds_open
                .as_ref()
                .map(|n| n.to_string())
                .map_err(Clone::clone),
        ),
        reports_per_second: format!("{:.2}", monitor.rate.per_second()),
        reports_total: monitor.access_reports.get(),
        check_ins_total: monitor.check_ins.get(),
        aggregator_url: now.aggregator_url.clone(),
        aggregator_ok: now.aggregator.is_ok(),
    };
    let mut page = Page::new(
        "compute-to-ssi broker",
        NAV,
        "",
        "Broker status",
        c2ssi_web::body(&view),
    );
    page.scripts = &["/assets/live.js"];
    page.into_response()
}
