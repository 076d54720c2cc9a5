//! The result file: one age file holding a CSV, written under a temporary
//! name with mode 0600 and renamed when complete, so that nothing
//! half-written ever carries the output's name (nor a part file's).

use super::{OUTPUT_HEADER, Recipients, ResetRecord, VaultError, io_err};
use crate::files;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The output file being written: an age stream into a temporary file.
pub struct Output {
    path: PathBuf,
    writer: age::stream::StreamWriter<BufWriter<tempfile::NamedTempFile>>,
    rows: usize,
}

/// The first `OUTPUT.partN` name that nothing has (not even a link).
pub fn part_name(output: &Path) -> PathBuf {
    (1..)
        .map(|n| files::with_suffix(output, &format!(".part{n}")))
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .expect("a free name")
}

impl Output {
    /// Starts the output beside its final name; refuses to replace anything.
    pub fn create(path: &Path, recipients: &Recipients) -> Result<Output, VaultError> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(VaultError::Io {
                path: path.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the output exists already: choose another name, it may hold passwords",
                ),
            });
        }
        let dir = files::folder_of(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        remove_stale_temporaries(dir, &name);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .rand_bytes(TEMP_RANDOM)
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io_err(path))?;
        // Locked while this run writes it: another run never takes it for stale.
        tmp.as_file()
            .try_lock()
            .map_err(|e| io_err(path)(e.into()))?;
        let mut writer = recipients
            .encryptor()?
            .wrap_output(BufWriter::new(tmp))
            .map_err(io_err(path))?;
        writer
            .write_all(OUTPUT_HEADER.as_bytes())
            .and_then(|_| writer.write_all(b"\n"))
            .map_err(io_err(path))?;
        Ok(Output {
            path: path.to_path_buf(),
            writer,
            rows: 0,
        })
    }

    pub fn add(&mut self, record: &ResetRecord) -> Result<(), VaultError> {
        self.writer
            .write_all(&record.csv_line())
            .map_err(io_err(&self.path))?;
        self.rows += 1;
        Ok(())
    }

    /// Adds a row as the result writes them (an earlier run's, decrypted
    /// from its journal).
    pub fn add_row(&mut self, line: &[u8]) -> Result<(), VaultError> {
        self.writer.write_all(line).map_err(io_err(&self.path))?;
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Finishes the age stream, syncs it, gives it its final name, and
    /// checks that the file under that name is the one written.
    pub fn finish_verified(self) -> Result<PathBuf, VaultError> {
        let path = self.path.clone();
        self.finish_as(path)
    }

    /// Finishes what a stopped run has under the first free `OUTPUT.partN`
    /// name: a complete file, never under the output's own name.
    pub fn finish_part(self) -> Result<PathBuf, VaultError> {
        let part = part_name(&self.path);
        self.finish_as(part)
    }

    fn finish_as(self, path: PathBuf) -> Result<PathBuf, VaultError> {
        let buffered = self.writer.finish().map_err(io_err(&path))?;
        let tmp = buffered
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io_err(&path))?;
        let written = tmp.as_file().metadata().map_err(io_err(&path))?;
        tmp.persist_noclobber(&path)
            .map_err(|e| io_err(&path)(e.error))?;
        files::sync_dir(&path);
        let on_disk = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if !on_disk.is_file() || on_disk.len() != written.len() || on_disk.ino() != written.ino() {
            return Err(VaultError::Io {
                path: path.clone(),
                source: io::Error::other("the file on disk is not the one written"),
            });
        }
        Ok(path)
    }
}

/// Removes the temporaries a killed run left for `path` (see
/// `remove_stale_temporaries`): called for every result file a run may
/// write, also those it will not write this time (a resumed run with
/// nothing new for one client).
pub fn clear_stale(path: &Path) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale_temporaries(files::folder_of(path), &name);
}

/// Random characters in a temporary output's name.
const TEMP_RANDOM: usize = 6;

/// Removes temporary outputs left by a killed run: encrypted, incomplete,
/// and every password in them is in the journal too. Only files named as
/// this module names them, regular files, and not locked: a run still
/// writing its own holds the lock, and any other file is not ours.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let ours = file_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .is_some_and(|random| {
                random.len() == TEMP_RANDOM && random.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !ours {
            continue;
        }
        let path = entry.path();
        let Ok(mut file) = files::open_read(&path) else {
            continue;
        };
        // Ours: this user's regular file, an age file as this module
        // writes them, and no run holding it.
        // SAFETY: getuid cannot fail.
        let Ok(meta) = file.metadata() else {
            continue;
        };
        let mine = meta.is_file() && meta.uid() == unsafe { libc::getuid() };
        // Empty (killed before its buffer reached the disk) or an age file.
        let mut head = [0u8; 19];
        let ours = meta.len() == 0
            || (std::io::Read::read_exact(&mut file, &mut head).is_ok()
                && &head == b"age-encryption.org/");
        if mine && ours && file.try_lock().is_ok() {
            tracing::info!(
                "removing {}, left by a killed run (encrypted, incomplete)",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
        }
    }
}
