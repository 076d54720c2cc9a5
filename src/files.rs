//! Files a run creates, created so that they can harm nothing else: never
//! through a symbolic link, never over a file that exists, readable by their
//! owner only, and complete or absent (written under a temporary name in
//! the same folder, then renamed).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The folder a file is in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Makes a file's creation or renaming durable.
pub fn sync_dir(path: &Path) {
    if let Ok(d) = File::open(folder_of(path)) {
        let _ = d.sync_all();
    }
}

/// Creates `path`, mode 0600; fails if anything is there, a symbolic link
/// (even a dangling one) included.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Opens an existing file to read it, refusing a symbolic link.
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Opens an existing file to append to it, refusing a symbolic link.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Why a file cannot be created where asked.
#[derive(Debug, thiserror::Error)]
pub enum PathProblem {
    #[error("{0} exists already")]
    Exists(PathBuf),
    #[error("{0} is a symbolic link")]
    Symlink(PathBuf),
    #[error("the folder {0} does not exist")]
    NoFolder(PathBuf),
    #[error("the folder {0} is not writable")]
    ReadOnlyFolder(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// There is a file, but not one of the kind the run would replace.
    #[error("{0} is not a file sip-rotate wrote")]
    NotOurs(PathBuf),
    /// The name fits, but the temporary it is written under does not.
    #[error("{path}: its temporary name ({longest} bytes) cannot be created there: {source}")]
    NameTooLong {
        path: PathBuf,
        longest: usize,
        source: io::Error,
    },
}

/// The longest name a file written whole takes on its way: its temporary,
/// `.NAME.XXXXXX.tmp` (longer than a part file's `NAME.partN` too).
fn longest_name(name: &str) -> String {
    format!(".{name}.{}.tmp", "p".repeat(6))
}

/// Creates, then removes, a file under the longest name `path` will take
/// (its temporary): a name the file system refuses is found before any
/// request, not after a phone was cut off.
fn probe_name(path: &Path) -> Result<(), PathProblem> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let probe = folder_of(path).join(longest_name(&name));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        // Left by a killed probe: the name can be created.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(PathProblem::NameTooLong {
            path: path.into(),
            longest: longest_name(&name).len(),
            source,
        }),
    }
}

/// Checks, before anything is done, that a file written whole can take
/// `path`: a creatable one, or with `replace` a regular file that `ours`
/// recognises as an earlier one of its kind, in a writable folder. Never a
/// link, a pipe (it is not opened) or any other file.
pub fn check_replaceable(
    path: &Path,
    replace: bool,
    ours: impl Fn(&Path) -> bool,
) -> Result<(), PathProblem> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if replace && !m.file_type().is_symlink() => {
            if !(m.is_file() && ours(path)) {
                return Err(PathProblem::NotOurs(path.into()));
            }
            check_folder(folder_of(path))?;
            probe_name(path)
        }
        _ => check_creatable(path),
    }
}

/// Checks, before anything is done, that `path` can be created: nothing
/// there (not even a dangling symbolic link), and a writable folder.
pub fn check_creatable(path: &Path) -> Result<(), PathProblem> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Err(PathProblem::Symlink(path.into())),
        Ok(_) => return Err(PathProblem::Exists(path.into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(PathProblem::Io {
                path: path.into(),
                source,
            });
        }
    }
    check_folder(folder_of(path))?;
    probe_name(path)
}

/// Checks that new files can be made in `folder`.
pub fn check_folder(folder: &Path) -> Result<(), PathProblem> {
    match std::fs::metadata(folder) {
        Ok(m) if m.is_dir() => {}
        Ok(_) | Err(_) => return Err(PathProblem::NoFolder(folder.into())),
    }
    let c = std::ffi::CString::new(folder.as_os_str().as_encoded_bytes())
        .map_err(|_| PathProblem::NoFolder(folder.into()))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(PathProblem::ReadOnlyFolder(folder.into()));
    }
    Ok(())
}

/// The same file or not, whether it exists yet or not: its folder resolved
/// (symbolic links followed), then its name.
pub fn identity_of(path: &Path) -> PathBuf {
    let folder = std::fs::canonicalize(folder_of(path)).unwrap_or_else(|_| folder_of(path).into());
    match path.file_name() {
        Some(name) => folder.join(name),
        None => folder,
    }
}

/// A file written under a temporary name in its folder, mode 0600, and given
/// its name only by `commit`: nothing half-written ever carries the name.
/// Dropped without `commit`, it leaves nothing.
pub struct NewFile {
    path: PathBuf,
    temp: tempfile::NamedTempFile,
}

impl NewFile {
    pub fn create(path: &Path) -> io::Result<NewFile> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(folder_of(path))?;
        Ok(NewFile {
            path: path.to_path_buf(),
            temp,
        })
    }

    /// Sets the mode of the file to come (0600 until then).
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        self.temp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
    }

    /// Syncs the file and gives it its name, which must still be free.
    pub fn commit(self) -> io::Result<PathBuf> {
        self.temp.as_file().sync_all()?;
        self.temp
            .persist_noclobber(&self.path)
            .map_err(|e| e.error)?;
        sync_dir(&self.path);
        Ok(self.path)
    }

    /// Syncs the file and gives it its name, replacing what has it (a file
    /// or a symbolic link, never the link's target).
    pub fn commit_replacing(self) -> io::Result<PathBuf> {
        self.temp.as_file().sync_all()?;
        self.temp.persist(&self.path).map_err(|e| e.error)?;
        sync_dir(&self.path);
        Ok(self.path)
    }
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// `path` with `suffix` appended to its file name: `out.age` → `out.age.journal`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_created_through_a_link_or_over_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(create_private(&link).is_err());
        assert!(create_private(&dangling).is_err());
        assert!(create_private(&target).is_err());
        assert!(open_append(&link).is_err());
        assert!(matches!(
            check_creatable(&link),
            Err(PathProblem::Symlink(_))
        ));
        assert!(matches!(
            check_creatable(&dangling),
            Err(PathProblem::Symlink(_))
        ));
        assert!(matches!(
            check_creatable(&target),
            Err(PathProblem::Exists(_))
        ));
        assert!(matches!(
            check_creatable(&dir.path().join("no/such/file")),
            Err(PathProblem::NoFolder(_))
        ));
        assert!(check_creatable(&dir.path().join("new")).is_ok());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn a_new_file_has_its_name_only_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut f = NewFile::create(&path).unwrap();
        f.write_all(b"a,b\n").unwrap();
        assert!(!path.exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a,b\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Dropped without commit: nothing left.
        let other = dir.path().join("other.csv");
        drop(NewFile::create(&other).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // The same file, named two ways.
        assert_eq!(
            identity_of(&dir.path().join("./out.csv")),
            identity_of(&path)
        );
    }
}
