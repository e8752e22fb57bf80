//! The update itself, sealed to the aggregator with age (X25519): only the
//! aggregator can read it, and the wallet's signature on the envelope covers
//! the ciphertext, so nobody can swap it.
//!
//! The plaintext is a small JSON header followed by the delta as
//! little-endian `f32`s, so a large model costs no text formatting.

use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use c2ssi_guest_sdk::Metric;
use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

const MAGIC: &[u8; 4] = b"C2U1";

/// How the task went in the wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The algorithm trained; the delta is the update.
    Trained,
    /// The algorithm failed on the wallet's data; there is no delta, and
    /// not even the kind of failure leaves the wallet. The access is still
    /// paid: the data was there.
    Failed,
}

/// What a wallet's update says, sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatePayload {
    /// How it went.
    pub outcome: Outcome,
    /// The change to every model parameter (empty when failed), clipped
    /// by the wallet to the manifest's norm.
    pub delta: Vec<f32>,
    /// The metrics the manifest declares, clamped by the wallet to their
    /// ranges; no other metric leaves the wallet.
    pub metrics: Vec<Metric>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
struct PayloadHeader {
    #[serde(flatten)]
    outcome: Outcome,
    metrics: Vec<Metric>,
    delta_len: u32,
}

impl UpdatePayload {
    /// The plaintext bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ProtocolError> {
        let header = serde_json::to_vec(&PayloadHeader {
            outcome: self.outcome.clone(),
            metrics: self.metrics.clone(),
            delta_len: u32::try_from(self.delta.len())
                .map_err(|_| ProtocolError::Malformed("the delta is too long".into()))?,
        })
        .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        let mut out = Vec::with_capacity(8 + header.len() + 4 * self.delta.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for v in &self.delta {
            out.extend_from_slice(&v.to_le_bytes());
        }
        Ok(out)
    }

    /// Parses plaintext bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<UpdatePayload, ProtocolError> {
        let bad = |what: &str| ProtocolError::Malformed(format!("update payload: {what}"));
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(bad("wrong magic"));
        }
        let header_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let header_end = 8usize
            .checked_add(header_len)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| bad("truncated header"))?;
        let header: PayloadHeader = serde_json::from_slice(&bytes[8..header_end])
            .map_err(|e| bad(&format!("header does not parse: {e}")))?;
        let body = &bytes[header_end..];
        if body.len() != header.delta_len as usize * 4 {
            return Err(bad("delta length does not match"));
        }
        let delta = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(UpdatePayload {
            outcome: header.outcome,
            delta,
            metrics: header.metrics,
        })
    }

    /// Seals to the aggregator's recipient: base64 of the age ciphertext.
    pub fn seal(&self, recipient: &age::x25519::Recipient) -> Result<String, ProtocolError> {
        let plaintext = self.to_bytes()?;
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .map_err(|e| ProtocolError::Crypto(e.to_string()))?;
        let mut out = Vec::with_capacity(plaintext.len() + 200);
        let mut writer = encryptor
            .wrap_output(&mut out)
            .map_err(|e| ProtocolError::Crypto(e.to_string()))?;
        writer
            .write_all(&plaintext)
            .and_then(|()| writer.finish().map(|_| ()))
            .map_err(|e| ProtocolError::Crypto(e.to_string()))?;
        Ok(BASE64.encode(out))
    }

    /// Opens a sealed payload with the aggregator's identity.
    pub fn unseal(
        sealed: &str,
        identity: &age::x25519::Identity,
        max_bytes: usize,
    ) -> Result<UpdatePayload, ProtocolError> {
        if sealed.len() > max_bytes.saturating_mul(4) / 3 + 1024 {
            return Err(ProtocolError::Malformed(format!(
                "sealed update of {} bytes exceeds the limit",
                sealed.len()
            )));
        }
        let ciphertext = BASE64
            .decode(sealed)
            .map_err(|e| ProtocolError::Malformed(format!("sealed update is not base64: {e}")))?;
        let decryptor = age::Decryptor::new_buffered(&ciphertext[..])
            .map_err(|e| ProtocolError::Crypto(format!("not an age file: {e}")))?;
        let mut reader = decryptor
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .map_err(|e| ProtocolError::Crypto(format!("cannot open the sealed update: {e}")))?;
        let mut plaintext = Vec::new();
        reader
            .by_ref()
            .take(u64::try_from(max_bytes).map_or(u64::MAX, |m| m.saturating_add(1)))
            .read_to_end(&mut plaintext)
            .map_err(|e| {
                ProtocolError::Crypto(format!("the sealed update does not authenticate: {e}"))
            })?;
        if plaintext.len() > max_bytes {
            return Err(ProtocolError::Malformed("sealed update too large".into()));
        }
        UpdatePayload::from_bytes(&plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_updates_open_only_with_the_aggregator_identity() {
        let payload = UpdatePayload {
            outcome: Outcome::Trained,
            delta: vec![1.5, -0.25, f32::MIN_POSITIVE],
            metrics: vec![Metric::new("mse", 2.0)],
        };
        let aggregator = age::x25519::Identity::generate();
        let sealed = payload.seal(&aggregator.to_public()).unwrap();
        assert_eq!(
            UpdatePayload::unseal(&sealed, &aggregator, 1 << 20).unwrap(),
            payload
        );
        let other = age::x25519::Identity::generate();
        assert!(UpdatePayload::unseal(&sealed, &other, 1 << 20).is_err());
        let mut tampered = BASE64.decode(&sealed).unwrap();
        let last = tampered.len() - 3;
        tampered[last] ^= 1;
        assert!(UpdatePayload::unseal(&BASE64.encode(tampered), &aggregator, 1 << 20).is_err());
    }

    /// Found by fuzzing: a limit of `usize::MAX` (no limit) overflowed
    /// `max_bytes + 1` and panicked instead of opening the update.
    #[test]
    fn no_limit_on_the_size_opens_the_update() {
        let payload = UpdatePayload {
            outcome: Outcome::Failed,
            delta: Vec::new(),
            metrics: Vec::new(),
        };
        let aggregator = age::x25519::Identity::generate();
        let sealed = payload.seal(&aggregator.to_public()).unwrap();
        assert_eq!(
            UpdatePayload::unseal(&sealed, &aggregator, usize::MAX).unwrap(),
            payload
        );
    }
}

/// Property-based fuzzing of the update payload decoder and of sealed
/// updates: arbitrary input, and mutations of a real payload and of a real
/// age ciphertext.
#[cfg(test)]
mod fuzz {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;
    use c2ssi_fuzzing::{config, json_mutations, mutate, mutate_json, mutations};

    /// The aggregator's identity, a real payload, its plaintext and its
    /// sealed form.
    static SEALED: LazyLock<(age::x25519::Identity, UpdatePayload, Vec<u8>, String)> =
        LazyLock::new(|| {
            let identity = age::x25519::Identity::generate();
            let payload = UpdatePayload {
                outcome: Outcome::Trained,
                delta: vec![1.5, -0.25, f32::MIN_POSITIVE, 0.0, 7.0],
                metrics: vec![Metric::new("mse", 2.0), Metric::new("r2", -0.5)],
            };
            let plaintext = payload.to_bytes().expect("the payload encodes");
            let sealed = payload
                .seal(&identity.to_public())
                .expect("the payload seals");
            (identity, payload, plaintext, sealed)
        });

    /// Whether two payloads are the same, bit for bit (the decoder lets a
    /// NaN through, for the aggregator to refuse, and NaN != NaN).
    fn same(a: &UpdatePayload, b: &UpdatePayload) -> bool {
        let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        a.outcome == b.outcome && a.metrics == b.metrics && bits(&a.delta) == bits(&b.delta)
    }

    /// Whatever decodes re-encodes to something that decodes the same.
    fn round_trips(payload: &UpdatePayload) -> Result<(), TestCaseError> {
        let again =
            UpdatePayload::from_bytes(&payload.to_bytes().expect("a decoded payload encodes"))
                .expect("an encoded payload decodes");
        prop_assert!(same(&again, payload), "{again:?} {payload:?}");
        Ok(())
    }

    fn decodes_or_is_malformed(bytes: &[u8]) -> Result<(), TestCaseError> {
        match UpdatePayload::from_bytes(bytes) {
            Ok(payload) => round_trips(&payload)?,
            Err(e) => prop_assert!(matches!(e, ProtocolError::Malformed(_)), "{e:?}"),
        }
        Ok(())
    }

    /// A limit on the plaintext, small or large (up to no limit at all).
    fn max_bytes() -> impl Strategy<Value = usize> {
        prop_oneof![
            0usize..4096,
            Just(1 << 20),
            any::<usize>(),
            Just(usize::MAX)
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_bytes_are_a_payload_or_malformed(
            tail in proptest::collection::vec(any::<u8>(), 0..300),
            magic in any::<bool>(),
            header_len in any::<u32>(),
        ) {
            decodes_or_is_malformed(&tail)?;
            // Past the magic and the length, into the header parser.
            let mut bytes = if magic { MAGIC.to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&header_len.to_le_bytes());
            bytes.extend_from_slice(&tail);
            decodes_or_is_malformed(&bytes)?;
        }

        #[test]
        fn a_mutated_payload_decodes_consistently_or_is_malformed(mutations in mutations()) {
            decodes_or_is_malformed(&mutate(&SEALED.2, &mutations))?;
        }

        /// The JSON header mutated field by field, with a consistent length
        /// prefix, so that the decoder's checks after parsing are reached.
        #[test]
        fn a_mutated_payload_header_decodes_consistently_or_is_malformed(
            json in json_mutations(),
            delta_bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let plaintext = &SEALED.2;
            let header_len = u32::from_le_bytes([plaintext[4], plaintext[5], plaintext[6], plaintext[7]]) as usize;
            let header: serde_json::Value = serde_json::from_slice(&plaintext[8..8 + header_len])
                .expect("the header is JSON");
            let header = mutate_json(&header, &json).to_string();
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&delta_bytes);
            decodes_or_is_malformed(&bytes)?;
        }

        #[test]
        fn arbitrary_text_is_no_sealed_update(text in ".{0,400}", max_bytes in max_bytes()) {
            let (identity, ..) = &*SEALED;
            let result = UpdatePayload::unseal(&text, identity, max_bytes);
            prop_assert!(
                matches!(result, Err(ProtocolError::Malformed(_) | ProtocolError::Crypto(_))),
                "{result:?}"
            );
        }

        /// age authenticates the ciphertext: a mutated one opens to the
        /// original payload or not at all.
        #[test]
        fn a_mutated_sealed_update_opens_unchanged_or_not_at_all(
            mutations in mutations(),
            in_ciphertext in any::<bool>(),
            max_bytes in max_bytes(),
        ) {
            let (identity, payload, _, sealed) = &*SEALED;
            let text = if in_ciphertext {
                let ciphertext = BASE64.decode(sealed).expect("sealed updates are base64");
                BASE64.encode(mutate(&ciphertext, &mutations))
            } else {
                String::from_utf8_lossy(&mutate(sealed.as_bytes(), &mutations)).into_owned()
            };
            match UpdatePayload::unseal(&text, identity, max_bytes) {
                Ok(opened) => prop_assert_eq!(&opened, payload),
                Err(e) => prop_assert!(
                    matches!(e, ProtocolError::Malformed(_) | ProtocolError::Crypto(_)),
                    "{e:?}"
                ),
            }
        }

        /// Any plaintext a wallet seals (a dishonest wallet included)
        /// opens to what the decoder makes of it, within the limit.
        #[test]
        fn any_sealed_plaintext_opens_as_the_decoder_reads_it(
            mutations in mutations(),
            max_bytes in max_bytes(),
        ) {
            let (identity, ..) = &*SEALED;
            let plaintext = mutate(&SEALED.2, &mutations);
            let encryptor = age::Encryptor::with_recipients(std::iter::once(
                &identity.to_public() as &dyn age::Recipient,
            ))
            .expect("one recipient");
            let mut ciphertext = Vec::new();
            let mut writer = encryptor.wrap_output(&mut ciphertext).expect("in memory");
            writer.write_all(&plaintext).expect("in memory");
            writer.finish().expect("in memory");
            let result = UpdatePayload::unseal(&BASE64.encode(&ciphertext), identity, max_bytes);
            if plaintext.len() <= max_bytes
                && BASE64.encode(&ciphertext).len() <= max_bytes.saturating_mul(4) / 3 + 1024
            {
                match (result, UpdatePayload::from_bytes(&plaintext)) {
                    (Ok(opened), Ok(decoded)) => prop_assert!(same(&opened, &decoded)),
                    (opened, decoded) => prop_assert_eq!(opened, decoded),
                }
            } else {
                prop_assert!(matches!(result, Err(ProtocolError::Malformed(_))), "{result:?}");
            }
        }
    }
}
