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
use c2ssi_protocol::{
    AccessReport, AuditSummary, Balance, BrokerKeys, CheckIn, CheckInResponse, CollectiveSummary,
    CommandOutcome, JobStatus, LedgerEntry, LedgerSummary, Manifest, ManifestSubmission,
    ModelSummary, ModelVersion, OperatorCommand, Receipt, Signed, SubmissionOutcome, Subscription,
    Unsubscription,
};
use c2ssi_server::{ApiError, Body, MAX_BODY_BYTES};
use serde::Deserialize;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The frame of the OpenAPI description: what the API is, and how requests
/// are signed.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "compute-to-ssi broker",
        description = "The broker's JSON API. Every change is a signed message (the body's own \
                       signature); the consumer's reads carry a signed `Authorization` header. \
                       Errors are `{\"error\": {\"code\", \"message\"}}` with the status of \
                       their code."
    ),
    modifiers(&SignedRequests),
    tags(
        (name = "public", description = "Anyone may read these"),
        (name = "consumer", description = "The collective's own: signed with its key"),
        (name = "consumer or subscribed wallet", description = "The collective, or a wallet subscribed or paid there"),
        (name = "wallets", description = "Signed by the wallet in the body"),
        (name = "aggregator", description = "Signed by the aggregator and the wallet in the body"),
        (name = "issuers", description = "A credential issuer's signed status list")
    )
)]
struct BrokerApi;

/// The `Authorization` scheme of the consumer's reads.
struct SignedRequests;

impl utoipa::Modify for SignedRequests {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "signed-request",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`C2SSI-Ed25519 key=HEX,at=MS,nonce=N,sig=HEX`: the method, the path with its \
                 query, the time and the nonce, signed with the collective's (or the wallet's) \
                 Ed25519 key under the purpose `request`; good for 5 minutes either side of the \
                 server's clock",
            ))),
        );
    }
}

/// The routes, each with its OpenAPI operation: one list for both.
fn routes() -> OpenApiRouter<AppState> {
    let (schemas, paths, manifest) = routes!(manifest, submit_manifest);
    let manifest = manifest.layer(DefaultBodyLimit::max(MAX_SUBMISSION_BYTES));
    OpenApiRouter::with_openapi(BrokerApi::openapi())
        .routes(routes!(health))
        .routes(routes!(keys))
        .routes(routes!(list_collectives))
        .routes(routes!(summary))
        .routes((schemas, paths, manifest))
        .routes(routes!(manifest_version))
        .routes(routes!(command))
        .routes(routes!(algorithm))
        .routes(routes!(audits))
        .routes(routes!(put_status_list))
        .routes(routes!(subscribe))
        .routes(routes!(unsubscribe))
        .routes(routes!(check_in))
        .routes(routes!(access))
        .routes(routes!(subscribers))
        .routes(routes!(jobs))
        .routes(routes!(job))
        .routes(routes!(models))
        .routes(routes!(model))
        .routes(routes!(ledger))
        .routes(routes!(balance))
        .routes(routes!(verify))
}

/// The OpenAPI description of this API (served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The router.
pub fn app(state: AppState) -> Router {
    let (router, api) = routes().split_for_parts();
    c2ssi_server::described(router, &api, state.monitor.metrics())
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

#[utoipa::path(get, path = "/health", tag = "public", responses((status = 200, description = "`{\"ok\": true, \"role\": \"broker\"}`", body = serde_json::Value)))]
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "ok": true, "role": "broker" }))
}

#[utoipa::path(get, path = "/keys", tag = "public", responses((status = 200, description = "The broker's keys and its aggregator's", body = BrokerKeys), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn keys(State(s): State<AppState>) -> axum::Json<BrokerKeys> {
    axum::Json(s.broker.keys())
}

/// An issuer's signed status list; the answer says how many subscriptions
/// it ended.
#[utoipa::path(post, path = "/status-lists", tag = "issuers", request_body = serde_json::Value, responses((status = 200, description = "How many subscriptions it ended: `{\"ended_subscriptions\": n}`", body = serde_json::Value), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn put_status_list(
    State(s): State<AppState>,
    Body(list): Body<serde_json::Value>,
) -> ApiResult<serde_json::Value> {
    let ended = blocking(&s, move |b| b.put_status_list(list)).await?;
    Ok(axum::Json(
        serde_json::json!({ "ended_subscriptions": ended }),
    ))
}

#[utoipa::path(get, path = "/collectives", tag = "public", responses((status = 200, description = "The collectives' ids", body = Vec<String>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn list_collectives(State(s): State<AppState>) -> ApiResult<Vec<String>> {
    Ok(axum::Json(blocking(&s, |b| b.registry().list()).await?))
}

#[utoipa::path(get, path = "/collectives/{id}", tag = "consumer", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), responses((status = 200, description = "The collective at a glance", body = CollectiveSummary), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn summary(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<CollectiveSummary> {
    Ok(axum::Json(blocking(&s, move |b| b.summary(&id)).await?))
}

#[utoipa::path(post, path = "/collectives/{id}/manifest", tag = "consumer", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), request_body = ManifestSubmission, responses((status = 201, description = "A new collective (version 1)", body = SubmissionOutcome), (status = 200, description = "A new version", body = SubmissionOutcome), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
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

#[utoipa::path(get, path = "/collectives/{id}/manifest", tag = "public", params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), responses((status = 200, description = "The current signed manifest (a `Manifest`)", body = Signed<Manifest>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn manifest(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Signed<Manifest>> {
    Ok(axum::Json(blocking(&s, move |b| b.manifest(&id)).await?))
}

#[utoipa::path(get, path = "/collectives/{id}/manifests/{digest}", tag = "public", params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits"), ("digest" = String, Path, description = "The signed manifest's SHA-256, hex")), responses((status = 200, description = "A version of the signed manifest", body = Signed<Manifest>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn manifest_version(
    State(s): State<AppState>,
    Path((id, digest)): Path<(String, String)>,
) -> ApiResult<Signed<Manifest>> {
    Ok(axum::Json(
        blocking(&s, move |b| b.manifest_version(&id, &digest)).await?,
    ))
}

#[utoipa::path(post, path = "/collectives/{id}/commands", tag = "consumer", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), request_body = Signed<OperatorCommand>, responses((status = 200, description = "What the command did", body = CommandOutcome), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
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

#[utoipa::path(get, path = "/collectives/{id}/algorithms/{sha}", tag = "public", params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits"), ("sha" = String, Path, description = "The component's SHA-256, hex")), responses((status = 200, description = "The component (WebAssembly)", content_type = "application/wasm", body = Vec<u8>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn algorithm(
    State(s): State<AppState>,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let bytes = blocking(&s, move |b| b.algorithm(&id, &sha)).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}

#[utoipa::path(get, path = "/collectives/{id}/audits", tag = "public", params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), responses((status = 200, description = "The privacy audits of its components", body = Vec<AuditSummary>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn audits(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Vec<AuditSummary>> {
    Ok(axum::Json(blocking(&s, move |b| b.audits(&id)).await?))
}

#[utoipa::path(post, path = "/collectives/{id}/subscriptions", tag = "wallets", params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), request_body = Signed<Subscription>, responses((status = 201, description = "Subscribed: `{\"subscribed\": key}`", body = serde_json::Value), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
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

#[utoipa::path(post, path = "/collectives/{id}/unsubscribe", tag = "wallets", params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), request_body = Signed<Unsubscription>, responses((status = 200, description = "Unsubscribed: `{\"unsubscribed\": key}`", body = serde_json::Value), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn unsubscribe(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<Signed<Unsubscription>>,
) -> ApiResult<serde_json::Value> {
    let wallet = request.signer;
    blocking(&s, move |b| b.unsubscribe(&id, &request)).await?;
    Ok(axum::Json(serde_json::json!({ "unsubscribed": wallet })))
}

#[utoipa::path(post, path = "/collectives/{id}/checkin", tag = "wallets", params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), request_body = Signed<CheckIn>, responses((status = 200, description = "The wallet's tasks, if any, and when to come back", body = CheckInResponse), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn check_in(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<Signed<CheckIn>>,
) -> ApiResult<CheckInResponse> {
    let response = blocking(&s, move |b| b.check_in(&id, &request)).await?;
    s.monitor.checked_in();
    Ok(axum::Json(response))
}

#[utoipa::path(post, path = "/collectives/{id}/accesses", tag = "aggregator", params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), request_body = Signed<AccessReport>, responses((status = 200, description = "The payment's receipt (a `Receipt`)", body = Signed<Receipt>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn access(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(report): Body<Signed<AccessReport>>,
) -> ApiResult<Signed<Receipt>> {
    let receipt = blocking(&s, move |b| b.record_access(&id, &report)).await?;
    s.monitor.access_reported();
    Ok(axum::Json(receipt))
}

#[utoipa::path(get, path = "/collectives/{id}/subscribers", tag = "consumer", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), responses((status = 200, description = "The number of subscribers after each change", body = Vec<c2ssi_protocol::SubscriberCount>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn subscribers(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Vec<c2ssi_protocol::SubscriberCount>> {
    Ok(axum::Json(
        blocking(&s, move |b| b.subscriber_history(&id)).await?,
    ))
}

#[utoipa::path(get, path = "/collectives/{id}/jobs", tag = "consumer", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), responses((status = 200, description = "Every job", body = Vec<JobStatus>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn jobs(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Vec<JobStatus>> {
    Ok(axum::Json(blocking(&s, move |b| b.jobs(&id)).await?))
}

#[utoipa::path(get, path = "/collectives/{id}/jobs/{job}", tag = "consumer", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits"), ("job" = String, Path, description = "The job")), responses((status = 200, description = "A job and its rounds", body = JobStatus), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
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

#[utoipa::path(get, path = "/collectives/{id}/models", tag = "consumer", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits"), ("job" = Option<String>, Query, description = "Only this job's")), responses((status = 200, description = "Model versions, without their parameters", body = Vec<ModelSummary>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn models(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ModelQuery>,
) -> ApiResult<Vec<ModelSummary>> {
    Ok(axum::Json(
        blocking(&s, move |b| b.models(&id, q.job.as_deref())).await?,
    ))
}

#[utoipa::path(get, path = "/collectives/{id}/models/{hash}", tag = "consumer", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits"), ("hash" = String, Path, description = "Its content address, or a prefix only it has")), responses((status = 200, description = "A model version", body = ModelVersion), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn model(
    State(s): State<AppState>,
    Path((id, hash)): Path<(String, String)>,
) -> ApiResult<ModelVersion> {
    Ok(axum::Json(
        blocking(&s, move |b| b.model(&id, &hash)).await?,
    ))
}

#[utoipa::path(get, path = "/collectives/{id}/ledger", tag = "consumer or subscribed wallet", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), responses((status = 200, description = "Every entry (payees as commitments)", body = Vec<LedgerEntry>), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn ledger(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Vec<LedgerEntry>> {
    Ok(axum::Json(
        blocking(&s, move |b| b.ledger_entries(&id)).await?,
    ))
}

#[utoipa::path(get, path = "/collectives/{id}/ledger/balance", tag = "consumer or subscribed wallet", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), responses((status = 200, description = "Deposits, payments, balance", body = Balance), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn balance(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Balance> {
    Ok(axum::Json(
        blocking(&s, move |b| {
            b.registry().current(&id)?;
            b.balance(&id)
        })
        .await?,
    ))
}

#[utoipa::path(get, path = "/collectives/{id}/ledger/verify", tag = "consumer or subscribed wallet", security(("signed-request" = [])), params(("id" = String, Path, description = "The collective: c- and 24 lower-case hex digits")), responses((status = 200, description = "The whole chain checked by the broker", body = LedgerSummary), (status = "4XX", description = "Refused: the error's code says why", body = c2ssi_protocol::ErrorBody), (status = "5XX", description = "An internal error: a reference to quote, never its text", body = c2ssi_protocol::ErrorBody)))]
async fn verify(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<LedgerSummary> {
    Ok(axum::Json(
        blocking(&s, move |b| b.verify_ledger(&id)).await?,
    ))
}
