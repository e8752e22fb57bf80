//! Status lists (table `status_lists`): the revocation lists credential
//! issuers sign (W3C Bitstring Status List), pushed to the broker by anyone
//! and kept only when their issuer's proof verifies and the issuer is one a
//! collective here names. A newer list replaces an older one, and every
//! subscription whose credential it revokes ends in the same transaction.

use crate::database::Sql;
use crate::params;
use c2ssi_credentials::{Credential, Did, StatusList};
use c2ssi_protocol::PublicKey;

use crate::distributor;
use crate::error::{BrokerError, Result};

/// Issuer `issuer`'s list `id` as stored, if any. Lists are kept per
/// issuer: one issuer cannot take another's list id.
pub fn get_in(tx: &Sql<'_>, issuer: &Did, id: &str) -> Result<Option<StatusList>> {
    let json: Option<String> = tx.query_opt(
        "SELECT credential FROM status_lists WHERE issuer = ?1 AND id = ?2",
        params![issuer.as_str(), id],
        |r| r.get(0),
    )?;
    let Some(json) = json else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_str(&json)?;
    // Stored only after it verified; a row that no longer does is damage.
    StatusList::verify(value)
        .map(Some)
        .map_err(|e| BrokerError::Internal(format!("stored status list {id}: {e}")))
}

/// Whether `credential` is revoked by the status list this broker holds for
/// it. A credential with a status entry whose list this broker has never
/// received is refused: its issuer publishes the list first (fail closed).
pub fn check_in(tx: &Sql<'_>, credential: &Credential) -> Result<()> {
    let Some(status) = credential.status() else {
        return Ok(());
    };
    let Some(list) = get_in(tx, credential.issuer(), &status.list)? else {
        return Err(BrokerError::Forbidden(format!(
            "the credential's status list {} is not known to this broker: its issuer publishes \
             it first (`issuer publish`)",
            status.list
        )));
    };
    if list.is_revoked(status.index) {
        return Err(BrokerError::Forbidden(
            "the credential was revoked by its issuer".into(),
        ));
    }
    Ok(())
}

/// Stores `list` if it is newer than the one held (the issuer must be named
/// by `known_issuers`), and ends every subscription whose credential it
/// revokes. Returns how many ended.
pub fn put_in(tx: &Sql<'_>, list: &StatusList, issuer_is_named: bool) -> Result<u64> {
    if !issuer_is_named {
        return Err(BrokerError::Forbidden(format!(
            "no collective here requires credentials from {}",
            list.issuer()
        )));
    }
    let held: Option<(i64, String)> = tx.query_opt(
        "SELECT valid_from_ms, credential FROM status_lists WHERE issuer = ?1 AND id = ?2",
        params![list.issuer().as_str(), list.id()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some((from, stored)) = held {
        // An older list never replaces a newer one (that would undo a
        // revocation); at the same moment, only the very same list is taken
        // again (the issuer's own re-push).
        let same = serde_json::to_string(list.json())? == stored;
        if from as u64 > list.valid_from_ms() || (from as u64 == list.valid_from_ms() && !same) {
            return Err(BrokerError::Conflict(format!(
                "this broker holds a newer version of status list {}",
                list.id()
            )));
        }
    }
    tx.execute(
        "INSERT INTO status_lists (id, issuer, valid_from_ms, credential) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (issuer, id) DO UPDATE SET valid_from_ms = ?3, credential = ?4",
        params![
            list.id(),
            list.issuer().as_str(),
            list.valid_from_ms() as i64,
            serde_json::to_string(list.json())?
        ],
    )?;
    let rows = tx.query_map(
        "SELECT collective_id, wallet, status_index FROM subscriptions
         WHERE status_list = ?1 AND credential_issuer = ?2",
        params![list.id(), list.issuer().as_str()],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?)),
    )?;
    let mut revoked = Vec::new();
    for row in rows {
        let (collective, wallet, index) = row;
        if list.is_revoked(index as u64) {
            revoked.push((collective, wallet));
        }
    }
    for (collective, wallet) in &revoked {
        end_in(tx, collective, &PublicKey::from_hex(wallet)?)?;
    }
    Ok(revoked.len() as u64)
}

/// Ends a subscription whose credential no longer holds: the row goes, and
/// the wallet's undelivered tasks are withdrawn.
pub fn end_in(tx: &Sql<'_>, collective: &str, wallet: &PublicKey) -> Result<()> {
    let removed = tx.execute(
        "DELETE FROM subscriptions WHERE collective_id = ?1 AND wallet = ?2",
        params![collective, wallet.to_hex()],
    )?;
    distributor::withdraw_in(tx, wallet)?;
    crate::subscriptions::record_count_in(tx, collective, -(removed as i64))
}
