//! The encrypted wallet: a directory that holds an individual's records and
//! keys, never in plaintext.
//!
//! ```text
//! wallet.json   public facts: format, wallet id (Ed25519 public key), age recipient
//! keys.age      the secret keys, under a passphrase (scrypt) or an age identity file
//! records.age   the tables, encrypted to the wallet's own X25519 recipient
//! .lock         taken by every writer, so two never interleave
//! ```
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

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use self::crypt::KeyProtection;
pub use self::keys::WalletKeys;
pub use self::records::{IfExists, MAX_TABLE_NAME, Records, check_table_name};

/// The file with the wallet's public facts.
pub const META_FILE: &str = "wallet.json";
/// The encrypted key file.
pub const KEYS_FILE: &str = "keys.age";
/// The encrypted records.
pub const RECORDS_FILE: &str = "records.age";
/// The lock file.
pub const LOCK_FILE: &str = ".lock";

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
        wallet.write_document(RECORDS_FILE, &Records::default())?;
        let meta = Meta {
            format: 1,
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
        Ok(wallet)
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
            },
            keys: std::sync::Arc::new(keys),
        };
        wallet.write_document(RECORDS_FILE, &Records::default())?;
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

    /// Reads an encrypted document; a missing file reads as the default.
    pub fn read_document<T: DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> Result<T, WalletError> {
        let dir = match &self.place {
            Place::Dir(dir) => dir,
            Place::Memory { documents, .. } => {
                let documents = documents.lock().unwrap_or_else(|e| e.into_inner());
                return match documents.get(name) {
                    None => Ok(T::default()),
                    Some(json) => serde_json::from_slice(json).map_err(|e| WalletError::Damaged {
                        path: PathBuf::from(name),
                        reason: format!("its content does not parse: {e}"),
                    }),
                };
            }
        };
        let path = dir.join(name);
        if !path.exists() {
            if name == RECORDS_FILE {
                return Err(WalletError::Damaged {
                    path,
                    reason: "the file is missing".into(),
                });
            }
            return Ok(T::default());
        }
        let sealed = files::read(&path)?;
        let plaintext =
            zeroize::Zeroizing::new(crypt::decrypt_own(&self.keys.age_identity, &sealed, &path)?);
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
        match &self.place {
            Place::Dir(dir) => {
                let path = dir.join(name);
                let sealed = crypt::encrypt_to(&self.keys.recipient(), &plaintext, &path)?;
                files::atomic_write(&path, &sealed)
            }
            Place::Memory { documents, .. } => {
                documents
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_string(), plaintext.to_vec());
                Ok(())
            }
        }
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
        let _lock = match &self.place {
            Place::Dir(dir) => Lock::File(files::WriteLock::acquire(&dir.join(LOCK_FILE))?),
            Place::Memory { writer, .. } => {
                Lock::Memory(writer.lock().unwrap_or_else(|e| e.into_inner()))
            }
        };
        let mut value: T = self.read_document(name)?;
        let out = change(&mut value)?;
        self.write_document(name, &value)?;
        Ok(out)
    }

    /// The records.
    pub fn records(&self) -> Result<Records, WalletError> {
        self.read_document(RECORDS_FILE)
    }

    /// Changes the records under the lock; nothing is written if `change` fails.
    pub fn update_records<R>(
        &self,
        change: impl FnOnce(&mut Records) -> Result<R, WalletError>,
    ) -> Result<R, WalletError> {
        self.update_document(RECORDS_FILE, change)
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

    #[test]
    fn a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::init(dir.path(), &identity()).unwrap();
        let before = std::fs::read(dir.path().join(RECORDS_FILE)).unwrap();
        let result: Result<(), _> = wallet.update_records(|_| {
            Err(WalletError::InvalidData {
                reason: "no".into(),
            })
        });
        assert!(result.is_err());
        assert_eq!(
            std::fs::read(dir.path().join(RECORDS_FILE)).unwrap(),
            before
        );
    }
}
