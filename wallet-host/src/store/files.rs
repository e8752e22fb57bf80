//! File plumbing for the wallet: atomic writes (temporary file, fsync,
//! rename, fsync of the directory) so that a crash leaves the old or the new
//! file and never a torn one, owner-only permissions, and the lock file that
//! keeps two writers apart.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::WalletError;

/// Writes `bytes` to `path` atomically, readable by the owner only.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |e: std::io::Error| WalletError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    set_owner_only(tmp.path()).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    sync_dir(dir).map_err(io)?;
    Ok(())
}

/// Makes the directory's entries (a rename) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Owner-only permissions on a file or directory.
pub(crate) fn set_owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if path.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, WalletError> {
    std::fs::read(path).map_err(|e| WalletError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// How long a writer waits for another to finish.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// An exclusive lock on the wallet, held until dropped.
#[derive(Debug)]
pub(crate) struct WriteLock {
    _file: File,
}

impl WriteLock {
    /// Takes the lock, waiting up to [`LOCK_WAIT`] for another writer.
    pub(crate) fn acquire(lock_path: &Path) -> Result<WriteLock, WalletError> {
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(lock_path).map_err(|e| WalletError::Io {
            path: lock_path.to_path_buf(),
            source: e,
        })?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(WriteLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(WalletError::Locked {
                        path: lock_path.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(WalletError::Io {
                        path: lock_path.to_path_buf(),
                        source: e,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"]);
    }

    #[test]
    fn a_second_writer_waits_for_the_first() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = WriteLock::acquire(&path).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (path, released) = (path.clone(), released.clone());
            std::thread::spawn(move || {
                let _second = WriteLock::acquire(&path).unwrap();
                released.load(Ordering::SeqCst)
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        released.store(true, Ordering::SeqCst);
        drop(first);
        assert!(
            waiter.join().unwrap(),
            "the second writer got the lock while the first held it"
        );
    }
}
