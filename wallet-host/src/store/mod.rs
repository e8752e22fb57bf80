//! The encrypted wallet: a directory that holds an individual's records and
//! keys, never in plaintext.
//!
//! ```text
//! wallet.json           public facts: format, wallet id (Ed25519 public key), age recipient
//! keys.age              the secret keys, under a passphrase (scrypt) or an age identity file
//! tables.age            the tables' index: schemas, row counts, segments
//! tables/<random>.age   the tables' rows, in segments
//! *.age                 the other documents (log, policy, subscriptions, receipts, ...)
//! .lock                 taken by every writer of a document, so two never interleave
//! .tables.lock          taken by every writer of the tables (an import holds it for
//!                       as long as it reads its file, without keeping the agent from
//!                       writing its log)
//! ```
//!
//! Every `.age` file but the key file is encrypted to the wallet's own X25519
//! recipient. Store format 2 keeps each table's rows in segments beside an
//! index ([`tables`]), so listing tables or adding a row reads no rows;
//! format 1 kept every table in one `records.age`, and a format-1 wallet is
//! migrated when it is first opened.
//!
//! Every write is atomic (temporary file, fsync, rename), so a crash leaves
//! the old or the new state. A wrong passphrase, or a truncated or tampered
//! file, is an error that names the file and changes nothing.
//!
//! A simulation's wallets may instead live in memory
//! ([`Wallet::in_memory_for_simulation`]): the same documents and the same
//! checks, without files, encryption at rest or fsync, and with keys derived
//! from the simulation's seed.

mod crypt;
mod files;
mod keys;
mod records;
pub mod tables;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use self::crypt::KeyProtection;
pub use self::keys::WalletKeys;
pub use self::records::{IfExists, MAX_TABLE_NAME, Records, cell_text, check_table_name};
pub use self::tables::{INDEX_FILE, TableEntry, TableIndex};

use c2ssi_guest_sdk::{ColumnData, Table};

/// The file with the wallet's public facts.
pub const META_FILE: &str = "wallet.json";
/// The encrypted key file.
pub const KEYS_FILE: &str = "keys.age";
/// Store format 1's encrypted records, every table in one document: only
/// read, to migrate from.
pub const RECORDS_FILE: &str = "records.age";
/// The store format this version writes.
pub const STORE_FORMAT: u32 = 2;
/// The lock file.
pub const LOCK_FILE: &str = ".lock";
/// The tables' writers' lock file.
pub const TABLES_LOCK_FILE: &str = ".tables.lock";

/// What went wrong with a wallet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// No wallet in the directory.
    #[error("no wallet in {dir} (create one with `wallet init`)")]
    NotFound {
        /// The directory.
        dir: PathBuf,
    },
    /// `init` on an existing wallet.
    #[error("a wallet already exists in {dir}")]
    AlreadyExists {
        /// The directory.
        dir: PathBuf,
    },
    /// The passphrase does not unlock the key file.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The identity file does not unlock the key file.
    #[error("this identity does not unlock the wallet")]
    WrongIdentity,
    /// A passphrase was given for an identity-locked wallet, or the reverse.
    #[error("this wallet is not unlocked that way; it needs {needed}")]
    WrongUnlockMethod {
        /// What it needs.
        needed: &'static str,
    },
    /// A file is truncated, tampered with, or otherwise unreadable as what it should be.
    #[error("{path} is damaged or was tampered with: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file asks for more scrypt work than a wallet accepts: not a
    /// wrong passphrase and not damage, but a file sealed by another program
    /// (or crafted to keep the machine busy).
    #[error(
        "{path} asks for scrypt work factor {required}, more than the {allowed} a wallet accepts; \
         it was not sealed by this program (re-seal it with a lower factor)"
    )]
    ExcessiveWork {
        /// The key file.
        path: PathBuf,
        /// The work factor it asks for (log2 of scrypt's N).
        required: u8,
        /// The most that is accepted.
        allowed: u8,
    },
    /// Another process holds the wallet's lock.
    #[error("the wallet is in use by another process (waited for the lock on {path})")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Encryption failed.
    #[error("encrypting {path} failed: {reason}")]
    Crypto {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key material is unusable.
    #[error("the wallet's keys are unusable: {reason}")]
    Keys {
        /// Why.
        reason: String,
    },
    /// A table name that is not allowed.
    #[error(
        "'{name}' is not a valid table name: use 1 to 64 letters, digits, '_', '.' or '-', \
         starting with a letter or digit"
    )]
    InvalidTableName {
        /// The name.
        name: String,
    },
    /// No table of that name.
    #[error("no table '{name}' in the wallet (it has: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    NoSuchTable {
        /// The name asked for.
        name: String,
        /// The tables there are.
        known: Vec<String>,
    },
    /// A table of that name exists.
    #[error("table '{name}' already exists (use --append to add rows or --replace to replace it)")]
    TableExists {
        /// The name.
        name: String,
    },
    /// Data that does not fit.
    #[error("{reason}")]
    InvalidData {
        /// Why.
        reason: String,
    },
}

/// The wallet's public facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    format: u32,
    wallet_id: String,
    recipient: String,
}

/// An unlocked wallet.
#[derive(Debug)]
pub struct Wallet {
    place: Place,
    keys: std::sync::Arc<WalletKeys>,
}

/// Where a wallet's documents live.
#[derive(Debug)]
enum Place {
    /// Encrypted files in a directory.
    Dir(PathBuf),
    /// A simulated wallet's documents, as JSON in memory; `writer` plays the
    /// lock file's part.
    Memory {
        documents: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
        writer: std::sync::Mutex<()>,
        /// Plays the tables' lock file's part.
        tables_writer: std::sync::Mutex<()>,
    },
}

impl Wallet {
    /// Creates a wallet in `dir` (created if missing): new keys, protected as
    /// given, and an empty record store.
    pub fn init(dir: &Path, protection: &KeyProtection) -> Result<Wallet, WalletError> {
        Wallet::create(dir, protection, WalletKeys::generate)
    }

    fn create(
        dir: &Path,
        protection: &KeyProtection,
        keys: impl FnOnce() -> Result<(WalletKeys, zeroize::Zeroizing<Vec<u8>>), WalletError>,
    ) -> Result<Wallet, WalletError> {
        if dir.join(KEYS_FILE).exists() {
            return Err(WalletError::AlreadyExists {
                dir: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| WalletError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        files::set_owner_only(dir).map_err(|e| WalletError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let _lock = files::WriteLock::acquire(&dir.join(LOCK_FILE))?;
        if dir.join(KEYS_FILE).exists() {
            return Err(WalletError::AlreadyExists {
                dir: dir.to_path_buf(),
            });
        }
        let (keys, key_plaintext) = keys()?;
        let wallet = Wallet {
            place: Place::Dir(dir.to_path_buf()),
            keys: std::sync::Arc::new(keys),
        };
        wallet.write_document(INDEX_FILE, &TableIndex::default())?;
        let meta = Meta {
            format: STORE_FORMAT,
            wallet_id: wallet.id(),
            recipient: wallet.keys.recipient().to_string(),
        };
        let meta_json = serde_json::to_vec_pretty(&meta).map_err(|e| WalletError::Keys {
            reason: e.to_string(),
        })?;
        files::atomic_write(&dir.join(META_FILE), &meta_json)?;
        // The key file goes last: its presence is what makes the directory a wallet.
        let key_path = dir.join(KEYS_FILE);
        let sealed = crypt::encrypt_protected(protection, &key_plaintext, &key_path)?;
        files::atomic_write(&key_path, &sealed)?;
        Ok(wallet)
    }

    /// Unlocks the wallet in `dir`.
    pub fn open(dir: &Path, protection: &KeyProtection) -> Result<Wallet, WalletError> {
        let key_path = dir.join(KEYS_FILE);
        if !key_path.exists() {
            return Err(WalletError::NotFound {
                dir: dir.to_path_buf(),
            });
        }
        let sealed = files::read(&key_path)?;
        let plaintext =
            zeroize::Zeroizing::new(crypt::decrypt_protected(protection, &sealed, &key_path)?);
        let keys = WalletKeys::from_plaintext(&plaintext)?;
        let wallet = Wallet {
            place: Place::Dir(dir.to_path_buf()),
            keys: std::sync::Arc::new(keys),
        };
        let meta_path = dir.join(META_FILE);
        let meta: Meta = serde_json::from_slice(&files::read(&meta_path)?).map_err(|e| {
            WalletError::Damaged {
                path: meta_path.clone(),
                reason: e.to_string(),
            }
        })?;
        if meta.wallet_id != wallet.id() {
            return Err(WalletError::Damaged {
                path: meta_path,
                reason: "its wallet id does not match the wallet's keys".into(),
            });
        }
        match meta.format {
            STORE_FORMAT => {}
            1 => wallet.migrate_from_format_1(dir)?,
            newer => {
                return Err(WalletError::Damaged {
                    path: meta_path,
                    reason: format!(
                        "it is store format {newer}, newer than this program's {STORE_FORMAT}: \
                         open it with the version that made it"
                    ),
                });
            }
        }
        Ok(wallet)
    }

    /// Moves a format-1 wallet's tables from `records.age` into the index
    /// and segments, then marks the wallet format 2 and removes
    /// `records.age`, under the lock. A crash part way leaves format 1 and
    /// `records.age` as they were (segments already written are swept by the
    /// next writer), so the next open migrates again.
    fn migrate_from_format_1(&self, dir: &Path) -> Result<(), WalletError> {
        let _lock = self.tables_lock()?;
        let meta_path = dir.join(META_FILE);
        let mut meta: Meta = serde_json::from_slice(&files::read(&meta_path)?).map_err(|e| {
            WalletError::Damaged {
                path: meta_path.clone(),
                reason: e.to_string(),
            }
        })?;
        if meta.format == STORE_FORMAT {
            return Ok(()); // another process migrated it while we waited
        }
        let records: Records = self.read_document(RECORDS_FILE)?;
        let mut index = TableIndex::default();
        for (name, table) in records.tables {
            let plan = tables::plan_put(
                &index,
                &name,
                &table.schema(),
                IfExists::Fail,
                table.row_count,
            )?;
            let mut entry = plan.entry;
            let rows = table.row_count;
            entry.rows += rows;
            let columns: Vec<ColumnData> = table.columns.into_iter().map(|c| c.data).collect();
            self.push_segment(&mut entry, &columns, rows)?;
            index.tables.insert(name, entry);
        }
        self.write_document(INDEX_FILE, &index)?;
        self.sweep_segments(&index)?;
        meta.format = STORE_FORMAT;
        let meta_json = serde_json::to_vec_pretty(&meta).map_err(|e| WalletError::Keys {
            reason: e.to_string(),
        })?;
        files::atomic_write(&meta_path, &meta_json)?;
        let records_path = dir.join(RECORDS_FILE);
        std::fs::remove_file(&records_path).map_err(|e| WalletError::Io {
            path: records_path,
            source: e,
        })?;
        tracing::info!(dir = %dir.display(), "migrated the wallet to store format 2");
        Ok(())
    }

    /// A simulated wallet in memory, with keys derived from `seed` and
    /// `label` (one label per wallet) and an empty record store. Its
    /// documents go through the same serialization as a wallet's files but
    /// are neither encrypted nor durable: for simulations only.
    pub fn in_memory_for_simulation(seed: u64, label: &str) -> Result<Wallet, WalletError> {
        let (keys, _) = WalletKeys::from_seed_for_simulation(seed, label)?;
        let wallet = Wallet {
            place: Place::Memory {
                documents: Default::default(),
                writer: Default::default(),
                tables_writer: Default::default(),
            },
            keys: std::sync::Arc::new(keys),
        };
        wallet.write_document(INDEX_FILE, &TableIndex::default())?;
        Ok(wallet)
    }

    /// Creates a wallet in `dir` like [`Wallet::init`], with keys derived
    /// from `seed` and `label`: for simulations that keep durable wallets
    /// and must repeat bit for bit. Never for a real wallet.
    pub fn init_for_simulation(
        dir: &Path,
        protection: &KeyProtection,
        seed: u64,
        label: &str,
    ) -> Result<Wallet, WalletError> {
        Wallet::create(dir, protection, || {
            WalletKeys::from_seed_for_simulation(seed, label)
        })
    }

    /// Whether `dir` holds a wallet.
    pub fn exists(dir: &Path) -> bool {
        dir.join(KEYS_FILE).exists()
    }

    /// The wallet's directory; `None` for a wallet in memory.
    pub fn dir(&self) -> Option<&Path> {
        match &self.place {
            Place::Dir(dir) => Some(dir),
            Place::Memory { .. } => None,
        }
    }

    /// The wallet's id: its Ed25519 public key, hex.
    pub fn id(&self) -> String {
        hex::encode(self.keys.public_key())
    }

    /// The unlocked keys.
    pub fn keys(&self) -> &WalletKeys {
        &self.keys
    }

    /// The wallet's signing key, shareable: for a client that signs its
    /// requests as this wallet.
    pub fn signer(&self) -> std::sync::Arc<dyn c2ssi_protocol::Signer + Send + Sync> {
        self.keys.clone()
    }

    /// The plaintext of the encrypted file `name` (relative to the wallet),
    /// or `None` when there is none. With `sha256`, the sealed bytes must
    /// hash to it (a segment, which its index names by hash).
    fn read_sealed(
        &self,
        name: &str,
        sha256: Option<&str>,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, WalletError> {
        let check = |stored: &[u8], path: &Path| match sha256 {
            Some(expected) if hex::encode(c2ssi_protocol::sha256(stored)) != expected => {
                Err(WalletError::Damaged {
                    path: path.to_path_buf(),
                    reason: "it is not the file the index names (its hash differs)".into(),
                })
            }
            _ => Ok(()),
        };
        match &self.place {
            Place::Memory { documents, .. } => {
                let documents = documents.lock().unwrap_or_else(|e| e.into_inner());
                match documents.get(name) {
                    None => Ok(None),
                    Some(bytes) => {
                        check(bytes, Path::new(name))?;
                        Ok(Some(zeroize::Zeroizing::new(bytes.clone())))
                    }
                }
            }
            Place::Dir(dir) => {
                let path = dir.join(name);
                if !path.exists() {
                    return Ok(None);
                }
                let sealed = files::read(&path)?;
                check(&sealed, &path)?;
                Ok(Some(zeroize::Zeroizing::new(crypt::decrypt_own(
                    &self.keys.age_identity,
                    &sealed,
                    &path,
                )?)))
            }
        }
    }

    /// Encrypts `plaintext` into the file `name`, atomically; returns the
    /// SHA-256 of the stored bytes, hex.
    fn write_sealed(&self, name: &str, plaintext: &[u8]) -> Result<String, WalletError> {
        match &self.place {
            Place::Dir(dir) => {
                let path = dir.join(name);
                let sealed = crypt::encrypt_to(&self.keys.recipient(), plaintext, &path)?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| WalletError::Io {
                        path: parent.to_path_buf(),
                        source: e,
                    })?;
                }
                files::atomic_write(&path, &sealed)?;
                Ok(hex::encode(c2ssi_protocol::sha256(&sealed)))
            }
            Place::Memory { documents, .. } => {
                documents
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_string(), plaintext.to_vec());
                Ok(hex::encode(c2ssi_protocol::sha256(plaintext)))
            }
        }
    }

    /// Reads an encrypted document; a missing file reads as the default,
    /// except the tables' index, which every wallet has.
    pub fn read_document<T: DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> Result<T, WalletError> {
        let path = match &self.place {
            Place::Dir(dir) => dir.join(name),
            Place::Memory { .. } => PathBuf::from(name),
        };
        let Some(plaintext) = self.read_sealed(name, None)? else {
            if name == INDEX_FILE || name == RECORDS_FILE {
                return Err(WalletError::Damaged {
                    path,
                    reason: "the file is missing".into(),
                });
            }
            return Ok(T::default());
        };
        serde_json::from_slice(&plaintext).map_err(|e| WalletError::Damaged {
            path,
            reason: format!("its decrypted content does not parse: {e}"),
        })
    }

    fn write_document<T: Serialize>(&self, name: &str, value: &T) -> Result<(), WalletError> {
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(value).map_err(|e| {
            WalletError::Crypto {
                path: PathBuf::from(name),
                reason: e.to_string(),
            }
        })?);
        self.write_sealed(name, &plaintext).map(|_| ())
    }

    /// Takes the documents' writers' lock.
    fn lock(&self) -> Result<Lock<'_>, WalletError> {
        Ok(match &self.place {
            Place::Dir(dir) => Lock::File(files::WriteLock::acquire(&dir.join(LOCK_FILE))?),
            Place::Memory { writer, .. } => {
                Lock::Memory(writer.lock().unwrap_or_else(|e| e.into_inner()))
            }
        })
    }

    /// Takes the tables' writers' lock: the index and the segments change
    /// only under it, and only table writers sweep segments.
    fn tables_lock(&self) -> Result<Lock<'_>, WalletError> {
        Ok(match &self.place {
            Place::Dir(dir) => Lock::File(files::WriteLock::acquire(&dir.join(TABLES_LOCK_FILE))?),
            Place::Memory { tables_writer, .. } => {
                Lock::Memory(tables_writer.lock().unwrap_or_else(|e| e.into_inner()))
            }
        })
    }

    /// Reads, changes and writes back an encrypted document under the
    /// wallet's lock. If `change` fails, nothing is written.
    pub fn update_document<T, R>(
        &self,
        name: &str,
        change: impl FnOnce(&mut T) -> Result<R, WalletError>,
    ) -> Result<R, WalletError>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        let _lock = self.lock()?;
        let mut value: T = self.read_document(name)?;
        let out = change(&mut value)?;
        self.write_document(name, &value)?;
        Ok(out)
    }

    /// Every table's schema and row count, without reading any rows.
    pub fn table_index(&self) -> Result<TableIndex, WalletError> {
        self.read_document(INDEX_FILE)
    }

    /// The table called `name`, with its rows.
    pub fn table(&self, name: &str) -> Result<Table, WalletError> {
        self.read_consistent(|index| self.read_table(index, name))
    }

    /// Runs `read` on the index, again on a newer index if it meets a
    /// damaged or missing segment while a writer changed the index (readers
    /// take no lock, and a writer removes the segments it replaced): only a
    /// segment that the current index names and that is wrong is damage.
    fn read_consistent<T>(
        &self,
        read: impl Fn(&TableIndex) -> Result<T, WalletError>,
    ) -> Result<T, WalletError> {
        let mut index = self.table_index()?;
        for _ in 0..8 {
            match read(&index) {
                Err(e @ WalletError::Damaged { .. }) => {
                    let now = self.table_index()?;
                    if now == index {
                        return Err(e);
                    }
                    index = now;
                }
                other => return other,
            }
        }
        read(&index)
    }

    /// The table called `name` with its first `rows` rows only (or all it
    /// has): reads only the segments that hold them.
    pub fn table_head(&self, name: &str, rows: usize) -> Result<Table, WalletError> {
        self.read_consistent(|index| self.read_head(index, name, rows))
    }

    fn read_head(&self, index: &TableIndex, name: &str, rows: usize) -> Result<Table, WalletError> {
        let entry = index.entry(name)?;
        let mut columns = entry.empty_columns();
        let mut read = 0;
        for segment in &entry.segments {
            if read >= rows {
                break;
            }
            tables::extend(&mut columns, self.read_segment(entry, segment)?);
            read += segment.rows;
        }
        for data in &mut columns {
            tables::truncate(data, rows);
        }
        let head = TableEntry {
            rows: read.min(rows),
            ..entry.clone()
        };
        tables::assemble(name, &head, columns)
    }

    /// The tables called `names` that the wallet has, with their rows.
    pub fn records_of<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Records, WalletError> {
        let names: Vec<&str> = names.into_iter().collect();
        self.read_consistent(|index| {
            let mut records = Records::default();
            for name in &names {
                if index.tables.contains_key(*name) {
                    records
                        .tables
                        .insert(name.to_string(), self.read_table(index, name)?);
                }
            }
            Ok(records)
        })
    }

    /// Every table, with its rows.
    pub fn records(&self) -> Result<Records, WalletError> {
        self.read_consistent(|index| {
            let mut records = Records::default();
            for name in index.tables.keys() {
                records
                    .tables
                    .insert(name.clone(), self.read_table(index, name)?);
            }
            Ok(records)
        })
    }

    fn read_table(&self, index: &TableIndex, name: &str) -> Result<Table, WalletError> {
        let entry = index.entry(name)?;
        let mut columns = entry.empty_columns();
        for segment in &entry.segments {
            let more = self.read_segment(entry, segment)?;
            tables::extend(&mut columns, more);
        }
        tables::assemble(name, entry, columns)
    }

    fn read_segment(
        &self,
        entry: &TableEntry,
        segment: &tables::Segment,
    ) -> Result<Vec<ColumnData>, WalletError> {
        let name = tables::segment_path(&segment.file);
        let plaintext = self
            .read_sealed(&name, Some(&segment.sha256))?
            .ok_or_else(|| WalletError::Damaged {
                path: self.path_of(&name),
                reason: "the file is missing".into(),
            })?;
        tables::decode_segment(&plaintext, entry, segment)
    }

    fn path_of(&self, name: &str) -> PathBuf {
        match &self.place {
            Place::Dir(dir) => dir.join(name),
            Place::Memory { .. } => PathBuf::from(name),
        }
    }

    /// Writes `columns` (`rows` rows) as a new segment of `entry` (none for
    /// no rows); the index names it once it is written.
    fn push_segment(
        &self,
        entry: &mut TableEntry,
        columns: &[ColumnData],
        rows: usize,
    ) -> Result<(), WalletError> {
        if rows == 0 {
            return Ok(());
        }
        let plaintext = zeroize::Zeroizing::new(tables::encode_segment(columns)?);
        let file = tables::new_segment_name()?;
        let sha256 = self.write_sealed(&tables::segment_path(&file), &plaintext)?;
        entry.segments.push(tables::Segment { file, rows, sha256 });
        Ok(())
    }

    /// Stores `table` under its name (see [`IfExists`]); returns the rows the
    /// table has now. Writes one segment and the index, never the other
    /// tables' rows nor this one's (but for a few trailing small segments it
    /// absorbs); nothing changes if the table is refused.
    pub fn put_table(&self, table: Table, if_exists: IfExists) -> Result<usize, WalletError> {
        table.validate().map_err(|e| WalletError::InvalidData {
            reason: e.to_string(),
        })?;
        let _lock = self.tables_lock()?;
        let mut index = self.table_index()?;
        let name = table.name.clone();
        let plan = tables::plan_put(&index, &name, &table.schema(), if_exists, table.row_count)?;
        let mut entry = plan.entry;
        let mut columns = entry.empty_columns();
        let mut rows = 0;
        for segment in &plan.merge {
            tables::extend(&mut columns, self.read_segment(&entry, segment)?);
            rows += segment.rows;
        }
        rows += table.row_count;
        entry.rows += table.row_count;
        tables::extend(
            &mut columns,
            table.columns.into_iter().map(|c| c.data).collect(),
        );
        self.push_segment(&mut entry, &columns, rows)?;
        let total = entry.rows;
        index.tables.insert(name, entry);
        self.write_document(INDEX_FILE, &index)?;
        self.sweep_segments(&index)?;
        Ok(total)
    }

    /// Stores the rows of table `name` with `columns` as they come, a
    /// segment per chunk, so that no more than one chunk is held at once:
    /// `fill` is given a function to call with each chunk (a table of that
    /// name and those columns). The index is written only once `fill` has
    /// succeeded, so a failure of `fill` or of the store leaves the wallet as
    /// it was (the chunks' segments are swept). Returns what `fill` returned
    /// and the rows the table has now.
    pub fn put_table_chunks<T, E: From<WalletError>>(
        &self,
        name: &str,
        columns: &[c2ssi_guest_sdk::ColumnSpec],
        if_exists: IfExists,
        fill: impl FnOnce(&mut dyn FnMut(Table) -> Result<(), WalletError>) -> Result<T, E>,
    ) -> Result<(T, usize), E> {
        let _lock = self.tables_lock()?;
        let mut index = self.table_index()?;
        let plan = tables::plan_put(&index, name, columns, if_exists, usize::MAX)?;
        let mut entry = plan.entry;
        let mut put_chunk = |chunk: Table| -> Result<(), WalletError> {
            if chunk.name != name || chunk.schema() != entry.columns {
                return Err(WalletError::InvalidData {
                    reason: format!("a chunk of rows does not fit table '{name}'"),
                });
            }
            chunk.validate().map_err(|e| WalletError::InvalidData {
                reason: e.to_string(),
            })?;
            let rows = chunk.row_count;
            let data: Vec<ColumnData> = chunk.columns.into_iter().map(|c| c.data).collect();
            entry.rows += rows;
            self.push_segment(&mut entry, &data, rows)
        };
        let filled = fill(&mut put_chunk);
        let value = match filled {
            Ok(value) => value,
            Err(e) => {
                // The index never named the chunks' segments; the error that
                // matters is `fill`'s, so a failed sweep is left to the next
                // writer.
                let _ = self.sweep_segments(&index);
                return Err(e);
            }
        };
        let total = entry.rows;
        index.tables.insert(name.to_string(), entry);
        self.write_document(INDEX_FILE, &index)?;
        self.sweep_segments(&index)?;
        Ok((value, total))
    }

    /// Removes the table called `name`; returns how many rows it had.
    pub fn remove_table(&self, name: &str) -> Result<usize, WalletError> {
        let _lock = self.tables_lock()?;
        let mut index = self.table_index()?;
        let rows = index.entry(name)?.rows;
        index.tables.remove(name);
        self.write_document(INDEX_FILE, &index)?;
        self.sweep_segments(&index)?;
        Ok(rows)
    }

    /// Removes every segment file the index does not name: those a put
    /// replaced, a removed table's, and any a crash left between a segment's
    /// write and the index's. Called with the lock held.
    fn sweep_segments(&self, index: &TableIndex) -> Result<(), WalletError> {
        let named: std::collections::HashSet<&str> = index.files().collect();
        match &self.place {
            Place::Memory { documents, .. } => {
                let prefix = format!("{}/", tables::SEGMENT_DIR);
                documents
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|k, _| {
                        k.strip_prefix(&prefix)
                            .is_none_or(|file| named.contains(file))
                    });
                Ok(())
            }
            Place::Dir(dir) => {
                let segments = dir.join(tables::SEGMENT_DIR);
                let entries = match std::fs::read_dir(&segments) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => {
                        return Err(WalletError::Io {
                            path: segments,
                            source: e,
                        });
                    }
                };
                for entry in entries.flatten() {
                    let file = entry.file_name();
                    let file = file.to_string_lossy();
                    if file.ends_with(".age") && !named.contains(file.as_ref()) {
                        std::fs::remove_file(entry.path()).map_err(|e| WalletError::Io {
                            path: entry.path(),
                            source: e,
                        })?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The writer's lock, held for a read-change-write.
enum Lock<'a> {
    File(#[allow(dead_code, reason = "held for its Drop")] files::WriteLock),
    Memory(#[allow(dead_code, reason = "held for its Drop")] std::sync::MutexGuard<'a, ()>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::SecretString;

    #[test]
    fn simulated_wallets_repeat_from_their_seed_in_memory_and_on_disk() {
        let a = Wallet::in_memory_for_simulation(7, "000001").unwrap();
        let b = Wallet::in_memory_for_simulation(7, "000001").unwrap();
        let c = Wallet::in_memory_for_simulation(7, "000002").unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(
            a.keys().recipient().to_string(),
            b.keys().recipient().to_string()
        );
        assert_ne!(a.id(), c.id());
        assert!(a.dir().is_none());
        let dir = tempfile::tempdir().unwrap();
        let protection = identity();
        let d = Wallet::init_for_simulation(dir.path(), &protection, 7, "000001").unwrap();
        assert_eq!(d.id(), a.id());
        assert_eq!(Wallet::open(dir.path(), &protection).unwrap().id(), a.id());
    }

    #[test]
    fn a_wallet_in_memory_keeps_its_documents_and_refuses_a_failed_change() {
        let wallet = Wallet::in_memory_for_simulation(1, "w").unwrap();
        assert!(wallet.records().unwrap().tables.is_empty());
        let n: u32 = wallet.read_document("count.age").unwrap();
        assert_eq!(n, 0);
        wallet
            .update_document("count.age", |n: &mut u32| {
                *n += 2;
                Ok(())
            })
            .unwrap();
        let failed: Result<(), _> = wallet.update_document("count.age", |n: &mut u32| {
            *n += 40;
            Err(WalletError::InvalidData {
                reason: "no".into(),
            })
        });
        assert!(failed.is_err());
        let n: u32 = wallet.read_document("count.age").unwrap();
        assert_eq!(n, 2);
        // A change may read another document while it holds the writer's lock.
        wallet
            .update_document("other.age", |o: &mut u32| {
                *o = wallet.read_document::<u32>("count.age")? + 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(wallet.read_document::<u32>("other.age").unwrap(), 3);
    }

    fn identity() -> KeyProtection {
        KeyProtection::Identity(age::x25519::Identity::generate())
    }

    #[test]
    fn init_then_open_gives_the_same_wallet() {
        let dir = tempfile::tempdir().unwrap();
        let protection = identity();
        let created = Wallet::init(dir.path(), &protection).unwrap();
        let opened = Wallet::open(dir.path(), &protection).unwrap();
        assert_eq!(created.id(), opened.id());
        assert!(opened.records().unwrap().tables.is_empty());
        assert!(matches!(
            Wallet::init(dir.path(), &protection),
            Err(WalletError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn the_wrong_identity_or_method_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Wallet::init(dir.path(), &identity()).unwrap();
        assert!(matches!(
            Wallet::open(dir.path(), &identity()),
            Err(WalletError::WrongIdentity)
        ));
        let passphrase = KeyProtection::Passphrase(SecretString::from("x".to_string()));
        assert!(matches!(
            Wallet::open(dir.path(), &passphrase),
            Err(WalletError::WrongUnlockMethod { .. })
        ));
    }

    fn steps(name: &str, values: Vec<i64>) -> Table {
        Table::new(
            name,
            values.len(),
            vec![c2ssi_guest_sdk::Column {
                name: "steps".into(),
                ty: c2ssi_guest_sdk::ColumnType::Integer {
                    min: Some(0),
                    max: None,
                },
                data: ColumnData::Integer(values),
            }],
        )
        .unwrap()
    }

    /// Every file of the wallet with its bytes, but the lock.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if !path.ends_with(LOCK_FILE) && !path.ends_with(TABLES_LOCK_FILE) {
                    files.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        files.sort();
        files
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join(tables::SEGMENT_DIR))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn a_refused_put_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::init(dir.path(), &identity()).unwrap();
        wallet
            .put_table(steps("health", vec![1, 2]), IfExists::Fail)
            .unwrap();
        let before = snapshot(dir.path());
        // Out of its declared range: built without `Table::new`'s check.
        let mut negative = steps("other", vec![1]);
        negative.columns[0].data = ColumnData::Integer(vec![-1]);
        for (table, how) in [
            (steps("health", vec![3]), IfExists::Fail),
            (negative, IfExists::Fail),
        ] {
            assert!(wallet.put_table(table, how).is_err());
        }
        let mut wrong = steps("health", vec![3]);
        wrong.columns[0].name = "walks".into();
        let err = wallet.put_table(wrong, IfExists::Append).unwrap_err();
        assert!(
            err.to_string().contains("it has steps (integer >= 0)"),
            "{err}"
        );
        assert_eq!(snapshot(dir.path()), before);
    }

    #[test]
    fn appends_write_segments_that_compact_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::init(dir.path(), &identity()).unwrap();
        wallet
            .put_table(steps("health", vec![0]), IfExists::Fail)
            .unwrap();
        for i in 1..(tables::MAX_SEGMENTS as i64 + 5) {
            let rows = wallet
                .put_table(steps("health", vec![i]), IfExists::Append)
                .unwrap();
            assert_eq!(rows, i as usize + 1);
            let index = wallet.table_index().unwrap();
            let segments = index.tables["health"].segments.len();
            assert!(segments <= tables::MAX_SEGMENTS, "{segments}");
            assert_eq!(segment_files(dir.path()), segments, "no file left over");
        }
        let n = tables::MAX_SEGMENTS as i64 + 5;
        assert_eq!(
            wallet.table("health").unwrap().columns[0].data,
            ColumnData::Integer((0..n).collect())
        );
        // The head reads only the segments it needs, and is the same rows.
        let head = wallet.table_head("health", 3).unwrap();
        assert_eq!(head.row_count, 3);
        assert_eq!(head.columns[0].data, ColumnData::Integer(vec![0, 1, 2]));
        assert_eq!(
            wallet.table_head("health", 1000).unwrap().row_count,
            n as usize
        );
        // Replacing and removing leave no segment behind either.
        wallet
            .put_table(steps("health", vec![9]), IfExists::Replace)
            .unwrap();
        assert_eq!(segment_files(dir.path()), 1);
        assert_eq!(wallet.remove_table("health").unwrap(), 1);
        assert_eq!(segment_files(dir.path()), 0);
        assert!(wallet.table_index().unwrap().tables.is_empty());
    }

    #[test]
    fn an_import_in_progress_does_not_hold_up_the_documents() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::init(dir.path(), &identity()).unwrap();
        let schema = steps("t", vec![]).schema();
        let (started, has_started) = std::sync::mpsc::channel();
        let (go_on, may_go_on) = std::sync::mpsc::channel::<()>();
        let (wallet_ref, schema_ref) = (&wallet, &schema);
        std::thread::scope(move |scope| {
            // Owned here, so that a failure below drops it and the import
            // ends instead of waiting for ever.
            let go_on = go_on;
            let (wallet, schema) = (wallet_ref, schema_ref);
            let import = scope.spawn(move || {
                wallet.put_table_chunks("t", schema, IfExists::Fail, |put| {
                    put(steps("t", vec![1]))?;
                    started.send(()).unwrap();
                    // Holds the tables' lock until the document is written:
                    // were it the documents' lock too, the write below would
                    // wait for it and fail as `Locked` after 10 s.
                    may_go_on.recv().unwrap();
                    put(steps("t", vec![2]))
                })
            });
            has_started.recv().unwrap();
            wallet
                .update_document("count.age", |n: &mut u32| {
                    *n += 1;
                    Ok(())
                })
                .expect("the documents' lock is free during an import");
            go_on.send(()).unwrap();
            assert_eq!(import.join().unwrap().unwrap().1, 2);
        });
        assert_eq!(wallet.read_document::<u32>("count.age").unwrap(), 1);
        assert_eq!(
            wallet.table("t").unwrap().columns[0].data,
            ColumnData::Integer(vec![1, 2])
        );
    }

    #[test]
    fn a_reader_that_meets_a_writer_reads_again_rather_than_cry_damage() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::init(dir.path(), &identity()).unwrap();
        wallet
            .put_table(steps("t", vec![1]), IfExists::Fail)
            .unwrap();
        // A reader has the index; a writer replaces the table and removes
        // the segment that index names.
        let stale = wallet.table_index().unwrap();
        wallet
            .put_table(steps("t", vec![2]), IfExists::Replace)
            .unwrap();
        let err = wallet.read_table(&stale, "t").unwrap_err();
        assert!(err.to_string().contains("the file is missing"), "{err}");
        // Through `read_consistent`, a replace between the reader's index and
        // its segments makes it read again, with the new index.
        let first = std::cell::Cell::new(true);
        let table = wallet
            .read_consistent(|index| {
                if first.replace(false) {
                    wallet
                        .put_table(steps("t", vec![3]), IfExists::Replace)
                        .unwrap();
                }
                wallet.read_table(index, "t")
            })
            .unwrap();
        assert_eq!(table.columns[0].data, ColumnData::Integer(vec![3]));
        // With the index unchanged, a missing segment is damage.
        let index = wallet.table_index().unwrap();
        let file = &index.tables["t"].segments[0].file;
        std::fs::remove_file(dir.path().join(tables::segment_path(file))).unwrap();
        assert!(matches!(
            wallet.table("t"),
            Err(WalletError::Damaged { .. })
        ));
    }

    #[test]
    fn a_segment_swapped_or_missing_is_damage_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let protection = identity();
        let wallet = Wallet::init(dir.path(), &protection).unwrap();
        wallet
            .put_table(steps("a", vec![1]), IfExists::Fail)
            .unwrap();
        wallet
            .put_table(steps("b", vec![2]), IfExists::Fail)
            .unwrap();
        let index = wallet.table_index().unwrap();
        let file = |t: &str| {
            dir.path()
                .join(tables::segment_path(&index.tables[t].segments[0].file))
        };
        // Both are sealed to the same key; only the index's hash tells them apart.
        std::fs::copy(file("b"), file("a")).unwrap();
        let err = Wallet::open(dir.path(), &protection)
            .unwrap()
            .table("a")
            .unwrap_err();
        assert!(matches!(err, WalletError::Damaged { .. }), "{err:?}");
        assert!(err.to_string().contains("its hash differs"), "{err}");
        std::fs::remove_file(file("b")).unwrap();
        let err = wallet.table("b").unwrap_err();
        assert!(err.to_string().contains("the file is missing"), "{err}");
    }

    #[test]
    fn a_format_1_wallet_is_migrated_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let protection = identity();
        let wallet = Wallet::init(dir.path(), &protection).unwrap();
        // What format 1 wrote: every table in records.age.
        let mut records = Records::default();
        records
            .put(steps("health", vec![4, 5]), IfExists::Fail)
            .unwrap();
        records.put(steps("empty", vec![]), IfExists::Fail).unwrap();
        wallet.write_document(RECORDS_FILE, &records).unwrap();
        std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
        let meta_path = dir.path().join(META_FILE);
        let meta = std::fs::read_to_string(&meta_path).unwrap();
        std::fs::write(&meta_path, meta.replace("\"format\": 2", "\"format\": 1")).unwrap();

        let opened = Wallet::open(dir.path(), &protection).unwrap();
        assert_eq!(opened.records().unwrap(), records);
        assert!(!dir.path().join(RECORDS_FILE).exists());
        assert!(
            std::fs::read_to_string(&meta_path)
                .unwrap()
                .contains("\"format\": 2")
        );
        // Opening again changes nothing.
        let before = snapshot(dir.path());
        Wallet::open(dir.path(), &protection).unwrap();
        assert_eq!(snapshot(dir.path()), before);
    }

    #[test]
    fn a_wallet_in_memory_keeps_tables_in_segments_too() {
        let wallet = Wallet::in_memory_for_simulation(3, "m").unwrap();
        wallet
            .put_table(steps("t", vec![1]), IfExists::Fail)
            .unwrap();
        wallet
            .put_table(steps("t", vec![2]), IfExists::Append)
            .unwrap();
        assert_eq!(
            wallet.table("t").unwrap().columns[0].data,
            ColumnData::Integer(vec![1, 2])
        );
        wallet
            .put_table(steps("t", vec![3]), IfExists::Replace)
            .unwrap();
        let Place::Memory { documents, .. } = &wallet.place else {
            panic!("in memory")
        };
        let segments = documents
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("tables/"))
            .count();
        assert_eq!(segments, 1);
    }
}
