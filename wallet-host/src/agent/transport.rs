//! How the wallet agent reaches a collective's broker and its aggregator
//! ([`Transport`]): over HTTP ([`HttpTransport`], what `wallet agent` uses)
//! or, in the simulation, by calls in one process.

use c2ssi_client::{Client, ClientError};
use c2ssi_protocol::{
    CheckIn, CheckInResponse, Manifest, Refusal, Signed, Task, UpdateEnvelope, UpdateOutcome,
    UpdateResponse, now_ms,
};

/// What went wrong reaching a collective.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Over HTTP: the service could not be reached, refused the request or
    /// answered something the protocol does not say.
    #[error(transparent)]
    Http(#[from] ClientError),
    /// A service called in this process answered with an error (its own
    /// error, kept as the source).
    #[error(transparent)]
    InProcess(Box<dyn std::error::Error + Send + Sync>),
}

/// The agent's way to a collective `id`: its broker (check-ins, manifests,
/// algorithms) and the aggregator a task names.
pub trait Transport: std::fmt::Debug {
    /// Checks in for a task and new receipts.
    fn check_in(
        &self,
        id: &str,
        request: &Signed<CheckIn>,
    ) -> Result<CheckInResponse, TransportError>;

    /// The collective's current signed manifest.
    fn manifest(&self, id: &str) -> Result<Signed<Manifest>, TransportError>;

    /// An allowed algorithm's component, by its SHA-256 (hex). The bytes
    /// are not checked here: the agent checks them against the task.
    fn algorithm(&self, id: &str, sha256: &str) -> Result<Vec<u8>, TransportError>;

    /// Sends an update envelope answering `task` to the aggregator at the
    /// task's `update_url`. A refused envelope is an answer (its typed
    /// outcome), not an error. A transport that may find the aggregator
    /// unreachable, or the round not open yet, tries again while the task
    /// is valid (see [`HttpTransport`]).
    fn deliver(
        &self,
        id: &str,
        task: &Task,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<UpdateResponse, TransportError>;
}

/// The longest a wallet keeps trying to deliver one update.
const DELIVERY_PATIENCE_MS: u64 = 30_000;

/// The broker at a subscription's URL and the aggregator at each task's
/// `update_url`, over HTTP.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    broker: Client,
}

impl HttpTransport {
    /// The collective whose broker is at `url`.
    pub fn new(url: &str) -> HttpTransport {
        HttpTransport {
            broker: Client::new(url),
        }
    }
}

impl Transport for HttpTransport {
    fn check_in(
        &self,
        id: &str,
        request: &Signed<CheckIn>,
    ) -> Result<CheckInResponse, TransportError> {
        Ok(self.broker.check_in(id, request)?)
    }

    fn manifest(&self, id: &str) -> Result<Signed<Manifest>, TransportError> {
        Ok(self.broker.manifest(id)?)
    }

    fn algorithm(&self, id: &str, sha256: &str) -> Result<Vec<u8>, TransportError> {
        Ok(self.broker.algorithm(id, sha256)?)
    }

    /// Tries again while the aggregator cannot be reached or does not know
    /// the round (it may be restarting, and the broker then opens the round
    /// again), until the task expires or for at most 30 seconds: the data
    /// was used, so the access should reach the ledger. Any other answer is
    /// final.
    fn deliver(
        &self,
        id: &str,
        task: &Task,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<UpdateResponse, TransportError> {
        let until = task
            .header
            .expires_at_ms
            .min(now_ms().saturating_add(DELIVERY_PATIENCE_MS));
        let mut pause = std::time::Duration::from_millis(250);
        loop {
            let sent = Client::send_update(&task.update_url, id, envelope);
            let again = match &sent {
                Err(ClientError::Unreachable { .. }) => true,
                Ok(r) => r.outcome == UpdateOutcome::Refused(Refusal::RoundNotOpen),
                Err(_) => false,
            };
            if !again || now_ms().saturating_add(pause.as_millis() as u64) >= until {
                return Ok(sent?);
            }
            tracing::info!(
                pause_ms = pause.as_millis() as u64,
                "the aggregator did not take the update yet; trying again"
            );
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_secs(4));
        }
    }
}
