//! Wallet check-ins held in memory, so that a check-in needs no synced
//! write: each wallet's last check-in time, written to `subscriptions`
//! (`last_checkin_ms`) for all wallets at once every second and before a
//! round samples, and the last signed check-in each wallet made, against
//! replays. A wallet's time is written again only once it has moved by a
//! tenth of the liveness window: the database may say a wallet was last
//! seen up to that much earlier than it was.
//!
//! Replays: a check-in is taken only if it was issued after the wallet's
//! last one that this process took, and after this process started (what a
//! process took before a restart is forgotten). A check-in replayed to
//! another broker on the same database within its validity is not caught
//! here; it gets no task the wallet already took, since a task is handed
//! out once, in a synced transaction (see `docs/ROBUSTNESS.md`).

use std::collections::HashMap;
use std::sync::Mutex;

use c2ssi_protocol::{Header, PublicKey, now_ms};

use crate::database::Database;
use crate::error::{BrokerError, Result};
use crate::nonces::MAX_REQUEST_VALIDITY_MS;
use crate::params;

#[derive(Debug, Clone)]
struct Last {
    issued_ms: u64,
    nonce: String,
    seen_ms: u64,
    written_ms: Option<u64>,
}

/// Check-ins taken by this process.
#[derive(Debug)]
pub struct CheckIns {
    started_ms: u64,
    granularity_ms: u64,
    last: Mutex<HashMap<(String, PublicKey), Last>>,
}

impl CheckIns {
    /// Check-ins of wallets that count as live for `liveness_ms` after one.
    pub fn new(liveness_ms: u64) -> CheckIns {
        CheckIns {
            started_ms: now_ms(),
            granularity_ms: liveness_ms / 10,
            last: Mutex::default(),
        }
    }

    /// Takes a check-in of `wallet` (already verified and subscribed to
    /// `collective_id`), or refuses it as a replay.
    pub fn take(&self, collective_id: &str, wallet: &PublicKey, header: &Header) -> Result<()> {
        let now = now_ms();
        if header.expires_at_ms > now.saturating_add(MAX_REQUEST_VALIDITY_MS) {
            return Err(BrokerError::Unauthorized(format!(
                "the check-in claims to be valid for more than {} s",
                MAX_REQUEST_VALIDITY_MS / 1000
            )));
        }
        if header.issued_at_ms < self.started_ms {
            return Err(BrokerError::Conflict(
                "the check-in was signed before this broker started; sign a new one".into(),
            ));
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let key = (collective_id.to_string(), *wallet);
        if let Some(previous) = last.get(&key) {
            let replay = header.issued_at_ms < previous.issued_ms
                || (header.issued_at_ms == previous.issued_ms && header.nonce == previous.nonce);
            if replay {
                return Err(BrokerError::Conflict(
                    "this check-in is not newer than the wallet's last one (a replay, or a \
                     clock that went back)"
                        .into(),
                ));
            }
        }
        let written_ms = last.get(&key).and_then(|l| l.written_ms);
        last.insert(
            key,
            Last {
                issued_ms: header.issued_at_ms,
                nonce: header.nonce.clone(),
                seen_ms: now,
                written_ms,
            },
        );
        Ok(())
    }

    /// Writes the check-ins taken since the last write, in one transaction;
    /// how many. On failure they are kept for the next write.
    pub fn write(&self, db: &Database) -> Result<usize> {
        let pending: Vec<((String, PublicKey), u64)> = {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            last.iter()
                .filter(|(_, l)| {
                    l.written_ms
                        .is_none_or(|w| l.seen_ms >= w + self.granularity_ms.max(1))
                })
                .map(|(k, l)| (k.clone(), l.seen_ms))
                .collect()
        };
        if pending.is_empty() {
            return Ok(0);
        }
        db.write(|tx| {
            for ((collective, wallet), seen) in &pending {
                tx.execute(
                    "UPDATE subscriptions SET last_checkin_ms = ?3
                     WHERE collective_id = ?1 AND wallet = ?2
                       AND (last_checkin_ms IS NULL OR last_checkin_ms < ?3)",
                    params![collective, wallet.to_hex(), *seen as i64],
                )?;
            }
            Ok(())
        })?;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for (key, seen) in &pending {
            if let Some(l) = last.get_mut(key) {
                l.written_ms = Some(l.written_ms.map_or(*seen, |w| w.max(*seen)));
            }
        }
        Ok(pending.len())
    }
}

#[cfg(test)]
mod tests {
    use c2ssi_protocol::{Purpose, Signer, SigningKey};

    use super::*;

    #[test]
    fn a_check_in_is_taken_once_and_only_newer_ones_after_it() {
        let checkins = CheckIns::new(30_000);
        let wallet = SigningKey::generate().unwrap().public_key();
        let first = Header::new(Purpose::CheckIn, "c", 60_000);
        checkins.take("c", &wallet, &first).unwrap();
        assert!(matches!(
            checkins.take("c", &wallet, &first),
            Err(BrokerError::Conflict(_))
        ));
        let mut older = Header::new(Purpose::CheckIn, "c", 60_000);
        older.issued_at_ms = first.issued_at_ms - 1;
        assert!(matches!(
            checkins.take("c", &wallet, &older),
            Err(BrokerError::Conflict(_))
        ));
        let mut newer = Header::new(Purpose::CheckIn, "c", 60_000);
        newer.issued_at_ms = first.issued_at_ms + 1;
        checkins.take("c", &wallet, &newer).unwrap();
        // Another collective keeps its own order.
        checkins.take("d", &wallet, &first).unwrap();
        let forever = Header::new(Purpose::CheckIn, "c", u64::MAX / 2);
        assert!(matches!(
            checkins.take("c", &wallet, &forever),
            Err(BrokerError::Unauthorized(_))
        ));
    }

    #[test]
    fn a_wallet_is_written_when_new_and_again_once_its_time_moved_enough() {
        let db = Database::in_memory().unwrap();
        let checkins = CheckIns::new(30_000);
        let wallet = SigningKey::generate().unwrap().public_key();
        checkins
            .take("c", &wallet, &Header::new(Purpose::CheckIn, "c", 60_000))
            .unwrap();
        // (No such subscription: the update changes no row, but is made.)
        assert_eq!(checkins.write(&db).unwrap(), 1);
        let mut again = Header::new(Purpose::CheckIn, "c", 60_000);
        again.issued_at_ms += 1;
        checkins.take("c", &wallet, &again).unwrap();
        assert_eq!(checkins.write(&db).unwrap(), 0, "moved less than 3 s");
        checkins
            .last
            .lock()
            .unwrap()
            .values_mut()
            .for_each(|l| l.seen_ms += 3_000);
        assert_eq!(checkins.write(&db).unwrap(), 1);
    }

    #[test]
    fn a_check_in_signed_before_the_process_started_is_refused() {
        let checkins = CheckIns::new(30_000);
        let wallet = SigningKey::generate().unwrap().public_key();
        let mut before = Header::new(Purpose::CheckIn, "c", 60_000);
        before.issued_at_ms = checkins.started_ms - 1;
        assert!(matches!(
            checkins.take("c", &wallet, &before),
            Err(BrokerError::Conflict(_))
        ));
    }
}
