//! The HTTP plumbing the broker and the aggregator share (axum on tokio):
//!
//! - [`ApiError`]: an error as the API returns it, `{"error": {"code",
//!   "message"}}` with the status of its typed [`ErrorCode`]. An internal
//!   error's text is logged, never sent: the client gets a reference to
//!   quote.
//! - [`Body`]: a JSON body whose rejections (malformed, too large, wrong
//!   content type) are API errors like any other.
//! - [`blocking`]: runs blocking work (SQLite, cryptography) off the
//!   async threads.
//! - [`serve`]: serves a router until ctrl-c or SIGTERM, with every
//!   connection bounded ([`ConnectionLimits`]).
//! - [`described`]: an API's routes with `/openapi.json` and counted requests.
//! - [`metrics`]: `GET /metrics` in the Prometheus text format, and the
//!   middleware that counts every request by its route's template.
//! - [`check_ids`]: the middleware that refuses a malformed collective id or
//!   path segment before any handler sees it.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod metrics;

/// The API's routes as a server serves them: `GET /openapi.json` gives
/// `api` (serialized once), and every route's requests are counted in
/// `metrics` by their template.
pub fn described<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    api: &utoipa::openapi::OpenApi,
    metrics: std::sync::Arc<metrics::Metrics>,
) -> axum::Router<S> {
    // An OpenApi value always serializes.
    let json = bytes_of(api);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let json = json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        json,
                    )
                }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
}

fn bytes_of(api: &utoipa::openapi::OpenApi) -> axum::body::Bytes {
    axum::body::Bytes::from(serde_json::to_vec(api).unwrap_or_default())
}
mod serve;

pub use serve::{ConnectionLimits, Tls, TlsArgs, serve, serve_with};

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use c2ssi_protocol::{ErrorBody, ErrorCode, ErrorDetail};
use serde::de::DeserializeOwned;

/// Largest ordinary request body.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// An error as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

static INCIDENTS: AtomicU64 = AtomicU64::new(1);

impl ApiError {
    /// An error the client may read in full.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        debug_assert!(code != ErrorCode::Internal, "use ApiError::internal");
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// An internal error: `detail` goes to the log with a reference number,
    /// the client gets only the reference.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        let reference = INCIDENTS.fetch_add(1, Ordering::Relaxed);
        tracing::error!(reference, error = %detail, "internal error");
        ApiError {
            code: ErrorCode::Internal,
            message: format!("internal error (reference {reference}); the server's log has more"),
        }
    }

    /// Its code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// What the client reads.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (status, axum::Json(body)).into_response()
    }
}

/// A JSON body whose rejections are [`ApiError`]s.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    ErrorCode::TooLarge,
                    format!("the request body is too large: {}", e.body_text()),
                ))
            }
            Err(e) => Err(ApiError::new(
                ErrorCode::Invalid,
                format!(
                    "the request body is not what this endpoint takes: {}",
                    e.body_text()
                ),
            )),
        }
    }
}

/// Whether `id` is a collective id: `c-` and 24 lower-case hex digits (what
/// `collective_id` derives from a collective's key).
pub fn valid_collective_id(id: &str) -> bool {
    id.len() == 26
        && id.starts_with("c-")
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The longest path segment (job ids, digests, hashes) a route takes.
const MAX_SEGMENT: usize = 128;

/// Middleware: under `/collectives/`, the next segment must be a valid
/// collective id (else 404) and every later one 1 to 128 of `[A-Za-z0-9._-]`
/// (else 422, `invalid`), checked on the raw path, so no handler, URL or log line ever
/// holds a percent-decoded control character. The id is not echoed.
pub async fn check_ids(req: Request, next: axum::middleware::Next) -> Result<Response, ApiError> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/collectives/") {
        let mut segments = rest.split('/');
        if !segments.next().is_some_and(valid_collective_id) {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no such collective: a collective id is c- and 24 lower-case hex digits",
            ));
        }
        let fine = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_SEGMENT
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !segments.all(fine) {
            return Err(ApiError::new(
                ErrorCode::Invalid,
                "a path segment is empty, too long, or holds a character other than letters, \
                 digits, '.', '_' and '-'",
            ));
        }
    }
    Ok(next.run(req).await)
}

/// Runs `f` on the blocking pool; a panic in it is an internal error.
pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a blocking task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(router: Router, body: &'static str) -> (u16, serde_json::Value) {
        let response = router
            .oneshot(
                Request::post("/")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn internal_errors_hide_their_text_and_bad_bodies_are_typed() {
        let router = Router::new().route(
            "/",
            post(|Body(v): Body<serde_json::Value>| async move {
                if v["fail"] == true {
                    Err(ApiError::internal(
                        "UNIQUE constraint failed: rounds.job_id (secret detail)",
                    ))
                } else {
                    Ok(axum::Json(v))
                }
            }),
        );
        let (status, body) = call(router.clone(), r#"{"fail": true}"#).await;
        assert_eq!(status, 500);
        assert_eq!(body["error"]["code"], "internal");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("UNIQUE") && !message.contains("secret"),
            "{message}"
        );
        let (status, body) = call(router, "{not json").await;
        assert_eq!(status, 422);
        assert_eq!(body["error"]["code"], "invalid");
    }

    #[tokio::test]
    async fn malformed_ids_and_segments_never_reach_a_handler() {
        let router = Router::new()
            .route(
                "/collectives/{id}/jobs/{job}",
                axum::routing::get(|| async { "reached" }),
            )
            .layer(axum::middleware::from_fn(check_ids));
        let get = |path: &str| {
            let router = router.clone();
            let path = path.to_string();
            async move {
                let response = router
                    .oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap())
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&bytes).into_owned())
            }
        };
        let good = "c-0123456789abcdef01234567";
        assert_eq!(
            get(&format!("/collectives/{good}/jobs/j-1")).await.1,
            "reached"
        );
        for (path, status) in [
            ("/collectives/%00/jobs/j-1".to_string(), 404),
            ("/collectives/c-0123/jobs/j-1".to_string(), 404),
            (
                "/collectives/C-0123456789ABCDEF01234567/jobs/j-1".to_string(),
                404,
            ),
            (format!("/collectives/{good}/jobs/%00"), 422),
            (format!("/collectives/{good}/jobs/a%2Fb"), 422),
            (format!("/collectives/{good}/jobs/{}", "x".repeat(129)), 422),
        ] {
            let (got, body) = get(&path).await;
            assert_eq!(got, status, "{path}: {body}");
            assert!(!body.contains("%00") && !body.contains('\0'), "{body}");
        }
    }
}
