//! What can be wrong with a message.

use crate::signing::Purpose;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The signature does not verify (tampered, or signed for another purpose).
    #[error("the {purpose:?} signature does not verify")]
    BadSignature {
        /// The purpose it was checked for.
        purpose: Purpose,
    },
    /// Signed by someone other than expected.
    #[error("signed by {found}, expected {expected}")]
    WrongSigner {
        /// The expected key (short form).
        expected: String,
        /// The signer (short form).
        found: String,
    },
    /// The header names another purpose.
    #[error("a {found:?} message where a {expected:?} was expected")]
    WrongPurpose {
        /// What was expected.
        expected: Purpose,
        /// What it says.
        found: Purpose,
    },
    /// Past its expiry.
    #[error("the {purpose:?} expired at {expired_at_ms} ms")]
    Expired {
        /// Its purpose.
        purpose: Purpose,
        /// When it expired.
        expired_at_ms: u64,
    },
    /// Not well-formed.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A cryptographic operation failed.
    #[error("cryptography failed: {0}")]
    Crypto(String),
}
