//! The registry: collectives and every version of their signed manifests
//! (tables `collectives` and `manifests`). The consumer signs manifests;
//! the registry only keeps them and says which version is current.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::database::{Dialect, Sql};
use crate::params;
use c2ssi_protocol::{Manifest, Signed, now_ms, open_manifest};

use crate::database::Database;
use crate::error::{BrokerError, Result};

/// A manifest as the registry holds it: signed, opened, and its digest.
#[derive(Debug, Clone)]
pub struct Stored {
    /// As signed by the collective.
    pub signed: Signed<Manifest>,
    /// Its content.
    pub manifest: Manifest,
    /// SHA-256 of the signed payload, hex.
    pub digest: String,
}

impl Stored {
    /// Opens and checks a signed manifest of collective `id`.
    pub fn open(signed: Signed<Manifest>, id: &str) -> Result<Stored> {
        let manifest = open_manifest(&signed, id)?;
        Ok(Stored {
            digest: hex::encode(signed.digest()),
            manifest,
            signed,
        })
    }
}

/// The registry, over the database. The current manifest of each
/// collective is kept opened in memory, and taken again from the database
/// when the digest there changes (another broker may change it).
#[derive(Clone, Debug)]
pub struct Registry {
    db: Database,
    opened: Arc<Mutex<HashMap<String, Arc<Stored>>>>,
}

fn not_found(id: &str) -> BrokerError {
    BrokerError::NotFound(format!("no collective '{id}'"))
}

fn load_current(c: &Sql<'_>, id: &str) -> Result<Stored> {
    let text: Option<String> = c.query_opt(
        "SELECT m.signed FROM manifests m JOIN collectives c ON c.id = m.collective_id
             WHERE m.collective_id = ?1 AND m.version = c.version",
        params![id],
        |r| r.get(0),
    )?;
    let text = text.ok_or_else(|| not_found(id))?;
    Stored::open(serde_json::from_str(&text)?, id)
}

impl Registry {
    /// The registry in `db`.
    pub fn new(db: Database) -> Registry {
        Registry {
            db,
            opened: Arc::default(),
        }
    }

    /// The current manifest of `id`, read in `c`: one small query when it
    /// is the version opened before (a check-in's path).
    pub fn current_with(&self, c: &Sql<'_>, id: &str) -> Result<Arc<Stored>> {
        let digest: String = c
            .query_opt(
                "SELECT digest FROM collectives WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )?
            .ok_or_else(|| not_found(id))?;
        {
            let opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(stored) = opened.get(id)
                && stored.digest == digest
            {
                return Ok(stored.clone());
            }
        }
        let stored = Arc::new(load_current(c, id)?);
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), stored.clone());
        Ok(stored)
    }

    /// Every collective's id.
    pub fn list(&self) -> Result<Vec<String>> {
        self.db.read(|c| {
            let ids = c.query_map("SELECT id FROM collectives ORDER BY created_ms", &[], |r| {
                r.get::<String>(0)
            })?;
            Ok(ids)
        })
    }

    /// Whether the current manifest of some collective here requires
    /// credentials from `issuer`. Anyone may push a status list, so this runs
    /// unauthenticated: SQL keeps only the current manifests whose text holds
    /// the DID, and only those are opened and checked.
    pub fn issuer_is_named(&self, issuer: &c2ssi_credentials::Did) -> Result<bool> {
        let candidates: Vec<String> = self.db.read(|c| {
            let ids = c.query_map(
                // `?1` appears in the manifest's text (LIKE would need escaping).
                match c.dialect() {
                    Dialect::Sqlite => {
                        "SELECT m.collective_id FROM manifests m JOIN collectives c
                           ON c.id = m.collective_id AND m.version = c.version
                         WHERE instr(m.signed, ?1) > 0"
                    }
                    Dialect::Postgres => {
                        "SELECT m.collective_id FROM manifests m JOIN collectives c
                           ON c.id = m.collective_id AND m.version = c.version
                         WHERE strpos(m.signed, ?1) > 0"
                    }
                },
                params![issuer.as_str()],
                |r| r.get::<String>(0),
            )?;
            Ok(ids)
        })?;
        for id in candidates {
            let current = self.current(&id)?;
            if current
                .manifest
                .credential
                .as_ref()
                .is_some_and(|c| c.issuers.contains(issuer))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The current manifest.
    pub fn current(&self, id: &str) -> Result<Stored> {
        let stored = self.db.read(|c| self.current_with(c, id))?;
        Ok(Stored::clone(&stored))
    }

    /// The current manifest, inside a transaction.
    pub fn current_in(tx: &Sql<'_>, id: &str) -> Result<Stored> {
        load_current(tx, id)
    }

    /// The current manifest, or `None` for a collective not registered yet.
    pub fn current_or_none_in(tx: &Sql<'_>, id: &str) -> Result<Option<Stored>> {
        match load_current(tx, id) {
            Ok(s) => Ok(Some(s)),
            Err(BrokerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The version of collective `id` whose digest is `digest`.
    pub fn by_digest(&self, id: &str, digest: &str) -> Result<Stored> {
        self.db.read(|c| {
            let text: Option<String> = c.query_opt(
                "SELECT signed FROM manifests WHERE collective_id = ?1 AND digest = ?2",
                params![id, digest],
                |r| r.get(0),
            )?;
            let text = text.ok_or_else(|| {
                BrokerError::NotFound(format!("collective '{id}' has no manifest {digest}"))
            })?;
            Stored::open(serde_json::from_str(&text)?, id)
        })
    }

    /// Stores `stored` as the collective's new current version (the caller
    /// checked that it is version 1 of a new collective or the current
    /// version plus one).
    pub fn put_in(tx: &Sql<'_>, stored: &Stored) -> Result<()> {
        let id = &stored.manifest.header.collective_id;
        let version = stored.manifest.version as i64;
        let now = now_ms() as i64;
        if stored.manifest.version == 1 {
            tx.execute(
                "INSERT INTO collectives (id, collective_key, version, digest, created_ms)
                 VALUES (?1, ?2, 1, ?3, ?4)",
                params![
                    id,
                    stored.manifest.collective_key.to_hex(),
                    stored.digest,
                    now
                ],
            )?;
        } else {
            tx.execute(
                "UPDATE collectives SET version = ?2, digest = ?3 WHERE id = ?1",
                params![id, version, stored.digest],
            )?;
        }
        tx.execute(
            "INSERT INTO manifests (collective_id, version, digest, signed, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                version,
                stored.digest,
                serde_json::to_string(&stored.signed)?,
                now
            ],
        )?;
        Ok(())
    }
}
