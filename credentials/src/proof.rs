//! Data Integrity proofs with the `eddsa-jcs-2022` cryptosuite (W3C VC Data
//! Integrity EdDSA Cryptosuites v1.0): the document and the proof options are
//! canonicalized with JCS (RFC 8785), each hashed with SHA-256, and the two
//! hashes signed with Ed25519; the signature is multibase base58btc.

use serde_json::{Map, Value};

use crate::did::Did;
use crate::error::CredentialError;

/// The proof type.
pub const PROOF_TYPE: &str = "DataIntegrityProof";
/// The cryptosuite.
pub const CRYPTOSUITE: &str = "eddsa-jcs-2022";
/// The proof purpose of an issuer's assertion.
pub const ASSERTION_METHOD: &str = "assertionMethod";

fn bad(why: impl Into<String>) -> CredentialError {
    CredentialError::BadProof(why.into())
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn jcs(value: &Value) -> Result<Vec<u8>, CredentialError> {
    serde_json_canonicalizer::to_vec(value)
        .map_err(|e| CredentialError::Malformed(format!("cannot canonicalize: {e}")))
}

/// What is signed: SHA-256 of the canonical proof options, then SHA-256 of
/// the canonical document (without its proof).
fn hash_data(options: &Value, document: &Value) -> Result<Vec<u8>, CredentialError> {
    let mut out = sha256(&jcs(options)?);
    out.extend(sha256(&jcs(document)?));
    Ok(out)
}

/// Adds an `eddsa-jcs-2022` proof by `signer` (whose key `sign` uses) made
/// at `created` (an XML Schema date-time) to `document`, which has none.
pub fn sign(
    mut document: Map<String, Value>,
    signer: &Did,
    created: &str,
    sign: &dyn Fn(&[u8]) -> [u8; 64],
) -> Result<Value, CredentialError> {
    if document.contains_key("proof") {
        return Err(CredentialError::Malformed(
            "the document already has a proof".into(),
        ));
    }
    let mut options = Map::new();
    options.insert("type".into(), PROOF_TYPE.into());
    options.insert("cryptosuite".into(), CRYPTOSUITE.into());
    options.insert("created".into(), created.into());
    options.insert(
        "verificationMethod".into(),
        signer.verification_method().into(),
    );
    options.insert("proofPurpose".into(), ASSERTION_METHOD.into());
    if let Some(context) = document.get("@context") {
        options.insert("@context".into(), context.clone());
    }
    let options = Value::Object(options);
    let unsecured = Value::Object(document.clone());
    let signature = sign(&hash_data(&options, &unsecured)?);
    let Value::Object(mut proof) = options else {
        return Err(bad("the proof options are not an object"));
    };
    proof.insert(
        "proofValue".into(),
        format!("z{}", bs58::encode(signature).into_string()).into(),
    );
    document.insert("proof".into(), Value::Object(proof));
    Ok(Value::Object(document))
}

/// Verifies `document`'s one `eddsa-jcs-2022` assertion proof and returns
/// the DID whose key made it. The caller checks that it is the issuer.
pub fn verify(document: &Value) -> Result<Did, CredentialError> {
    let Value::Object(secured) = document else {
        return Err(CredentialError::Malformed("not a JSON object".into()));
    };
    let mut unsecured = secured.clone();
    let proof = match unsecured.remove("proof") {
        Some(Value::Object(proof)) => proof,
        Some(Value::Array(_)) => return Err(bad("more than one proof is not supported")),
        Some(_) => return Err(bad("the proof is not an object")),
        None => return Err(bad("there is no proof")),
    };
    let field = |name: &str| proof.get(name).and_then(Value::as_str);
    if field("type") != Some(PROOF_TYPE) {
        return Err(bad(format!("the proof type is not {PROOF_TYPE}")));
    }
    if field("cryptosuite") != Some(CRYPTOSUITE) {
        return Err(bad(format!("the cryptosuite is not {CRYPTOSUITE}")));
    }
    if field("proofPurpose") != Some(ASSERTION_METHOD) {
        return Err(bad(format!("the proof purpose is not {ASSERTION_METHOD}")));
    }
    let method = field("verificationMethod").ok_or_else(|| bad("no verificationMethod"))?;
    let (did, fragment) = method
        .split_once('#')
        .ok_or_else(|| bad("the verificationMethod has no fragment"))?;
    let did = Did::parse(did)?;
    if did.verification_method() != format!("{did}#{fragment}") {
        return Err(bad("the verificationMethod is not the did:key's own key"));
    }
    let value = field("proofValue").ok_or_else(|| bad("no proofValue"))?;
    let signature = value
        .strip_prefix('z')
        .and_then(|v| bs58::decode(v).into_vec().ok())
        .filter(|s| s.len() == 64)
        .ok_or_else(|| bad("the proofValue is not a base58btc Ed25519 signature"))?;
    let mut options = proof.clone();
    options.remove("proofValue");
    if let Some(context) = options.get("@context") {
        // The proof's context must be the document's, which it then replaces.
        if secured.get("@context") != Some(context) {
            return Err(bad("the proof's @context is not the document's"));
        }
        unsecured.insert("@context".into(), context.clone());
    }
    let data = hash_data(&Value::Object(options), &Value::Object(unsecured))?;
    if !did.verify(&data, &signature) {
        return Err(bad("the signature does not match the document"));
    }
    Ok(did)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `eddsa-jcs-2022` test vector of the specification (Digital
    /// Bazaar's alumni credential).
    fn spec_vector() -> Value {
        serde_json::json!({
            "@context": [
                "https://www.w3.org/ns/credentials/v2",
                "https://www.w3.org/ns/credentials/examples/v2"
            ],
            "id": "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
            "type": ["VerifiableCredential", "AlumniCredential"],
            "name": "Alumni Credential",
            "description": "A minimum viable example of an Alumni Credential.",
            "issuer": "did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2",
            "validFrom": "2023-01-01T00:00:00Z",
            "credentialSubject": {
                "id": "did:example:abcdefgh",
                "alumniOf": "The School of Examples"
            },
            "proof": {
                "type": "DataIntegrityProof",
                "created": "2023-02-24T23:36:38Z",
                "verificationMethod": "did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2",
                "cryptosuite": "eddsa-jcs-2022",
                "proofPurpose": "assertionMethod",
                "@context": [
                    "https://www.w3.org/ns/credentials/v2",
                    "https://www.w3.org/ns/credentials/examples/v2"
                ],
                "proofValue": "z5EhYRJkfPLkoT92FPXN8KK6M9rsBhq3xs19GBSsA6VdNYH4QMKSyNuA2Gfznz9QthVD7Rz3HTAfqxxay23htUpTg"
            }
        })
    }

    #[test]
    fn the_specification_test_vector_verifies() {
        let did = verify(&spec_vector()).expect("the published vector verifies");
        assert_eq!(
            did.as_str(),
            "did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
        );
    }

    #[test]
    fn any_change_to_the_vector_breaks_it() {
        let mut changed = spec_vector();
        changed["credentialSubject"]["alumniOf"] = "Another School".into();
        assert!(matches!(
            verify(&changed),
            Err(CredentialError::BadProof(_))
        ));
        let mut changed = spec_vector();
        changed["proof"]["created"] = "2023-02-24T23:36:39Z".into();
        assert!(matches!(
            verify(&changed),
            Err(CredentialError::BadProof(_))
        ));
    }

    #[test]
    fn a_signed_document_verifies_and_its_keys_order_does_not_matter() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        use ring::signature::KeyPair;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        let did = Did::from_ed25519(public);
        let doc = serde_json::json!({"b": 1, "a": {"z": "é", "y": [1, 2]}, "@context": ["x"]});
        let Value::Object(doc) = doc else {
            panic!("an object")
        };
        let sign = |m: &[u8]| {
            let mut out = [0u8; 64];
            out.copy_from_slice(pair.sign(m).as_ref());
            out
        };
        let signed = sign_doc(doc, &did, &sign);
        assert_eq!(verify(&signed).expect("verifies"), did);
        // Re-serialized with other whitespace and order, it still verifies.
        let text = serde_json::to_string_pretty(&signed).expect("json");
        let reparsed: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(verify(&reparsed).expect("verifies"), did);
    }

    fn sign_doc(doc: Map<String, Value>, did: &Did, sign: &dyn Fn(&[u8]) -> [u8; 64]) -> Value {
        super::sign(doc, did, "2026-01-01T00:00:00Z", sign).expect("signs")
    }
}
