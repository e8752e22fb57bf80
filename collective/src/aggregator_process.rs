//! The aggregator as its own process (`collective aggregator`), so that the
//! operator of the collective's service cannot look into it: its HTTP API
//! ([`aggregator_app`]) and the client through which the service drives it
//! ([`RemoteAggregator`]).
//!
//! Wallets send their sealed updates here (the task's `update_url`). The
//! service opens and closes rounds with messages signed by the collective's
//! key, which this process checks against the collective's self-certifying
//! manifest (fetched from the service, and only trusted when it names this
//! aggregator's key). For each envelope it takes, it reports the access to
//! the service's ledger (signed by the aggregator, with the wallet's own
//! signed envelope as evidence) and hands the receipt back to the wallet.
//! Individual updates never leave this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post};
use c2ssi_client::{Client, ClientError};
use c2ssi_protocol::{
    Assignment, BatchCounts, BatchResult, CloseRound, Header, Manifest, OpenRound, PublicKey,
    Purpose, Signed, SigningKey, UpdateEnvelope, UpdateResponse, collective_id, now_ms,
};
use serde::{Deserialize, Serialize};

use crate::aggregator::{
    Accepted, Aggregator, CONTROL_VALIDITY_MS, CloseError, CloseSpec, Rejection, RoundKey,
};
use crate::coordinator::AggregatorHandle;
use crate::error::{CollectiveError, Result};
use crate::http::{AppError, Body, MAX_BODY_BYTES};

/// The aggregator's public keys, as `GET /key` returns them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregatorIdentity {
    /// Signs batch results and access reports.
    pub public_key: PublicKey,
    /// The age recipient updates are sealed to.
    pub recipient: String,
}

/// A round's progress, as `GET .../progress` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundProgress {
    /// Whether the round is open here.
    pub open: bool,
    /// Assigned wallets that answered.
    pub answered: usize,
    /// Assigned wallets.
    pub assigned: usize,
}

/// What closing a round gave, on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloseOutcome {
    /// The signed batch result.
    Released(Signed<BatchResult>),
    /// Fewer than k valid updates.
    TooFew {
        /// Valid updates.
        valid: u32,
        /// k.
        min_batch: u32,
        /// The counts.
        counts: BatchCounts,
    },
    /// The round was not open.
    NotOpen(u32),
    /// The rule could not be applied.
    Failed(String),
}

impl From<std::result::Result<Signed<BatchResult>, CloseError>> for CloseOutcome {
    fn from(r: std::result::Result<Signed<BatchResult>, CloseError>) -> Self {
        match r {
            Ok(signed) => CloseOutcome::Released(signed),
            Err(CloseError::TooFew {
                valid,
                min_batch,
                counts,
            }) => CloseOutcome::TooFew {
                valid,
                min_batch,
                counts,
            },
            Err(CloseError::NotOpen(round)) => CloseOutcome::NotOpen(round),
            Err(e) => CloseOutcome::Failed(e.to_string()),
        }
    }
}

impl From<CloseOutcome> for std::result::Result<Signed<BatchResult>, CloseError> {
    fn from(o: CloseOutcome) -> Self {
        match o {
            CloseOutcome::Released(signed) => Ok(signed),
            CloseOutcome::TooFew {
                valid,
                min_batch,
                counts,
            } => Err(CloseError::TooFew {
                valid,
                min_batch,
                counts,
            }),
            CloseOutcome::NotOpen(round) => Err(CloseError::NotOpen(round)),
            CloseOutcome::Failed(message) => Err(CloseError::Failed(message)),
        }
    }
}

/// The aggregator process's state.
#[derive(Clone)]
pub struct AggregatorState {
    aggregator: Arc<Aggregator>,
    service: Client,
    manifests: Arc<Mutex<HashMap<String, Manifest>>>,
}

impl std::fmt::Debug for AggregatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorState")
            .field("aggregator", &self.aggregator)
            .field("service", &self.service.base())
            .finish_non_exhaustive()
    }
}

impl AggregatorState {
    /// An aggregator whose collectives live at the service `service_url`.
    pub fn new(aggregator: Aggregator, service_url: &str) -> AggregatorState {
        AggregatorState {
            aggregator: Arc::new(aggregator),
            service: Client::new(service_url),
            manifests: Arc::default(),
        }
    }

    /// The collective's manifest, checked: signed by the key its id is
    /// derived from, and naming this aggregator.
    fn manifest(&self, id: &str) -> Result<Manifest> {
        if let Some(m) = self
            .manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(m.clone());
        }
        let signed = self.service.manifest(id).map_err(remote_error)?;
        let manifest = signed.open_any_time(None, Purpose::Manifest)?;
        if manifest.collective_key != signed.signer
            || collective_id(&signed.signer) != id
            || manifest.header.collective_id != id
        {
            return Err(CollectiveError::Unauthorized(format!(
                "the service's manifest for {id} is not signed by that collective"
            )));
        }
        if manifest.aggregator_key != self.aggregator.keys().public_key() {
            return Err(CollectiveError::Forbidden(format!(
                "collective {id} names another aggregator"
            )));
        }
        self.manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), manifest.clone());
        Ok(manifest)
    }

    fn check_control<T: c2ssi_protocol::Message + serde::de::DeserializeOwned>(
        &self,
        id: &str,
        message: &Signed<T>,
        purpose: Purpose,
    ) -> Result<T> {
        let manifest = self.manifest(id)?;
        let body = message.open(Some(&manifest.collective_key), purpose, now_ms())?;
        if body.header().collective_id != id {
            return Err(CollectiveError::Forbidden(
                "the message is for another collective".into(),
            ));
        }
        Ok(body)
    }

    fn open_round(&self, id: &str, message: &Signed<OpenRound>) -> Result<()> {
        let body = self.check_control(id, message, Purpose::OpenRound)?;
        self.aggregator.open_round(
            RoundKey {
                collective_id: id.to_string(),
                job_id: body.job_id,
                round: body.round,
            },
            body.assigned
                .into_iter()
                .map(|a| (a.wallet, a.task_digest))
                .collect(),
            body.model_len as usize,
        );
        Ok(())
    }

    fn close_round(&self, id: &str, message: &Signed<CloseRound>) -> Result<CloseOutcome> {
        let body = self.check_control(id, message, Purpose::CloseRound)?;
        let key = RoundKey {
            collective_id: id.to_string(),
            job_id: body.job_id,
            round: body.round,
        };
        let spec = CloseSpec {
            rule: body.rule,
            min_batch: body.min_batch,
            previous: body.previous,
            dp: body.dp,
            sampling_rate: body.sampling_rate,
            rounds_before: body.rounds_before,
        };
        Ok(self.aggregator.close_round(&key, &spec).into())
    }

    /// Takes a wallet's envelope and, when the aggregator accepted it, has
    /// the service's ledger pay the access.
    fn submit(&self, id: &str, envelope: &Signed<UpdateEnvelope>) -> Result<UpdateResponse> {
        let manifest = self.manifest(id)?;
        match self.aggregator.submit(id, envelope) {
            Ok(Accepted { .. }) => {
                let report = self.aggregator.report_access(id, envelope)?;
                debug_assert_eq!(manifest.aggregator_key, report.signer);
                self.service
                    .post(&format!("/collectives/{id}/accesses"), &report)
                    .map_err(remote_error)
            }
            Err(Rejection { reason, message }) => Ok(UpdateResponse {
                accepted: false,
                reason: Some(format!("update refused ({reason}): {message}")),
                receipt: None,
            }),
        }
    }
}

fn remote_error(e: ClientError) -> CollectiveError {
    match e {
        ClientError::Refused {
            status: 404,
            message,
            ..
        } => CollectiveError::NotFound(message),
        other => CollectiveError::Internal(other.to_string()),
    }
}

type ApiResult<T> = std::result::Result<axum::Json<T>, AppError>;

async fn blocking<R: Send + 'static>(
    state: &AggregatorState,
    f: impl FnOnce(&AggregatorState) -> Result<R> + Send + 'static,
) -> std::result::Result<R, AppError> {
    let s = state.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| AppError::from(CollectiveError::Internal(e.to_string())))?
        .map_err(AppError::from)
}

/// The aggregator's router.
pub fn aggregator_app(state: AggregatorState) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({ "ok": true, "role": "aggregator" })) }),
        )
        .route("/key", get(key))
        .route("/collectives/{id}/rounds/open", post(open_round))
        .route("/collectives/{id}/rounds/close", post(close_round))
        .route(
            "/collectives/{id}/rounds/{job}/{round}/progress",
            get(progress),
        )
        .route("/collectives/{id}/updates", post(submit))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn key(State(state): State<AggregatorState>) -> axum::Json<AggregatorIdentity> {
    axum::Json(AggregatorIdentity {
        public_key: state.aggregator.keys().public_key(),
        recipient: state.aggregator.keys().recipient(),
    })
}

async fn open_round(
    State(state): State<AggregatorState>,
    Path(id): Path<String>,
    Body(message): Body<Signed<OpenRound>>,
) -> ApiResult<serde_json::Value> {
    blocking(&state, move |s| s.open_round(&id, &message)).await?;
    Ok(axum::Json(serde_json::json!({ "opened": true })))
}

async fn close_round(
    State(state): State<AggregatorState>,
    Path(id): Path<String>,
    Body(message): Body<Signed<CloseRound>>,
) -> ApiResult<CloseOutcome> {
    Ok(axum::Json(
        blocking(&state, move |s| s.close_round(&id, &message)).await?,
    ))
}

async fn progress(
    State(state): State<AggregatorState>,
    Path((id, job, round)): Path<(String, String, u32)>,
) -> axum::Json<RoundProgress> {
    let key = RoundKey {
        collective_id: id,
        job_id: job,
        round,
    };
    let progress = state.aggregator.progress(&key);
    axum::Json(RoundProgress {
        open: progress.is_some(),
        answered: progress.map_or(0, |p| p.0),
        assigned: progress.map_or(0, |p| p.1),
    })
}

async fn submit(
    State(state): State<AggregatorState>,
    Path(id): Path<String>,
    Body(envelope): Body<Signed<UpdateEnvelope>>,
) -> ApiResult<UpdateResponse> {
    Ok(axum::Json(
        blocking(&state, move |s| s.submit(&id, &envelope)).await?,
    ))
}

/// Serves the aggregator on `listener` until ctrl-c.
pub async fn serve_aggregator(
    listener: tokio::net::TcpListener,
    state: AggregatorState,
) -> Result<()> {
    axum::serve(listener, aggregator_app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| CollectiveError::Internal(format!("aggregator server: {e}")))
}

/// The service's handle on an aggregator in another process.
#[derive(Debug)]
pub struct RemoteAggregator {
    client: Client,
    identity: AggregatorIdentity,
}

impl RemoteAggregator {
    /// Connects to the aggregator at `url` and learns its keys.
    pub fn connect(url: &str) -> Result<RemoteAggregator> {
        let client = Client::new(url);
        let identity: AggregatorIdentity = client.get("/key").map_err(|e| {
            CollectiveError::Internal(format!("the aggregator at {url} cannot be reached: {e}"))
        })?;
        Ok(RemoteAggregator { client, identity })
    }

    /// Where wallets send their updates.
    pub fn url(&self) -> &str {
        self.client.base()
    }
}

impl AggregatorHandle for RemoteAggregator {
    fn keys(&self) -> (PublicKey, String) {
        (self.identity.public_key, self.identity.recipient.clone())
    }

    fn open_round(
        &self,
        signer: &SigningKey,
        key: RoundKey,
        assigned: Vec<(PublicKey, String)>,
        model_len: usize,
    ) -> Result<()> {
        let message = Signed::sign(
            &OpenRound {
                header: Header::new(Purpose::OpenRound, &key.collective_id, CONTROL_VALIDITY_MS),
                job_id: key.job_id.clone(),
                round: key.round,
                model_len: model_len as u32,
                assigned: assigned
                    .into_iter()
                    .map(|(wallet, task_digest)| Assignment {
                        wallet,
                        task_digest,
                    })
                    .collect(),
            },
            signer,
        )?;
        let _: serde_json::Value = self
            .client
            .post(
                &format!("/collectives/{}/rounds/open", key.collective_id),
                &message,
            )
            .map_err(|e| CollectiveError::Internal(format!("opening the round: {e}")))?;
        Ok(())
    }

    fn progress(&self, key: &RoundKey) -> Result<Option<(usize, usize)>> {
        let p: RoundProgress = self
            .client
            .get(&format!(
                "/collectives/{}/rounds/{}/{}/progress",
                key.collective_id, key.job_id, key.round
            ))
            .map_err(|e| CollectiveError::Internal(format!("round progress: {e}")))?;
        Ok(p.open.then_some((p.answered, p.assigned)))
    }

    fn close_round(
        &self,
        signer: &SigningKey,
        key: &RoundKey,
        spec: &CloseSpec,
    ) -> std::result::Result<Signed<BatchResult>, CloseError> {
        let message = Signed::sign(
            &CloseRound {
                header: Header::new(Purpose::CloseRound, &key.collective_id, CONTROL_VALIDITY_MS),
                job_id: key.job_id.clone(),
                round: key.round,
                rule: spec.rule.clone(),
                min_batch: spec.min_batch,
                previous: spec.previous.clone(),
                dp: spec.dp,
                sampling_rate: spec.sampling_rate,
                rounds_before: spec.rounds_before,
            },
            signer,
        )
        .map_err(|e| CloseError::Failed(e.to_string()))?;
        let outcome: CloseOutcome = self
            .client
            .post(
                &format!("/collectives/{}/rounds/close", key.collective_id),
                &message,
            )
            .map_err(|e| CloseError::Failed(format!("the aggregator: {e}")))?;
        outcome.into()
    }

    fn submit(
        &self,
        _collective_id: &str,
        _envelope: &Signed<UpdateEnvelope>,
    ) -> Option<std::result::Result<Accepted, Rejection>> {
        None
    }
}
