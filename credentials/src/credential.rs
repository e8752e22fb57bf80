//! Verifiable credentials (W3C VC Data Model 2.0) as this system uses them:
//! an issuer's `did:key` asserts, with an `eddsa-jcs-2022` proof, that a
//! subject (a wallet's `did:key`) has a type (say `UniquePersonCredential`),
//! between `validFrom` and `validUntil`, revocable through a Bitstring Status
//! List entry. The JSON is kept as issued: the proof covers all of it.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::did::{Did, shorten};
use crate::error::CredentialError;
use crate::proof;

/// The VC 2.0 base context, first in every credential's `@context`.
pub const VC_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";
/// The base type every credential has.
pub const VC_TYPE: &str = "VerifiableCredential";
/// The largest credential accepted, in bytes of JSON.
pub const MAX_CREDENTIAL_BYTES: usize = 16 << 10;
/// The status entry type.
pub(crate) const STATUS_ENTRY_TYPE: &str = "BitstringStatusListEntry";
/// The one status purpose used.
pub const REVOCATION: &str = "revocation";

/// Where a credential's revocation bit is: the status list credential's id
/// and the bit's index in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// The id of the status list credential.
    pub list: String,
    /// The bit's index.
    pub index: u64,
}

/// A verified credential: the JSON as issued, and what was read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    json: Value,
    id: String,
    types: Vec<String>,
    issuer: Did,
    subject: Did,
    valid_from: Option<(String, u64)>,
    valid_until: Option<(String, u64)>,
    status: Option<StatusEntry>,
}

fn malformed(why: impl Into<String>) -> CredentialError {
    CredentialError::Malformed(why.into())
}

/// Milliseconds since the Unix epoch of an XML Schema date-time.
pub fn parse_time(field: &str, text: &str) -> Result<u64, CredentialError> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        malformed(format!(
            "{field} '{}' is not a date-time: {e}",
            shorten(text)
        ))
    })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| malformed(format!("{field} is before 1970")))
}

/// The date-time (UTC, to the millisecond) of `ms` since the Unix epoch.
pub fn format_time(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

fn string_field<'a>(doc: &'a Map<String, Value>, name: &str) -> Result<&'a str, CredentialError> {
    doc.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("'{name}' is missing or not a string")))
}

fn optional_time(
    doc: &Map<String, Value>,
    name: &str,
) -> Result<Option<(String, u64)>, CredentialError> {
    match doc.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some((text.clone(), parse_time(name, text)?))),
        Some(_) => Err(malformed(format!("'{name}' is not a string"))),
    }
}

/// The `type` of a document: a string or a list of strings.
pub(crate) fn types_of(doc: &Map<String, Value>) -> Result<Vec<String>, CredentialError> {
    match doc.get("type") {
        Some(Value::String(t)) => Ok(vec![t.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| malformed("'type' holds something other than strings"))
            })
            .collect(),
        _ => Err(malformed("'type' is missing")),
    }
}

/// The issuer's DID: `issuer` as a string or as an object with an `id`.
pub(crate) fn issuer_of(doc: &Map<String, Value>) -> Result<Did, CredentialError> {
    let text = match doc.get("issuer") {
        Some(Value::String(text)) => text.as_str(),
        Some(Value::Object(o)) => o
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("the issuer object has no 'id'"))?,
        _ => return Err(malformed("'issuer' is missing")),
    };
    Did::parse(text)
}

/// Checks the shape every credential must have (context, type, issuer,
/// size), verifies the proof, and checks that the issuer made it.
pub(crate) fn verify_issued(json: &Value) -> Result<(Map<String, Value>, Did), CredentialError> {
    let size = serde_json::to_vec(json)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_CREDENTIAL_BYTES {
        return Err(CredentialError::TooLarge {
            size,
            limit: MAX_CREDENTIAL_BYTES,
        });
    }
    let Value::Object(doc) = json else {
        return Err(malformed("not a JSON object"));
    };
    match doc
        .get("@context")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    {
        Some(Value::String(first)) if first == VC_CONTEXT => {}
        _ => {
            return Err(malformed(format!(
                "'@context' does not start with {VC_CONTEXT}"
            )));
        }
    }
    if !types_of(doc)?.iter().any(|t| t == VC_TYPE) {
        return Err(malformed(format!("'type' does not include {VC_TYPE}")));
    }
    let issuer = issuer_of(doc)?;
    let signer = proof::verify(json)?;
    if signer != issuer {
        return Err(CredentialError::BadProof(format!(
            "signed by {signer}, not by the issuer {issuer}"
        )));
    }
    Ok((doc.clone(), issuer))
}

impl Credential {
    /// Checks a credential's shape and its issuer's proof. Time and
    /// revocation are checked apart ([`Credential::check_time`], the status
    /// list).
    pub fn verify(json: Value) -> Result<Credential, CredentialError> {
        let (doc, issuer) = verify_issued(&json)?;
        let id = string_field(&doc, "id")?.to_string();
        let types = types_of(&doc)?;
        let subject = match doc.get("credentialSubject") {
            Some(Value::Object(s)) => Did::parse(string_field(s, "id")?)?,
            Some(Value::Array(_)) => {
                return Err(malformed(
                    "a credential about several subjects is not accepted",
                ));
            }
            _ => return Err(malformed("'credentialSubject' is missing")),
        };
        let status = match doc.get("credentialStatus") {
            None => None,
            Some(Value::Object(s)) => {
                if string_field(s, "type")? != STATUS_ENTRY_TYPE {
                    return Err(malformed(format!(
                        "the status is not a {STATUS_ENTRY_TYPE}"
                    )));
                }
                if string_field(s, "statusPurpose")? != REVOCATION {
                    return Err(malformed("the status purpose is not revocation"));
                }
                let index = string_field(s, "statusListIndex")?
                    .parse::<u64>()
                    .map_err(|_| malformed("'statusListIndex' is not a whole number"))?;
                Some(StatusEntry {
                    list: string_field(s, "statusListCredential")?.to_string(),
                    index,
                })
            }
            Some(_) => return Err(malformed("'credentialStatus' is not one object")),
        };
        Ok(Credential {
            id,
            types,
            issuer,
            subject,
            valid_from: optional_time(&doc, "validFrom")?,
            valid_until: optional_time(&doc, "validUntil")?,
            status,
            json,
        })
    }

    /// Checks that it is valid at `now_ms`.
    pub fn check_time(&self, now_ms: u64) -> Result<(), CredentialError> {
        if let Some((text, from)) = &self.valid_from
            && now_ms < *from
        {
            return Err(CredentialError::NotYetValid {
                valid_from: text.clone(),
            });
        }
        if let Some((text, until)) = &self.valid_until
            && now_ms >= *until
        {
            return Err(CredentialError::Expired {
                valid_until: text.clone(),
            });
        }
        Ok(())
    }

    /// The JSON as issued.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its types, `VerifiableCredential` included.
    pub fn types(&self) -> &[String] {
        &self.types
    }

    /// Whether it has type `t`.
    pub fn has_type(&self, t: &str) -> bool {
        self.types.iter().any(|x| x == t)
    }

    /// Who issued it.
    pub fn issuer(&self) -> &Did {
        &self.issuer
    }

    /// Whom it is about: a wallet's DID.
    pub fn subject(&self) -> &Did {
        &self.subject
    }

    /// When it stops being valid, in ms since the epoch, if ever.
    pub fn valid_until_ms(&self) -> Option<u64> {
        self.valid_until.as_ref().map(|(_, ms)| *ms)
    }

    /// Where its revocation bit is, if it can be revoked.
    pub fn status(&self) -> Option<&StatusEntry> {
        self.status.as_ref()
    }
}

/// What an issuer asserts when it issues a credential.
#[derive(Debug, Clone)]
pub struct Issuance<'a> {
    /// The issuer.
    pub issuer: &'a Did,
    /// The subject: a wallet's DID.
    pub subject: &'a Did,
    /// The credential's type besides `VerifiableCredential`.
    pub credential_type: &'a str,
    /// Valid from (ms since the epoch); also the proof's creation time.
    pub valid_from_ms: u64,
    /// Valid until, if it expires.
    pub valid_until_ms: Option<u64>,
    /// Its revocation bit, if it can be revoked.
    pub status: Option<StatusEntry>,
}

/// Issues a credential: builds the JSON and signs it with `sign`, the
/// issuer's Ed25519 key.
pub fn issue(
    what: &Issuance<'_>,
    sign: &dyn Fn(&[u8]) -> [u8; 64],
) -> Result<Value, CredentialError> {
    let mut doc = Map::new();
    doc.insert("@context".into(), Value::Array(vec![VC_CONTEXT.into()]));
    doc.insert(
        "id".into(),
        format!("urn:uuid:{}", uuid::Uuid::new_v4()).into(),
    );
    doc.insert(
        "type".into(),
        Value::Array(vec![VC_TYPE.into(), what.credential_type.into()]),
    );
    doc.insert("issuer".into(), what.issuer.as_str().into());
    let from = format_time(what.valid_from_ms);
    doc.insert("validFrom".into(), from.clone().into());
    if let Some(until) = what.valid_until_ms {
        doc.insert("validUntil".into(), format_time(until).into());
    }
    doc.insert(
        "credentialSubject".into(),
        serde_json::json!({ "id": what.subject.as_str() }),
    );
    if let Some(status) = &what.status {
        doc.insert(
            "credentialStatus".into(),
            serde_json::json!({
                "id": format!("{}#{}", status.list, status.index),
                "type": STATUS_ENTRY_TYPE,
                "statusPurpose": REVOCATION,
                "statusListIndex": status.index.to_string(),
                "statusListCredential": status.list,
            }),
        );
    }
    proof::sign(doc, what.issuer, &from, sign)
}
