//! The blocking HTTP client (ureq) of compute-to-ssi's services: the broker
//! and the aggregator. Their APIs report errors as
//! `{"error": {"code", "message"}}`; they come back here as
//! [`ClientError::Refused`] with that code and message.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::time::Duration;

use c2ssi_protocol::{
    CheckIn, CheckInResponse, LedgerEntry, Manifest, Signed, Subscription, Unsubscription,
    UpdateEnvelope, UpdateResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest algorithm component downloaded.
const MAX_COMPONENT_BYTES: u64 = 64 << 20;
/// Largest JSON response read.
const MAX_JSON_BYTES: u64 = 256 << 20;

/// What went wrong talking to a collective.
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
}

/// A client for one collective service.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the service at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent: config.into(),
        }
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish<T: DeserializeOwned>(
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
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
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(ClientError::Refused {
                url: url.to_string(),
                status,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Unexpected {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// GETs JSON from `path` on the service.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        Client::finish(&url, self.agent.get(&url).call())
    }

    /// POSTs `body` as JSON to `path` and reads JSON back.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        Client::finish(&url, self.agent.post(&url).send_json(body))
    }

    /// The collective's signed manifest.
    pub fn manifest(&self, collective_id: &str) -> Result<Signed<Manifest>, ClientError> {
        self.get(&format!("/collectives/{collective_id}/manifest"))
    }

    /// Subscribes.
    pub fn subscribe(
        &self,
        collective_id: &str,
        subscription: &Signed<Subscription>,
    ) -> Result<serde_json::Value, ClientError> {
        self.post(
            &format!("/collectives/{collective_id}/subscriptions"),
            subscription,
        )
    }

    /// Unsubscribes.
    pub fn unsubscribe(
        &self,
        collective_id: &str,
        request: &Signed<Unsubscription>,
    ) -> Result<serde_json::Value, ClientError> {
        self.post(
            &format!("/collectives/{collective_id}/unsubscribe"),
            request,
        )
    }

    /// Checks in for a task and receipts.
    pub fn check_in(
        &self,
        collective_id: &str,
        request: &Signed<CheckIn>,
    ) -> Result<CheckInResponse, ClientError> {
        self.post(&format!("/collectives/{collective_id}/checkin"), request)
    }

    /// An allowed algorithm's component.
    pub fn algorithm(&self, collective_id: &str, sha256: &str) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&format!("/collectives/{collective_id}/algorithms/{sha256}"));
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

    /// Sends an update envelope to `update_url` (or this service).
    pub fn send_update(
        &self,
        update_url: Option<&str>,
        collective_id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<UpdateResponse, ClientError> {
        let base = update_url
            .map(|u| u.trim_end_matches('/'))
            .unwrap_or(&self.base);
        let url = format!("{base}/collectives/{collective_id}/updates");
        Client::finish(&url, self.agent.post(&url).send_json(envelope))
    }

    /// The collective's ledger.
    pub fn ledger(&self, collective_id: &str) -> Result<Vec<LedgerEntry>, ClientError> {
        self.get(&format!("/collectives/{collective_id}/ledger"))
    }
}
