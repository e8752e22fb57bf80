//! The collective's typed errors. Each says what was wrong in words a
//! caller can act on; the HTTP service maps them to status codes.

use c2ssi_protocol::ProtocolError;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CollectiveError {
    /// Something asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A signature, signer or expiry was not accepted.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// It conflicts with what is there (a duplicate, a replay, a state).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Too large.
    #[error("{0}")]
    TooLarge(String),
    /// The budget does not cover it.
    #[error("{0}")]
    PaymentRequired(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
    /// Something else failed inside.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for CollectiveError {
    fn from(e: rusqlite::Error) -> Self {
        CollectiveError::Database(e.to_string())
    }
}

impl From<ProtocolError> for CollectiveError {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Malformed(m) => CollectiveError::Invalid(m),
            ProtocolError::Crypto(m) => CollectiveError::Invalid(m),
            other => CollectiveError::Unauthorized(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for CollectiveError {
    fn from(e: serde_json::Error) -> Self {
        CollectiveError::Internal(format!("serialization: {e}"))
    }
}

/// The collective's result type.
pub type Result<T, E = CollectiveError> = std::result::Result<T, E>;
