//! The collective's JSON API (axum): [`app`] builds the router over the
//! coordinator. Every mutating call carries a signed message (operator,
//! wallet or aggregator); request bodies are bounded; errors come back as
//! `{"error": {"code", "message"}}` with the matching 4xx or 5xx status.
//!
//! No route says which wallets were in which round: job status shows counts,
//! the ledger names payees only by commitment.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use c2ssi_protocol::{
    AccessReport, CheckIn, CreateCollective, OperatorCommand, Signed, Subscription, Unsubscription,
    UpdateEnvelope,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::coordinator::Coordinator;
use crate::error::CollectiveError;
use crate::runner::Runner;

/// Largest ordinary request body.
pub const MAX_BODY_BYTES: usize = 8 << 20;
/// Largest algorithm upload (base64 inside JSON).
pub const MAX_ALGORITHM_BODY_BYTES: usize = 48 << 20;

/// The service's state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The coordinator.
    pub coordinator: Arc<Coordinator>,
    /// Drives jobs.
    pub runner: Runner,
}

/// An error as the API returns it.
#[derive(Debug)]
pub struct AppError(CollectiveError);

impl From<CollectiveError> for AppError {
    fn from(e: CollectiveError) -> Self {
        AppError(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            CollectiveError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            CollectiveError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            CollectiveError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            CollectiveError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            CollectiveError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            CollectiveError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
            CollectiveError::PaymentRequired(_) => (StatusCode::PAYMENT_REQUIRED, "budget"),
            CollectiveError::Database(_) | CollectiveError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        let body = serde_json::json!({ "error": { "code": code, "message": self.0.to_string() } });
        (status, axum::Json(body)).into_response()
    }
}

/// A JSON body whose rejections (malformed, too large, wrong content type)
/// are API errors with a message, like every other error.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(AppError(CollectiveError::TooLarge(format!(
                    "the request body is too large: {}",
                    e.body_text()
                ))))
            }
            Err(e) => Err(AppError(CollectiveError::Invalid(format!(
                "the request body is not what this endpoint takes: {}",
                e.body_text()
            )))),
        }
    }
}

type ApiResult<T> = Result<axum::Json<T>, AppError>;

async fn blocking<R: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Coordinator) -> Result<R, CollectiveError> + Send + 'static,
) -> Result<R, AppError> {
    let c = state.coordinator.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .map_err(|e| AppError(CollectiveError::Internal(e.to_string())))?
        .map_err(AppError)
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({ "ok": true })) }),
        )
        .route(
            "/collectives",
            get(list_collectives).post(create_collective),
        )
        .route("/collectives/{id}/manifest", get(manifest))
        .route("/collectives/{id}/commands", post(command))
        .route(
            "/collectives/{id}/algorithms",
            get(algorithms)
                .post(add_algorithm)
                .layer(DefaultBodyLimit::max(MAX_ALGORITHM_BODY_BYTES)),
        )
        .route("/collectives/{id}/algorithms/{sha}", get(algorithm))
        .route("/collectives/{id}/subscriptions", post(subscribe))
        .route("/collectives/{id}/unsubscribe", post(unsubscribe))
        .route("/collectives/{id}/subscribers", get(subscribers))
        .route("/collectives/{id}/checkin", post(check_in))
        .route("/collectives/{id}/updates", post(update))
        .route("/collectives/{id}/accesses", post(access))
        .route("/collectives/{id}/jobs", get(jobs))
        .route("/collectives/{id}/jobs/{job}", get(job))
        .route("/collectives/{id}/models", get(models))
        .route("/collectives/{id}/models/{hash}", get(model))
        .route("/collectives/{id}/ledger", get(ledger))
        .route("/collectives/{id}/ledger/balance", get(balance))
        .route("/collectives/{id}/ledger/verify", get(verify))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn list_collectives(State(s): State<AppState>) -> ApiResult<Vec<String>> {
    Ok(axum::Json(blocking(&s, |c| c.registry().list()).await?))
}

async fn create_collective(
    State(s): State<AppState>,
    Body(request): Body<Signed<CreateCollective>>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), AppError> {
    let manifest = blocking(&s, move |c| c.create_collective(&request)).await?;
    let body = manifest
        .open_any_time(None, c2ssi_protocol::Purpose::Manifest)
        .map_err(CollectiveError::from)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "collective_id": body.header.collective_id,
            "manifest": manifest,
        })),
    ))
}

async fn manifest(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Signed<c2ssi_protocol::Manifest>> {
    Ok(axum::Json(
        blocking(&s, move |c| c.registry().manifest(&id)).await?,
    ))
}

async fn command(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<Signed<OperatorCommand>>,
) -> ApiResult<serde_json::Value> {
    let cid = id.clone();
    let result = blocking(&s, move |c| c.command(&cid, &request)).await?;
    if let Some(job) = result["job_id"].as_str()
        && result.get("stop_requested").is_none()
    {
        s.runner.spawn(s.coordinator.clone(), job.to_string());
    }
    Ok(axum::Json(result))
}

/// An algorithm upload: the signed command naming its SHA-256, and the component.
#[derive(Debug, Serialize, Deserialize)]
pub struct AlgorithmUpload {
    /// The operator's signed add-algorithm command.
    pub command: Signed<OperatorCommand>,
    /// The component, base64.
    pub component_base64: String,
}

async fn add_algorithm(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(upload): Body<AlgorithmUpload>,
) -> ApiResult<Signed<c2ssi_protocol::Manifest>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(upload.component_base64.as_bytes())
        .map_err(|e| CollectiveError::Invalid(format!("the component is not base64: {e}")))?;
    Ok(axum::Json(
        blocking(&s, move |c| c.add_algorithm(&id, &upload.command, &bytes)).await?,
    ))
}

async fn algorithms(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Vec<c2ssi_protocol::AllowedAlgorithm>> {
    Ok(axum::Json(
        blocking(&s, move |c| {
            Ok(c.registry().manifest_body(&id)?.allowed_algorithms)
        })
        .await?,
    ))
}

async fn algorithm(
    State(s): State<AppState>,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let bytes = blocking(&s, move |c| c.registry().algorithm(&id, &sha)).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}

async fn subscribe(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<Signed<Subscription>>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), AppError> {
    let wallet = request.signer;
    blocking(&s, move |c| c.subscribe(&id, &request)).await?;
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
    blocking(&s, move |c| c.unsubscribe(&id, &request)).await?;
    Ok(axum::Json(serde_json::json!({ "unsubscribed": wallet })))
}

async fn subscribers(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Vec<c2ssi_protocol::PublicKey>> {
    Ok(axum::Json(
        blocking(&s, move |c| c.registry().subscribers(&id)).await?,
    ))
}

async fn check_in(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(request): Body<Signed<CheckIn>>,
) -> ApiResult<c2ssi_protocol::CheckInResponse> {
    Ok(axum::Json(
        blocking(&s, move |c| c.check_in(&id, &request)).await?,
    ))
}

async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(envelope): Body<Signed<UpdateEnvelope>>,
) -> Result<(StatusCode, axum::Json<c2ssi_protocol::UpdateResponse>), AppError> {
    let response = blocking(&s, move |c| c.accept_update(&id, &envelope)).await?;
    let status = if response.accepted {
        StatusCode::OK
    } else if response
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("(duplicate)"))
    {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, axum::Json(response)))
}

async fn access(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(report): Body<Signed<AccessReport>>,
) -> ApiResult<c2ssi_protocol::UpdateResponse> {
    Ok(axum::Json(
        blocking(&s, move |c| c.record_access(&id, &report)).await?,
    ))
}

async fn jobs(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Vec<crate::coordinator::JobStatus>> {
    Ok(axum::Json(blocking(&s, move |c| c.jobs(&id)).await?))
}

async fn job(
    State(s): State<AppState>,
    Path((id, job)): Path<(String, String)>,
) -> ApiResult<crate::coordinator::JobStatus> {
    Ok(axum::Json(
        blocking(&s, move |c| c.job_status(&id, &job)).await?,
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
) -> ApiResult<Vec<crate::models::ModelSummary>> {
    Ok(axum::Json(
        blocking(&s, move |c| c.model_versions(&id, q.job.as_deref())).await?,
    ))
}

async fn model(
    State(s): State<AppState>,
    Path((id, hash)): Path<(String, String)>,
) -> ApiResult<crate::models::ModelVersion> {
    Ok(axum::Json(
        blocking(&s, move |c| c.model(&id, &hash)).await?,
    ))
}

async fn ledger(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Vec<c2ssi_protocol::LedgerEntry>> {
    Ok(axum::Json(
        blocking(&s, move |c| c.ledger_entries(&id)).await?,
    ))
}

async fn balance(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<serde_json::Value> {
    let (deposited, paid) = blocking(&s, move |c| {
        c.registry().manifest(&id)?;
        c.ledger().balance(&id)
    })
    .await?;
    Ok(axum::Json(serde_json::json!({
        "deposited": deposited,
        "paid": paid,
        "balance": c2ssi_protocol::Amount(deposited.0.saturating_sub(paid.0)),
    })))
}

async fn verify(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<c2ssi_protocol::LedgerSummary> {
    Ok(axum::Json(
        blocking(&s, move |c| c.verify_ledger(&id)).await?,
    ))
}
