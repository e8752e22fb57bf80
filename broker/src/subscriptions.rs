//! Subscriptions (table `subscriptions`): each wallet's signed consent to
//! one version of a collective's manifest, and when it last checked in. Only
//! wallets that consented to the current version are sampled.

use crate::params;
use c2ssi_credentials::{Credential, Did};
use c2ssi_protocol::{
    CheckIn, CredentialRequirement, Message, PublicKey, Purpose, Signed, SubscriberCount,
    Subscription, Unsubscription, now_ms,
};

use crate::checkins::CheckIns;
use crate::database::{Database, Sql};
use crate::distributor;
use crate::error::{BrokerError, Result};
use crate::nonces;
use crate::status_lists;

/// The most credentials one subscription may present.
const MAX_PRESENTED: usize = 4;

/// The presented credential that meets `requirement` for `wallet` at `now`:
/// its issuer's proof verifies, it has the type, one of the named issuers
/// issued it, it is about this wallet's `did:key`, and it is valid now.
/// Revocation is checked apart, in the transaction.
fn admitting_credential(
    requirement: &CredentialRequirement,
    presented: &[serde_json::Value],
    wallet: &PublicKey,
    now: u64,
) -> Result<Credential> {
    if presented.is_empty() {
        return Err(BrokerError::Forbidden(format!(
            "this collective requires {requirement}; the subscription presents none"
        )));
    }
    if presented.len() > MAX_PRESENTED {
        return Err(BrokerError::Invalid(format!(
            "a subscription presents at most {MAX_PRESENTED} credentials"
        )));
    }
    let did = Did::from_ed25519(wallet.0);
    let mut reasons = Vec::new();
    for json in presented {
        let c = match Credential::verify(json.clone()) {
            Ok(c) => c,
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        if !c.has_type(&requirement.credential_type) {
            reasons.push(format!(
                "{} is not a {}",
                c.id(),
                requirement.credential_type
            ));
        } else if !requirement.issuers.contains(c.issuer()) {
            reasons.push(format!(
                "{} is issued by {}, not a named issuer",
                c.id(),
                c.issuer()
            ));
        } else if c.subject() != &did {
            reasons.push(format!(
                "{} is about {}, not this wallet ({did})",
                c.id(),
                c.subject()
            ));
        } else if let Err(e) = c.check_time(now) {
            reasons.push(format!("{}: {e}", c.id()));
        } else {
            return Ok(c);
        }
    }
    Err(BrokerError::Forbidden(format!(
        "this collective requires {requirement}; none presented is accepted: {}",
        reasons.join("; ")
    )))
}

/// The subscription store.
#[derive(Clone, Debug)]
pub struct Subscriptions {
    db: Database,
    checkins: std::sync::Arc<CheckIns>,
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
    /// The store in `db`, for wallets that count as live for `liveness_ms`
    /// after a check-in.
    pub fn new(db: Database, liveness_ms: u64) -> Subscriptions {
        Subscriptions {
            db,
            checkins: std::sync::Arc::new(CheckIns::new(liveness_ms)),
        }
    }

    /// Records a wallet's signed consent to the manifest whose digest is
    /// `current_digest` (the collective's current version); a wallet that
    /// consented to an earlier version consents again this way.
    ///
    /// When `requirement` is given, the subscription must present a credential
    /// that meets it and is not revoked; one subscription per credential
    /// subject and per credential is admitted (a unique index says so).
    pub fn subscribe(
        &self,
        id: &str,
        current_digest: &str,
        requirement: Option<&CredentialRequirement>,
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
        let credential = requirement
            .map(|r| admitting_credential(r, &body.credentials, &body.wallet, now_ms()))
            .transpose()?;
        self.db.write(|tx| {
            if let Some(c) = &credential {
                status_lists::check_in(tx, c)?;
                let holder: Option<String> = tx
                    .query_opt(
                        "SELECT wallet FROM subscriptions WHERE collective_id = ?1
                         AND (credential_subject = ?2 OR credential_id = ?3)",
                        params![id, c.subject().as_str(), c.id()],
                        |r| r.get(0),
                    )?;
                if holder.is_some_and(|w| w != body.wallet.to_hex()) {
                    return Err(BrokerError::Conflict(
                        "this credential already admitted another subscription to this \
                         collective: one per credential subject"
                            .into(),
                    ));
                }
            }
            nonces::remember_in(tx, &request.signer, body.header())?;
            let status = credential.as_ref().and_then(|c| c.status());
            let known = tx
                .query_opt(
                    "SELECT 1 FROM subscriptions WHERE collective_id = ?1 AND wallet = ?2",
                    params![id, body.wallet.to_hex()],
                    |_| Ok(()),
                )?
                .is_some();
            tx.execute(
                "INSERT INTO subscriptions (collective_id, wallet, manifest_digest, contract, subscribed_ms,
                     credential_id, credential_subject, credential_issuer, credential_valid_until_ms,
                     status_list, status_index)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (collective_id, wallet)
                 DO UPDATE SET manifest_digest = ?3, contract = ?4, subscribed_ms = ?5,
                     credential_id = ?6, credential_subject = ?7, credential_issuer = ?8,
                     credential_valid_until_ms = ?9, status_list = ?10, status_index = ?11",
                params![
                    id,
                    body.wallet.to_hex(),
                    body.manifest_digest,
                    serde_json::to_string(request)?,
                    now_ms() as i64,
                    credential.as_ref().map(|c| c.id().to_string()),
                    credential.as_ref().map(|c| c.subject().to_string()),
                    credential.as_ref().map(|c| c.issuer().to_string()),
                    credential
                        .as_ref()
                        .and_then(|c| c.valid_until_ms())
                        .map(|t| t as i64),
                    status.map(|s| s.list.clone()),
                    status.map(|s| s.index as i64),
                ],
            )?;
            record_count_in(tx, id, if known { 0 } else { 1 })
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
            record_count_in(tx, id, -(removed as i64))
        })
    }

    /// Checks a wallet agent's check-in and records that it is alive (in
    /// memory); `also` reads what the answer needs in the same snapshot.
    pub fn check_in<T>(
        &self,
        id: &str,
        request: &Signed<CheckIn>,
        also: impl FnOnce(&Sql<'_>, &CheckIn) -> Result<T>,
    ) -> Result<(CheckIn, T)> {
        let body = request.open(None, Purpose::CheckIn, now_ms())?;
        check_collective(&body.header.collective_id, id)?;
        if body.wallet != request.signer {
            return Err(BrokerError::Unauthorized(
                "a check-in must be signed by the wallet".into(),
            ));
        }
        // One read: the check-in itself is kept in memory (`checkins`).
        let (until, more) = self.db.read(|c| {
            let until: Option<Option<i64>> = c.query_opt(
                "SELECT credential_valid_until_ms FROM subscriptions
                 WHERE collective_id = ?1 AND wallet = ?2",
                params![id, body.wallet.to_hex()],
                |r| r.get(0),
            )?;
            let more = match until {
                Some(_) => Some(also(c, &body)?),
                None => None,
            };
            Ok((until, more))
        })?;
        let Some(until) = until else {
            return Err(BrokerError::Forbidden(format!(
                "wallet {} is not subscribed to '{id}'",
                body.wallet.short()
            )));
        };
        let expired = match until {
            Some(until) if until as u64 <= now_ms() => {
                self.db
                    .write(|tx| status_lists::end_in(tx, id, &body.wallet))?;
                true
            }
            _ => false,
        };
        if expired {
            return Err(BrokerError::Forbidden(format!(
                "the credential that admitted wallet {} to '{id}' expired: the subscription \
                 ended; subscribe again with a valid one",
                body.wallet.short()
            )));
        }
        self.checkins.take(id, &body.wallet, body.header())?;
        let more =
            more.ok_or_else(|| BrokerError::Internal("read with the subscription".into()))?;
        Ok((body, more))
    }

    /// Writes the check-ins taken in memory to the database (every second,
    /// and before a round samples live wallets); how many.
    pub fn write_check_ins(&self) -> Result<usize> {
        self.checkins.write(&self.db)
    }

    /// Wallets that consented to `digest` and checked in at or after `since_ms`.
    pub fn live(&self, id: &str, digest: &str, since_ms: u64) -> Result<Vec<PublicKey>> {
        self.db.read(|c| {
            let rows = c.query_map(
                "SELECT wallet FROM subscriptions
                 WHERE collective_id = ?1 AND manifest_digest = ?2 AND last_checkin_ms >= ?3
                   AND (credential_valid_until_ms IS NULL OR credential_valid_until_ms > ?4)
                 ORDER BY wallet",
                params![id, digest, since_ms as i64, now_ms() as i64],
                |r| r.get::<String>(0),
            )?;
            let mut out = Vec::new();
            for row in rows {
                out.push(PublicKey::from_hex(&row)?);
            }
            Ok(out)
        })
    }

    /// Wallets subscribed, and those that consented to `digest`.
    pub fn counts(&self, id: &str, digest: &str) -> Result<(u64, u64)> {
        self.db.read(|c| {
            c.query_row(
                "SELECT COUNT(*),
                        CAST(COALESCE(SUM(CASE WHEN manifest_digest = ?2 THEN 1 ELSE 0 END), 0) AS BIGINT)
                 FROM subscriptions
                 WHERE collective_id = ?1",
                params![id, digest],
                |r| Ok((r.get::<i64>(0)? as u64, r.get::<i64>(1)? as u64)),
            )
        })
    }

    /// Whether `wallet` is subscribed to `id`.
    pub fn is_subscribed(&self, id: &str, wallet: &PublicKey) -> Result<bool> {
        self.db.read(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM subscriptions WHERE collective_id = ?1 AND wallet = ?2",
                params![id, wallet.to_hex()],
                |_| Ok(()),
            )?
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

/// Records the collective's number of subscribers after a change of
/// `delta`, in the current minute's row (the dashboard's "subscribers over
/// time"): the latest row's count plus `delta`, so that a change costs an
/// index lookup, not a count of every subscription (which made subscribing
/// 100,000 wallets quadratic: 420 s against 41 s). Only a collective with no
/// row yet is counted whole, once.
pub fn record_count_in(tx: &Sql<'_>, id: &str, delta: i64) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    let minute = (now_ms() / 60_000 * 60_000) as i64;
    tx.execute(
        "INSERT INTO subscriber_counts (collective_id, minute_ms, subscribers)
         SELECT ?1, ?2, CASE
             WHEN EXISTS (SELECT 1 FROM subscriber_counts WHERE collective_id = ?1)
             THEN (SELECT subscribers FROM subscriber_counts WHERE collective_id = ?1
                   ORDER BY minute_ms DESC LIMIT 1) + ?3
             ELSE (SELECT COUNT(*) FROM subscriptions WHERE collective_id = ?1)
         END
         WHERE TRUE
         ON CONFLICT (collective_id, minute_ms)
         DO UPDATE SET subscribers = subscriber_counts.subscribers + ?3",
        params![id, minute, delta],
    )?;
    Ok(())
}

/// The number of subscribers over time: (minute, count after its last
/// change), oldest first, at most the last `limit` changes.
pub fn history(c: &Sql<'_>, id: &str, limit: usize) -> Result<Vec<SubscriberCount>> {
    let mut rows = c.query_map(
        "SELECT minute_ms, subscribers FROM subscriber_counts WHERE collective_id = ?1
         ORDER BY minute_ms DESC LIMIT ?2",
        params![id, limit as i64],
        |r| {
            Ok(SubscriberCount {
                time_ms: r.get::<i64>(0)? as u64,
                subscribers: r.get::<i64>(1)? as u64,
            })
        },
    )?;
    rows.reverse();
    Ok(rows)
}
