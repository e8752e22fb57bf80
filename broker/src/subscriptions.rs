//! Subscriptions (table `subscriptions`): each wallet's signed consent to
//! one version of a collective's manifest, and when it last checked in. Only
//! wallets that consented to the current version are sampled.

use c2ssi_protocol::{
    CheckIn, Message, PublicKey, Purpose, Signed, Subscription, Unsubscription, now_ms,
};
use rusqlite::{OptionalExtension, params};

use crate::database::Database;
use crate::distributor;
use crate::error::{BrokerError, Result};
use crate::nonces;

/// The subscription store.
#[derive(Clone, Debug)]
pub struct Subscriptions {
    db: Database,
}

fn check_collective(collective_id: &str, id: &str) -> Result<()> {
    if collective_id != id {
        return Err(BrokerError::Unauthorized(format!(
            "the request is for collective '{collective_id}', not '{id}'"
        )));
    }
    Ok(())
}

impl Subscriptions {
    /// The store in `db`.
    pub fn new(db: Database) -> Subscriptions {
        Subscriptions { db }
    }

    /// Records a wallet's signed consent to the manifest whose digest is
    /// `current_digest` (the collective's current version); a wallet that
    /// consented to an earlier version consents again this way.
    pub fn subscribe(
        &self,
        id: &str,
        current_digest: &str,
        request: &Signed<Subscription>,
    ) -> Result<()> {
        let body = request.open(None, Purpose::Subscription, now_ms())?;
        check_collective(&body.header.collective_id, id)?;
        if body.wallet != request.signer {
            return Err(BrokerError::Unauthorized(
                "a subscription must be signed by the subscribing wallet".into(),
            ));
        }
        if body.manifest_digest != current_digest {
            return Err(BrokerError::Conflict(
                "the subscription consents to another version of the manifest than the current \
                 one; fetch it again"
                    .into(),
            ));
        }
        if body.consent.len() > 10_000 {
            return Err(BrokerError::Invalid("the consent text is too long".into()));
        }
        self.db.write(|tx| {
            nonces::remember_in(tx, &request.signer, body.header())?;
            tx.execute(
                "INSERT INTO subscriptions (collective_id, wallet, manifest_digest, contract, subscribed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (collective_id, wallet)
                 DO UPDATE SET manifest_digest = ?3, contract = ?4, subscribed_ms = ?5",
                params![
                    id,
                    body.wallet.to_hex(),
                    body.manifest_digest,
                    serde_json::to_string(request)?,
                    now_ms() as i64
                ],
            )?;
            Ok(())
        })
    }

    /// Removes a wallet's subscription; its undelivered tasks are withdrawn.
    pub fn unsubscribe(&self, id: &str, request: &Signed<Unsubscription>) -> Result<()> {
        let body = request.open(None, Purpose::Unsubscription, now_ms())?;
        check_collective(&body.header.collective_id, id)?;
        if body.wallet != request.signer {
            return Err(BrokerError::Unauthorized(
                "an unsubscription must be signed by the wallet".into(),
            ));
        }
        self.db.write(|tx| {
            nonces::remember_in(tx, &request.signer, body.header())?;
            let removed = tx.execute(
                "DELETE FROM subscriptions WHERE collective_id = ?1 AND wallet = ?2",
                params![id, body.wallet.to_hex()],
            )?;
            if removed == 0 {
                return Err(BrokerError::NotFound(format!(
                    "wallet {} is not subscribed to '{id}'",
                    body.wallet.short()
                )));
            }
            distributor::withdraw_in(tx, &body.wallet)?;
            Ok(())
        })
    }

    /// Checks a wallet agent's check-in and records that it is alive.
    pub fn check_in(&self, id: &str, request: &Signed<CheckIn>) -> Result<CheckIn> {
        let body = request.open(None, Purpose::CheckIn, now_ms())?;
        check_collective(&body.header.collective_id, id)?;
        if body.wallet != request.signer {
            return Err(BrokerError::Unauthorized(
                "a check-in must be signed by the wallet".into(),
            ));
        }
        self.db.write(|tx| {
            nonces::remember_in(tx, &request.signer, body.header())?;
            let touched = tx.execute(
                "UPDATE subscriptions SET last_checkin_ms = ?3 WHERE collective_id = ?1 AND wallet = ?2",
                params![id, body.wallet.to_hex(), now_ms() as i64],
            )?;
            if touched == 0 {
                return Err(BrokerError::Forbidden(format!(
                    "wallet {} is not subscribed to '{id}'",
                    body.wallet.short()
                )));
            }
            Ok(())
        })?;
        Ok(body)
    }

    /// Wallets that consented to `digest` and checked in at or after `since_ms`.
    pub fn live(&self, id: &str, digest: &str, since_ms: u64) -> Result<Vec<PublicKey>> {
        self.db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT wallet FROM subscriptions
                 WHERE collective_id = ?1 AND manifest_digest = ?2 AND last_checkin_ms >= ?3
                 ORDER BY wallet",
            )?;
            let rows = stmt.query_map(params![id, digest, since_ms as i64], |r| {
                r.get::<_, String>(0)
            })?;
            let mut out = Vec::new();
            for row in rows {
                out.push(PublicKey::from_hex(&row?)?);
            }
            Ok(out)
        })
    }

    /// Wallets subscribed, and those that consented to `digest`.
    pub fn counts(&self, id: &str, digest: &str) -> Result<(u64, u64)> {
        self.db.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(manifest_digest = ?2), 0) FROM subscriptions
                 WHERE collective_id = ?1",
                params![id, digest],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?)
        })
    }

    /// Whether `wallet` is subscribed to `id`.
    pub fn is_subscribed(&self, id: &str, wallet: &PublicKey) -> Result<bool> {
        self.db.read(|c| {
            Ok(c.query_row(
                "SELECT 1 FROM subscriptions WHERE collective_id = ?1 AND wallet = ?2",
                params![id, wallet.to_hex()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
    }

    /// Marks wallets alive (the simulation checks wallets in without HTTP).
    pub fn touch(&self, id: &str, wallets: &[PublicKey]) -> Result<()> {
        self.db.write(|tx| {
            let now = now_ms() as i64;
            for w in wallets {
                tx.execute(
                    "UPDATE subscriptions SET last_checkin_ms = ?3 WHERE collective_id = ?1 AND wallet = ?2",
                    params![id, w.to_hex(), now],
                )?;
            }
            Ok(())
        })
    }
}
