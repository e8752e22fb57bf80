//! Ledger entries as anyone can check them: hash-chained, each signed by the
//! ledger's key. A payment names its payee only by a salted commitment, so the
//! public ledger does not say which wallets were in which round; the payee
//! holds the salt in its receipt.

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::signing::{PublicKey, canonical_json, sha256};

/// Domain tag of entry hashes.
const ENTRY_DOMAIN: &[u8] = b"c2ssi-ledger/1\0";

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EntryKind {
    /// Budget deposited by the operator.
    Deposit {
        /// How much.
        amount: Amount,
        /// The nonce of the operator's signed command.
        reference: String,
    },
    /// One access to one wallet, paid.
    Payment {
        /// The job.
        job_id: String,
        /// The round.
        round: u32,
        /// `sha256(wallet key || salt)`, hex.
        payee_commitment: String,
        /// How much.
        amount: Amount,
    },
    /// A model version the collective stored.
    ModelVersion {
        /// The job.
        job_id: String,
        /// The round that produced it.
        round: u32,
        /// Its content address, hex.
        model_hash: String,
        /// The version it was derived from, hex.
        parent_hash: Option<String>,
    },
    /// A job started, with its budget.
    JobStarted {
        /// The job.
        job_id: String,
        /// Its budget.
        budget: Amount,
    },
    /// A job ended.
    JobEnded {
        /// The job.
        job_id: String,
        /// Why.
        reason: String,
    },
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    /// Position, from 1, without gaps.
    pub seq: u64,
    /// The collective.
    pub collective_id: String,
    /// When.
    pub time_ms: u64,
    /// The previous entry's hash, hex (64 zeros for the first).
    pub prev_hash: String,
    /// What.
    pub kind: EntryKind,
    /// This entry's hash, hex.
    pub hash: String,
    /// The ledger's signature over the hash, hex.
    pub signature: String,
}

/// The hash of the first entry's predecessor.
pub fn genesis_hash() -> String {
    "0".repeat(64)
}

/// The hash of an entry's content.
pub fn entry_hash(
    seq: u64,
    collective_id: &str,
    time_ms: u64,
    prev_hash: &str,
    kind: &EntryKind,
) -> String {
    #[derive(Serialize, utoipa::ToSchema)]
    struct Content<'a> {
        seq: u64,
        collective_id: &'a str,
        time_ms: u64,
        prev_hash: &'a str,
        kind: &'a EntryKind,
    }
    let json = canonical_json(&Content {
        seq,
        collective_id,
        time_ms,
        prev_hash,
        kind,
    })
    .unwrap_or_default();
    let mut input = ENTRY_DOMAIN.to_vec();
    input.extend_from_slice(json.as_bytes());
    hex::encode(sha256(&input))
}

/// The commitment to a payee.
pub fn payee_commitment(wallet: &PublicKey, salt_hex: &str) -> String {
    let mut input = wallet.0.to_vec();
    input.extend_from_slice(salt_hex.as_bytes());
    hex::encode(sha256(&input))
}

/// What a verified ledger adds up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerSummary {
    /// Entries checked.
    pub entries: u64,
    /// Sum of deposits.
    pub deposited: Amount,
    /// Sum of payments.
    pub paid: Amount,
    /// Number of payments.
    pub payments: u64,
    /// Model versions recorded.
    pub model_versions: u64,
    /// Deposits minus payments.
    pub balance: Amount,
}

/// Why a ledger does not verify: the first bad entry and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry {seq}: {reason}")]
pub struct ChainError {
    /// The entry's position (or the expected one, when missing).
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// Checks a whole ledger: positions 1.. without gaps, each entry's hash over
/// its content, each link to the previous hash, each signature by
/// `ledger_key`, one collective, and a balance that never goes below zero.
/// Finds any edited, removed, inserted or reordered entry.
pub fn verify_chain(
    entries: &[LedgerEntry],
    ledger_key: &PublicKey,
    collective_id: &str,
) -> Result<LedgerSummary, ChainError> {
    // The signatures first, on every core (each over the stored hash, which
    // the walk below checks against the content); the walk then reports the
    // first bad entry in order, as a sequential check would.
    let signed: Vec<bool> = {
        use rayon::prelude::*;
        entries
            .par_iter()
            .map(|e| {
                let signature = hex::decode(&e.signature).unwrap_or_default();
                ledger_key.verify(e.hash.as_bytes(), &signature)
            })
            .collect()
    };
    let mut summary = LedgerSummary::default();
    let mut prev = genesis_hash();
    for ((i, e), signed) in entries.iter().enumerate().zip(signed) {
        let expected_seq = i as u64 + 1;
        let fail = |reason: String| ChainError { seq: e.seq, reason };
        if e.seq != expected_seq {
            return Err(ChainError {
                seq: expected_seq,
                reason: format!(
                    "found entry {} where {expected_seq} belongs: removed or reordered",
                    e.seq
                ),
            });
        }
        if e.collective_id != collective_id {
            return Err(fail(format!("belongs to collective {}", e.collective_id)));
        }
        if e.prev_hash != prev {
            return Err(fail(
                "does not link to the previous entry: removed, inserted or reordered".into(),
            ));
        }
        let hash = entry_hash(e.seq, &e.collective_id, e.time_ms, &e.prev_hash, &e.kind);
        if hash != e.hash {
            return Err(fail("its content does not match its hash: edited".into()));
        }
        if !signed {
            return Err(fail("its signature does not verify".into()));
        }
        match &e.kind {
            EntryKind::Deposit { amount, .. } => {
                summary.deposited = summary
                    .deposited
                    .checked_add(*amount)
                    .ok_or_else(|| fail("deposits overflow".into()))?;
            }
            EntryKind::Payment { amount, .. } => {
                summary.paid = summary
                    .paid
                    .checked_add(*amount)
                    .ok_or_else(|| fail("payments overflow".into()))?;
                summary.payments += 1;
                if summary.paid > summary.deposited {
                    return Err(fail("the balance goes below zero".into()));
                }
            }
            EntryKind::ModelVersion { .. } => summary.model_versions += 1,
            EntryKind::JobStarted { .. } | EntryKind::JobEnded { .. } => {}
        }
        prev = e.hash.clone();
        summary.entries += 1;
    }
    summary.balance = summary
        .deposited
        .checked_sub(summary.paid)
        .unwrap_or_default();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{Signer, SigningKey};

    fn chain(key: &SigningKey, kinds: Vec<EntryKind>) -> Vec<LedgerEntry> {
        let mut prev = genesis_hash();
        let mut out = Vec::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            let seq = i as u64 + 1;
            let hash = entry_hash(seq, "c", 1000 + seq, &prev, &kind);
            let signature = hex::encode(key.sign_bytes(hash.as_bytes()));
            out.push(LedgerEntry {
                seq,
                collective_id: "c".into(),
                time_ms: 1000 + seq,
                prev_hash: prev.clone(),
                kind,
                hash: hash.clone(),
                signature,
            });
            prev = hash;
        }
        out
    }

    fn payment(round: u32) -> EntryKind {
        EntryKind::Payment {
            job_id: "j".into(),
            round,
            payee_commitment: "ab".into(),
            amount: Amount(10),
        }
    }

    fn sample(key: &SigningKey) -> Vec<LedgerEntry> {
        chain(
            key,
            vec![
                EntryKind::Deposit {
                    amount: Amount(100),
                    reference: "n".into(),
                },
                payment(1),
                payment(1),
                payment(2),
            ],
        )
    }

    #[test]
    fn an_intact_ledger_verifies_and_adds_up() {
        let key = SigningKey::generate().unwrap();
        let s = verify_chain(&sample(&key), &key.public_key(), "c").unwrap();
        assert_eq!((s.entries, s.payments, s.balance), (4, 3, Amount(70)));
    }

    #[test]
    fn edits_removals_and_reorderings_are_found() {
        let key = SigningKey::generate().unwrap();
        let pk = key.public_key();
        let mut edited = sample(&key);
        if let EntryKind::Payment { amount, .. } = &mut edited[2].kind {
            *amount = Amount(1);
        }
        assert_eq!(verify_chain(&edited, &pk, "c").unwrap_err().seq, 3);
        assert!(
            verify_chain(&edited, &pk, "c")
                .unwrap_err()
                .reason
                .contains("edited")
        );

        let mut removed = sample(&key);
        removed.remove(1);
        assert!(
            verify_chain(&removed, &pk, "c")
                .unwrap_err()
                .reason
                .contains("removed")
        );

        let mut reordered = sample(&key);
        reordered.swap(1, 2);
        assert!(verify_chain(&reordered, &pk, "c").is_err());

        let mut truncated_tail_relinked = sample(&key);
        truncated_tail_relinked.pop();
        assert!(
            verify_chain(&truncated_tail_relinked, &pk, "c").is_ok(),
            "a shorter prefix is still a valid ledger"
        );

        let other = SigningKey::generate().unwrap();
        assert!(
            verify_chain(&sample(&other), &pk, "c")
                .unwrap_err()
                .reason
                .contains("signature")
        );
    }

    #[test]
    fn the_first_bad_entry_is_reported_though_signatures_are_checked_together() {
        let key = SigningKey::generate().unwrap();
        let pk = key.public_key();
        let other = SigningKey::generate().unwrap();
        let forge = |e: &mut LedgerEntry| {
            e.signature = hex::encode(other.sign_bytes(e.hash.as_bytes()));
        };
        // An edit at 2 before a forged signature at 3: the edit.
        let mut edited_first = sample(&key);
        edited_first[1].time_ms += 1;
        forge(&mut edited_first[2]);
        let e = verify_chain(&edited_first, &pk, "c").unwrap_err();
        assert_eq!((e.seq, e.reason.contains("edited")), (2, true), "{e}");
        // A forged signature at 2 before an edit at 3: the signature.
        let mut forged_first = sample(&key);
        forge(&mut forged_first[1]);
        forged_first[2].time_ms += 1;
        let e = verify_chain(&forged_first, &pk, "c").unwrap_err();
        assert_eq!((e.seq, e.reason.contains("signature")), (2, true), "{e}");
    }

    #[test]
    fn overspending_is_found() {
        let key = SigningKey::generate().unwrap();
        let overspent = chain(
            &key,
            vec![
                EntryKind::Deposit {
                    amount: Amount(15),
                    reference: "n".into(),
                },
                payment(1),
                payment(1),
            ],
        );
        assert!(
            verify_chain(&overspent, &key.public_key(), "c")
                .unwrap_err()
                .reason
                .contains("below zero")
        );
    }
}

/// Property-based fuzzing of ledger verification: a real chain mutated on
/// the wire and entry by entry, and chains of arbitrary entries signed by
/// the ledger's own key, checked against a reference sum.
#[cfg(test)]
mod fuzz {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;
    use crate::signing::{Signer, SigningKey};
    use c2ssi_fuzzing::{config, json_mutations, mutate, mutate_json, mutations};

    static KEY: LazyLock<SigningKey> =
        LazyLock::new(|| SigningKey::generate().expect("the system has randomness"));

    /// `kinds` as a chain of collective `c`, signed by [`KEY`].
    fn chain(kinds: Vec<EntryKind>) -> Vec<LedgerEntry> {
        let mut prev = genesis_hash();
        let mut out = Vec::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            let seq = i as u64 + 1;
            let hash = entry_hash(seq, "c", 1000 + seq, &prev, &kind);
            let signature = hex::encode(KEY.sign_bytes(hash.as_bytes()));
            out.push(LedgerEntry {
                seq,
                collective_id: "c".into(),
                time_ms: 1000 + seq,
                prev_hash: prev.clone(),
                kind,
                hash: hash.clone(),
                signature,
            });
            prev = hash;
        }
        out
    }

    /// A real ledger with every kind of entry, and its wire form.
    static LEDGER: LazyLock<(Vec<LedgerEntry>, Vec<u8>)> = LazyLock::new(|| {
        let entries = chain(vec![
            EntryKind::Deposit {
                amount: Amount(100),
                reference: "n1".into(),
            },
            EntryKind::JobStarted {
                job_id: "j".into(),
                budget: Amount(50),
            },
            EntryKind::Payment {
                job_id: "j".into(),
                round: 1,
                payee_commitment: "ab".repeat(32),
                amount: Amount(10),
            },
            EntryKind::ModelVersion {
                job_id: "j".into(),
                round: 1,
                model_hash: "cd".repeat(32),
                parent_hash: Some("ef".repeat(32)),
            },
            EntryKind::Payment {
                job_id: "j".into(),
                round: 2,
                payee_commitment: "12".repeat(32),
                amount: Amount(90),
            },
            EntryKind::JobEnded {
                job_id: "j".into(),
                reason: "completed".into(),
            },
        ]);
        verify_chain(&entries, &KEY.public_key(), "c").expect("the ledger verifies");
        let wire = serde_json::to_vec(&entries).expect("the ledger serializes");
        (entries, wire)
    });

    /// Verifies `entries`; whatever verifies is a prefix of the real ledger.
    /// The signature is compared as the bytes it decodes to: hex is read in
    /// either case, so `AB` and `ab` are the same signature (the entry's
    /// hash, which the chain links by, is compared exactly).
    fn verifies_only_a_prefix(entries: &[LedgerEntry]) -> Result<(), TestCaseError> {
        let (original, _) = &*LEDGER;
        if let Ok(summary) = verify_chain(entries, &KEY.public_key(), "c") {
            prop_assert!(entries.len() <= original.len());
            let normalized: Vec<LedgerEntry> = entries
                .iter()
                .map(|e| LedgerEntry {
                    signature: e.signature.to_ascii_lowercase(),
                    ..e.clone()
                })
                .collect();
            prop_assert_eq!(&normalized[..], &original[..entries.len()]);
            prop_assert_eq!(summary.entries, entries.len() as u64);
        }
        Ok(())
    }

    fn amount() -> impl Strategy<Value = Amount> {
        prop_oneof![
            (0u64..200).prop_map(Amount),
            any::<u64>().prop_map(Amount),
            Just(Amount(u64::MAX)),
        ]
    }

    fn kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            (amount(), ".{0,8}")
                .prop_map(|(amount, reference)| EntryKind::Deposit { amount, reference }),
            (".{0,8}", any::<u32>(), ".{0,8}", amount()).prop_map(
                |(job_id, round, payee_commitment, amount)| EntryKind::Payment {
                    job_id,
                    round,
                    payee_commitment,
                    amount,
                }
            ),
            (
                ".{0,8}",
                any::<u32>(),
                ".{0,8}",
                proptest::option::of(".{0,8}")
            )
                .prop_map(|(job_id, round, model_hash, parent_hash)| {
                    EntryKind::ModelVersion {
                        job_id,
                        round,
                        model_hash,
                        parent_hash,
                    }
                }),
            (".{0,8}", amount())
                .prop_map(|(job_id, budget)| EntryKind::JobStarted { job_id, budget }),
            (".{0,8}", ".{0,8}")
                .prop_map(|(job_id, reason)| EntryKind::JobEnded { job_id, reason }),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn a_mutated_ledger_on_the_wire_verifies_only_as_a_prefix(mutations in mutations()) {
            let bytes = mutate(&LEDGER.1, &mutations);
            if let Ok(entries) = serde_json::from_slice::<Vec<LedgerEntry>>(&bytes) {
                verifies_only_a_prefix(&entries)?;
            }
        }

        /// Entries edited, removed, duplicated, reordered field by field.
        #[test]
        fn a_ledger_mutated_entry_by_entry_verifies_only_as_a_prefix(mutations in json_mutations()) {
            let value = serde_json::to_value(&LEDGER.0).expect("the ledger serializes");
            if let Ok(entries) = serde_json::from_value::<Vec<LedgerEntry>>(mutate_json(&value, &mutations)) {
                verifies_only_a_prefix(&entries)?;
            }
        }

        #[test]
        fn arbitrary_json_is_no_ledger(text in ".*", collective in ".{0,4}") {
            if let Ok(entries) = serde_json::from_str::<Vec<LedgerEntry>>(&text) {
                let _ = verify_chain(&entries, &KEY.public_key(), &collective);
            }
        }

        /// The ledger's own key signs whatever the broker records: sums
        /// that overflow or go below zero are refused, and what verifies
        /// adds up as exact arithmetic says.
        #[test]
        fn a_signed_ledger_of_any_entries_adds_up_or_is_refused(
            kinds in proptest::collection::vec(kind(), 0..12),
        ) {
            let entries = chain(kinds);
            let (mut deposited, mut paid, mut payments, mut versions) = (0u128, 0u128, 0u64, 0u64);
            let mut valid = true;
            for e in &entries {
                match &e.kind {
                    EntryKind::Deposit { amount, .. } => deposited += u128::from(amount.0),
                    EntryKind::Payment { amount, .. } => {
                        paid += u128::from(amount.0);
                        payments += 1;
                        valid &= paid <= deposited;
                    }
                    EntryKind::ModelVersion { .. } => versions += 1,
                    EntryKind::JobStarted { .. } | EntryKind::JobEnded { .. } => {}
                }
                valid &= deposited <= u128::from(u64::MAX);
            }
            match verify_chain(&entries, &KEY.public_key(), "c") {
                Ok(summary) => {
                    prop_assert!(valid);
                    prop_assert_eq!(u128::from(summary.deposited.0), deposited);
                    prop_assert_eq!(u128::from(summary.paid.0), paid);
                    prop_assert_eq!(u128::from(summary.balance.0), deposited - paid);
                    prop_assert_eq!((summary.payments, summary.model_versions), (payments, versions));
                }
                Err(e) => {
                    prop_assert!(!valid, "{e}");
                    prop_assert!(e.reason.contains("overflow") || e.reason.contains("below zero"), "{e}");
                }
            }
        }
    }
}
