//! The broker's JSON API (axum): [`app`] builds the router over the broker.
//! Every change is a signed message (the collective's, a wallet's or the
//! aggregator's); request bodies are bounded; errors come back as
//! `{"error": {"code", "message"}}` with their status, never with internal
//! or database text.
//!
//! Who may read what is [`crate::access`]'s: the manifest is public; the
//! number of subscribers (and its history), job status with released (noised) figures and
//! model versions are the consumer's; the ledger (payees as commitments) is
//! the consumer's and its wallets'. No route lists wallets or says which
//! wallets were in which round.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use c2ssi_protocol::{
    AccessReport, AuditSummary, Balance, BrokerKeys, CheckIn, CheckInResponse, CollectiveSummary,
    CommandOutcome, JobStatus, LedgerEntry, LedgerSummary, Manifest, ManifestSubmission,
    ModelSummary, ModelVersion, OperatorCommand, Receipt, Signed, SubmissionOutcome, Subscription,
    Unsubscription,
};
use c2ssi_server::{ApiError, Body, MAX_BODY_BYTES};
use serde::Deserialize;

use crate::broker::Broker;
use crate::runner::Runner;

/// Largest manifest submission (components travel in it, base64).
pub const MAX_SUBMISSION_BYTES: usize = 48 << 20;

/// The service's state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The broker.
    pub broker: Arc<Broker>,
    /// Drives jobs.
    pub runner: Runner,
    /// Who may create a collective.
    pub creators: crate::access::Creators,
    /// The operator's counters (`/metrics`, `/status`).
    pub monitor: Arc<crate::monitor::Monitor>,
}

type ApiResult<T> = Result<axum::Json<T>, ApiError>;

async fn blocking<R: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Broker) -> crate::error::Result<R> + Send + 'static,
) -> Result<R, ApiError> {
    let b = state.broker.clone();
    c2ssi_server::blocking(move || f(&b).map_err(ApiError::from)).await
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({ "ok": true, "role": "broker" })) }),
        )
        .route("/keys", get(keys))
        .route("/collectives", get(list_collectives))
        .route("/collectives/{id}", get(summary))
        .route(
            "/collectives/{id}/manifest",
            get(manifest)
                .post(submit_manifest)
                .layer(DefaultBodyLimit::max(MAX_SUBMISSION_BYTES)),
        )
        .route(
            "/collectives/{id}/manifests/{digest}",
            get(manifest_version),
        )
        .route("/collectives/{id}/commands", post(command))
        .route("/collectives/{id}/algorithms/{sha}", get(algorithm))
        .route("/collectives/{id}/audits", get(audits))
        .route("/status-lists", post(put_status_list))
        .route("/collectives/{id}/subscriptions", post(subscribe))
        .route("/collectives/{id}/unsubscribe", post(unsubscribe))
        .route("/collectives/{id}/checkin", post(check_in))
        .route("/collectives/{id}/accesses", post(access))
        .route("/collectives/{id}/subscribers", get(subscribers))
        .route("/collectives/{id}/jobs", get(jobs))
        .route("/collectives/{id}/jobs/{job}", get(job))
        .route("/collectives/{id}/models", get(models))
        .route("/collectives/{id}/models/{hash}", get(model))
        .route("/collectives/{id}/ledger", get(ledger))
        .route("/collectives/{id}/ledger/balance", get(balance))
        .route("/collectives/{id}/ledger/verify", get(verify))
        .route_layer(axum::middleware::from_fn_with_state(
            state.monitor.metrics(),
            c2ssi_server::metrics::track,
        ))
        .merge(crate::monitor::routes(
            state.broker.clone(),
            state.monitor.clone(),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::access::check,
        ))
        .layer(axum::middleware::from_fn(c2ssi_server::check_ids))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn keys(State(s): State<AppState>) -> axum::Json<BrokerKeys> {
    axum::Json(s.broker.keys())
}

/// An issuer's signed status list; the answer says how many subscriptions
/// it ended.
async fn put_status_list(
    State(s): State<AppState>,
    Body(list): Body<serde_json::Value>,
) -> ApiResult<serde_json::Value> {
    let ended = blocking(&s, move |b| b.put_status_list(list)).await?;
    Ok(axum::Json(
        serde_json::json!({ "ended_subscriptions": ended }),
    ))
}

async fn list_collectives(State(s): State<AppState>) -> ApiResult<Vec<String>> {
    Ok(axum::Json(blocking(&s, |b| b.registry().list()).await?))
}

async fn summary(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<CollectiveSummary> {
    Ok(axum::Json(blocking(&s, move |b| b.summary(&id)).await?))
}

async fn submit_manifest(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(submission): Body<ManifestSubmission>,
) -> Result<(StatusCode, axum::Json<SubmissionOutcome>), ApiError> {
    let outcome = blocking(&s, move |b| b.submit_manifest(&id, &submission)).await?;
    let status = if outcome.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(outcome)))
}

async fn manifest(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Signed<Manifest>> {
    Ok(axum::Json(blocking(&s, move |b| b.manifest(&id)).await?))
}

async fn manifest_version(
    State(s): State<AppState>,
    Path((id, digest)): Path<(String, String)>,
) -> ApiResult<Signed<Manifest>> {
    Ok(axum::Json(
        blocking(&s, move |b| b.manifest_version(&id, &digest)).await?,
    ))
}

async fn command(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<Signed<OperatorCommand>>,
) -> ApiResult<CommandOutcome> {
    let outcome = blocking(&s, move |b| b.command(&id, &request)).await?;
    if let CommandOutcome::JobStarted { job_id } = &outcome {
        s.runner.spawn(s.broker.clone(), job_id.clone());
    }
    Ok(axum::Json(outcome))
}

async fn algorithm(
    State(s): State<AppState>,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let bytes = blocking(&s, move |b| b.algorithm(&id, &sha)).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}

async fn audits(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Vec<AuditSummary>> {
    Ok(axum::Json(blocking(&s, move |b| b.audits(&id)).await?))
}

async fn subscribe(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<Signed<Subscription>>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let wallet = request.signer;
    blocking(&s, move |b| b.subscribe(&id, &request)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "subscribed": wallet })),
    ))
}

async fn unsubscribe(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<Signed<Unsubscription>>,
) -> ApiResult<serde_json::Value> {
    let wallet = request.signer;
    blocking(&s, move |b| b.unsubscribe(&id, &request)).await?;
    Ok(axum::Json(serde_json::json!({ "unsubscribed": wallet })))
}

async fn check_in(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<Signed<CheckIn>>,
) -> ApiResult<CheckInResponse> {
    let response = blocking(&s, move |b| b.check_in(&id, &request)).await?;
    s.monitor.checked_in();
    Ok(axum::Json(response))
}

async fn access(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(report): Body<Signed<AccessReport>>,
) -> ApiResult<Signed<Receipt>> {
    let receipt = blocking(&s, move |b| b.record_access(&id, &report)).await?;
    s.monitor.access_reported();
    Ok(axum::Json(receipt))
}

async fn subscribers(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Vec<c2ssi_protocol::SubscriberCount>> {
    Ok(axum::Json(
        blocking(&s, move |b| b.subscriber_history(&id)).await?,
    ))
}

async fn jobs(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Vec<JobStatus>> {
    Ok(axum::Json(blocking(&s, move |b| b.jobs(&id)).await?))
}

async fn job(
    State(s): State<AppState>,
    Path((id, job)): Path<(String, String)>,
) -> ApiResult<JobStatus> {
    Ok(axum::Json(
        blocking(&s, move |b| b.job_status(&id, &job)).await?,
    ))
}

#[derive(Deserialize)]
struct ModelQuery {
    job: Option<String>,
}

async fn models(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ModelQuery>,
) -> ApiResult<Vec<ModelSummary>> {
    Ok(axum::Json(
        blocking(&s, move |b| b.models(&id, q.job.as_deref())).await?,
    ))
}

async fn model(
    State(s): State<AppState>,
    Path((id, hash)): Path<(String, String)>,
) -> ApiResult<ModelVersion> {
    Ok(axum::Json(
        blocking(&s, move |b| b.model(&id, &hash)).await?,
    ))
}

async fn ledger(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Vec<LedgerEntry>> {
    Ok(axum::Json(
        blocking(&s, move |b| b.ledger_entries(&id)).await?,
    ))
}

async fn balance(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Balance> {
    Ok(axum::Json(
        blocking(&s, move |b| {
            b.registry().current(&id)?;
            b.balance(&id)
        })
        .await?,
    ))
}

async fn verify(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<LedgerSummary> {
    Ok(axum::Json(
        blocking(&s, move |b| b.verify_ledger(&id)).await?,
    ))
}
