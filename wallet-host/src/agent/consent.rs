//! Consent that covers every change: a newer version of a manifest the
//! owner consented to is checked (signed by the same collective key, a later
//! version, every field valid) and kept as pending; until the owner consents
//! to it (`wallet consent`), nothing of that collective runs.

use c2ssi_protocol::{Change, Manifest, Purpose, Signed, open_manifest};

use super::{SUBSCRIPTIONS_FILE, Subscriptions};
use crate::store::{Wallet, WalletError};

/// Why a newer manifest was not kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the collective's new manifest was refused: {0}")]
pub struct Refused(pub String);

/// Checks a newer version of `consented`: signed by the collective key the
/// owner consented to (so its id is the same), a later version, valid.
pub fn check_newer(consented: &Manifest, newer: &Signed<Manifest>) -> Result<Manifest, Refused> {
    let id = &consented.header.collective_id;
    if newer.signer != consented.collective_key {
        return Err(Refused(
            "it is not signed by the collective's key you consented to".into(),
        ));
    }
    let manifest = open_manifest(newer, id).map_err(|e| Refused(e.to_string()))?;
    if manifest.version <= consented.version {
        return Err(Refused(format!(
            "version {} is not newer than version {}",
            manifest.version, consented.version
        )));
    }
    Ok(manifest)
}

/// Keeps `newer` as the pending version of collective `id`, replacing an
/// older pending one; returns what changed from the consented version.
pub fn keep_pending(
    wallet: &Wallet,
    id: &str,
    newer: &Signed<Manifest>,
) -> Result<Result<Vec<Change>, Refused>, WalletError> {
    wallet.update_document(SUBSCRIPTIONS_FILE, |subs: &mut Subscriptions| {
        let Some(record) = subs.collectives.get_mut(id) else {
            return Ok(Err(Refused("not subscribed".into())));
        };
        let consented = match record.manifest() {
            Ok(m) => m,
            Err(e) => return Ok(Err(Refused(format!("the consented manifest: {e}")))),
        };
        let manifest = match check_newer(&consented, newer) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let older_pending = record
            .pending
            .as_ref()
            .and_then(|p| p.open_any_time(None, Purpose::Manifest).ok())
            .is_some_and(|p| p.version >= manifest.version);
        if !older_pending {
            record.pending = Some(newer.clone());
        }
        Ok(Ok(consented.changes(&manifest)))
    })
}

/// The manifest in words, as a person reads it before consenting.
pub fn describe(m: &Manifest) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "collective   {} ({}), manifest version {}\n",
        m.name, m.header.collective_id, m.version
    ));
    s.push_str(&format!("task         {}\n", m.description));
    s.push_str(&format!(
        "pays         {} per access to your wallet (even if the algorithm fails on your data)\n",
        m.rate
    ));
    for (i, line) in m.privacy.describe().iter().enumerate() {
        s.push_str(if i == 0 {
            "privacy      "
        } else {
            "             "
        });
        s.push_str(line);
        s.push('\n');
    }
    match &m.credential {
        Some(c) => s.push_str(&format!(
            "identity     subscribers present {c}: one subscription per person it vouches for\n"
        )),
        None => s.push_str(
            "identity     no credential required: anyone may subscribe, with any number of keys\n",
        ),
    }
    s.push_str("needs\n");
    for t in &m.requirements.tables {
        s.push_str(&format!(
            "  table {} (at least {} row(s)):\n",
            t.table, t.min_rows
        ));
        for c in &t.columns {
            s.push_str(&format!("    {:<24} {}\n", c.name, c.ty));
        }
    }
    if m.allowed_algorithms.is_empty() {
        s.push_str("algorithms   none yet (each new one needs your consent again)\n");
    } else {
        s.push_str("algorithms\n");
        for a in &m.allowed_algorithms {
            s.push_str(&format!(
                "  {} {} (sha256 {})\n",
                a.name, a.version, a.sha256
            ));
        }
    }
    s
}
