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

/// The sentence a person consents to, naming the manifest version, the rate
/// and the privacy terms.
pub fn consent_text(manifest: &Manifest) -> String {
    format!(
        "I let collective '{}' ({}) run the algorithms its signed manifest version {} allows on \
         the columns it requires, for {} per access, under its privacy terms: {}.",
        manifest.name,
        manifest.header.collective_id,
        manifest.version,
        manifest.rate,
        manifest.privacy.describe().join("; ")
    )
}

/// Consents to `signed` (collective `id`'s manifest): presents a matching
/// credential if the manifest requires one, sends the signed subscription
/// to the broker at `url` through `client`, and only once the broker took
/// it stores it as the consented version (clearing what was pending).
///
/// With `expected_pending` (the digest of the pending version a page
/// showed), it is stored only if that version still waits: a decline or a
/// newer version that came in the meantime wins, the broker is told to
/// forget the subscription when the wallet no longer has one, and the
/// answer says to look again.
pub fn consent_to(
    wallet: &Wallet,
    client: &c2ssi_client::Client,
    url: &str,
    id: &str,
    signed: &Signed<Manifest>,
    consent: String,
    expected_pending: Option<&str>,
) -> anyhow::Result<()> {
    use anyhow::{Context, bail};
    use c2ssi_protocol::{Header, Signer, Subscription, now_ms};

    use super::SubscriptionRecord;
    use crate::credentials;

    let manifest = open_manifest(signed, id)?;
    let presented = match &manifest.credential {
        None => Vec::new(),
        Some(requirement) => {
            let store: credentials::Credentials =
                wallet.read_document(credentials::CREDENTIALS_FILE)?;
            let Some(c) = credentials::matching(&store, requirement, now_ms())
                .into_iter()
                .next()
            else {
                bail!(
                    "collective {id} requires {requirement} about this wallet ({}); this wallet \
                     holds none that is valid now. Ask the issuer for one, import it with \
                     `wallet credential import FILE`, and subscribe again (nothing was consented to)",
                    credentials::did(wallet)
                );
            };
            vec![c.json().clone()]
        }
    };
    let subscription = Subscription {
        header: Header::new(Purpose::Subscription, id, 10 * 60 * 1000),
        wallet: Signer::public_key(wallet.keys()),
        manifest_digest: hex::encode(signed.digest()),
        consent,
        credentials: presented,
    };
    let request = Signed::sign(&subscription, wallet.keys())?;
    client
        .subscribe(id, &request)
        .context("the broker did not take the consent")?;
    let kept = wallet.update_document(SUBSCRIPTIONS_FILE, |subs: &mut Subscriptions| {
        if let Some(expected) = expected_pending {
            let still_waits = subs
                .collectives
                .get(id)
                .and_then(|r| r.pending.as_ref())
                .is_some_and(|p| hex::encode(p.digest()) == expected);
            if !still_waits {
                return Ok(false);
            }
        }
        let receipts_after = subs.collectives.get(id).map_or(0, |r| r.receipts_after);
        subs.collectives.insert(
            id.to_string(),
            SubscriptionRecord {
                url: url.to_string(),
                manifest: signed.clone(),
                subscribed_ms: now_ms(),
                receipts_after,
                pending: None,
            },
        );
        Ok(true)
    })?;
    if !kept {
        let gone = !super::subscriptions(wallet)?.collectives.contains_key(id);
        if gone && let Err(e) = tell_unsubscribed(wallet, url, id) {
            tracing::warn!(error = %e, "telling the broker to forget a consent declined meanwhile");
        }
        bail!(
            "{id} changed meanwhile (you declined it, or a newer version came): nothing was \
             consented to here; look at it again"
        );
    }
    Ok(())
}

/// Tells the broker at `url` that this wallet left collective `id`.
fn tell_unsubscribed(wallet: &Wallet, url: &str, id: &str) -> Result<(), String> {
    use c2ssi_protocol::{Header, Signer, Unsubscription};
    let request = Signed::sign(
        &Unsubscription {
            header: Header::new(Purpose::Unsubscription, id, 10 * 60 * 1000),
            wallet: Signer::public_key(wallet.keys()),
        },
        wallet.keys(),
    )
    .map_err(|e| e.to_string())?;
    c2ssi_client::Client::new(url)
        .unsubscribe(id, &request)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Revokes the subscription to collective `id`: its key is deleted first,
/// at once, so that every later task of it is denied whatever happens next;
/// then the broker is told. `Ok(Err(why))` when the broker was not told (it
/// may still sample this wallet; every task it sends is denied).
pub fn revoke(wallet: &Wallet, id: &str) -> anyhow::Result<Result<String, String>> {
    let removed = wallet.update_document(SUBSCRIPTIONS_FILE, |subs: &mut Subscriptions| {
        Ok(subs.collectives.remove(id))
    })?;
    let Some(record) = removed else {
        anyhow::bail!("not subscribed to {id}");
    };
    Ok(tell_unsubscribed(wallet, &record.url, id).map(|()| record.url))
}
