//! Where new passwords go: an append-only journal and the final output, both
//! encrypted with age to the run's recipients. Only public keys are needed
//! here; the identity that decrypts stays with whoever reconfigures phones.
//!
//! The journal (`OUTPUT.journal`) gets each password before its licence
//! counts as done: one self-contained armored age block per entry, preceded
//! by a clear line naming the licence (never the password), fsync'd. A journal
//! cut at any byte still gives back every complete entry, and a resumed run
//! can tell which licences are done without the identity.
//!
//! The output is one age file holding a CSV, written under a temporary name
//! with mode 0600 and renamed when complete: nothing half-written ever
//! carries the output's name.

use crate::files;
use age::armor::{ArmoredReader, ArmoredWriter, Format};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The columns of the output CSV.
pub const OUTPUT_HEADER: &str =
    "client_ref,service_ref,licence,licence_type,sda,name,accountcode,password,reset_at";

const JOURNAL_MARK: &str = "sip-rotate-journal ";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "invalid recipient '{0}': expected an age public key (age1...) or an SSH public key (ssh-ed25519 ..., ssh-rsa ...)"
    )]
    BadRecipient(String),
    #[error("cannot read the recipients file {path}: {source}")]
    RecipientsFile { path: PathBuf, source: io::Error },
    #[error(
        "{path}, line {line}: invalid recipient: expected age1... or ssh-ed25519 / ssh-rsa, one per line ('#' starts a comment)"
    )]
    RecipientsFileLine { path: PathBuf, line: usize },
    #[error(
        "no recipient: give at least one with -r/--recipient or -R/--recipients-file, so that the passwords can be encrypted"
    )]
    NoRecipient,
    #[error("cannot read the identity file {path}: {message}")]
    Identity { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Decrypt { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The public keys every password is encrypted to.
pub struct Recipients(Vec<Box<dyn age::Recipient + Send + Sync>>);

impl Recipients {
    /// Reads `-r` strings and `-R` files as rage does.
    pub fn parse(strings: &[String], files: &[PathBuf]) -> Result<Recipients, VaultError> {
        let mut all = Vec::new();
        for s in strings {
            all.push(parse_recipient(s).ok_or_else(|| VaultError::BadRecipient(s.clone()))?);
        }
        for path in files {
            let text =
                std::fs::read_to_string(path).map_err(|source| VaultError::RecipientsFile {
                    path: path.clone(),
                    source,
                })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                all.push(parse_recipient(line).ok_or(VaultError::RecipientsFileLine {
                    path: path.clone(),
                    line: i + 1,
                })?);
            }
        }
        if all.is_empty() {
            return Err(VaultError::NoRecipient);
        }
        Ok(Recipients(all))
    }

    fn encryptor(&self) -> Result<age::Encryptor, VaultError> {
        age::Encryptor::with_recipients(self.0.iter().map(|r| r.as_ref() as &dyn age::Recipient))
            .map_err(|e| VaultError::Encrypt(e.to_string()))
    }
}

fn parse_recipient(s: &str) -> Option<Box<dyn age::Recipient + Send + Sync>> {
    let s = s.trim();
    if s.starts_with("age1") {
        s.parse::<age::x25519::Recipient>()
            .ok()
            .map(|r| Box::new(r) as _)
    } else if s.starts_with("ssh-") {
        s.parse::<age::ssh::Recipient>()
            .ok()
            .map(|r| Box::new(r) as _)
    } else {
        None
    }
}

/// One licence reset: a row of the output.
pub struct ResetRecord {
    pub client_ref: String,
    pub service_ref: String,
    pub licence: String,
    pub licence_type: String,
    pub sda: String,
    pub name: String,
    pub accountcode: String,
    pub password: SecretString,
    pub reset_at: String,
}

fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

impl ResetRecord {
    /// The CSV line of this record, in a buffer wiped when dropped.
    fn csv_line(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(160));
        let fields = [
            self.client_ref.as_str(),
            &self.service_ref,
            &self.licence,
            &self.licence_type,
            &self.sda,
            &self.name,
            &self.accountcode,
            self.password.expose_secret(),
            &self.reset_at,
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            csv_field(&mut out, f);
        }
        out.push(b'\n');
        out
    }
}

/// What a journal entry says in clear: which licence, never the password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalMark {
    pub client_ref: String,
    pub service_ref: String,
    pub licence: String,
    /// The phone's number as the users table showed it: with the references,
    /// what tells two phones apart that show one licence reference.
    #[serde(default)]
    pub sda: String,
    pub reset_at: String,
}

/// The append-only journal of a run.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// The file may end inside a line (an entry cut by a crash or a failed
    /// write): the next entry starts on a new line, or its mark would be lost.
    cut: bool,
    /// Entries this run wrote.
    appended: usize,
}

/// The journal's name for an output.
pub fn journal_path(output: &Path) -> PathBuf {
    files::with_suffix(output, ".journal")
}

impl Journal {
    /// Creates a new journal; fails if one exists (an unfinished run).
    pub fn create(path: &Path) -> Result<Journal, VaultError> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err(path))?;
        files::sync_dir(path);
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            cut: false,
            appended: 0,
        })
    }

    /// Opens an existing journal to add to it (`--resume`).
    pub fn reopen(path: &Path) -> Result<Journal, VaultError> {
        let mut file = files::open_append(path).map_err(io_err(path))?;
        let mut last = [0u8; 1];
        let cut = match file.seek(SeekFrom::End(-1)) {
            Ok(_) => {
                file.read_exact(&mut last).map_err(io_err(path))?;
                last[0] != b'\n'
            }
            // Empty.
            Err(_) => false,
        };
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            cut,
            appended: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry and waits until it is on disk.
    pub fn append(
        &mut self,
        recipients: &Recipients,
        record: &ResetRecord,
    ) -> Result<(), VaultError> {
        let mark = JournalMark {
            client_ref: record.client_ref.clone(),
            service_ref: record.service_ref.clone(),
            licence: record.licence.clone(),
            sda: record.sda.clone(),
            reset_at: record.reset_at.clone(),
        };
        let mut entry = format!(
            "{JOURNAL_MARK}{}\n",
            serde_json::to_string(&mark).expect("plain strings")
        )
        .into_bytes();
        let armored = ArmoredWriter::wrap_output(&mut entry, Format::AsciiArmor)
            .map_err(io_err(&self.path))?;
        let mut writer = recipients
            .encryptor()?
            .wrap_output(armored)
            .map_err(io_err(&self.path))?;
        writer
            .write_all(&record.csv_line())
            .map_err(io_err(&self.path))?;
        writer
            .finish()
            .and_then(|a| a.finish())
            .map_err(io_err(&self.path))?;
        if !entry.ends_with(b"\n") {
            entry.push(b'\n');
        }
        if self.cut {
            entry.insert(0, b'\n');
        }
        // One write of the whole entry, then fsync: a crash leaves a cut entry at worst.
        self.cut = true;
        self.file.write_all(&entry).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.cut = false;
        self.appended += 1;
        Ok(())
    }

    /// Entries this run wrote (and synced).
    pub fn appended(&self) -> usize {
        self.appended
    }
}

/// The entries of a journal that are complete, in order; a cut last entry is left out.
pub fn journal_marks(path: &Path) -> Result<Vec<JournalMark>, VaultError> {
    Ok(journal_entries(path)?.into_iter().map(|(m, _)| m).collect())
}

fn journal_entries(path: &Path) -> Result<Vec<(JournalMark, String)>, VaultError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut entries = Vec::new();
    let mut current: Option<(JournalMark, String)> = None;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(io_err(path))?;
        let line = String::from_utf8_lossy(&line);
        if let Some(json) = line.strip_prefix(JOURNAL_MARK) {
            current = serde_json::from_str(json).ok().map(|m| (m, String::new()));
        } else if let Some((_, block)) = current.as_mut() {
            block.push_str(&line);
            block.push('\n');
            if line.trim_end() == ARMOR_END {
                entries.push(current.take().expect("just matched"));
            }
        }
    }
    Ok(entries)
}

/// Whether a file is a journal (rather than an output).
pub fn is_journal(path: &Path) -> Result<bool, VaultError> {
    let mut head = [0u8; JOURNAL_MARK.len()];
    let mut f = File::open(path).map_err(io_err(path))?;
    let n = f.read(&mut head).map_err(io_err(path))?;
    Ok(&head[..n] == JOURNAL_MARK.as_bytes())
}

/// The output file being written: an age stream into a temporary file.
pub struct Output {
    path: PathBuf,
    writer: age::stream::StreamWriter<BufWriter<tempfile::NamedTempFile>>,
    rows: usize,
}

impl Output {
    /// Starts the output beside its final name; refuses to replace an existing file.
    pub fn create(path: &Path, recipients: &Recipients) -> Result<Output, VaultError> {
        if path.exists() {
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
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io_err(path))?;
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

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Finishes the age stream, syncs it and gives it its final name.
    pub fn finish(self) -> Result<PathBuf, VaultError> {
        let path = self.path.clone();
        self.finish_as(path)
    }

    /// Finishes what a stopped run has under the first free `OUTPUT.partN`
    /// name: a complete file, never under the output's own name.
    pub fn finish_part(self) -> Result<PathBuf, VaultError> {
        let part = (1..)
            .map(|n| PathBuf::from(format!("{}.part{n}", self.path.display())))
            .find(|p| !p.exists())
            .expect("a free name");
        self.finish_as(part)
    }

    fn finish_as(self, path: PathBuf) -> Result<PathBuf, VaultError> {
        let buffered = self.writer.finish().map_err(io_err(&path))?;
        let tmp = buffered
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io_err(&path))?;
        tmp.persist_noclobber(&path)
            .map_err(|e| io_err(&path)(e.error))?;
        files::sync_dir(&path);
        Ok(path)
    }
}

/// Removes temporary outputs left by a killed run: encrypted, incomplete,
/// and every password in them is in the journal too.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with(&prefix) && file_name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Reads identities from age identity files (as `age -i` / `rage -i`).
pub fn read_identities(
    files: &[PathBuf],
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, VaultError> {
    let mut all = Vec::new();
    for path in files {
        let file = age::IdentityFile::from_file(path.display().to_string()).map_err(|e| {
            VaultError::Identity {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        let ids = file.into_identities().map_err(|e| VaultError::Identity {
            path: path.clone(),
            message: e.to_string(),
        })?;
        all.extend(ids);
    }
    Ok(all)
}

/// Decrypts one age stream (armored or not) into `out`, through a buffer
/// wiped after use; returns the number of lines written.
fn decrypt_stream(
    encrypted: impl BufRead,
    identities: &[Box<dyn age::Identity + Send + Sync>],
    out: &mut dyn Write,
) -> Result<usize, String> {
    let decryptor =
        age::Decryptor::new_buffered(ArmoredReader::new(encrypted)).map_err(|e| e.to_string())?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| e.to_string())?;
    let mut buffer = Zeroizing::new(vec![0u8; 64 * 1024]);
    let mut lines = 0;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(lines),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count();
        out.write_all(&buffer[..n]).map_err(|e| e.to_string())?;
    }
}

/// What `decrypt` gave back.
#[derive(Debug, Default)]
pub struct Decrypted {
    /// CSV rows written, header excluded.
    pub rows: usize,
    /// The licences of journal entries that none of the identities opens
    /// (encrypted to other recipients); every other entry was written.
    pub unreadable: Vec<String>,
}

/// Decrypts an output or a journal into CSV (header first), streaming: the
/// plaintext is never held whole in memory. A journal entry that these
/// identities cannot open is named, and the others are still written.
pub fn decrypt(
    path: &Path,
    identities: &[Box<dyn age::Identity + Send + Sync>],
    out: &mut dyn Write,
) -> Result<Decrypted, VaultError> {
    let fail = |message: String| VaultError::Decrypt {
        path: path.to_path_buf(),
        message,
    };
    let mut done = Decrypted::default();
    if is_journal(path)? {
        out.write_all(OUTPUT_HEADER.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(io_err(path))?;
        for (mark, block) in journal_entries(path)? {
            // One entry at a time, so that a bad one does not spoil the rest.
            let mut line = Zeroizing::new(Vec::new());
            match decrypt_stream(block.as_bytes(), identities, &mut *line) {
                Ok(n) => {
                    out.write_all(&line).map_err(io_err(path))?;
                    done.rows += n;
                }
                Err(_) => done.unreadable.push(mark.licence),
            }
        }
    } else {
        let file = File::open(path).map_err(io_err(path))?;
        let lines = decrypt_stream(BufReader::new(file), identities, out).map_err(fail)?;
        done.rows = lines.saturating_sub(1);
    }
    Ok(done)
}

/// Makes a new age identity; returns its secret text and its public key.
pub fn generate_identity() -> (SecretString, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    (id.to_string(), public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(licence: &str) -> ResetRecord {
        ResetRecord {
            client_ref: "4054".into(),
            service_ref: "SRV1".into(),
            licence: licence.into(),
            licence_type: "MetaCentrex".into(),
            sda: String::new(),
            name: "Nom".into(),
            accountcode: "1".into(),
            password: SecretString::from("pw"),
            reset_at: "2026-11-26T00:00:00Z".into(),
        }
    }

    #[test]
    fn an_entry_after_a_cut_one_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.age.journal");
        let (_, public) = generate_identity();
        let recipients = Recipients::parse(&[public], &[]).unwrap();
        let mut journal = Journal::create(&path).unwrap();
        journal.append(&recipients, &record("A")).unwrap();
        journal.append(&recipients, &record("B")).unwrap();
        drop(journal);
        // A crash in the middle of B's entry, then a resumed run adds C.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
        let mut journal = Journal::reopen(&path).unwrap();
        journal.append(&recipients, &record("C")).unwrap();
        let licences: Vec<String> = journal_marks(&path)
            .unwrap()
            .into_iter()
            .map(|m| m.licence)
            .collect();
        assert_eq!(licences, ["A", "C"]);
    }
}
