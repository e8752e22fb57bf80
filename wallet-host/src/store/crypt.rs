//! age encryption for the wallet's files: the key file under a passphrase
//! (scrypt) or an age identity file, everything else to the wallet's own
//! X25519 recipient. Decryption errors are mapped to what they mean for the
//! person: a wrong passphrase, or a damaged file, naming it.

use std::io::{Read, Write};
use std::path::Path;

use age::secrecy::SecretString;

use super::WalletError;

/// The scrypt work factor a wallet's key file is sealed with: N = 2^18
/// (256 MiB, about a second on one core of the development machine; age's own
/// default, but chosen here rather than measured at each run). Age would
/// otherwise time scrypt on the machine at hand, so a wallet made or opened
/// while the machine is busy would get a different figure, and under load age
/// refuses to open a file whose factor exceeds what it measured plus 4.
pub(crate) const PASSPHRASE_WORK_FACTOR: u8 = 18;

/// The largest work factor accepted when unlocking: N = 2^22 (4 GiB and about
/// 16 s here), age's own bound against a file crafted to take hours. A key
/// file that asks for more is refused as [`WalletError::ExcessiveWork`],
/// never reported as damage or a wrong passphrase.
pub(crate) const MAX_PASSPHRASE_WORK_FACTOR: u8 = 22;

/// What unlocks a wallet's key file.
pub enum KeyProtection {
    /// A passphrase (age's scrypt recipient; about a second to unlock).
    Passphrase(SecretString),
    /// An age X25519 identity (from an identity file; instant).
    Identity(age::x25519::Identity),
}

impl std::fmt::Debug for KeyProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProtection::Passphrase(_) => f.write_str("Passphrase(..)"),
            KeyProtection::Identity(_) => f.write_str("Identity(..)"),
        }
    }
}

fn encrypt_with(
    encryptor: age::Encryptor,
    plaintext: &[u8],
    path: &Path,
) -> Result<Vec<u8>, WalletError> {
    let crypto = |e: std::io::Error| WalletError::Crypto {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor.wrap_output(&mut out).map_err(crypto)?;
    writer.write_all(plaintext).map_err(crypto)?;
    writer.finish().map_err(crypto)?;
    Ok(out)
}

/// Encrypts the key file's plaintext under `protection`.
pub(crate) fn encrypt_protected(
    protection: &KeyProtection,
    plaintext: &[u8],
    path: &Path,
) -> Result<Vec<u8>, WalletError> {
    let encryptor = match protection {
        KeyProtection::Passphrase(p) => {
            let mut recipient = age::scrypt::Recipient::new(p.clone());
            recipient.set_work_factor(PASSPHRASE_WORK_FACTOR);
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| WalletError::Crypto {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?
        }
        KeyProtection::Identity(identity) => {
            let recipient = identity.to_public();
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| WalletError::Crypto {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?
        }
    };
    encrypt_with(encryptor, plaintext, path)
}

/// Encrypts to the wallet's own recipient.
pub(crate) fn encrypt_to(
    recipient: &age::x25519::Recipient,
    plaintext: &[u8],
    path: &Path,
) -> Result<Vec<u8>, WalletError> {
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .map_err(|e| WalletError::Crypto {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
    encrypt_with(encryptor, plaintext, path)
}

/// Decrypts with `identity`, mapping age's errors: when the header cannot be
/// opened with this key, `wrong_key`; anything else names the file as damaged.
/// With a passphrase, a failed stanza decryption is what a wrong passphrase
/// looks like, so `passphrase` widens what counts as a wrong key.
fn decrypt_with(
    ciphertext: &[u8],
    identity: &dyn age::Identity,
    path: &Path,
    wrong_key: WalletError,
    passphrase: bool,
) -> Result<Vec<u8>, WalletError> {
    let damaged = |reason: String| WalletError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let decryptor = age::Decryptor::new_buffered(ciphertext).map_err(|e| damaged(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys | age::DecryptError::KeyDecryptionFailed => wrong_key,
            age::DecryptError::DecryptionFailed if passphrase => wrong_key,
            age::DecryptError::ExcessiveWork { required, .. } => WalletError::ExcessiveWork {
                path: path.to_path_buf(),
                required,
                allowed: MAX_PASSPHRASE_WORK_FACTOR,
            },
            other => damaged(other.to_string()),
        })?;
    let mut plaintext = Vec::new();
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| damaged(format!("the encrypted content does not authenticate ({e})")))?;
    Ok(plaintext)
}

/// Decrypts the key file.
pub(crate) fn decrypt_protected(
    protection: &KeyProtection,
    ciphertext: &[u8],
    path: &Path,
) -> Result<Vec<u8>, WalletError> {
    let is_scrypt = age::Decryptor::new_buffered(ciphertext)
        .map(|d| d.is_scrypt())
        .unwrap_or(false);
    match protection {
        KeyProtection::Passphrase(_) if !is_scrypt => Err(WalletError::WrongUnlockMethod {
            needed: "an age identity file (--identity)",
        }),
        KeyProtection::Identity(_) if is_scrypt => Err(WalletError::WrongUnlockMethod {
            needed: "a passphrase (prompt, WALLET_PASSPHRASE or --passphrase-file)",
        }),
        KeyProtection::Passphrase(p) => {
            // A fixed bound rather than age's, which is measured at each run
            // and so shrinks when the machine is busy.
            let mut identity = age::scrypt::Identity::new(p.clone());
            identity.set_max_work_factor(MAX_PASSPHRASE_WORK_FACTOR);
            decrypt_with(
                ciphertext,
                &identity,
                path,
                WalletError::WrongPassphrase,
                true,
            )
        }
        KeyProtection::Identity(identity) => decrypt_with(
            ciphertext,
            identity,
            path,
            WalletError::WrongIdentity,
            false,
        ),
    }
}

/// Decrypts a file encrypted to the wallet's own recipient.
pub(crate) fn decrypt_own(
    identity: &age::x25519::Identity,
    ciphertext: &[u8],
    path: &Path,
) -> Result<Vec<u8>, WalletError> {
    decrypt_with(
        ciphertext,
        identity,
        path,
        WalletError::Damaged {
            path: path.to_path_buf(),
            reason: "it is not encrypted to this wallet's key".into(),
        },
        false,
    )
}
