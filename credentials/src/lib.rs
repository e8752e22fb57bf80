//! Self-sovereign identity for compute-to-ssi, against Sybils: a wallet is a
//! `did:key` ([`Did`]), an issuer vouches for it with a W3C verifiable
//! credential ([`Credential`], an `eddsa-jcs-2022` Data Integrity proof), and
//! revokes it with a Bitstring Status List ([`StatusList`]). A collective's
//! manifest may require a credential type from issuers it names; the broker
//! then admits one subscription per credential subject.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod credential;
mod did;
mod error;
#[cfg(test)]
mod fuzz;
pub mod proof;
mod status;

pub use self::credential::{
    Credential, Issuance, MAX_CREDENTIAL_BYTES, REVOCATION, StatusEntry, VC_CONTEXT, VC_TYPE,
    format_time, issue, parse_time,
};
pub use self::did::Did;
pub use self::error::CredentialError;
pub use self::status::{LIST_CREDENTIAL_TYPE, MAX_BITS, MIN_BITS, StatusList, issue_list};

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    struct Key(Ed25519KeyPair);

    impl Key {
        fn new() -> Key {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
            Key(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key"))
        }
        fn did(&self) -> Did {
            let mut public = [0u8; 32];
            public.copy_from_slice(self.0.public_key().as_ref());
            Did::from_ed25519(public)
        }
        fn sign(&self, m: &[u8]) -> [u8; 64] {
            let mut out = [0u8; 64];
            out.copy_from_slice(self.0.sign(m).as_ref());
            out
        }
    }

    const DAY: u64 = 86_400_000;
    const NOW: u64 = 1_795_000_000_000;

    fn issued(issuer: &Key, subject: &Did, status: Option<StatusEntry>) -> serde_json::Value {
        issue(
            &Issuance {
                issuer: &issuer.did(),
                subject,
                credential_type: "UniquePersonCredential",
                valid_from_ms: NOW - DAY,
                valid_until_ms: Some(NOW + DAY),
                status,
            },
            &|m| issuer.sign(m),
        )
        .expect("issues")
    }

    #[test]
    fn an_issued_credential_verifies_with_what_it_says() {
        let issuer = Key::new();
        let wallet = Key::new().did();
        let json = issued(&issuer, &wallet, None);
        let c = Credential::verify(json).expect("verifies");
        assert_eq!(c.issuer(), &issuer.did());
        assert_eq!(c.subject(), &wallet);
        assert!(c.has_type("UniquePersonCredential"));
        c.check_time(NOW).expect("valid now");
        assert!(matches!(
            c.check_time(NOW + DAY),
            Err(CredentialError::Expired { .. })
        ));
        assert!(matches!(
            c.check_time(NOW - 2 * DAY),
            Err(CredentialError::NotYetValid { .. })
        ));
    }

    #[test]
    fn a_credential_signed_by_someone_else_than_its_issuer_is_refused() {
        let issuer = Key::new();
        let forger = Key::new();
        let wallet = Key::new().did();
        let mut json = issued(&forger, &wallet, None);
        json["issuer"] = issuer.did().as_str().into();
        // The issuer field is covered by the proof: the proof breaks first.
        assert!(matches!(
            Credential::verify(json),
            Err(CredentialError::BadProof(_))
        ));
    }

    #[test]
    fn changing_the_subject_breaks_the_proof() {
        let issuer = Key::new();
        let mut json = issued(&issuer, &Key::new().did(), None);
        json["credentialSubject"]["id"] = Key::new().did().as_str().into();
        assert!(matches!(
            Credential::verify(json),
            Err(CredentialError::BadProof(_))
        ));
    }

    #[test]
    fn a_status_list_revokes_exactly_its_bits() {
        let issuer = Key::new();
        let list_id = "urn:uuid:list-1";
        let json = issue_list(
            list_id,
            &issuer.did(),
            MIN_BITS,
            &[0, 9, 131_071],
            NOW,
            &|m| issuer.sign(m),
        )
        .expect("issues");
        let list = StatusList::verify(json).expect("verifies");
        assert_eq!(list.issuer(), &issuer.did());
        assert_eq!(list.id(), list_id);
        for (index, revoked) in [
            (0, true),
            (1, false),
            (9, true),
            (8, false),
            (131_071, true),
        ] {
            assert_eq!(list.is_revoked(index), revoked, "{index}");
        }
        assert!(list.is_revoked(MIN_BITS), "past the end reads as revoked");
        let wallet = Key::new().did();
        let c = Credential::verify(issued(
            &issuer,
            &wallet,
            Some(StatusEntry {
                list: list_id.into(),
                index: 9,
            }),
        ))
        .expect("verifies");
        assert_eq!(c.status().map(|s| s.index), Some(9));
    }

    #[test]
    fn a_gzip_bomb_status_list_is_refused() {
        use base64::Engine as _;
        use std::io::Write;
        let issuer = Key::new();
        let mut json = issue_list("urn:l", &issuer.did(), MIN_BITS, &[], NOW, &|m| {
            issuer.sign(m)
        })
        .expect("issues");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 64 << 20]).expect("compresses");
        let bomb = gz.finish().expect("compresses");
        json["credentialSubject"]["encodedList"] = format!(
            "u{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bomb)
        )
        .into();
        // Refused by the proof before anything is decompressed, and by the
        // bound even if signed.
        assert!(StatusList::verify(json.clone()).is_err());
        let serde_json::Value::Object(mut doc) = json else {
            panic!("an object")
        };
        doc.remove("proof");
        let signed = proof::sign(doc, &issuer.did(), "2026-11-24T00:00:00Z", &|m| {
            issuer.sign(m)
        })
        .expect("signs");
        assert!(matches!(
            StatusList::verify(signed),
            Err(CredentialError::Malformed(m)) if m.contains("more than")
        ));
    }
}
