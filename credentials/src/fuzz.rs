//! Property-based fuzz tests of the credential decoders: arbitrary JSON and
//! mutations of a real credential and status list never panic, and a
//! mutated credential verifies only if its canonical content is unchanged.

use c2ssi_fuzzing::config;
use proptest::prelude::*;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::Value;

use crate::{Credential, Did, Issuance, MIN_BITS, StatusEntry, StatusList, issue, issue_list};

fn key() -> (Ed25519KeyPair, Did) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key");
    let mut public = [0u8; 32];
    public.copy_from_slice(pair.public_key().as_ref());
    (pair, Did::from_ed25519(public))
}

fn sign_with(pair: &Ed25519KeyPair) -> impl Fn(&[u8]) -> [u8; 64] + '_ {
    |m| {
        let mut out = [0u8; 64];
        out.copy_from_slice(pair.sign(m).as_ref());
        out
    }
}

fn credential() -> Value {
    let (pair, issuer) = key();
    let (_, subject) = key();
    issue(
        &Issuance {
            issuer: &issuer,
            subject: &subject,
            credential_type: "UniquePersonCredential",
            valid_from_ms: 1_700_000_000_000,
            valid_until_ms: Some(1_900_000_000_000),
            status: Some(StatusEntry {
                list: "urn:uuid:list".into(),
                index: 42,
            }),
        },
        &sign_with(&pair),
    )
    .expect("issued")
}

/// One change to a JSON document, at a path chosen by `at`.
#[derive(Debug, Clone)]
enum Change {
    Replace(Value),
    Remove,
    Insert(String, Value),
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from(
            "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
        )),
        Just(Value::from("2026-13-45T99:99:99Z")),
        Just(Value::Array(vec![])),
        Just(Value::Object(Default::default())),
    ]
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        leaf().prop_map(Change::Replace),
        Just(Change::Remove),
        (".{0,12}", leaf()).prop_map(|(k, v)| Change::Insert(k, v)),
    ]
}

/// Applies `change` to the `at`-th node of `doc` in depth-first order.
fn apply(doc: &mut Value, at: usize, change: &Change) {
    fn walk(v: &mut Value, at: &mut usize, change: &Change) -> bool {
        if *at == 0 {
            match change {
                Change::Replace(new) => *v = new.clone(),
                Change::Insert(k, new) => {
                    if let Value::Object(o) = v {
                        o.insert(k.clone(), new.clone());
                    } else {
                        *v = new.clone();
                    }
                }
                Change::Remove => match v {
                    Value::Object(o) => {
                        if let Some(k) = o.keys().next().cloned() {
                            o.remove(&k);
                        }
                    }
                    Value::Array(a) => {
                        a.pop();
                    }
                    _ => *v = Value::Null,
                },
            }
            return true;
        }
        *at -= 1;
        match v {
            Value::Object(o) => o.values_mut().any(|c| walk(c, at, change)),
            Value::Array(a) => a.iter_mut().any(|c| walk(c, at, change)),
            _ => false,
        }
    }
    let mut at = at;
    walk(doc, &mut at, change);
}

fn canonical(v: &Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(v).unwrap_or_default()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_json_is_refused_without_a_panic(text in ".{0,400}") {
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            prop_assert!(Credential::verify(value.clone()).is_err());
            prop_assert!(StatusList::verify(value).is_err());
        }
    }

    #[test]
    fn a_mutated_credential_verifies_only_unchanged(
        changes in proptest::collection::vec((0usize..40, change()), 1..4)
    ) {
        let original = credential();
        let mut doc = original.clone();
        for (at, c) in &changes {
            apply(&mut doc, *at, c);
        }
        if let Ok(verified) = Credential::verify(doc.clone()) {
            prop_assert_eq!(canonical(verified.json()), canonical(&original));
        }
    }

    #[test]
    fn a_mutated_status_list_never_panics(
        changes in proptest::collection::vec((0usize..20, change()), 1..4)
    ) {
        let (pair, issuer) = key();
        let original = issue_list("urn:l", &issuer, MIN_BITS, &[3], 1_800_000_000_000, &sign_with(&pair))
            .expect("a list");
        let mut doc = original.clone();
        for (at, c) in &changes {
            apply(&mut doc, *at, c);
        }
        if let Ok(list) = StatusList::verify(doc) {
            prop_assert_eq!(canonical(list.json()), canonical(&original));
        }
    }

    #[test]
    fn did_parsing_never_panics(text in "(did:key:z)?[1-9A-HJ-NP-Za-km-z]{0,60}") {
        if let Ok(did) = Did::parse(&text) {
            let again = Did::from_ed25519(did.ed25519_key());
            prop_assert_eq!(again.as_str(), text.as_str());
        }
    }
}
