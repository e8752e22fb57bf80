//! What the aggregator's operator watches on `GET /metrics` (Prometheus
//! text, for the bearer of the metrics token only): updates by outcome
//! (taken, unused, or the refusal's kind), rounds open, and every request by
//! route template and status. Totals only: no collective, job or wallet is
//! named; even so, read at round boundaries they would tell what a noised
//! release withholds, so they are not public.

use std::sync::Arc;

use c2ssi_protocol::UpdateOutcome;
use c2ssi_server::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::round::Aggregator;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The aggregator's counters.
#[derive(Debug)]
pub struct Monitor {
    updates: Family<OutcomeLabels, Counter>,
    metrics: Arc<Metrics>,
    token: Option<String>,
}

impl Monitor {
    /// The monitor of `aggregator`; `/metrics` needs `token` (`None`: off).
    pub fn new(aggregator: Arc<Aggregator>, token: Option<String>) -> Arc<Monitor> {
        let updates = Family::<OutcomeLabels, Counter>::default();
        let rounds_open = Gauge::<i64>::default();
        let (u, open) = (updates.clone(), rounds_open.clone());
        let metrics = Metrics::new(
            |r| {
                r.register(
                    "updates",
                    "Wallet updates received, by outcome: taken, unused (taken, adds nothing), \
                     or why it was refused",
                    u,
                );
                r.register("rounds_open", "Rounds open now", open);
            },
            Some(Box::new(move || {
                rounds_open.set(aggregator.open_rounds() as i64);
            })),
        );
        Arc::new(Monitor {
            updates,
            metrics,
            token,
        })
    }

    /// Counts an update's outcome.
    pub fn update(&self, outcome: UpdateOutcome) {
        let outcome = match outcome {
            UpdateOutcome::Taken => "taken",
            UpdateOutcome::Unused(_) => "unused",
            UpdateOutcome::Refused(r) => r.name(),
        };
        self.updates.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The bearer token `/metrics` needs.
    pub fn token(&self) -> Option<String> {
        self.token.clone()
    }
}
