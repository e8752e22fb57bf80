//! Revocation with a Bitstring Status List (W3C Bitstring Status List v1.0):
//! the issuer signs a credential whose subject holds a GZIP-compressed
//! bitstring, multibase base64url; the bit at a credential's
//! `statusListIndex` set means revoked.

use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::credential::{
    REVOCATION, VC_CONTEXT, VC_TYPE, format_time, issuer_of, parse_time, types_of, verify_issued,
};
use crate::did::Did;
use crate::error::CredentialError;
use crate::proof;

/// The status list credential's type.
pub const LIST_CREDENTIAL_TYPE: &str = "BitstringStatusListCredential";
/// Its subject's type.
pub(crate) const LIST_TYPE: &str = "BitstringStatusList";
/// The smallest list, in bits (the specification's minimum, for herd privacy).
pub const MIN_BITS: u64 = 131_072;
/// The largest list accepted, in bits once decompressed.
pub const MAX_BITS: u64 = 1 << 24;
/// The largest status list credential accepted, in bytes of JSON.
pub(crate) const MAX_LIST_BYTES: usize = 1 << 20;

fn malformed(why: impl Into<String>) -> CredentialError {
    CredentialError::Malformed(why.into())
}

/// A verified status list.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusList {
    id: String,
    issuer: Did,
    valid_from_ms: u64,
    bits: Vec<u8>,
    json: Value,
}

impl StatusList {
    /// Checks a status list credential: its shape, its issuer's proof, and
    /// its bitstring (decompressed under a bound).
    pub fn verify(json: Value) -> Result<StatusList, CredentialError> {
        let size = serde_json::to_vec(&json)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_LIST_BYTES {
            return Err(CredentialError::TooLarge {
                size,
                limit: MAX_LIST_BYTES,
            });
        }
        // Credentials are bounded smaller; the list's shape is checked here.
        let Value::Object(doc) = &json else {
            return Err(malformed("not a JSON object"));
        };
        if !types_of(doc)?.iter().any(|t| t == LIST_CREDENTIAL_TYPE) {
            return Err(malformed(format!(
                "'type' does not include {LIST_CREDENTIAL_TYPE}"
            )));
        }
        let issuer = issuer_of(doc)?;
        let signer = verify_list_proof(&json)?;
        if signer != issuer {
            return Err(CredentialError::BadProof(format!(
                "signed by {signer}, not by the issuer {issuer}"
            )));
        }
        let id = doc
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("the status list has no 'id'"))?
            .to_string();
        let valid_from_ms = match doc.get("validFrom").and_then(Value::as_str) {
            Some(text) => parse_time("validFrom", text)?,
            None => return Err(malformed("the status list has no 'validFrom'")),
        };
        let subject = doc
            .get("credentialSubject")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("the status list has no subject"))?;
        if subject.get("type").and_then(Value::as_str) != Some(LIST_TYPE) {
            return Err(malformed(format!("the subject is not a {LIST_TYPE}")));
        }
        if subject.get("statusPurpose").and_then(Value::as_str) != Some(REVOCATION) {
            return Err(malformed("the status purpose is not revocation"));
        }
        let encoded = subject
            .get("encodedList")
            .and_then(Value::as_str)
            .and_then(|e| e.strip_prefix('u'))
            .ok_or_else(|| malformed("'encodedList' is not multibase base64url"))?;
        let compressed = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| malformed("'encodedList' is not base64url"))?;
        let mut bits = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .take(MAX_BITS / 8 + 1)
            .read_to_end(&mut bits)
            .map_err(|_| malformed("'encodedList' is not GZIP"))?;
        if bits.len() as u64 > MAX_BITS / 8 {
            return Err(malformed(format!("the list has more than {MAX_BITS} bits")));
        }
        Ok(StatusList {
            id,
            issuer,
            valid_from_ms,
            bits,
            json,
        })
    }

    /// Whether the bit at `index` is set (revoked). An index past the end
    /// reads as revoked: a list that does not cover a credential cannot vouch
    /// for it.
    pub fn is_revoked(&self, index: u64) -> bool {
        let Ok(byte) = usize::try_from(index / 8) else {
            return true;
        };
        match self.bits.get(byte) {
            Some(b) => b & (0x80 >> (index % 8)) != 0,
            None => true,
        }
    }

    /// The list's id (what credentials name as `statusListCredential`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its issuer.
    pub fn issuer(&self) -> &Did {
        &self.issuer
    }

    /// When it was made: a newer list replaces an older one.
    pub fn valid_from_ms(&self) -> u64 {
        self.valid_from_ms
    }

    /// The JSON as signed.
    pub fn json(&self) -> &Value {
        &self.json
    }
}

/// The status list's proof, checked like a credential's (same cryptosuite),
/// without a credential's size bound.
fn verify_list_proof(json: &Value) -> Result<Did, CredentialError> {
    match verify_issued(json) {
        Err(CredentialError::TooLarge { .. }) => proof::verify(json),
        other => other.map(|(_, did)| did),
    }
}

/// Builds and signs a status list `id` of `bits` bits (at least
/// [`MIN_BITS`]) with the bits at `revoked` set, valid from `now_ms`.
pub fn issue_list(
    id: &str,
    issuer: &Did,
    bits: u64,
    revoked: &[u64],
    now_ms: u64,
    sign: &dyn Fn(&[u8]) -> [u8; 64],
) -> Result<Value, CredentialError> {
    let bits = bits.clamp(MIN_BITS, MAX_BITS);
    let mut bitstring = vec![0u8; usize::try_from(bits.div_ceil(8)).unwrap_or(0)];
    for &index in revoked {
        let byte = usize::try_from(index / 8).unwrap_or(usize::MAX);
        let Some(b) = bitstring.get_mut(byte) else {
            return Err(malformed(format!(
                "index {index} is past the list's {bits} bits"
            )));
        };
        *b |= 0x80 >> (index % 8);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bitstring)
        .map_err(|e| malformed(format!("compressing: {e}")))?;
    let compressed = gz
        .finish()
        .map_err(|e| malformed(format!("compressing: {e}")))?;
    let from = format_time(now_ms);
    let mut doc = Map::new();
    doc.insert("@context".into(), Value::Array(vec![VC_CONTEXT.into()]));
    doc.insert("id".into(), id.into());
    doc.insert(
        "type".into(),
        Value::Array(vec![VC_TYPE.into(), LIST_CREDENTIAL_TYPE.into()]),
    );
    doc.insert("issuer".into(), issuer.as_str().into());
    doc.insert("validFrom".into(), from.clone().into());
    doc.insert(
        "credentialSubject".into(),
        serde_json::json!({
            "id": format!("{id}#list"),
            "type": LIST_TYPE,
            "statusPurpose": REVOCATION,
            "encodedList": format!("u{}", URL_SAFE_NO_PAD.encode(compressed)),
        }),
    );
    proof::sign(doc, issuer, &from, sign)
}
