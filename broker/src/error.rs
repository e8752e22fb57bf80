//! The broker's typed errors. Each says what was wrong in words a caller can
//! act on; [`ApiError`] turns them into JSON responses, and database or
//! internal errors into a reference that carries none of their text.

use c2ssi_protocol::{ErrorCode, ProtocolError};
use c2ssi_server::ApiError;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
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
    /// The budget does not cover it.
    #[error("{0}")]
    PaymentRequired(String),
    /// The aggregator cannot be reached or refused.
    #[error("the aggregator: {0}")]
    Aggregator(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
    /// Something else failed inside.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for BrokerError {
    fn from(e: rusqlite::Error) -> Self {
        BrokerError::Database(e.to_string())
    }
}

/// What PostgreSQL's client said: the server's own words, or the error
/// with its causes ("error connecting to server: Connection refused").
pub(crate) fn postgres_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl From<postgres::Error> for BrokerError {
    fn from(e: postgres::Error) -> Self {
        // For the log; a response never carries it.
        BrokerError::Database(postgres_text(&e))
    }
}

impl From<ProtocolError> for BrokerError {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Malformed(m) => BrokerError::Invalid(m),
            ProtocolError::Crypto(m) => BrokerError::Invalid(m),
            other => BrokerError::Unauthorized(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for BrokerError {
    fn from(e: serde_json::Error) -> Self {
        BrokerError::Internal(format!("serialization: {e}"))
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let code = match &e {
            BrokerError::NotFound(_) => ErrorCode::NotFound,
            BrokerError::Unauthorized(_) => ErrorCode::Unauthorized,
            BrokerError::Forbidden(_) => ErrorCode::Forbidden,
            BrokerError::Conflict(_) => ErrorCode::Conflict,
            BrokerError::Invalid(_) => ErrorCode::Invalid,
            BrokerError::PaymentRequired(_) => ErrorCode::Budget,
            BrokerError::Aggregator(_) => ErrorCode::Unavailable,
            BrokerError::Database(_) | BrokerError::Internal(_) => {
                return ApiError::internal(&e);
            }
        };
        ApiError::new(code, e.to_string())
    }
}

/// The broker's result type.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
