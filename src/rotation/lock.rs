//! One rotation per portal account at a time. Two runs on one account, even
//! writing to different folders, would each reset the same phones and hold
//! only half of the current passwords; so a run holds a lock named after the
//! portal's origin and the login, in a per-user state folder, until it ends.
//! The lock file says who holds it. Two runs that do not share it (two
//! users, two state folders, a `lock` of the config file) are still kept
//! apart on one machine: each holds the account's name as an abstract
//! socket, which one process at a time may hold, and which ends with it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another sip-rotate run holds the lock {path} ({holder})")]
    Held { path: PathBuf, holder: String },
    /// A link, a folder, or a file that is not a lock: never written.
    #[error("{path} is not a sip-rotate lock file: it is left as it is")]
    Foreign { path: PathBuf },
    #[error("{path} is a symbolic link: a lock is never taken through one")]
    Symlink { path: PathBuf },
    #[error("cannot take the lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The lock file was free, the account's name on this machine was not.
    #[error(
        "another sip-rotate run on this machine is rotating this portal account, with another lock than {path} (another user, state folder or lock setting)"
    )]
    HeldElsewhere { path: PathBuf },
}

/// Held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    _account: Option<std::os::unix::net::UnixListener>,
}

/// The account's name on this machine (see `account_key`), as an abstract
/// socket.
enum AccountName {
    /// Held by this process until dropped.
    Held(std::os::unix::net::UnixListener),
    /// Another process holds it: another run of the account.
    Taken,
    /// The machine refuses the socket (a sandbox without `AF_UNIX`): the
    /// lock file alone keeps runs apart.
    Refused,
}

fn hold_account(account: &str) -> AccountName {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("sip-rotate/{account}");
    let bound = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .and_then(|addr| std::os::unix::net::UnixListener::bind_addr(&addr));
    match bound {
        Ok(listener) => AccountName::Held(listener),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => AccountName::Taken,
        Err(e) => {
            tracing::warn!("the portal account is locked by its lock file only: {e}");
            AccountName::Refused
        }
    }
}

/// The portal account (its origin and login) as a short key, the same for
/// every user and version: the name one run at a time holds on a machine.
pub fn account_key(portal: &Url, login: &str) -> String {
    format!("{:016x}", account_hash(&account_origin(portal), login))
}

/// FNV-1a of the origin and the login, whatever its case: stable across
/// versions, so that two versions see one lock.
fn account_hash(origin: &str, login: &str) -> u64 {
    let login = login.to_lowercase();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in origin.bytes().chain([0]).chain(login.bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The portal's origin as the run lock names it: one spelling for one
/// portal (`localhost`, `127.0.0.1` and `[::1]` are one loopback; the port
/// always written).
fn account_origin(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => "loopback".into(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => "loopback".into(),
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => "loopback".into(),
        Some(h) => h
            .to_string()
            .to_lowercase()
            .trim_end_matches('.')
            .to_string(),
        None => String::new(),
    };
    format!(
        "{}://{host}:{}",
        url.scheme(),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// The lock's file name for one portal account (the portal's origin and
/// the login): readable, and distinct for distinct accounts even where the
/// readable part is not.
pub fn lock_name(portal: &Url, login: &str) -> String {
    let origin = account_origin(portal);
    let origin = origin.as_str();
    // The login is a credential: the name carries only its hash, so that
    // no message naming the lock, and no listing of the folder, shows it.
    let readable: String = origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{readable}-{:08x}.lock", account_hash(origin, login) as u32)
}

impl RunLock {
    /// Takes the lock at `path`, or says who holds it. The file is opened
    /// without following a link, and an existing file is used only if it is
    /// a lock (empty, or naming its holder): anything else is left alone. A
    /// lock that a group shares (mode 0660, made once by hand) works for
    /// every user of that group.
    /// Who holds the lock at `path` now, as its holder wrote it; `None`
    /// when nobody does (or it is no lock file): nothing is written.
    pub fn holder(path: &Path) -> Option<String> {
        let file = crate::files::open_read(path).ok()?;
        if !matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)) {
            return None;
        }
        let mut head = Vec::new();
        (&file).take(1024).read_to_end(&mut head).ok()?;
        head.starts_with(b"pid ")
            .then(|| String::from_utf8_lossy(&head).trim().to_string())
    }

    /// `account`: the key of the portal account (see `account_key`).
    pub fn acquire(path: &Path, account: &str, holder: &str) -> Result<RunLock, LockError> {
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
                Some(libc::ELOOP) => LockError::Symlink {
                    path: path.to_path_buf(),
                },
                _ => io_err(e),
            })?;
        let foreign = || LockError::Foreign {
            path: path.to_path_buf(),
        };
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(foreign());
        }
        let mut head = Vec::new();
        (&file).take(1024).read_to_end(&mut head).map_err(io_err)?;
        if !(head.is_empty() || head.starts_with(b"pid ")) {
            return Err(foreign());
        }
        // SAFETY: getuid cannot fail.
        if meta.uid() == unsafe { libc::getuid() } && meta.mode() & 0o007 != 0 {
            // Ours, and readable by anyone: no longer.
            file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o770))
                .map_err(io_err)?;
        }
        match file.try_lock() {
            Ok(()) => {
                // Before the file is written: it names the holder of both.
                let account = match hold_account(account) {
                    AccountName::Held(listener) => Some(listener),
                    AccountName::Refused => None,
                    AccountName::Taken => {
                        return Err(LockError::HeldElsewhere {
                            path: path.to_path_buf(),
                        });
                    }
                };
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
                Ok(RunLock {
                    _file: file,
                    _account: account,
                })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
                path: path.to_path_buf(),
                holder: String::from_utf8_lossy(&head).trim().to_string(),
            }),
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
        let path = dir
            .path()
            .join(lock_name(&url("https://portal.example"), "me"));
        let account = account_key(&url("https://portal.example"), "one-holder");
        let held = RunLock::acquire(&path, &account, "output a.age").unwrap();
        match RunLock::acquire(&path, &account, "output b.age") {
            Err(LockError::Held { holder, .. }) => assert!(holder.contains("a.age"), "{holder}"),
            other => panic!("{other:?}"),
        }
        drop(held);
        drop(RunLock::acquire(&path, &account, "output b.age").unwrap());
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("planted.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            RunLock::acquire(&link, &account, "x"),
            Err(LockError::Symlink { .. })
        ));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        // A file that is not a lock is never truncated.
        assert!(matches!(
            RunLock::acquire(&target, &account, "x"),
            Err(LockError::Foreign { .. })
        ));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    /// Two runs of one account with two lock files (two users, two state
    /// folders): the second is refused all the same (found by a helper:
    /// both reset the same phones, and each output held dead passwords).
    #[test]
    fn one_account_one_run_whatever_its_lock_file() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let account = account_key(&url("https://portal.example"), "Two-Files");
        let held = RunLock::acquire(&a.path().join("x.lock"), &account, "a").unwrap();
        let same = account_key(&url("https://PORTAL.example:443/"), "two-files");
        assert!(matches!(
            RunLock::acquire(&b.path().join("y.lock"), &same, "b"),
            Err(LockError::HeldElsewhere { .. })
        ));
        let other = account_key(&url("https://portal.example"), "someone-else");
        drop(RunLock::acquire(&b.path().join("z.lock"), &other, "c").unwrap());
        drop(held);
        drop(RunLock::acquire(&b.path().join("y.lock"), &same, "b").unwrap());
    }

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    #[test]
    fn lock_names_differ_by_account() {
        let a = lock_name(&url("https://portal.example"), "me");
        assert_eq!(a, lock_name(&url("https://PORTAL.example:443/x"), "me"));
        assert_ne!(a, lock_name(&url("https://portal.example"), "me2"));
        assert_ne!(a, lock_name(&url("https://portal.example:8443"), "me"));
        assert!(a.starts_with("https___portal.example_443-"), "{a}");
        assert!(!a.contains("-me-"), "the login is not in the name: {a}");
    }

    #[test]
    fn one_portal_has_one_lock_however_its_address_is_spelled() {
        let origin = |u: &str| account_origin(&url(u));
        assert_eq!(
            origin("http://localhost:8080/"),
            origin("http://127.0.0.1:8080/x")
        );
        assert_eq!(
            origin("http://[::1]:8080/"),
            origin("http://127.0.0.1:8080/")
        );
        assert_eq!(
            origin("https://MyOpenIP.example/"),
            origin("https://myopenip.example:443/a")
        );
        assert_ne!(
            origin("https://myopenip.example/"),
            origin("https://myopenip.example:8443/")
        );
    }
}
