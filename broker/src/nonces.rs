//! The nonces of signed requests already taken (table `seen_nonces`), so
//! that no signed request is accepted twice.

use crate::database::Sql;
use crate::params;
use c2ssi_protocol::{Header, PublicKey, now_ms};

use crate::error::{BrokerError, Result};

/// The longest validity a signed request may claim: it bounds how long its
/// nonce must be remembered.
pub const MAX_REQUEST_VALIDITY_MS: u64 = 3600 * 1000;

/// Records a request's nonce; a nonce seen before is a replay.
pub fn remember_in(tx: &Sql<'_>, signer: &PublicKey, header: &Header) -> Result<()> {
    let now = now_ms();
    if header.expires_at_ms > now.saturating_add(MAX_REQUEST_VALIDITY_MS) {
        return Err(BrokerError::Unauthorized(format!(
            "the request claims to be valid for more than {} s",
            MAX_REQUEST_VALIDITY_MS / 1000
        )));
    }
    tx.execute(
        "DELETE FROM seen_nonces WHERE expires_ms < ?1",
        params![now as i64],
    )?;
    let inserted = tx.execute(
        "INSERT INTO seen_nonces (signer, nonce, expires_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![signer.to_hex(), header.nonce, header.expires_at_ms as i64],
    )?;
    if inserted == 0 {
        return Err(BrokerError::Conflict(
            "this signed request was already used (replay)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use c2ssi_protocol::{Purpose, Signer, SigningKey};

    use super::*;
    use crate::database::Database;

    #[test]
    fn forgetting_expired_nonces_reads_only_the_expired_ones() {
        // Without an index on the expiry, every signed request scanned every
        // nonce seen in the last minutes: quadratic in a burst of requests.
        let db = Database::in_memory().unwrap();
        let plan: Vec<String> = db
            .read(|c| {
                c.query_map(
                    "EXPLAIN QUERY PLAN DELETE FROM seen_nonces WHERE expires_ms < 5",
                    &[],
                    |r| r.get::<String>(3),
                )
            })
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("seen_nonces_by_expiry")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_nonce_is_taken_once_and_long_validity_is_refused() {
        let db = Database::in_memory().unwrap();
        let key = SigningKey::generate().unwrap().public_key();
        let header = Header::new(Purpose::CheckIn, "c", 60_000);
        db.write(|tx| remember_in(tx, &key, &header)).unwrap();
        assert!(matches!(
            db.write(|tx| remember_in(tx, &key, &header)),
            Err(BrokerError::Conflict(_))
        ));
        let forever = Header::new(Purpose::CheckIn, "c", u64::MAX / 2);
        assert!(matches!(
            db.write(|tx| remember_in(tx, &key, &forever)),
            Err(BrokerError::Unauthorized(_))
        ));
    }
}
