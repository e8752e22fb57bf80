//! The simulation's errors: what the user gave that cannot work, or what
//! failed inside, in words.

/// What went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The options or the data cannot work.
    #[error("{0}")]
    Invalid(String),
    /// Something failed inside.
    #[error("{0}")]
    Internal(String),
}

impl From<c2ssi_broker::BrokerError> for SimError {
    fn from(e: c2ssi_broker::BrokerError) -> Self {
        match e {
            c2ssi_broker::BrokerError::Invalid(m) | c2ssi_broker::BrokerError::Forbidden(m) => {
                SimError::Invalid(m)
            }
            other => SimError::Internal(other.to_string()),
        }
    }
}

impl From<c2ssi_protocol::ProtocolError> for SimError {
    fn from(e: c2ssi_protocol::ProtocolError) -> Self {
        SimError::Internal(e.to_string())
    }
}

impl From<wallet_host::store::WalletError> for SimError {
    fn from(e: wallet_host::store::WalletError) -> Self {
        SimError::Internal(e.to_string())
    }
}

impl From<wallet_host::agent::worker::AgentError> for SimError {
    fn from(e: wallet_host::agent::worker::AgentError) -> Self {
        SimError::Internal(e.to_string())
    }
}

impl From<c2ssi_server::ApiError> for SimError {
    fn from(e: c2ssi_server::ApiError) -> Self {
        SimError::Internal(e.message().to_string())
    }
}

/// The simulation's result type.
pub type Result<T, E = SimError> = std::result::Result<T, E>;
