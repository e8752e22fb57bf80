//! The aggregator's keys: Ed25519 to sign batch results and access reports,
//! age X25519 to open updates. They live in the aggregator's own data
//! directory, readable by its owner only, and nowhere else.

use std::path::Path;

use age::secrecy::ExposeSecret;
use c2ssi_protocol::{PublicKey, Signer, SigningKey};

/// Why the keys cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("the aggregator's keys in {dir}: {message}")]
pub struct KeyError {
    dir: String,
    message: String,
}

/// The aggregator's keys.
pub struct AggregatorKeys {
    pub(crate) signing: SigningKey,
    pub(crate) identity: age::x25519::Identity,
}

impl std::fmt::Debug for AggregatorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorKeys")
            .field("signing", &self.signing.public_key())
            .finish_non_exhaustive()
    }
}

impl AggregatorKeys {
    /// New keys.
    pub fn generate() -> Result<AggregatorKeys, c2ssi_protocol::ProtocolError> {
        Ok(AggregatorKeys {
            signing: SigningKey::generate()?,
            identity: age::x25519::Identity::generate(),
        })
    }

    /// Keys for a simulation: the signing key derived from `seed`, so that
    /// a run repeats; the sealing identity is fresh (what it opens does not
    /// depend on it). Never for a deployed aggregator.
    pub fn seeded_for_simulation(
        seed: u64,
    ) -> Result<AggregatorKeys, c2ssi_protocol::ProtocolError> {
        Ok(AggregatorKeys {
            signing: SigningKey::from_seed_for_simulation(seed, "aggregator")?,
            identity: age::x25519::Identity::generate(),
        })
    }

    /// The keys in `dir` (`signing.pkcs8`, `identity.txt`), created on first
    /// use with owner-only permissions.
    pub fn load_or_create(dir: &Path) -> Result<AggregatorKeys, KeyError> {
        let fail = |message: String| KeyError {
            dir: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let signing_path = dir.join("signing.pkcs8");
        let identity_path = dir.join("identity.txt");
        if signing_path.exists() && identity_path.exists() {
            let signing = SigningKey::read_from(&signing_path).map_err(|e| fail(e.to_string()))?;
            let text = std::fs::read_to_string(&identity_path).map_err(|e| fail(e.to_string()))?;
            let identity = text
                .trim()
                .parse()
                .map_err(|e| fail(format!("identity.txt is not an age identity: {e}")))?;
            return Ok(AggregatorKeys { signing, identity });
        }
        let keys = AggregatorKeys::generate().map_err(|e| fail(e.to_string()))?;
        keys.signing
            .write_to(&signing_path)
            .map_err(|e| fail(e.to_string()))?;
        c2ssi_protocol::write_secret(
            &identity_path,
            keys.identity.to_string().expose_secret().as_bytes(),
        )
        .map_err(|e| fail(e.to_string()))?;
        Ok(keys)
    }

    /// The key batch results are signed with.
    pub fn public_key(&self) -> PublicKey {
        self.signing.public_key()
    }

    /// The recipient updates are sealed to.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }
}
