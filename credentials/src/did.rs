//! `did:key` identifiers of Ed25519 keys: `did:key:z` and the base58btc of
//! the multicodec prefix `0xed 0x01` and the 32-byte key.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::CredentialError;

const PREFIX: &str = "did:key:z";
const ED25519_CODEC: [u8; 2] = [0xed, 0x01];
/// The longest DID accepted: an Ed25519 did:key is 56 characters.
const MAX_LEN: usize = 128;

/// The `did:key` of an Ed25519 public key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Did {
    text: String,
    key: [u8; 32],
}

impl Did {
    /// The DID of `key`.
    pub fn from_ed25519(key: [u8; 32]) -> Did {
        let mut bytes = Vec::with_capacity(34);
        bytes.extend_from_slice(&ED25519_CODEC);
        bytes.extend_from_slice(&key);
        Did {
            text: format!("{PREFIX}{}", bs58::encode(bytes).into_string()),
            key,
        }
    }

    /// Parses a `did:key` and checks that it names an Ed25519 key.
    pub fn parse(text: &str) -> Result<Did, CredentialError> {
        let bad = |why: &str| CredentialError::BadDid(format!("{}: {why}", shorten(text)));
        if text.len() > MAX_LEN {
            return Err(bad("too long"));
        }
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("does not start with did:key:z"))?;
        let bytes = bs58::decode(encoded)
            .into_vec()
            .map_err(|_| bad("not base58btc"))?;
        if bytes.len() != 34 || bytes[..2] != ED25519_CODEC {
            return Err(bad(
                "not an Ed25519 public key (multicodec 0xed01, 32 bytes)",
            ));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[2..]);
        Ok(Did {
            text: text.to_string(),
            key,
        })
    }

    /// The DID as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The Ed25519 public key it names.
    pub fn ed25519_key(&self) -> [u8; 32] {
        self.key
    }

    /// Its one verification method: `did:key:z...#z...`.
    pub fn verification_method(&self) -> String {
        let fragment = &self.text["did:key:".len()..];
        format!("{}#{fragment}", self.text)
    }

    /// Checks an Ed25519 `signature` over `message` by this DID's key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, self.key)
            .verify(message, signature)
            .is_ok()
    }
}

/// At most 80 characters of untrusted text, for an error message.
pub(crate) fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(80).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({})", self.text)
    }
}

impl Serialize for Did {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Did {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Did::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_round_trips() {
        // The Ed25519 example of the did:key method specification.
        let text = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
        let did = Did::parse(text).expect("valid");
        assert_eq!(Did::from_ed25519(did.ed25519_key()).as_str(), text);
        assert_eq!(
            did.verification_method(),
            format!("{text}#z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK")
        );
    }

    #[test]
    fn other_keys_and_garbage_are_refused() {
        for bad in [
            "",
            "did:web:example.com",
            "did:key:zDnaeoWd5aKSeZ8QAimcVrLGEU2SnWCrY4wQneAAk5NhQyn8U",
            "did:key:z0OIl",
            "did:key:z6Mk",
        ] {
            assert!(Did::parse(bad).is_err(), "{bad}");
        }
    }
}
