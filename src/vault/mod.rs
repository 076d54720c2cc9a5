//! Where new passwords go, encrypted with age to the run's recipients: the
//! append-only journal (`journal`) and the result file (`output`). Only
//! public keys are needed to write them; the identity that decrypts stays
//! with whoever reconfigures the phones.

mod identities;
mod journal;
mod output;

pub use identities::read_identities;
pub use journal::{
    AskedRow, Journal, JournalContents, ReportNote, journal_in_use, journal_path, read_journal,
};
pub use output::{Output, clear_stale};

use crate::dialect::{Dialect, ExcelRows};
use age::armor::ArmoredReader;
use secrecy::{ExposeSecret, SecretString};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The columns of the output CSV.
pub const OUTPUT_HEADER: &str =
    "client_ref,service_ref,licence,licence_type,sda,name,accountcode,password,reset_at";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "invalid recipient '{0}': expected an age public key (age1...) or an SSH public key (ssh-ed25519 ..., ssh-rsa ...)"
    )]
    BadRecipient(String),
    /// A secret key where a public key was expected; never echoed.
    #[error("a recipient is an age identity (a secret key), not a public key")]
    IdentityAsRecipient,
    #[error("cannot read the recipients file {path}: {source}")]
    RecipientsFile { path: PathBuf, source: io::Error },
    #[error(
        "{path}, line {line}: invalid recipient: expected age1... or ssh-ed25519 / ssh-rsa, one per line ('#' starts a comment)"
    )]
    RecipientsFileLine { path: PathBuf, line: usize },
    #[error("{path}, line {line}: an age identity (a secret key), not a public key")]
    IdentityInRecipientsFile { path: PathBuf, line: usize },
    #[error("no recipient: the passwords cannot be encrypted to nobody")]
    NoRecipient,
    #[error("cannot use the identity file {path}: {message}")]
    Identity { path: PathBuf, message: String },
    #[error("the identity file {path}, line {line}: {what}")]
    IdentityLine {
        path: PathBuf,
        line: usize,
        what: &'static str,
    },
    #[error("{path} is protected by a passphrase, and there is no terminal to ask it on")]
    NoTerminalForPassphrase { path: PathBuf },
    #[error("{path}: {}", why.describe())]
    Decrypt { path: PathBuf, why: Unreadable },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("encryption failed: {0}")]
    Encrypt(String),
    #[error("{path} is in use by another run")]
    JournalInUse { path: PathBuf },
    #[error("cannot write the decrypted CSV: {0}")]
    Output(io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The public keys every password is encrypted to.
pub struct Recipients {
    keys: Vec<Box<dyn age::Recipient + Send + Sync>>,
    /// Their public text, key type and key only (no SSH comment), sorted:
    /// what a journal records, so that a resumed run encrypts to the same.
    texts: Vec<String>,
}

/// What a string given as a recipient is.
fn parse_recipient(s: &str) -> Result<(Box<dyn age::Recipient + Send + Sync>, String), VaultError> {
    let s = s.trim();
    let bad = || {
        // Enough to recognise it, not enough to leak something pasted by mistake.
        let shown: String = s.chars().take(16).collect();
        let more = if s.chars().count() > 16 { "..." } else { "" };
        VaultError::BadRecipient(format!("{shown}{more}"))
    };
    if s.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err(VaultError::IdentityAsRecipient);
    }
    if s.starts_with("age1") {
        let r = s.parse::<age::x25519::Recipient>().map_err(|_| bad())?;
        let text = r.to_string();
        Ok((Box::new(r), text))
    } else if s.starts_with("ssh-") {
        let r = s.parse::<age::ssh::Recipient>().map_err(|_| bad())?;
        let text = s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        Ok((Box::new(r), text))
    } else {
        Err(bad())
    }
}

impl Recipients {
    /// Reads `-r` strings and `-R` files as rage does.
    pub fn parse(strings: &[String], files: &[PathBuf]) -> Result<Recipients, VaultError> {
        let mut all = Vec::new();
        for s in strings {
            all.push(parse_recipient(s)?);
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
                all.push(parse_recipient(line).map_err(|e| match e {
                    VaultError::IdentityAsRecipient => VaultError::IdentityInRecipientsFile {
                        path: path.clone(),
                        line: i + 1,
                    },
                    _ => VaultError::RecipientsFileLine {
                        path: path.clone(),
                        line: i + 1,
                    },
                })?);
            }
        }
        if all.is_empty() {
            return Err(VaultError::NoRecipient);
        }
        let mut texts: Vec<String> = all.iter().map(|(_, t)| t.clone()).collect();
        texts.sort();
        texts.dedup();
        Ok(Recipients {
            keys: all.into_iter().map(|(r, _)| r).collect(),
            texts,
        })
    }

    /// The public keys, as a journal records them.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    fn encryptor(&self) -> Result<age::Encryptor, VaultError> {
        age::Encryptor::with_recipients(self.keys.iter().map(|r| r.as_ref() as &dyn age::Recipient))
            .map_err(|e| VaultError::Encrypt(e.to_string()))
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
    pub(crate) fn csv_line(&self) -> Zeroizing<Vec<u8>> {
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

/// Why an age file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// None of the identities given is one of its recipients.
    NoMatchingKey,
    /// Not an age file, or cut short before its header ends.
    NotAge,
    /// Its header names a recipient of ours, but the data does not check out.
    Damaged,
    /// The passphrase (or a passphrase-protected identity) is wrong.
    WrongPassphrase,
    Other(String),
}

impl Unreadable {
    fn of(e: age::DecryptError) -> Unreadable {
        use age::DecryptError as D;
        match e {
            D::NoMatchingKeys => Unreadable::NoMatchingKey,
            D::InvalidHeader | D::UnknownFormat => Unreadable::NotAge,
            D::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => Unreadable::NotAge,
            D::DecryptionFailed | D::InvalidMac => Unreadable::Damaged,
            D::KeyDecryptionFailed => Unreadable::WrongPassphrase,
            other => Unreadable::Other(other.to_string()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Unreadable::NoMatchingKey => {
                "none of the identities given opens it: it was encrypted to other recipients".into()
            }
            Unreadable::NotAge => "not an age file, or cut short before its header ends".into(),
            Unreadable::Damaged => {
                "damaged: its encrypted data does not check out (changed or cut short)".into()
            }
            Unreadable::WrongPassphrase => "the passphrase is wrong".into(),
            Unreadable::Other(why) => why.clone(),
        }
    }
}

/// Decrypts one age stream (armored or not) into `out`, through a buffer
/// wiped after use; returns the number of lines written.
fn decrypt_stream(
    encrypted: impl BufRead,
    identities: &[Box<dyn age::Identity>],
    out: &mut dyn Write,
) -> Result<usize, Unreadable> {
    let decryptor =
        age::Decryptor::new_buffered(ArmoredReader::new(encrypted)).map_err(Unreadable::of)?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(Unreadable::of)?;
    let mut buffer = Zeroizing::new(vec![0u8; 64 * 1024]);
    let mut lines = 0;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(lines),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The stream's checks fail as a read error.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(Unreadable::Damaged),
            Err(e) => return Err(Unreadable::Other(e.to_string())),
        };
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count();
        out.write_all(&buffer[..n])
            .map_err(|e| Unreadable::Other(e.to_string()))?;
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
    /// Licences of journal entries cut off before their end: a run killed
    /// while writing one (the licence is reset again by --resume).
    pub torn: Vec<String>,
}

/// Decrypts an output or a journal, read from `input` (named `name` in
/// messages), into CSV (header first) in `dialect`, streaming: the
/// plaintext is never held whole in memory. A journal entry that these
/// identities cannot open is named, and the others are still written.
pub fn decrypt(
    input: &mut dyn Read,
    name: &Path,
    identities: &[Box<dyn age::Identity>],
    out: &mut dyn Write,
    dialect: Dialect,
) -> Result<Decrypted, VaultError> {
    let fail = |why: Unreadable| VaultError::Decrypt {
        path: name.to_path_buf(),
        why,
    };
    // The first bytes tell a journal from a result, and are read again.
    let mut head = Vec::new();
    input
        .take(journal::MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(io_err(name))?;
    let mut input = BufReader::new(head.as_slice().chain(input));
    let mut excel;
    let out: &mut dyn Write = match dialect {
        Dialect::Rfc4180 => out,
        Dialect::Excel => {
            excel = ExcelRows::new(out);
            &mut excel
        }
    };
    let mut done = Decrypted::default();
    if head == journal::MAGIC {
        out.write_all(OUTPUT_HEADER.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(VaultError::Output)?;
        let (complete, torn) = journal::entries(&mut input).map_err(io_err(name))?;
        done.torn = torn.into_iter().map(|m| m.licence).collect();
        for (mark, block) in complete {
            // One entry at a time, so that a bad one does not spoil the rest.
            let mut line = Zeroizing::new(Vec::new());
            match decrypt_stream(block.as_bytes(), identities, &mut *line) {
                Ok(n) => {
                    out.write_all(&line).map_err(VaultError::Output)?;
                    done.rows += n;
                }
                Err(_) => done.unreadable.push(mark.licence),
            }
        }
    } else {
        let lines = decrypt_stream(input, identities, out).map_err(fail)?;
        done.rows = lines.saturating_sub(1);
    }
    out.flush().map_err(VaultError::Output)?;
    Ok(done)
}

/// A password an earlier run journaled, decrypted for the run that
/// resumes it: the client it belongs to (its file, per client) and its
/// row as the result writes rows.
pub struct EarlierRow {
    pub client_ref: String,
    pub line: Zeroizing<Vec<u8>>,
}

/// Every entry of the journal at `path`, decrypted with `identities`, for
/// a resumed run to write the earlier runs' passwords into its result.
/// All or nothing: an entry these identities cannot open fails it.
pub fn journal_rows(
    path: &Path,
    identities: &[Box<dyn age::Identity>],
) -> Result<Vec<EarlierRow>, VaultError> {
    let file = crate::files::open_read(path).map_err(io_err(path))?;
    let mut input = BufReader::new(file);
    let mut rows = Vec::new();
    for (mark, block) in journal::entries(&mut input).map_err(io_err(path))?.0 {
        let mut line = Zeroizing::new(Vec::new());
        decrypt_stream(block.as_bytes(), identities, &mut *line).map_err(|why| {
            VaultError::Decrypt {
                path: path.to_path_buf(),
                why,
            }
        })?;
        rows.push(EarlierRow {
            client_ref: mark.client_ref.clone(),
            line,
        });
    }
    Ok(rows)
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

    #[test]
    fn a_secret_key_given_as_recipient_is_named_but_never_echoed() {
        let (secret, public) = generate_identity();
        let e = Recipients::parse(&[secret.expose_secret().to_string()], &[])
            .err()
            .unwrap();
        assert!(matches!(e, VaultError::IdentityAsRecipient));
        assert!(!e.to_string().contains(secret.expose_secret()));
        let long = format!("{public}xyz-and-more-text");
        let e = Recipients::parse(&[long], &[]).err().unwrap().to_string();
        assert!(!e.contains("and-more-text"), "{e}");
        let r = Recipients::parse(&[public.clone(), public.clone()], &[]).unwrap();
        assert_eq!(r.texts(), [public]);
    }
}
