//! The consumer's own data directory (`COLLECTIVE_HOME`, or
//! `compute-to-ssi/collective` under the user's data directory): one key
//! file per collective, readable by its owner only. Nothing else of the
//! collective's lives here but what the operator downloads.

use std::path::{Path, PathBuf};

use anyhow::Context;
use c2ssi_protocol::{Signer, SigningKey, collective_id};

/// The consumer's data directory.
pub fn home(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(p) => Ok(p.to_path_buf()),
        None => Ok(dirs::data_dir()
            .context("no data directory for this user; set COLLECTIVE_HOME")?
            .join("compute-to-ssi")
            .join("collective")),
    }
}

/// This consumer's own key in `home` (`consumer.key`), made on first use: it
/// signs the request that creates a collective, and a broker's operator
/// lists it to admit this consumer.
pub fn consumer_key(home: &Path) -> anyhow::Result<SigningKey> {
    let path = home.join("consumer.key");
    if path.exists() {
        return SigningKey::read_from(&path)
            .with_context(|| format!("reading the consumer key {}", path.display()));
    }
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let key = SigningKey::generate()?;
    key.write_to(&path)
        .with_context(|| format!("writing the consumer key to {}", path.display()))?;
    Ok(key)
}

/// Where collective `id`'s key lives in `home`.
pub fn key_path(home: &Path, id: &str) -> PathBuf {
    home.join(format!("{id}.key"))
}

/// A new collective key, stored at `path` (or in `home` under the id it
/// gives); returns the key and where it went.
pub fn create_key(home: &Path, path: Option<&Path>) -> anyhow::Result<(SigningKey, PathBuf)> {
    let key = SigningKey::generate()?;
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => key_path(home, &collective_id(&key.public_key())),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        anyhow::bail!(
            "{} exists: it holds another collective's key (give another --key)",
            path.display()
        );
    }
    key.write_to(&path)
        .with_context(|| format!("writing the collective's key to {}", path.display()))?;
    Ok((key, path))
}

/// Collective `id`'s key: from `path` when given, else from `home`.
pub fn load_key(home: &Path, path: Option<&Path>, id: &str) -> anyhow::Result<SigningKey> {
    let path = path.map_or_else(|| key_path(home, id), Path::to_path_buf);
    let key = SigningKey::read_from(&path).with_context(|| {
        format!(
            "reading the key of collective {id} from {} (`collective create` made it)",
            path.display()
        )
    })?;
    if collective_id(&key.public_key()) != id {
        anyhow::bail!(
            "{} holds the key of collective {}, not {id}",
            path.display(),
            collective_id(&key.public_key())
        );
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_loads_by_its_collective_id() {
        let dir = tempfile::tempdir().unwrap();
        let (key, path) = create_key(dir.path(), None).unwrap();
        let id = collective_id(&key.public_key());
        assert_eq!(path, key_path(dir.path(), &id));
        let loaded = load_key(dir.path(), None, &id).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert!(load_key(dir.path(), Some(&path), "c-000000000000000000000000").is_err());
        assert!(
            create_key(dir.path(), Some(&path)).is_err(),
            "never overwritten"
        );
    }
}
