//! The registry: collectives and their signed manifests, the algorithms they
//! allow, subscriptions, and the nonces of requests already seen (so that no
//! signed request is accepted twice).

use c2ssi_guest_sdk::AlgorithmInfo;
use c2ssi_protocol::{
    AllowedAlgorithm, CheckIn, CreateCollective, Header, Manifest, ManifestDraft, Message,
    OperatorCommand, PublicKey, Purpose, Signed, Signer, SigningKey, Subscription, Unsubscription,
    collective_id, now_ms,
};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::database::Database;
use crate::error::{CollectiveError, Result};

/// The longest validity a signed request may claim: it bounds how long its
/// nonce must be remembered.
pub const MAX_REQUEST_VALIDITY_MS: u64 = 3600 * 1000;
/// How long a manifest signature is valid; subscribers keep it as a record.
const MANIFEST_VALIDITY_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// The keys the service publishes in every manifest.
#[derive(Debug, Clone)]
pub struct ServiceKeys {
    /// Signs batch results.
    pub aggregator_key: PublicKey,
    /// Updates are sealed to it.
    pub aggregator_recipient: String,
    /// Signs ledger entries and receipts.
    pub ledger_key: PublicKey,
}

/// The registry, over the database.
#[derive(Clone, Debug)]
pub struct Registry {
    db: Database,
}

/// Records a request's nonce; a nonce seen before is a replay.
pub fn remember_nonce(tx: &Transaction<'_>, signer: &PublicKey, header: &Header) -> Result<()> {
    let now = now_ms();
    if header.expires_at_ms > now.saturating_add(MAX_REQUEST_VALIDITY_MS) {
        return Err(CollectiveError::Unauthorized(format!(
            "the request claims to be valid for more than {} s",
            MAX_REQUEST_VALIDITY_MS / 1000
        )));
    }
    tx.execute(
        "DELETE FROM seen_nonces WHERE expires_ms < ?1",
        params![now as i64],
    )?;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO seen_nonces (signer, nonce, expires_ms) VALUES (?1, ?2, ?3)",
        params![signer.to_hex(), header.nonce, header.expires_at_ms as i64],
    )?;
    if inserted == 0 {
        return Err(CollectiveError::Conflict(
            "this signed request was already used (replay)".into(),
        ));
    }
    Ok(())
}

fn check_collective(header: &Header, id: &str) -> Result<()> {
    if header.collective_id != id {
        return Err(CollectiveError::Unauthorized(format!(
            "the request is for collective '{}', not '{id}'",
            header.collective_id
        )));
    }
    Ok(())
}

fn check_draft(draft: &ManifestDraft) -> Result<()> {
    if draft.name.trim().is_empty() {
        return Err(CollectiveError::Invalid("the manifest needs a name".into()));
    }
    if draft.description.trim().is_empty() {
        return Err(CollectiveError::Invalid(
            "the manifest needs a description of the task, for the people asked to subscribe"
                .into(),
        ));
    }
    if draft.requirements.tables.is_empty() {
        return Err(CollectiveError::Invalid(
            "the manifest requires no data".into(),
        ));
    }
    for t in &draft.requirements.tables {
        wallet_host::store::check_table_name(&t.table)
            .map_err(|e| CollectiveError::Invalid(format!("requirement: {e}")))?;
        wallet_host::import::check_schema(&t.columns).map_err(|e| {
            CollectiveError::Invalid(format!("requirement for table '{}': {e}", t.table))
        })?;
    }
    if draft.min_batch < 2 {
        return Err(CollectiveError::Invalid(
            "min_batch (k) must be at least 2: a batch of one is one wallet's update".into(),
        ));
    }
    if draft.rate.0 == 0 {
        return Err(CollectiveError::Invalid(
            "the rate per access must be more than zero".into(),
        ));
    }
    Ok(())
}

impl Registry {
    /// The registry in `db`.
    pub fn new(db: Database) -> Registry {
        Registry { db }
    }

    /// Creates a collective from an operator's signed request: a new
    /// collective key, a first manifest with no algorithms yet.
    pub fn create(
        &self,
        request: &Signed<CreateCollective>,
        keys: &ServiceKeys,
    ) -> Result<Signed<Manifest>> {
        let body = request.open(None, Purpose::CreateCollective, now_ms())?;
        check_draft(&body.draft)?;
        let operator = request.signer;
        let collective_key = SigningKey::generate()?;
        let id = collective_id(&collective_key.public_key());
        let manifest = Manifest {
            header: Header::new(Purpose::Manifest, &id, MANIFEST_VALIDITY_MS),
            version: 1,
            name: body.draft.name.clone(),
            description: body.draft.description.clone(),
            requirements: body.draft.requirements.clone(),
            allowed_algorithms: Vec::new(),
            rate: body.draft.rate,
            min_batch: body.draft.min_batch,
            collective_key: collective_key.public_key(),
            aggregator_key: keys.aggregator_key,
            aggregator_recipient: keys.aggregator_recipient.clone(),
            ledger_key: keys.ledger_key,
        };
        let signed = Signed::sign(&manifest, &collective_key)?;
        self.db.write(|tx| {
            remember_nonce(tx, &operator, body.header())?;
            tx.execute(
                "INSERT INTO collectives (id, operator_key, collective_pkcs8, manifest, version, created_ms)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5)",
                params![
                    id,
                    operator.to_hex(),
                    collective_key.pkcs8(),
                    serde_json::to_string(&signed)?,
                    now_ms() as i64
                ],
            )?;
            Ok(())
        })?;
        Ok(signed)
    }

    /// Every collective's id.
    pub fn list(&self) -> Result<Vec<String>> {
        self.db.read(|c| {
            let mut stmt = c.prepare("SELECT id FROM collectives ORDER BY created_ms")?;
            let ids = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(ids)
        })
    }

    fn not_found(id: &str) -> CollectiveError {
        CollectiveError::NotFound(format!("no collective '{id}'"))
    }

    /// The signed manifest.
    pub fn manifest(&self, id: &str) -> Result<Signed<Manifest>> {
        self.db.read(|c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT manifest FROM collectives WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            let text = text.ok_or_else(|| Registry::not_found(id))?;
            Ok(serde_json::from_str(&text)?)
        })
    }

    /// The manifest's content.
    pub fn manifest_body(&self, id: &str) -> Result<Manifest> {
        Ok(self.manifest(id)?.open_any_time(None, Purpose::Manifest)?)
    }

    /// The collective's signing key.
    pub fn collective_key(&self, id: &str) -> Result<SigningKey> {
        let pkcs8: Vec<u8> = self.db.read(|c| {
            c.query_row(
                "SELECT collective_pkcs8 FROM collectives WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Registry::not_found(id))
        })?;
        Ok(SigningKey::from_pkcs8(&pkcs8)?)
    }

    /// Checks an operator's command: signed by the collective's operator,
    /// for this collective, unexpired, never seen before.
    pub fn authorize(
        &self,
        id: &str,
        command: &Signed<OperatorCommand>,
    ) -> Result<OperatorCommand> {
        let operator: String = self.db.read(|c| {
            c.query_row(
                "SELECT operator_key FROM collectives WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Registry::not_found(id))
        })?;
        let operator = PublicKey::from_hex(&operator)?;
        let body = command.open(Some(&operator), Purpose::OperatorCommand, now_ms())?;
        check_collective(&body.header, id)?;
        self.db
            .write(|tx| remember_nonce(tx, &operator, &body.header))?;
        Ok(body)
    }

    /// Allows an algorithm and re-signs the manifest with a new version.
    pub fn add_algorithm(
        &self,
        id: &str,
        sha256: &str,
        bytes: &[u8],
        info: &AlgorithmInfo,
    ) -> Result<Signed<Manifest>> {
        let key = self.collective_key(id)?;
        let mut manifest = self.manifest_body(id)?;
        if manifest.allows(sha256).is_some() {
            return self.manifest(id);
        }
        manifest.allowed_algorithms.push(AllowedAlgorithm {
            sha256: sha256.to_string(),
            name: info.name.clone(),
            version: info.version.clone(),
        });
        manifest.version += 1;
        manifest.header = Header::new(Purpose::Manifest, id, MANIFEST_VALIDITY_MS);
        let signed = Signed::sign(&manifest, &key)?;
        self.db.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO algorithms (collective_id, sha256, name, version, bytes, added_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, sha256, info.name, info.version, bytes, now_ms() as i64],
            )?;
            tx.execute(
                "UPDATE collectives SET manifest = ?2, version = ?3 WHERE id = ?1",
                params![id, serde_json::to_string(&signed)?, manifest.version as i64],
            )?;
            Ok(())
        })?;
        Ok(signed)
    }

    /// An allowed algorithm's component.
    pub fn algorithm(&self, id: &str, sha256: &str) -> Result<Vec<u8>> {
        self.db.read(|c| {
            c.query_row(
                "SELECT bytes FROM algorithms WHERE collective_id = ?1 AND sha256 = ?2",
                params![id, sha256],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| {
                CollectiveError::NotFound(format!("collective '{id}' has no algorithm {sha256}"))
            })
        })
    }

    /// Records a wallet's signed subscription to the current manifest.
    pub fn subscribe(&self, id: &str, request: &Signed<Subscription>) -> Result<()> {
        let body = request.open(None, Purpose::Subscription, now_ms())?;
        check_collective(&body.header, id)?;
        if body.wallet != request.signer {
            return Err(CollectiveError::Unauthorized(
                "a subscription must be signed by the subscribing wallet".into(),
            ));
        }
        let manifest = self.manifest(id)?;
        if body.manifest_digest != hex::encode(manifest.digest()) {
            return Err(CollectiveError::Conflict(
                "the subscription is for another version of the manifest; fetch it again".into(),
            ));
        }
        self.db.write(|tx| {
            remember_nonce(tx, &request.signer, body.header())?;
            tx.execute(
                "INSERT INTO subscriptions (collective_id, wallet, contract, subscribed_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (collective_id, wallet) DO UPDATE SET contract = ?3, subscribed_ms = ?4",
                params![
                    id,
                    body.wallet.to_hex(),
                    serde_json::to_string(request)?,
                    now_ms() as i64
                ],
            )?;
            Ok(())
        })
    }

    /// Removes a wallet's subscription; its open assignments are withdrawn.
    pub fn unsubscribe(&self, id: &str, request: &Signed<Unsubscription>) -> Result<()> {
        let body = request.open(None, Purpose::Unsubscription, now_ms())?;
        check_collective(&body.header, id)?;
        if body.wallet != request.signer {
            return Err(CollectiveError::Unauthorized(
                "an unsubscription must be signed by the wallet".into(),
            ));
        }
        self.db.write(|tx| {
            remember_nonce(tx, &request.signer, body.header())?;
            let removed = tx.execute(
                "DELETE FROM subscriptions WHERE collective_id = ?1 AND wallet = ?2",
                params![id, body.wallet.to_hex()],
            )?;
            if removed == 0 {
                return Err(CollectiveError::NotFound(format!(
                    "wallet {} is not subscribed to '{id}'",
                    body.wallet.short()
                )));
            }
            tx.execute(
                "DELETE FROM assignments WHERE wallet = ?1 AND delivered = 0",
                params![body.wallet.to_hex()],
            )?;
            Ok(())
        })
    }

    /// The subscribed wallets' ids.
    pub fn subscribers(&self, id: &str) -> Result<Vec<PublicKey>> {
        self.manifest(id)?;
        self.db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT wallet FROM subscriptions WHERE collective_id = ?1 ORDER BY wallet",
            )?;
            let rows = stmt.query_map(params![id], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(PublicKey::from_hex(&row?)?);
            }
            Ok(out)
        })
    }

    /// Whether `wallet` is subscribed.
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

    /// Checks a wallet agent's check-in and records that it is alive.
    pub fn check_in(&self, id: &str, request: &Signed<CheckIn>) -> Result<CheckIn> {
        let body = request.open(None, Purpose::CheckIn, now_ms())?;
        check_collective(&body.header, id)?;
        if body.wallet != request.signer {
            return Err(CollectiveError::Unauthorized(
                "a check-in must be signed by the wallet".into(),
            ));
        }
        self.db.write(|tx| {
            remember_nonce(tx, &request.signer, body.header())?;
            let touched = tx.execute(
                "UPDATE subscriptions SET last_checkin_ms = ?3 WHERE collective_id = ?1 AND wallet = ?2",
                params![id, body.wallet.to_hex(), now_ms() as i64],
            )?;
            if touched == 0 {
                return Err(CollectiveError::Forbidden(format!(
                    "wallet {} is not subscribed to '{id}'",
                    body.wallet.short()
                )));
            }
            Ok(())
        })?;
        Ok(body)
    }

    /// Subscribed wallets that checked in at or after `since_ms`.
    pub fn live_wallets(&self, id: &str, since_ms: u64) -> Result<Vec<PublicKey>> {
        self.db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT wallet FROM subscriptions
                 WHERE collective_id = ?1 AND last_checkin_ms >= ?2 ORDER BY wallet",
            )?;
            let rows = stmt.query_map(params![id, since_ms as i64], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(PublicKey::from_hex(&row?)?);
            }
            Ok(out)
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
