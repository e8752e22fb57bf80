//! The ledger: append-only, hash-chained, every entry signed by the ledger's
//! key, in SQLite. Deposits, one payment per access, model versions, job
//! starts and ends.
//!
//! A payment is made once per (job, round, wallet): the `payments` table's
//! key enforces it in the same transaction that appends the entry, checks the
//! collective's balance and the job's budget, and records the receipt, so
//! the balance never goes below zero and a crash can neither lose a payment
//! nor make one twice. The public entry names the payee only by a salted
//! commitment; the salt is in the payee's receipt.

use std::sync::Arc;

use c2ssi_protocol::{
    Amount, EntryKind, Header, LedgerEntry, LedgerSummary, PublicKey, Purpose, Receipt, Signed,
    Signer, SigningKey, entry_hash, genesis_hash, new_nonce, now_ms, payee_commitment,
    verify_chain,
};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::database::Database;
use crate::error::{CollectiveError, Result};

/// How long receipts stay valid as messages (they are records: effectively forever).
const RECEIPT_VALIDITY_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// What a payment attempt did.
#[derive(Debug, Clone)]
pub enum Payment {
    /// Paid now.
    Paid(Signed<Receipt>),
    /// Already paid for this (job, round, wallet): the original receipt.
    AlreadyPaid(Signed<Receipt>),
}

impl Payment {
    /// The receipt, either way.
    pub fn receipt(&self) -> &Signed<Receipt> {
        match self {
            Payment::Paid(r) | Payment::AlreadyPaid(r) => r,
        }
    }
}

/// The ledger.
#[derive(Clone, Debug)]
pub struct Ledger {
    db: Database,
    key: Arc<SigningKey>,
}

impl Ledger {
    /// The ledger in `db`, signing with `key`.
    pub fn new(db: Database, key: Arc<SigningKey>) -> Ledger {
        Ledger { db, key }
    }

    /// The key entries and receipts are signed with.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// Appends an entry inside the caller's transaction.
    pub fn append_in(
        &self,
        tx: &Transaction<'_>,
        collective_id: &str,
        kind: EntryKind,
    ) -> Result<LedgerEntry> {
        let last: Option<(u64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM ledger WHERE collective_id = ?1 ORDER BY seq DESC LIMIT 1",
                params![collective_id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, genesis_hash()),
        };
        let time_ms = now_ms();
        let hash = entry_hash(seq, collective_id, time_ms, &prev_hash, &kind);
        let signature = hex::encode(self.key.sign_bytes(hash.as_bytes()));
        tx.execute(
            "INSERT INTO ledger (collective_id, seq, time_ms, prev_hash, kind, hash, signature)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                collective_id,
                seq as i64,
                time_ms as i64,
                prev_hash,
                serde_json::to_string(&kind)?,
                hash,
                signature
            ],
        )?;
        Ok(LedgerEntry {
            seq,
            collective_id: collective_id.to_string(),
            time_ms,
            prev_hash,
            kind,
            hash,
            signature,
        })
    }

    /// Adds budget.
    pub fn deposit(
        &self,
        collective_id: &str,
        amount: Amount,
        reference: &str,
    ) -> Result<LedgerEntry> {
        if amount == Amount::ZERO {
            return Err(CollectiveError::Invalid(
                "a deposit must be more than zero".into(),
            ));
        }
        self.db.write(|tx| {
            let entry = self.append_in(
                tx,
                collective_id,
                EntryKind::Deposit {
                    amount,
                    reference: reference.to_string(),
                },
            )?;
            tx.execute(
                "INSERT INTO accounts (collective_id, deposited, paid) VALUES (?1, ?2, 0)
                 ON CONFLICT (collective_id) DO UPDATE SET deposited = deposited + ?2",
                params![collective_id, amount.0 as i64],
            )?;
            Ok(entry)
        })
    }

    /// Deposits and payments so far.
    pub fn balance(&self, collective_id: &str) -> Result<(Amount, Amount)> {
        self.db.read(|c| {
            let row: Option<(i64, i64)> = c
                .query_row(
                    "SELECT deposited, paid FROM accounts WHERE collective_id = ?1",
                    params![collective_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (d, p) = row.unwrap_or((0, 0));
            Ok((Amount(d as u64), Amount(p as u64)))
        })
    }

    /// Pays `rate` to `wallet` for its access in (`job_id`, `round`), once,
    /// within the collective's balance and the job's `budget`.
    pub fn pay(
        &self,
        collective_id: &str,
        job_id: &str,
        round: u32,
        wallet: &PublicKey,
        rate: Amount,
        budget: Amount,
    ) -> Result<Payment> {
        self.db.write(|tx| {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT receipt FROM payments WHERE job_id = ?1 AND round = ?2 AND wallet = ?3",
                    params![job_id, round, wallet.to_hex()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(receipt) = existing {
                return Ok(Payment::AlreadyPaid(serde_json::from_str(&receipt)?));
            }
            let (deposited, paid): (i64, i64) = tx
                .query_row(
                    "SELECT deposited, paid FROM accounts WHERE collective_id = ?1",
                    params![collective_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .unwrap_or((0, 0));
            let available = (deposited as u64).saturating_sub(paid as u64);
            if available < rate.0 {
                return Err(CollectiveError::PaymentRequired(format!(
                    "the collective's balance {} does not cover the rate {rate}",
                    Amount(available)
                )));
            }
            let spent: i64 = tx
                .query_row(
                    "SELECT spent FROM jobs WHERE id = ?1",
                    params![job_id],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            if (spent as u64).saturating_add(rate.0) > budget.0 {
                return Err(CollectiveError::PaymentRequired(format!(
                    "job {job_id} has spent {} of its budget {budget}",
                    Amount(spent as u64)
                )));
            }
            let salt = new_nonce();
            let entry = self.append_in(
                tx,
                collective_id,
                EntryKind::Payment {
                    job_id: job_id.to_string(),
                    round,
                    payee_commitment: payee_commitment(wallet, &salt),
                    amount: rate,
                },
            )?;
            let receipt = Receipt {
                header: Header::new(Purpose::Receipt, collective_id, RECEIPT_VALIDITY_MS),
                job_id: job_id.to_string(),
                round,
                wallet: *wallet,
                amount: rate,
                entry_seq: entry.seq,
                entry_hash: entry.hash.clone(),
                payee_salt: salt,
            };
            let signed = Signed::sign(&receipt, self.key.as_ref())?;
            tx.execute(
                "INSERT INTO payments (collective_id, job_id, round, wallet, seq, receipt)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    collective_id,
                    job_id,
                    round,
                    wallet.to_hex(),
                    entry.seq as i64,
                    serde_json::to_string(&signed)?
                ],
            )?;
            tx.execute(
                "UPDATE accounts SET paid = paid + ?2 WHERE collective_id = ?1",
                params![collective_id, rate.0 as i64],
            )?;
            tx.execute(
                "UPDATE jobs SET spent = spent + ?2 WHERE id = ?1",
                params![job_id, rate.0 as i64],
            )?;
            Ok(Payment::Paid(signed))
        })
    }

    /// Every entry of a collective, in order.
    pub fn entries(&self, collective_id: &str) -> Result<Vec<LedgerEntry>> {
        read_entries(&self.db, collective_id)
    }

    /// A wallet's receipts after ledger position `after`.
    pub fn receipts(
        &self,
        collective_id: &str,
        wallet: &PublicKey,
        after: u64,
    ) -> Result<Vec<Signed<Receipt>>> {
        self.db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT receipt FROM payments WHERE collective_id = ?1 AND wallet = ?2 AND seq > ?3
                 ORDER BY seq LIMIT 1000",
            )?;
            let rows = stmt
                .query_map(params![collective_id, wallet.to_hex(), after as i64], |r| {
                    r.get::<_, String>(0)
                })?;
            let mut out = Vec::new();
            for row in rows {
                out.push(serde_json::from_str(&row?)?);
            }
            Ok(out)
        })
    }

    /// Checks the whole chain of a collective.
    pub fn verify(&self, collective_id: &str) -> Result<LedgerSummary> {
        let entries = self.entries(collective_id)?;
        verify_chain(&entries, &self.public_key(), collective_id)
            .map_err(|e| CollectiveError::Conflict(format!("the ledger does not verify: {e}")))
    }
}

/// Every entry of a collective, in order, read from `db` (no key needed:
/// `collective ledger verify --db` checks a database file this way).
pub fn read_entries(db: &Database, collective_id: &str) -> Result<Vec<LedgerEntry>> {
    db.read(|c| {
        let mut stmt = c.prepare(
            "SELECT seq, time_ms, prev_hash, kind, hash, signature FROM ledger
             WHERE collective_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![collective_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, time_ms, prev_hash, kind, hash, signature) = row?;
            out.push(LedgerEntry {
                seq: seq as u64,
                collective_id: collective_id.to_string(),
                time_ms: time_ms as u64,
                prev_hash,
                kind: serde_json::from_str(&kind).map_err(|e| {
                    CollectiveError::Database(format!("ledger entry {seq} does not parse: {e}"))
                })?,
                hash,
                signature,
            });
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        let db = Database::in_memory().unwrap();
        db.write(|tx| {
            tx.execute(
                "INSERT INTO collectives VALUES ('c', 'op', x'00', '{}', 1, 0)",
                [],
            )?;
            tx.execute(
                "INSERT INTO jobs (id, collective_id, spec, status, rounds_done, next_round, model_hash, created_ms, updated_ms)
                 VALUES ('j', 'c', '{}', 'running', 0, 1, '', 0, 0)",
                [],
            )?;
            Ok(())
        })
        .unwrap();
        Ledger::new(db, Arc::new(SigningKey::generate().unwrap()))
    }

    #[test]
    fn one_payment_per_access_within_balance_and_budget() {
        let l = ledger();
        let w = SigningKey::generate().unwrap().public_key();
        let v = SigningKey::generate().unwrap().public_key();
        assert!(matches!(
            l.pay("c", "j", 1, &w, Amount(10), Amount(100)),
            Err(CollectiveError::PaymentRequired(_))
        ));
        l.deposit("c", Amount(25), "n1").unwrap();
        let first = l.pay("c", "j", 1, &w, Amount(10), Amount(100)).unwrap();
        assert!(matches!(first, Payment::Paid(_)));
        let again = l.pay("c", "j", 1, &w, Amount(10), Amount(100)).unwrap();
        assert!(matches!(again, Payment::AlreadyPaid(_)));
        assert_eq!(again.receipt().payload, first.receipt().payload);
        l.pay("c", "j", 2, &w, Amount(10), Amount(100)).unwrap();
        // 5 left: not enough for a third access.
        assert!(l.pay("c", "j", 2, &v, Amount(10), Amount(100)).is_err());
        assert_eq!(l.balance("c").unwrap(), (Amount(25), Amount(20)));
        let summary = l.verify("c").unwrap();
        assert_eq!((summary.payments, summary.balance), (2, Amount(5)));
        let receipts = l.receipts("c", &w, 0).unwrap();
        assert_eq!(receipts.len(), 2);
        let r = receipts[0]
            .open_any_time(Some(&l.public_key()), Purpose::Receipt)
            .unwrap();
        let entry = &l.entries("c").unwrap()[r.entry_seq as usize - 1];
        let EntryKind::Payment {
            payee_commitment: c,
            ..
        } = &entry.kind
        else {
            panic!("not a payment")
        };
        assert_eq!(*c, payee_commitment(&w, &r.payee_salt));
    }

    #[test]
    fn the_job_budget_caps_payments() {
        let l = ledger();
        l.deposit("c", Amount(1000), "n").unwrap();
        let w = SigningKey::generate().unwrap().public_key();
        l.pay("c", "j", 1, &w, Amount(10), Amount(15)).unwrap();
        let err = l.pay("c", "j", 2, &w, Amount(10), Amount(15)).unwrap_err();
        assert!(
            err.to_string()
                .contains("spent 0.000010 of its budget 0.000015"),
            "{err}"
        );
    }
}
