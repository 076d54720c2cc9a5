//! One rotation per portal account at a time. Two runs on one account, even
//! writing to different folders, would each reset the same phones and hold
//! only half of the current passwords; so a run holds a lock named after the
//! portal's origin and the login, in a per-user state folder, until it ends.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another sip-rotate run holds the lock {path} ({holder})")]
    Held { path: PathBuf, holder: String },
    #[error("the lock {path} is not a regular file of this user")]
    Foreign { path: PathBuf },
    #[error("cannot take the lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// The lock's file name for one portal account: readable, and distinct for
/// distinct accounts even where the readable part is not.
pub fn lock_name(origin: &str, login: &str) -> String {
    let readable: String = format!("{origin}-{login}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // FNV-1a: stable across versions, so that two versions see one lock.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in origin.bytes().chain([0]).chain(login.bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{readable}-{:08x}.lock", hash as u32)
}

impl RunLock {
    /// Takes the lock at `path`, or says who holds it. The file is opened
    /// without following a link, and must belong to this user.
    pub fn acquire(path: &Path, holder: &str) -> Result<RunLock, LockError> {
        let io_err = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => LockError::Foreign {
                    path: path.to_path_buf(),
                },
                _ => io_err(e),
            })?;
        let meta = file.metadata().map_err(io_err)?;
        // SAFETY: getuid cannot fail.
        if !meta.is_file() || meta.uid() != unsafe { libc::getuid() } {
            return Err(LockError::Foreign {
                path: path.to_path_buf(),
            });
        }
        match file.try_lock() {
            Ok(()) => {
                // Ours now, and a regular file of this user: say who holds it.
                file.set_len(0).map_err(io_err)?;
                file.rewind().map_err(io_err)?;
                writeln!(
                    file,
                    "pid {} since {}, {holder}",
                    std::process::id(),
                    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
                .map_err(io_err)?;
                Ok(RunLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.take(1024).read_to_string(&mut holder);
                Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder: holder.trim().to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(lock_name("https://portal.example", "me"));
        let held = RunLock::acquire(&path, "output a.age").unwrap();
        match RunLock::acquire(&path, "output b.age") {
            Err(LockError::Held { holder, .. }) => assert!(holder.contains("a.age"), "{holder}"),
            other => panic!("{other:?}"),
        }
        drop(held);
        RunLock::acquire(&path, "output b.age").unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("planted.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            RunLock::acquire(&link, "x"),
            Err(LockError::Foreign { .. })
        ));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn lock_names_differ_by_account() {
        let a = lock_name("https://portal.example", "me");
        assert_eq!(a, lock_name("https://portal.example", "me"));
        assert_ne!(a, lock_name("https://portal.example", "me2"));
        assert_ne!(a, lock_name("https://portal.example:8443", "me"));
        assert!(a.starts_with("https___portal.example-me-"), "{a}");
    }
}
