//! The wallet's secret keys: an age X25519 identity that encrypts its files,
//! and an Ed25519 signing key (ring) that is the wallet's identity towards
//! collectives. Both live, serialized, only inside the encrypted key file.

use age::secrecy::ExposeSecret;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::WalletError;

/// The key file's plaintext.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: u32,
    age_identity: String,
    signing_key_pkcs8: String,
}

/// The unlocked keys.
pub struct WalletKeys {
    pub(crate) age_identity: age::x25519::Identity,
    pub(crate) signing: Ed25519KeyPair,
}

impl std::fmt::Debug for WalletKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletKeys")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl WalletKeys {
    /// New random keys.
    pub(crate) fn generate() -> Result<(WalletKeys, Zeroizing<Vec<u8>>), WalletError> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| WalletError::Keys {
            reason: "the system random generator failed".into(),
        })?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        WalletKeys::assemble(pkcs8, age::x25519::Identity::generate())
    }

    /// Keys derived from a simulation's seed and the wallet's label, so that
    /// a simulation repeats bit for bit. Never for a real wallet: whoever
    /// knows the seed holds the keys.
    pub(crate) fn from_seed_for_simulation(
        seed: u64,
        label: &str,
    ) -> Result<(WalletKeys, Zeroizing<Vec<u8>>), WalletError> {
        let signing_seed = Zeroizing::new(c2ssi_protocol::derive_seed(
            seed,
            &format!("{label}/ed25519"),
        ));
        let pkcs8 = Zeroizing::new(c2ssi_protocol::ed25519_pkcs8_from_seed(&signing_seed));
        let age_seed = Zeroizing::new(c2ssi_protocol::derive_seed(seed, &format!("{label}/age")));
        // age reads an identity only from its Bech32 text; any 32 bytes are
        // an X25519 secret key.
        let hrp = bech32::Hrp::parse("age-secret-key-").map_err(|e| WalletError::Keys {
            reason: e.to_string(),
        })?;
        let text = Zeroizing::new(
            bech32::encode::<bech32::Bech32>(hrp, age_seed.as_slice())
                .map_err(|e| WalletError::Keys {
                    reason: e.to_string(),
                })?
                .to_uppercase(),
        );
        let age_identity: age::x25519::Identity = text.parse().map_err(|e| WalletError::Keys {
            reason: format!("the derived age identity does not parse: {e}"),
        })?;
        WalletKeys::assemble(pkcs8, age_identity)
    }

    fn assemble(
        pkcs8: Zeroizing<Vec<u8>>,
        age_identity: age::x25519::Identity,
    ) -> Result<(WalletKeys, Zeroizing<Vec<u8>>), WalletError> {
        let file = Zeroizing::new(KeyFile {
            format: 1,
            age_identity: age_identity.to_string().expose_secret().to_string(),
            signing_key_pkcs8: hex::encode(pkcs8.as_slice()),
        });
        let plaintext =
            Zeroizing::new(serde_json::to_vec(&*file).map_err(|e| WalletError::Keys {
                reason: e.to_string(),
            })?);
        let signing = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| WalletError::Keys {
            reason: format!("the signing key does not parse: {e}"),
        })?;
        Ok((
            WalletKeys {
                age_identity,
                signing,
            },
            plaintext,
        ))
    }

    /// Keys from the key file's plaintext.
    pub(crate) fn from_plaintext(plaintext: &[u8]) -> Result<WalletKeys, WalletError> {
        let file: KeyFile = serde_json::from_slice(plaintext).map_err(|e| WalletError::Keys {
            reason: format!("the key file does not parse: {e}"),
        })?;
        let file = Zeroizing::new(file);
        if file.format != 1 {
            return Err(WalletError::Keys {
                reason: format!("unknown key file format {}", file.format),
            });
        }
        let age_identity: age::x25519::Identity =
            file.age_identity.parse().map_err(|e| WalletError::Keys {
                reason: format!("the age identity does not parse: {e}"),
            })?;
        let signing = parse_signing(&file.signing_key_pkcs8)?;
        Ok(WalletKeys {
            age_identity,
            signing,
        })
    }

    /// The Ed25519 public key: the wallet's id.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.signing.public_key().as_ref());
        out
    }

    /// The age recipient the wallet's files are encrypted to.
    pub fn recipient(&self) -> age::x25519::Recipient {
        self.age_identity.to_public()
    }

    /// Signs `message` with the wallet's Ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.signing.sign(message).as_ref());
        out
    }
}

impl zeroize::Zeroize for KeyFile {
    fn zeroize(&mut self) {
        self.age_identity.zeroize();
        self.signing_key_pkcs8.zeroize();
    }
}

fn parse_signing(pkcs8_hex: &str) -> Result<Ed25519KeyPair, WalletError> {
    let pkcs8 = Zeroizing::new(hex::decode(pkcs8_hex).map_err(|e| WalletError::Keys {
        reason: format!("the signing key is not hex: {e}"),
    })?);
    Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| WalletError::Keys {
        reason: format!("the signing key is not a valid Ed25519 key: {e}"),
    })
}
