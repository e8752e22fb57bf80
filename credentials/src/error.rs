//! What can be wrong with a DID, a credential or a status list, typed.

/// A DID, credential or status list refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Not a `did:key` of an Ed25519 key.
    #[error("not an Ed25519 did:key: {0}")]
    BadDid(String),
    /// The JSON does not have the shape the W3C data model requires.
    #[error("not a verifiable credential: {0}")]
    Malformed(String),
    /// Larger than a credential may be.
    #[error("the credential is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The proof is missing, of another kind, or does not verify.
    #[error("the proof does not verify: {0}")]
    BadProof(String),
    /// Not valid yet.
    #[error("the credential is not valid before {valid_from}")]
    NotYetValid {
        /// Its `validFrom`.
        valid_from: String,
    },
    /// Expired.
    #[error("the credential expired at {valid_until}")]
    Expired {
        /// Its `validUntil`.
        valid_until: String,
    },
    /// Revoked by its issuer's status list.
    #[error("the credential was revoked by its issuer")]
    Revoked,
}
