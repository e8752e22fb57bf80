//! How the broker reaches its aggregator: [`AggregatorLink`], over HTTP to
//! the aggregator's own process ([`RemoteAggregator`]), or in memory in the
//! simulation. The broker signs every round message with its key; the
//! aggregator checks it against the manifest.

use c2ssi_client::Client;
use c2ssi_protocol::{
    AggregatorIdentity, CloseOutcome, CloseRound, OpenRound, ProgressQuery, RoundProgress, Signed,
};

use crate::error::{BrokerError, Result};

/// What the broker needs from an aggregator, wherever it runs.
pub trait AggregatorLink: Send + Sync + std::fmt::Debug {
    /// Its keys and the URL wallets send updates to.
    fn identity(&self) -> &AggregatorIdentity;
    /// Opens a round.
    fn open_round(&self, id: &str, message: &Signed<OpenRound>) -> Result<()>;
    /// A round's progress.
    fn progress(&self, id: &str, query: &Signed<ProgressQuery>) -> Result<RoundProgress>;
    /// Closes a round.
    fn close_round(&self, id: &str, message: &Signed<CloseRound>) -> Result<CloseOutcome>;
    /// Whether it answers now (its `/health`), for the status page; one in
    /// the same process always does.
    fn reachable(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The aggregator in its own process.
#[derive(Debug)]
pub struct RemoteAggregator {
    client: Client,
    /// The same, giving up after a few seconds: the status page's check.
    health: Client,
    identity: AggregatorIdentity,
}

impl RemoteAggregator {
    /// Connects to the aggregator at `url` and learns its keys, trying for
    /// up to `patience` (the two may be started together, in any order).
    pub fn connect(url: &str, patience: std::time::Duration) -> Result<RemoteAggregator> {
        let client = Client::new(url);
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            match client.aggregator_identity() {
                Ok(identity) => {
                    return Ok(RemoteAggregator {
                        client,
                        health: Client::with_timeout(url, std::time::Duration::from_secs(3)),
                        identity,
                    });
                }
                Err(e @ c2ssi_client::ClientError::Unreachable { .. })
                    if started.elapsed() < patience =>
                {
                    tracing::info!(error = %e, "waiting for the aggregator");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(BrokerError::Aggregator(format!(
                        "the aggregator at {url} cannot be reached: {e}"
                    )));
                }
            }
        }
    }
}

impl AggregatorLink for RemoteAggregator {
    fn identity(&self) -> &AggregatorIdentity {
        &self.identity
    }

    fn open_round(&self, id: &str, message: &Signed<OpenRound>) -> Result<()> {
        self.client
            .open_round(id, message)
            .map_err(|e| BrokerError::Aggregator(format!("opening the round: {e}")))
    }

    fn progress(&self, id: &str, query: &Signed<ProgressQuery>) -> Result<RoundProgress> {
        self.client
            .round_progress(id, query)
            .map_err(|e| BrokerError::Aggregator(format!("round progress: {e}")))
    }

    fn close_round(&self, id: &str, message: &Signed<CloseRound>) -> Result<CloseOutcome> {
        self.client
            .close_round(id, message)
            .map_err(|e| BrokerError::Aggregator(format!("closing the round: {e}")))
    }

    fn reachable(&self) -> std::result::Result<(), String> {
        self.health
            .get::<serde_json::Value>("/health")
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
