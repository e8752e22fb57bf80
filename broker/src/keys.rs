//! The broker's signing key, kept in its database (table `keys`): it signs
//! tasks, round control messages, ledger entries and receipts, and every
//! manifest the broker serves names it.

use crate::params;
use c2ssi_protocol::SigningKey;

use crate::database::Database;
use crate::error::Result;

/// The broker's key, loaded from the database or created on first use.
pub fn broker_key(db: &Database) -> Result<SigningKey> {
    let existing: Option<Vec<u8>> = db.read(|c| {
        c.query_opt("SELECT pkcs8 FROM keys WHERE name = 'broker'", &[], |r| {
            r.get(0)
        })
    })?;
    if let Some(pkcs8) = existing {
        return Ok(SigningKey::from_pkcs8(&pkcs8)?);
    }
    let key = SigningKey::generate()?;
    db.write(|tx| {
        tx.execute(
            "INSERT INTO keys (name, pkcs8) VALUES ('broker', ?1)",
            params![key.pkcs8()],
        )?;
        Ok(())
    })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use c2ssi_protocol::Signer;

    use super::*;

    #[test]
    fn the_key_is_created_once() {
        let db = Database::in_memory().unwrap();
        let a = broker_key(&db).unwrap();
        let b = broker_key(&db).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }
}
