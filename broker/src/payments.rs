//! Payments and budgets (tables `payments` and `accounts`): deposits, and
//! one payment per access, made once per (job, round, wallet). The
//! `payments` table's key enforces it in the same transaction that appends
//! the ledger entry, checks the collective's balance and the job's budget,
//! and records the receipt, so the balance never goes below zero and a
//! crash can neither lose a payment nor make one twice.

use crate::params;
use c2ssi_protocol::{
    Amount, EntryKind, Header, LedgerEntry, PublicKey, Purpose, Receipt, Signed, new_nonce,
    payee_commitment,
};

use crate::database::{Database, Sql};
use crate::error::{BrokerError, Result};
use crate::jobs;
use crate::ledger::Ledger;

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

/// The payment desk, over the database and the ledger.
#[derive(Clone, Debug)]
pub struct Payments {
    db: Database,
    ledger: Ledger,
}

impl Payments {
    /// Payments in `db`, recorded in `ledger`.
    pub fn new(db: Database, ledger: Ledger) -> Payments {
        Payments { db, ledger }
    }

    /// Adds budget.
    pub fn deposit(
        &self,
        collective_id: &str,
        amount: Amount,
        reference: &str,
    ) -> Result<LedgerEntry> {
        if amount == Amount::ZERO {
            return Err(BrokerError::Invalid(
                "a deposit must be more than zero".into(),
            ));
        }
        self.db.write(|tx| {
            let entry = self.ledger.append_in(
                tx,
                collective_id,
                EntryKind::Deposit {
                    amount,
                    reference: reference.to_string(),
                },
            )?;
            tx.execute(
                "INSERT INTO accounts (collective_id, deposited, paid) VALUES (?1, ?2, 0)
                 ON CONFLICT (collective_id) DO UPDATE SET deposited = accounts.deposited + ?2",
                params![collective_id, amount.0 as i64],
            )?;
            Ok(entry)
        })
    }

    /// Deposits and payments so far.
    pub fn balance(&self, collective_id: &str) -> Result<(Amount, Amount)> {
        self.db.read(|c| {
            let row: Option<(i64, i64)> = c.query_opt(
                "SELECT deposited, paid FROM accounts WHERE collective_id = ?1",
                params![collective_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
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
            let existing: Option<String> = tx.query_opt(
                "SELECT receipt FROM payments WHERE job_id = ?1 AND round = ?2 AND wallet = ?3",
                params![job_id, round, wallet.to_hex()],
                |r| r.get(0),
            )?;
            if let Some(receipt) = existing {
                return Ok(Payment::AlreadyPaid(serde_json::from_str(&receipt)?));
            }
            let (deposited, paid): (i64, i64) = tx
                .query_opt(
                    "SELECT deposited, paid FROM accounts WHERE collective_id = ?1",
                    params![collective_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .unwrap_or((0, 0));
            let available = (deposited as u64).saturating_sub(paid as u64);
            if available < rate.0 {
                return Err(BrokerError::PaymentRequired(format!(
                    "the collective's balance {} does not cover the rate {rate}",
                    Amount(available)
                )));
            }
            let spent = jobs::spent_in(tx, job_id)?;
            if spent.0.saturating_add(rate.0) > budget.0 {
                return Err(BrokerError::PaymentRequired(format!(
                    "job {job_id} has spent {spent} of its budget {budget}"
                )));
            }
            let salt = new_nonce();
            let entry = self.ledger.append_in(
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
            let signed = Signed::sign(&receipt, self.ledger.key())?;
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
            jobs::add_spent_in(tx, job_id, rate)?;
            Ok(Payment::Paid(signed))
        })
    }

    /// A wallet's receipts after ledger position `after`.
    pub fn receipts(
        &self,
        collective_id: &str,
        wallet: &PublicKey,
        after: u64,
    ) -> Result<Vec<Signed<Receipt>>> {
        self.db
            .read(|c| receipts_in(c, collective_id, wallet, after))
    }

    /// Whether `wallet` was ever paid by collective `collective_id`.
    pub fn ever_paid(&self, collective_id: &str, wallet: &PublicKey) -> Result<bool> {
        self.db.read(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM payments WHERE collective_id = ?1 AND wallet = ?2)",
                params![collective_id, wallet.to_hex()],
                |r| r.get::<bool>(0),
            )
        })
    }

    /// The wallets paid for an access in a round.
    pub fn paid_in_round(&self, job_id: &str, round: u32) -> Result<Vec<PublicKey>> {
        self.db.read(|c| {
            let rows: Vec<String> = c.query_map(
                "SELECT wallet FROM payments WHERE job_id = ?1 AND round = ?2",
                params![job_id, round],
                |r| r.get(0),
            )?;
            rows.iter().map(|w| Ok(PublicKey::from_hex(w)?)).collect()
        })
    }

    /// Budget that open rounds of other jobs may still pay: their sampled
    /// wallets not paid yet, at `rate`.
    pub fn reserved(&self, collective_id: &str, except_job: &str, rate: Amount) -> Result<u64> {
        self.db.read(|c| {
            let sampled: i64 = c.query_row(
                "SELECT CAST(COALESCE(SUM(r.sampled), 0) AS BIGINT) FROM rounds r JOIN jobs j ON j.id = r.job_id
                 WHERE j.collective_id = ?1 AND r.status = 'open' AND j.id <> ?2",
                params![collective_id, except_job],
                |r| r.get(0),
            )?;
            let paid: i64 = c.query_row(
                "SELECT COUNT(*) FROM payments p JOIN rounds r ON r.job_id = p.job_id AND r.round = p.round
                 WHERE p.collective_id = ?1 AND r.status = 'open' AND p.job_id <> ?2",
                params![collective_id, except_job],
                |r| r.get(0),
            )?;
            Ok((sampled - paid).max(0) as u64 * rate.0)
        })
    }
}

/// A wallet's receipts after ledger sequence `after` (at most 1,000), read in `c`.
pub fn receipts_in(
    c: &Sql<'_>,
    collective_id: &str,
    wallet: &PublicKey,
    after: u64,
) -> Result<Vec<Signed<Receipt>>> {
    c.query_map(
        "SELECT receipt FROM payments WHERE collective_id = ?1 AND wallet = ?2 AND seq > ?3
         ORDER BY seq LIMIT 1000",
        params![collective_id, wallet.to_hex(), after as i64],
        |r| r.json(0),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use c2ssi_protocol::{Signer, SigningKey};

    use super::*;

    fn desk() -> (Payments, Ledger) {
        let db = Database::in_memory().unwrap();
        db.write(|tx| {
            tx.execute(
                "INSERT INTO collectives VALUES ('c', 'k', 1, 'd', 0)", &[],
            )?;
            tx.execute(
                "INSERT INTO jobs (id, collective_id, spec, status, rounds_done, next_round, model_hash, created_ms, updated_ms)
                 VALUES ('j', 'c', '{}', 'running', 0, 1, '', 0, 0)", &[],
            )?;
            Ok(())
        })
        .unwrap();
        let ledger = Ledger::new(db.clone(), Arc::new(SigningKey::generate().unwrap()));
        (Payments::new(db, ledger.clone()), ledger)
    }

    #[test]
    fn one_payment_per_access_within_balance_and_budget() {
        let (l, ledger) = desk();
        let w = SigningKey::generate().unwrap().public_key();
        let v = SigningKey::generate().unwrap().public_key();
        assert!(matches!(
            l.pay("c", "j", 1, &w, Amount(10), Amount(100)),
            Err(BrokerError::PaymentRequired(_))
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
        let summary = ledger.verify("c").unwrap();
        assert_eq!((summary.payments, summary.balance), (2, Amount(5)));
        let receipts = l.receipts("c", &w, 0).unwrap();
        assert_eq!(receipts.len(), 2);
        let r = receipts[0]
            .open_any_time(Some(&ledger.public_key()), Purpose::Receipt)
            .unwrap();
        let entry = &ledger.entries("c").unwrap()[r.entry_seq as usize - 1];
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
        let (l, _) = desk();
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
