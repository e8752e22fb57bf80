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
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod serve;

pub use serve::{ConnectionLimits, serve, serve_with};

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
}
