//! The in-process links between the simulation's broker and aggregator:
//! the same checks as between their processes (signed round messages
//! checked against the manifest fetched by digest, access reports signed by
//! the aggregator), with the HTTP hop replaced by calls; and the wallets'
//! way to both ([`InProcessTransport`]), through which the real wallet agent
//! runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use c2ssi_aggregator::process::{AggregatorState, BrokerLink, LinkError};
use c2ssi_broker::aggregator_link::AggregatorLink;
use c2ssi_broker::{Broker, BrokerError};
use c2ssi_protocol::{
    AccessReport, AggregatorIdentity, CheckIn, CheckInResponse, CloseOutcome, CloseRound, Manifest,
    OpenRound, ProgressQuery, Receipt, RoundProgress, Signed, Task, UpdateEnvelope, UpdateResponse,
};
use wallet_host::agent::{Transport, TransportError};

/// The aggregator, as the simulation's broker reaches it.
#[derive(Debug)]
pub struct InProcessAggregator {
    state: AggregatorState,
    identity: AggregatorIdentity,
}

impl InProcessAggregator {
    /// The link to `state`.
    pub fn new(state: AggregatorState) -> InProcessAggregator {
        InProcessAggregator {
            identity: state.identity(),
            state,
        }
    }
}

fn aggregator_error(e: c2ssi_server::ApiError) -> BrokerError {
    BrokerError::Aggregator(e.message().to_string())
}

impl AggregatorLink for InProcessAggregator {
    fn identity(&self) -> &AggregatorIdentity {
        &self.identity
    }

    fn open_round(&self, id: &str, message: &Signed<OpenRound>) -> Result<(), BrokerError> {
        self.state.open_round(id, message).map_err(aggregator_error)
    }

    fn progress(
        &self,
        id: &str,
        query: &Signed<ProgressQuery>,
    ) -> Result<RoundProgress, BrokerError> {
        self.state.progress(id, query).map_err(aggregator_error)
    }

    fn close_round(
        &self,
        id: &str,
        message: &Signed<CloseRound>,
    ) -> Result<CloseOutcome, BrokerError> {
        self.state
            .close_round(id, message)
            .map_err(aggregator_error)
    }
}

/// The broker, as the simulation's aggregator reaches it (set once the
/// broker exists: each holds the other).
#[derive(Debug, Default)]
pub struct InProcessBroker {
    broker: OnceLock<Weak<Broker>>,
}

impl InProcessBroker {
    /// Points the link at `broker`.
    pub fn connect(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
    }

    fn broker(&self) -> Result<Arc<Broker>, LinkError> {
        self.broker
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| LinkError::Unreachable("the broker is gone".into()))
    }
}

fn link_error(e: BrokerError) -> LinkError {
    match e {
        BrokerError::NotFound(m) => LinkError::NotFound(m),
        other => LinkError::Refused(other.to_string()),
    }
}

impl BrokerLink for InProcessBroker {
    fn manifest_version(&self, id: &str, digest: &str) -> Result<Signed<Manifest>, LinkError> {
        self.broker()?
            .manifest_version(id, digest)
            .map_err(link_error)
    }

    fn report_access(
        &self,
        id: &str,
        report: &Signed<AccessReport>,
    ) -> Result<Signed<Receipt>, LinkError> {
        self.broker()?.record_access(id, report).map_err(link_error)
    }
}

/// The broker and the aggregator as the simulation's wallets reach them:
/// the wallet agent's [`Transport`], by calls in this process. The
/// algorithms are kept in memory, by collective and SHA-256, for every
/// wallet (the agent's disk cache is per wallet).
#[derive(Debug)]
pub struct InProcessTransport {
    broker: Arc<Broker>,
    aggregator: AggregatorState,
    algorithms: Mutex<HashMap<(String, String), Vec<u8>>>,
}

impl InProcessTransport {
    /// The wallets' way to `broker` and `aggregator`.
    pub fn new(broker: Arc<Broker>, aggregator: AggregatorState) -> InProcessTransport {
        InProcessTransport {
            broker,
            aggregator,
            algorithms: Mutex::default(),
        }
    }
}

fn transport_error(e: BrokerError) -> TransportError {
    TransportError::InProcess(Box::new(e))
}

impl Transport for InProcessTransport {
    fn check_in(
        &self,
        id: &str,
        request: &Signed<CheckIn>,
    ) -> Result<CheckInResponse, TransportError> {
        self.broker.check_in(id, request).map_err(transport_error)
    }

    fn manifest(&self, id: &str) -> Result<Signed<Manifest>, TransportError> {
        self.broker.manifest(id).map_err(transport_error)
    }

    fn algorithm(&self, id: &str, sha256: &str) -> Result<Vec<u8>, TransportError> {
        // Held while the broker is asked: the first wallet fetches, the
        // others wait for its bytes.
        let mut cache = self.algorithms.lock().unwrap_or_else(|e| e.into_inner());
        let key = (id.to_string(), sha256.to_string());
        if let Some(bytes) = cache.get(&key) {
            return Ok(bytes.clone());
        }
        let bytes = self.broker.algorithm(id, sha256).map_err(transport_error)?;
        cache.insert(key, bytes.clone());
        Ok(bytes)
    }

    /// The simulation has one aggregator: the task's `update_url` names it.
    /// It is always reachable, so nothing is tried again.
    fn deliver(
        &self,
        id: &str,
        _task: &Task,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<UpdateResponse, TransportError> {
        Ok(self.aggregator.submit(id, envelope))
    }
}
