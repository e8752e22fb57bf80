//! The aggregator as its own process (`aggregator serve`): its HTTP API
//! ([`app`]).
//!
//! Wallets send their sealed updates here (the task's `update_url`). The
//! broker opens and closes rounds with messages signed by its key; the
//! aggregator checks them against the manifest they name, which it fetches
//! from the broker by digest and trusts only when it is signed by the key
//! its collective id is derived from and names this aggregator. The terms
//! (k, clipping, noise, metrics) come from that manifest alone. For each
//! envelope it takes, it reports the access to the broker's ledger (signed
//! by the aggregator, with the wallet's own signed envelope as evidence) and
//! hands the receipt back to the wallet. Individual updates never leave this
//! process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use c2ssi_client::{Client, ClientError};
use c2ssi_protocol::{
    AccessReport, AggregatorIdentity, CloseOutcome, CloseRound, ErrorCode, Manifest, OpenRound,
    ProgressQuery, Purpose, Receipt, RoundProgress, Signed, UpdateEnvelope, UpdateOutcome,
    UpdateResponse, now_ms, open_manifest,
};
use c2ssi_server::{ApiError, Body, MAX_BODY_BYTES, blocking};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::round::{Accepted, Aggregator, RoundKey, RoundSpec};

/// Why the broker could not be asked something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// It could not be reached (worth trying again).
    #[error("cannot reach the broker: {0}")]
    Unreachable(String),
    /// It has no such thing.
    #[error("{0}")]
    NotFound(String),
    /// It refused.
    #[error("the broker refused: {0}")]
    Refused(String),
}

/// What the aggregator asks of the broker: the manifests rounds are opened
/// under, and payment for the accesses it takes. Over HTTP for the
/// process; in memory for the simulation, through the same checks.
pub trait BrokerLink: Send + Sync {
    /// The version of collective `id`'s manifest with this digest.
    fn manifest_version(&self, id: &str, digest: &str) -> Result<Signed<Manifest>, LinkError>;
    /// Reports an access; the broker's receipt comes back.
    fn report_access(
        &self,
        id: &str,
        report: &Signed<AccessReport>,
    ) -> Result<Signed<Receipt>, LinkError>;
}

fn link_error(e: ClientError) -> LinkError {
    match e {
        ClientError::Unreachable { .. } => LinkError::Unreachable(e.to_string()),
        ClientError::Refused {
            code: Some(ErrorCode::NotFound),
            message,
            ..
        } => LinkError::NotFound(message),
        other => LinkError::Refused(other.to_string()),
    }
}

impl BrokerLink for Client {
    fn manifest_version(&self, id: &str, digest: &str) -> Result<Signed<Manifest>, LinkError> {
        Client::manifest_version(self, id, digest).map_err(link_error)
    }

    fn report_access(
        &self,
        id: &str,
        report: &Signed<AccessReport>,
    ) -> Result<Signed<Receipt>, LinkError> {
        Client::report_access(self, id, report).map_err(link_error)
    }
}

/// The aggregator process's state.
#[derive(Clone)]
pub struct AggregatorState {
    aggregator: Arc<Aggregator>,
    broker: Arc<dyn BrokerLink>,
    url: String,
    manifests: Arc<Mutex<HashMap<(String, String), Manifest>>>,
    monitor: Arc<crate::monitor::Monitor>,
}

impl std::fmt::Debug for AggregatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorState")
            .field("aggregator", &self.aggregator)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl AggregatorState {
    /// An aggregator reachable at `url` whose rounds the broker at
    /// `broker_url` opens and whose accesses it pays.
    pub fn new(aggregator: Aggregator, url: &str, broker_url: &str) -> AggregatorState {
        AggregatorState::with_link(aggregator, url, Arc::new(Client::new(broker_url)))
    }

    /// An aggregator that reaches its broker through `broker`.
    pub fn with_link(
        aggregator: Aggregator,
        url: &str,
        broker: Arc<dyn BrokerLink>,
    ) -> AggregatorState {
        let aggregator = Arc::new(aggregator);
        AggregatorState {
            monitor: crate::monitor::Monitor::new(aggregator.clone(), None),
            aggregator,
            broker,
            url: url.trim_end_matches('/').to_string(),
            manifests: Arc::default(),
        }
    }

    /// The same, with `/metrics` for the bearer of `token` (`None`: off).
    pub fn with_metrics_token(mut self, token: Option<String>) -> AggregatorState {
        self.monitor = crate::monitor::Monitor::new(self.aggregator.clone(), token);
        self
    }

    /// The aggregator.
    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    /// Its public keys and URL.
    pub fn identity(&self) -> AggregatorIdentity {
        AggregatorIdentity {
            public_key: self.aggregator.keys().public_key(),
            recipient: self.aggregator.keys().recipient(),
            url: self.url.clone(),
        }
    }

    /// The manifest of collective `id` with this digest: fetched from the
    /// broker, signed by the key the id is derived from, every field
    /// checked, and naming this aggregator.
    fn manifest(&self, id: &str, digest: &str) -> Result<Manifest, ApiError> {
        let cache_key = (id.to_string(), digest.to_string());
        if let Some(m) = self
            .manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
        {
            return Ok(m.clone());
        }
        let signed = self
            .broker
            .manifest_version(id, digest)
            .map_err(|e| match e {
                LinkError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
                other => ApiError::new(
                    ErrorCode::Unavailable,
                    format!("fetching the round's manifest from the broker: {other}"),
                ),
            })?;
        if hex::encode(signed.digest()) != digest {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the broker sent a manifest with another digest",
            ));
        }
        let manifest = open_manifest(&signed, id).map_err(|e| {
            ApiError::new(
                ErrorCode::Unauthorized,
                format!("the manifest of {id} does not verify: {e}"),
            )
        })?;
        if manifest.aggregator_key != self.aggregator.keys().public_key()
            || manifest.aggregator_recipient != self.aggregator.keys().recipient()
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("collective {id} names another aggregator"),
            ));
        }
        self.manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, manifest.clone());
        Ok(manifest)
    }

    /// Opens a round the broker asks for, under the terms of the manifest it
    /// names, once its signature checks with that manifest's broker key.
    pub fn open_round(&self, id: &str, message: &Signed<OpenRound>) -> Result<(), ApiError> {
        // Which manifest is named is read before the signature is checked,
        // since the manifest names the key to check it with.
        let claimed: OpenRound = serde_json::from_str(&message.payload)
            .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("open-round: {e}")))?;
        let manifest = self.manifest(id, &claimed.manifest_digest)?;
        let body = message
            .open(Some(&manifest.broker_key), Purpose::OpenRound, now_ms())
            .map_err(|e| ApiError::new(ErrorCode::Unauthorized, e.to_string()))?;
        if body.header.collective_id != id {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the message is for another collective",
            ));
        }
        self.aggregator
            .open_round(
                RoundKey {
                    collective_id: id.to_string(),
                    job_id: body.job_id,
                    round: body.round,
                },
                RoundSpec {
                    manifest_digest: body.manifest_digest,
                    terms: manifest.privacy,
                    broker_key: manifest.broker_key,
                    model_len: body.model_len as usize,
                    assigned: body
                        .assigned
                        .into_iter()
                        .map(|a| (a.wallet, a.task_digest))
                        .collect(),
                    issued_at_ms: body.header.issued_at_ms,
                },
            )
            .map_err(|e| ApiError::new(ErrorCode::Conflict, e.to_string()))
    }

    /// Closes a round the broker asks to close, once its signature checks
    /// with the key of the broker that opened it.
    pub fn close_round(
        &self,
        id: &str,
        message: &Signed<CloseRound>,
    ) -> Result<CloseOutcome, ApiError> {
        let claimed: CloseRound = serde_json::from_str(&message.payload)
            .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("close-round: {e}")))?;
        let key = RoundKey {
            collective_id: id.to_string(),
            job_id: claimed.job_id,
            round: claimed.round,
        };
        let Some(broker) = self.aggregator.broker_of(&key) else {
            return Ok(CloseOutcome::NotOpen);
        };
        let body = message
            .open(Some(&broker), Purpose::CloseRound, now_ms())
            .map_err(|e| ApiError::new(ErrorCode::Unauthorized, e.to_string()))?;
        if body.header.collective_id != id || body.job_id != key.job_id || body.round != key.round {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the message is for another round",
            ));
        }
        Ok(self
            .aggregator
            .close_round(&key, &body.rule, body.center.as_deref()))
    }

    /// Takes a wallet's envelope and, when the wallet attested its data,
    /// has the broker's ledger pay the access.
    pub fn submit(&self, id: &str, envelope: &Signed<UpdateEnvelope>) -> UpdateResponse {
        let accepted = match self.aggregator.submit(id, envelope) {
            Ok(a) => a,
            Err(r) => {
                return UpdateResponse {
                    outcome: UpdateOutcome::Refused(r.refusal),
                    receipt: None,
                    message: Some(r.message),
                };
            }
        };
        let Accepted {
            data_present,
            outcome,
            ..
        } = accepted;
        if !data_present {
            return UpdateResponse {
                outcome,
                receipt: None,
                message: Some("the wallet lacked the required data; the access is not paid".into()),
            };
        }
        match self.report(id, envelope) {
            Ok(receipt) => UpdateResponse {
                outcome,
                receipt: Some(receipt),
                message: None,
            },
            Err(e) => UpdateResponse {
                outcome,
                receipt: None,
                message: Some(format!(
                    "the update was taken, but the broker did not record the access: {e}"
                )),
            },
        }
    }

    /// A round's progress, for the broker that opened it only (its
    /// signature checked): how many have answered, and when, is not for
    /// anyone else to watch. A round that is not open answers `open: false`.
    pub fn progress(
        &self,
        id: &str,
        query: &Signed<ProgressQuery>,
    ) -> Result<RoundProgress, ApiError> {
        let claimed: ProgressQuery = serde_json::from_str(&query.payload)
            .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("round-progress: {e}")))?;
        let key = RoundKey {
            collective_id: id.to_string(),
            job_id: claimed.job_id,
            round: claimed.round,
        };
        let closed = RoundProgress {
            open: false,
            answered: 0,
            assigned: 0,
        };
        let Some(broker) = self.aggregator.broker_of(&key) else {
            return Ok(closed);
        };
        let body = query
            .open(Some(&broker), Purpose::RoundProgress, now_ms())
            .map_err(|e| ApiError::new(ErrorCode::Unauthorized, e.to_string()))?;
        if body.header.collective_id != id || body.job_id != key.job_id || body.round != key.round {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the message is for another round",
            ));
        }
        Ok(self
            .aggregator
            .progress(&key)
            .map_or(closed, |(answered, assigned)| RoundProgress {
                open: true,
                answered,
                assigned,
            }))
    }

    /// Reports an access, trying three times.
    fn report(
        &self,
        id: &str,
        envelope: &Signed<UpdateEnvelope>,
    ) -> Result<Signed<Receipt>, String> {
        let report = self
            .aggregator
            .report_access(id, envelope)
            .map_err(|e| e.to_string())?;
        let mut last = String::new();
        for attempt in 0..3u64 {
            match self.broker.report_access(id, &report) {
                Ok(receipt) => return Ok(receipt),
                Err(e @ LinkError::Unreachable(_)) => last = e.to_string(),
                Err(e) => return Err(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(100 * (attempt + 1)));
        }
        Err(last)
    }
}

type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// The frame of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "compute-to-ssi aggregator",
        description = "The aggregator's JSON API: the broker opens, follows and closes rounds \
                       with messages signed by its key; wallets send sealed updates signed by \
                       theirs. Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    tags(
        (name = "public", description = "Anyone may read these"),
        (name = "broker", description = "Signed by the broker of the round's manifest"),
        (name = "wallets", description = "Signed by the wallet, sealed to this aggregator")
    )
)]
struct AggregatorApi;

#[utoipa::path(get, path = "/health", tag = "public", responses((status = 200, description = "`{\"ok\": true, \"role\": \"aggregator\"}`", body = serde_json::Value)))]
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "ok": true, "role": "aggregator" }))
}

/// The routes, each with its OpenAPI operation: one list for both.
fn routes() -> OpenApiRouter<AggregatorState> {
    OpenApiRouter::with_openapi(AggregatorApi::openapi())
        .routes(routes!(health))
        .routes(routes!(key))
        .routes(routes!(open_round))
        .routes(routes!(close_round))
        .routes(routes!(progress))
        .routes(routes!(submit))
}

/// The OpenAPI description of this API (served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The aggregator's router.
pub fn app(state: AggregatorState) -> Router {
    let (router, api) = routes().split_for_parts();
    c2ssi_server::described(router, &api, state.monitor.metrics())
        .merge(c2ssi_server::metrics::routes(
            state.monitor.metrics(),
            state.monitor.token(),
        ))
        .layer(axum::middleware::from_fn(c2ssi_server::check_ids))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

#[utoipa::path(get, path = "/key", tag = "public", responses((status = 200, description = "Its keys and the URL wallets send updates to", body = AggregatorIdentity), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody)))]
async fn key(State(state): State<AggregatorState>) -> axum::Json<AggregatorIdentity> {
    axum::Json(state.identity())
}

#[utoipa::path(post, path = "/collectives/{id}/rounds/open", tag = "broker", params(("id" = String, Path, description = "The collective")), request_body = Signed<OpenRound>, responses((status = 200, description = "`{\"opened\": true}`", body = serde_json::Value), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody)))]
async fn open_round(
    State(state): State<AggregatorState>,
    Path(id): Path<String>,
    Body(message): Body<Signed<OpenRound>>,
) -> ApiResult<serde_json::Value> {
    blocking(move || state.open_round(&id, &message)).await?;
    Ok(axum::Json(serde_json::json!({ "opened": true })))
}

#[utoipa::path(post, path = "/collectives/{id}/rounds/close", tag = "broker", params(("id" = String, Path, description = "The collective")), request_body = Signed<CloseRound>, responses((status = 200, description = "The signed release, or why nothing was released", body = CloseOutcome), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody)))]
async fn close_round(
    State(state): State<AggregatorState>,
    Path(id): Path<String>,
    Body(message): Body<Signed<CloseRound>>,
) -> ApiResult<CloseOutcome> {
    Ok(axum::Json(
        blocking(move || state.close_round(&id, &message)).await?,
    ))
}

#[utoipa::path(post, path = "/collectives/{id}/rounds/progress", tag = "broker", params(("id" = String, Path, description = "The collective")), request_body = Signed<ProgressQuery>, responses((status = 200, description = "How many answered of how many assigned", body = RoundProgress), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody)))]
async fn progress(
    State(state): State<AggregatorState>,
    Path(id): Path<String>,
    Body(query): Body<Signed<ProgressQuery>>,
) -> ApiResult<RoundProgress> {
    Ok(axum::Json(
        blocking(move || state.progress(&id, &query)).await?,
    ))
}

#[utoipa::path(post, path = "/collectives/{id}/updates", tag = "wallets", params(("id" = String, Path, description = "The collective")), request_body = Signed<UpdateEnvelope>, responses((status = 200, description = "Taken (the receipt when paid)", body = UpdateResponse), (status = 409, description = "A second update for the round", body = UpdateResponse), (status = 410, description = "The round is not open", body = UpdateResponse), (status = 422, description = "Refused: the outcome says why", body = UpdateResponse), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody)))]
async fn submit(
    State(state): State<AggregatorState>,
    Path(id): Path<String>,
    Body(envelope): Body<Signed<UpdateEnvelope>>,
) -> Result<(StatusCode, axum::Json<UpdateResponse>), ApiError> {
    let monitor = state.monitor.clone();
    let response = blocking(move || Ok(state.submit(&id, &envelope))).await?;
    monitor.update(response.outcome);
    let status = match response.outcome {
        UpdateOutcome::Refused(r) => {
            StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
        }
        _ => StatusCode::OK,
    };
    Ok((status, axum::Json(response)))
}
