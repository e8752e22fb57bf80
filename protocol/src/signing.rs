//! Keys, signatures and the signed envelope every message travels in.
//!
//! A message body is serialized canonically (JSON with sorted keys, no
//! whitespace) and the signature covers a domain tag, the message's purpose
//! and those exact bytes. The envelope carries the bytes as they were signed,
//! so verification never depends on re-serializing. Every body has a
//! [`Header`]: the collective it belongs to, its purpose, when it expires, and
//! a nonce, so that nothing can be replayed elsewhere or later.

use std::fmt;
use std::marker::PhantomData;

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ProtocolError;

/// Prefix of every signed message: the protocol and its version.
const DOMAIN: &[u8] = b"c2ssi/1\0";

/// An Ed25519 public key, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The key as hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<PublicKey, ProtocolError> {
        let bytes = hex::decode(text.trim())
            .map_err(|e| ProtocolError::Malformed(format!("public key is not hex: {e}")))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
            ProtocolError::Malformed("a public key has exactly 32 bytes (64 hex digits)".into())
        })?;
        Ok(PublicKey(bytes))
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.0)
            .verify(message, signature)
            .is_ok()
    }

    /// A short form for people: the first 12 hex digits.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A public key in the OpenAPI description: 32 bytes, hex (written by hand,
/// as its serde form is).
impl utoipa::PartialSchema for PublicKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some("An Ed25519 public key, 32 bytes in hex"))
            .into()
    }
}

impl utoipa::ToSchema for PublicKey {}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PublicKey::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Something that signs with an Ed25519 key: a service key, or a wallet.
pub trait Signer {
    /// The public half.
    fn public_key(&self) -> PublicKey;
    /// An Ed25519 signature over `message`.
    fn sign_bytes(&self, message: &[u8]) -> [u8; 64];
}

/// An Ed25519 key pair held by a service (collective, aggregator, ledger) or
/// an operator, stored as PKCS#8.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey, ProtocolError> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| ProtocolError::Crypto("the system random generator failed".into()))?;
        SigningKey::from_pkcs8(pkcs8.as_ref())
    }

    /// A key from its PKCS#8 bytes.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, ProtocolError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| ProtocolError::Crypto(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(SigningKey {
            pair,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// A key derived from `seed` and `label`: for simulations, whose runs
    /// must repeat bit for bit. Never for a real party: whoever knows the
    /// seed holds the key.
    pub fn from_seed_for_simulation(seed: u64, label: &str) -> Result<SigningKey, ProtocolError> {
        SigningKey::from_pkcs8(&ed25519_pkcs8_from_seed(&derive_seed(seed, label)))
    }

    /// The PKCS#8 bytes, to store.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// Reads a key stored by [`SigningKey::write_to`].
    pub fn read_from(path: &std::path::Path) -> Result<SigningKey, ProtocolError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ProtocolError::Crypto(format!("reading {}: {e}", path.display())))?;
        SigningKey::from_pkcs8(&bytes)
            .map_err(|e| ProtocolError::Crypto(format!("{}: {e}", path.display())))
    }

    /// Stores the key at `path`, readable by its owner only, atomically: a
    /// crash leaves the old file or the new one.
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        write_secret(path, &self.pkcs8)
    }
}

/// 32 bytes derived from a simulation's seed and a label (SHA-256 of both),
/// so that every simulated key is distinct and repeatable.
pub fn derive_seed(seed: u64, label: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"c2ssi simulation key\0");
    ctx.update(&seed.to_le_bytes());
    ctx.update(label.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The PKCS#8 v2 document (RFC 8410, with the public key) of the Ed25519 key
/// whose private seed is `seed`. Built by hand because ring makes such a
/// document only from its system generator, and a simulation's keys must
/// come from its seed; the layout is ring's own template, and
/// [`SigningKey::from_pkcs8`] checks the result (the public key included).
pub fn ed25519_pkcs8_from_seed(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    const MIDDLE: [u8; 3] = [0x81, 0x21, 0x00];
    let public = match Ed25519KeyPair::from_seed_unchecked(seed) {
        Ok(pair) => pair.public_key().as_ref().to_vec(),
        // Every 32-byte string is an Ed25519 seed; an empty key fails the check.
        Err(_) => Vec::new(),
    };
    let mut out = Vec::with_capacity(83);
    out.extend_from_slice(&PREFIX);
    out.extend_from_slice(seed);
    out.extend_from_slice(&MIDDLE);
    out.extend_from_slice(&public);
    out
}

/// Writes a secret file readable by its owner only (mode 0600 on Unix),
/// through a temporary file in the same directory and a rename, synced.
pub fn write_secret(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", new_nonce()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        self.pkcs8.iter_mut().for_each(|b| *b = 0);
    }
}

impl Signer for SigningKey {
    fn public_key(&self) -> PublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(out)
    }

    fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

/// What a signed message is for. A signature made for one purpose never
/// verifies as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// A collective's manifest (signed by the collective).
    Manifest,
    /// The consumer's command to its collective (signed by the collective).
    OperatorCommand,
    /// A wallet's subscription contract.
    Subscription,
    /// A wallet withdrawing its subscription.
    Unsubscription,
    /// A wallet agent asking for work.
    CheckIn,
    /// A task for one wallet (signed by the broker).
    Task,
    /// An update envelope (signed by the wallet).
    Update,
    /// A payment receipt (signed by the broker's ledger).
    Receipt,
    /// A batch result (signed by the aggregator).
    BatchResult,
    /// An access the aggregator reports for payment (signed by the aggregator).
    AccessReport,
    /// The aggregator asked to close a round (signed by the broker).
    CloseRound,
    /// The aggregator asked to open a round (signed by the broker).
    OpenRound,
    /// The aggregator asked how far a round is (signed by the broker).
    RoundProgress,
    /// An HTTP request's `Authorization` header (signed by whoever reads).
    Request,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Manifest => b"manifest",
            Purpose::OperatorCommand => b"operator-command",
            Purpose::Subscription => b"subscription",
            Purpose::Unsubscription => b"unsubscription",
            Purpose::CheckIn => b"check-in",
            Purpose::Task => b"task",
            Purpose::Update => b"update",
            Purpose::Receipt => b"receipt",
            Purpose::BatchResult => b"batch-result",
            Purpose::AccessReport => b"access-report",
            Purpose::CloseRound => b"close-round",
            Purpose::OpenRound => b"open-round",
            Purpose::RoundProgress => b"round-progress",
            Purpose::Request => b"request",
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 16 random bytes as hex.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    // SystemRandom only fails if the OS has no randomness at all.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        let t = now_ms().to_le_bytes();
        bytes[..8].copy_from_slice(&t);
    }
    hex::encode(bytes)
}

/// The fields every signed message has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Header {
    /// What the message is for.
    pub purpose: Purpose,
    /// The collective it belongs to (empty only when creating one).
    pub collective_id: String,
    /// When it was made.
    pub issued_at_ms: u64,
    /// When it stops being valid.
    pub expires_at_ms: u64,
    /// Unique per message, for replay protection.
    pub nonce: String,
}

impl Header {
    /// A header valid for `valid_for_ms` from now, with a fresh nonce.
    pub fn new(purpose: Purpose, collective_id: &str, valid_for_ms: u64) -> Header {
        let now = now_ms();
        Header {
            purpose,
            collective_id: collective_id.to_string(),
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(valid_for_ms),
            nonce: new_nonce(),
        }
    }
}

/// A message body with a header.
pub trait Message: Serialize + DeserializeOwned {
    /// Its header.
    fn header(&self) -> &Header;
}

/// Canonical JSON: keys sorted, no whitespace. Deterministic for the
/// protocol's types (floats are written in their shortest round-trip form).
pub fn canonical_json<T: Serialize>(value: &T) -> Result<String, ProtocolError> {
    let value = serde_json::to_value(value)
        .map_err(|e| ProtocolError::Malformed(format!("cannot serialize: {e}")))?;
    serde_json::to_string(&value)
        .map_err(|e| ProtocolError::Malformed(format!("cannot serialize: {e}")))
}

pub(crate) fn signing_input(purpose: Purpose, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 32 + payload.len());
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(purpose.tag());
    out.push(0);
    out.extend_from_slice(payload);
    out
}

/// A message as it travels: the exact signed bytes, the signer, the signature.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Signed<T> {
    /// The canonical JSON of the body, as signed.
    pub payload: String,
    /// Who signed it.
    pub signer: PublicKey,
    /// The Ed25519 signature, hex.
    pub signature: String,
    #[serde(skip)]
    body: PhantomData<fn() -> T>,
}

/// The OpenAPI schema of every signed message: the same three fields,
/// whatever the body (written by hand: the body travels as signed text, not
/// as a typed field; utoipa derives its `PartialSchema` from this).
impl<T> utoipa::__dev::ComposeSchema for Signed<T> {
    fn compose(
        _: Vec<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>,
    ) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some(
                "A signed message: `payload` is the canonical JSON of the body, exactly as \
                 signed; `signer` the Ed25519 key that signed it; `signature` the signature \
                 over a domain tag and the payload, hex",
            ))
            .property("payload", ObjectBuilder::new().schema_type(Type::String))
            .required("payload")
            .property("signer", <PublicKey as utoipa::PartialSchema>::schema())
            .required("signer")
            .property(
                "signature",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9a-f]{128}$")),
            )
            .required("signature")
            .into()
    }
}

impl<T> utoipa::ToSchema for Signed<T> {
    fn name() -> std::borrow::Cow<'static, str> {
        "Signed".into()
    }
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            payload: self.payload.clone(),
            signer: self.signer,
            signature: self.signature.clone(),
            body: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("signer", &self.signer)
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

impl<T: Message> Signed<T> {
    /// Signs `body` with `signer`.
    pub fn sign(body: &T, signer: &dyn Signer) -> Result<Signed<T>, ProtocolError> {
        let payload = canonical_json(body)?;
        let signature =
            signer.sign_bytes(&signing_input(body.header().purpose, payload.as_bytes()));
        Ok(Signed {
            payload,
            signer: signer.public_key(),
            signature: hex::encode(signature),
            body: PhantomData,
        })
    }

    /// Verifies the signature (made by `expected` when given) for `purpose`,
    /// parses the body, and checks that its header says `purpose` and has not
    /// expired at `now_ms`. The caller checks the collective id and the nonce.
    pub fn open(
        &self,
        expected: Option<&PublicKey>,
        purpose: Purpose,
        now_ms: u64,
    ) -> Result<T, ProtocolError> {
        let body = self.open_any_time(expected, purpose)?;
        if body.header().expires_at_ms <= now_ms {
            return Err(ProtocolError::Expired {
                purpose,
                expired_at_ms: body.header().expires_at_ms,
            });
        }
        Ok(body)
    }

    /// Like [`Signed::open`] without the expiry check: for records kept
    /// after the fact (a receipt, a stored manifest).
    pub fn open_any_time(
        &self,
        expected: Option<&PublicKey>,
        purpose: Purpose,
    ) -> Result<T, ProtocolError> {
        if let Some(expected) = expected
            && *expected != self.signer
        {
            return Err(ProtocolError::WrongSigner {
                expected: expected.short(),
                found: self.signer.short(),
            });
        }
        let signature =
            hex::decode(&self.signature).map_err(|_| ProtocolError::BadSignature { purpose })?;
        if !self
            .signer
            .verify(&signing_input(purpose, self.payload.as_bytes()), &signature)
        {
            return Err(ProtocolError::BadSignature { purpose });
        }
        let body: T = serde_json::from_str(&self.payload).map_err(|e| {
            ProtocolError::Malformed(format!("signed {purpose:?} does not parse: {e}"))
        })?;
        if body.header().purpose != purpose {
            return Err(ProtocolError::WrongPurpose {
                expected: purpose,
                found: body.header().purpose,
            });
        }
        Ok(body)
    }

    /// The body, parsed without checking the signature: only for a message
    /// that this party verified when it kept it (a wallet's stored receipts),
    /// where verifying again on every read would cost a signature check per
    /// stored message.
    pub fn body_unverified(&self) -> Result<T, ProtocolError> {
        serde_json::from_str(&self.payload)
            .map_err(|e| ProtocolError::Malformed(format!("a stored message does not parse: {e}")))
    }

    /// The SHA-256 of the signed payload: the message's identity.
    pub fn digest(&self) -> [u8; 32] {
        sha256(self.payload.as_bytes())
    }
}

#[cfg(test)]
impl<T> Signed<T> {
    /// `payload` signed as it is, whatever it says: for tests of what a
    /// receiver does with a validly signed body that is wrong.
    pub(crate) fn sign_raw(payload: String, purpose: Purpose, signer: &dyn Signer) -> Signed<T> {
        let signature = signer.sign_bytes(&signing_input(purpose, payload.as_bytes()));
        Signed {
            payload,
            signer: signer.public_key(),
            signature: hex::encode(signature),
            body: PhantomData,
        }
    }
}

/// SHA-256 (ring).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
    struct Note {
        header: Header,
        text: String,
        values: Vec<f32>,
    }

    impl Message for Note {
        fn header(&self) -> &Header {
            &self.header
        }
    }

    #[test]
    fn simulation_keys_repeat_from_their_seed_and_differ_by_label() {
        let a = SigningKey::from_seed_for_simulation(7, "wallet 1").unwrap();
        let b = SigningKey::from_seed_for_simulation(7, "wallet 1").unwrap();
        let c = SigningKey::from_seed_for_simulation(7, "wallet 2").unwrap();
        let d = SigningKey::from_seed_for_simulation(8, "wallet 1").unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.pkcs8(), b.pkcs8());
        assert_ne!(a.public_key(), c.public_key());
        assert_ne!(a.public_key(), d.public_key());
        // The document is ring's own: what it signs verifies.
        let sig = a.sign_bytes(b"m");
        assert!(
            UnparsedPublicKey::new(&ED25519, a.public_key().0)
                .verify(b"m", &sig)
                .is_ok()
        );
        // A generated key's document has the same layout.
        let g = SigningKey::generate().unwrap();
        assert_eq!(g.pkcs8().len(), a.pkcs8().len());
        assert_eq!(g.pkcs8()[..16], a.pkcs8()[..16]);
        assert_eq!(g.pkcs8()[48..51], a.pkcs8()[48..51]);
    }

    fn note(purpose: Purpose, valid_for: u64) -> Note {
        Note {
            header: Header::new(purpose, "c1", valid_for),
            text: "hello".into(),
            values: vec![0.1, -3.5e-8, 1.0 / 3.0],
        }
    }

    #[test]
    fn signed_messages_round_trip_through_json() {
        let key = SigningKey::generate().unwrap();
        let body = note(Purpose::Task, 60_000);
        let signed = Signed::sign(&body, &key).unwrap();
        let wire = serde_json::to_string(&signed).unwrap();
        let back: Signed<Note> = serde_json::from_str(&wire).unwrap();
        let opened = back
            .open(Some(&key.public_key()), Purpose::Task, now_ms())
            .unwrap();
        assert_eq!(opened, body);
    }

    #[test]
    fn tampering_another_signer_another_purpose_and_expiry_are_refused() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let signed = Signed::sign(&note(Purpose::Task, 60_000), &key).unwrap();

        let mut tampered = signed.clone();
        tampered.payload = tampered.payload.replace("hello", "hellO");
        assert!(matches!(
            tampered.open(None, Purpose::Task, now_ms()),
            Err(ProtocolError::BadSignature { .. })
        ));
        assert!(matches!(
            signed.open(Some(&other.public_key()), Purpose::Task, now_ms()),
            Err(ProtocolError::WrongSigner { .. })
        ));
        // A task signature does not verify as a receipt.
        assert!(matches!(
            signed.open(None, Purpose::Receipt, now_ms()),
            Err(ProtocolError::BadSignature { .. })
        ));
        let expired = Signed::sign(&note(Purpose::Task, 0), &key).unwrap();
        assert!(matches!(
            expired.open(None, Purpose::Task, now_ms() + 1),
            Err(ProtocolError::Expired { .. })
        ));
        // A forged signer field (someone else's key on our signature).
        let mut forged = signed.clone();
        forged.signer = other.public_key();
        assert!(forged.open(None, Purpose::Task, now_ms()).is_err());
    }

    #[test]
    fn canonical_json_sorts_keys() {
        #[derive(Serialize, utoipa::ToSchema)]
        struct S {
            zeta: u8,
            alpha: u8,
        }
        assert_eq!(
            canonical_json(&S { zeta: 1, alpha: 2 }).unwrap(),
            r#"{"alpha":2,"zeta":1}"#
        );
    }
}

/// Property-based fuzzing of keys and signed messages: arbitrary input, and
/// mutations of a real signed task (on the wire, field by field, and
/// re-signed so that the body parser is reached).
#[cfg(test)]
mod fuzz {
    use std::sync::LazyLock;

    use c2ssi_guest_sdk::{Param, ParamValue};
    use proptest::prelude::*;

    use super::*;
    use crate::wallet::Task;
    use c2ssi_fuzzing::{config, json_mutations, mutate, mutate_json, mutations};

    static KEY: LazyLock<SigningKey> =
        LazyLock::new(|| SigningKey::generate().expect("the system has randomness"));

    /// A real task, as the broker signs it, and its wire form.
    static TASK: LazyLock<(Task, Signed<Task>, Vec<u8>)> = LazyLock::new(|| {
        let task = Task {
            header: Header::new(Purpose::Task, "c-0123456789abcdef01234567", 3_600_000),
            job_id: "job-1".into(),
            round: 3,
            wallet: KEY.public_key(),
            manifest_digest: "ab".repeat(32),
            algorithm_sha256: "cd".repeat(32),
            table: "health.daily".into(),
            params: vec![
                Param::new("learning_rate", ParamValue::Real(0.05)),
                Param::new(
                    "features",
                    ParamValue::TextList(vec!["a".into(), "b".into()]),
                ),
                Param::new("epochs", ParamValue::Integer(3)),
            ],
            model: vec![0.5, -1.25, 3.0e-7, 0.0],
            seed: 42,
            update_url: "http://127.0.0.1:9/update".into(),
        };
        let signed = Signed::sign(&task, &*KEY).expect("the task signs");
        let wire = serde_json::to_vec(&signed).expect("the envelope serializes");
        (task, signed, wire)
    });

    /// Opens `signed` every way a receiver does; whatever opens must be the
    /// original task, byte for byte.
    fn opens_only_unchanged(signed: &Signed<Task>, now: u64) -> Result<(), TestCaseError> {
        let (task, original, _) = &*TASK;
        let key = KEY.public_key();
        for expected in [None, Some(&key)] {
            match signed.open_any_time(expected, Purpose::Task) {
                Ok(body) => {
                    prop_assert_eq!(&signed.payload, &original.payload);
                    prop_assert_eq!(signed.signer, key);
                    prop_assert_eq!(&body, task);
                }
                Err(e) => prop_assert!(
                    matches!(
                        e,
                        ProtocolError::BadSignature { .. }
                            | ProtocolError::WrongSigner { .. }
                            | ProtocolError::Malformed(_)
                            | ProtocolError::WrongPurpose { .. }
                    ),
                    "{e:?}"
                ),
            }
            if let Ok(body) = signed.open(expected, Purpose::Task, now) {
                prop_assert_eq!(&body, task);
                prop_assert!(body.header.expires_at_ms > now);
            }
            // A task never opens as anything else.
            prop_assert!(signed.open_any_time(expected, Purpose::Receipt).is_err());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn public_keys_parse_only_from_64_hex_digits(text in prop_oneof![
            ".*",
            "[0-9a-fA-F]{60,68}",
            " *[0-9a-f]{64} *",
        ]) {
            match PublicKey::from_hex(&text) {
                Ok(key) => prop_assert_eq!(key.to_hex(), text.trim().to_ascii_lowercase()),
                Err(e) => prop_assert!(matches!(e, ProtocolError::Malformed(_)), "{e:?}"),
            }
            // Through serde as well, as keys travel.
            let _ = serde_json::from_value::<PublicKey>(serde_json::Value::from(text));
        }

        #[test]
        fn arbitrary_bytes_are_no_signing_key(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            match SigningKey::from_pkcs8(&bytes) {
                Ok(key) => prop_assert!(key.public_key().verify(b"m", &key.sign_bytes(b"m"))),
                Err(e) => prop_assert!(matches!(e, ProtocolError::Crypto(_)), "{e:?}"),
            }
        }

        #[test]
        fn a_mutated_pkcs8_key_is_refused_or_still_a_key(mutations in mutations()) {
            let bytes = mutate(KEY.pkcs8(), &mutations);
            match SigningKey::from_pkcs8(&bytes) {
                // ring checks the public key against the private one, so a
                // key that loads signs what its public key verifies.
                Ok(key) => prop_assert!(key.public_key().verify(b"m", &key.sign_bytes(b"m"))),
                Err(e) => prop_assert!(matches!(e, ProtocolError::Crypto(_)), "{e:?}"),
            }
        }

        #[test]
        fn a_mutated_signed_message_on_the_wire_never_opens_changed(
            mutations in mutations(),
            now in any::<u64>(),
        ) {
            let bytes = mutate(&TASK.2, &mutations);
            if let Ok(signed) = serde_json::from_slice::<Signed<Task>>(&bytes) {
                opens_only_unchanged(&signed, now)?;
            }
        }

        #[test]
        fn a_signed_message_with_mutated_fields_never_opens_changed(
            payload in mutations(),
            signature in mutations(),
            signer in prop_oneof![Just(None), any::<[u8; 32]>().prop_map(Some)],
            which in 1u8..8,
        ) {
            let (_, original, _) = &*TASK;
            let mut signed = original.clone();
            if which & 1 != 0 {
                signed.payload =
                    String::from_utf8_lossy(&mutate(original.payload.as_bytes(), &payload)).into_owned();
            }
            if which & 2 != 0 {
                signed.signature =
                    String::from_utf8_lossy(&mutate(original.signature.as_bytes(), &signature)).into_owned();
            }
            if which & 4 != 0 && let Some(bytes) = signer {
                signed.signer = PublicKey(bytes);
            }
            opens_only_unchanged(&signed, 0)?;
        }

        /// A payload signed by a valid key (anyone can sign with their own
        /// key) reaches the body parser, which answers with a typed error.
        #[test]
        fn a_validly_signed_garbage_payload_is_a_typed_error(
            bytes in mutations(),
            json in json_mutations(),
            by_json in any::<bool>(),
            now in any::<u64>(),
        ) {
            let (_, original, _) = &*TASK;
            let payload = if by_json {
                let value: serde_json::Value =
                    serde_json::from_str(&original.payload).expect("the payload is JSON");
                mutate_json(&value, &json).to_string()
            } else {
                String::from_utf8_lossy(&mutate(original.payload.as_bytes(), &bytes)).into_owned()
            };
            let signed: Signed<Task> = Signed::sign_raw(payload, Purpose::Task, &*KEY);
            match signed.open(Some(&KEY.public_key()), Purpose::Task, now) {
                Ok(task) => {
                    prop_assert_eq!(task.header.purpose, Purpose::Task);
                    prop_assert!(task.header.expires_at_ms > now);
                }
                Err(e) => prop_assert!(
                    matches!(
                        e,
                        ProtocolError::Malformed(_)
                            | ProtocolError::WrongPurpose { .. }
                            | ProtocolError::Expired { .. }
                    ),
                    "{e:?}"
                ),
            }
        }

        #[test]
        fn arbitrary_text_is_no_signed_message(text in ".*", raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            for bytes in [text.as_bytes(), &raw[..]] {
                if let Ok(signed) = serde_json::from_slice::<Signed<Task>>(bytes) {
                    prop_assert!(signed.open_any_time(None, Purpose::Task).is_err());
                }
            }
            let signed: Signed<Task> = Signed::sign_raw(text, Purpose::Task, &*KEY);
            let _ = signed.open(None, Purpose::Task, 0);
        }
    }
}
