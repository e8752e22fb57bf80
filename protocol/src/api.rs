//! How the services' HTTP APIs report errors: `{"error": {"code", "message"}}`
//! with a typed [`ErrorCode`], so that a client acts on the code, never on
//! the message's words.

use serde::{Deserialize, Serialize};

/// What kind of error an API answered with; each has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 404: what was asked for does not exist.
    NotFound,
    /// 401: a signature, signer or expiry was not accepted.
    Unauthorized,
    /// 403: authenticated, but not allowed.
    Forbidden,
    /// 409: it conflicts with what is there (a duplicate, a replay, a state).
    Conflict,
    /// 422: the request itself is wrong.
    Invalid,
    /// 413: too large.
    TooLarge,
    /// 402: the budget does not cover it.
    Budget,
    /// 503: a service this one depends on cannot be reached.
    Unavailable,
    /// 500: something failed inside; the message says no more.
    Internal,
}

impl ErrorCode {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::NotFound => 404,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::Conflict => 409,
            ErrorCode::Invalid => 422,
            ErrorCode::TooLarge => 413,
            ErrorCode::Budget => 402,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// The body of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Its kind.
    pub code: ErrorCode,
    /// What was wrong, in words (for internal errors, only a reference).
    pub message: String,
}
