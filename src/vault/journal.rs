//! The journal (`OUTPUT.journal`): every new password goes to it before its
//! licence counts as done. One self-contained armored age block per entry,
//! after a clear line naming the phone (never the password), written at
//! once and fsync'd. A journal cut at any byte still gives back every
//! complete entry, and a resumed run can tell which phones are done without
//! the identity.
//!
//! Besides entries, clear lines record the recipients the journal is
//! encrypted to (its first line), so that a resumed run encrypts to the
//! same, and each part file an interrupted run wrote, with how many
//! passwords it holds, so that a later summary can say so truthfully.

use super::{Recipients, ResetRecord, VaultError, io_err};
use crate::files;
use age::armor::{ArmoredWriter, Format};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How every journal starts, and no result file does.
pub(super) const MAGIC: &[u8] = b"sip-rotate-";
const ENTRY: &str = "sip-rotate-journal ";
const RECIPIENTS: &str = "sip-rotate-recipients ";
const PART: &str = "sip-rotate-part ";
const ASKED: &str = "sip-rotate-asked ";
const REPORT: &str = "sip-rotate-report ";
const FINISHED: &str = "sip-rotate-finished";
/// The marks that begin a line of their own (`FINISHED` is a line alone).
const MARKS: [&str; 5] = [ENTRY, RECIPIENTS, PART, ASKED, REPORT];
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";

/// What a journal entry says in clear: which phone, never the password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalMark {
    pub client_ref: String,
    pub service_ref: String,
    pub licence: String,
    /// The phone's number as the users table showed it: with the references,
    /// what tells two phones apart that show one licence reference.
    #[serde(default)]
    pub sda: String,
    /// The user's name, as the users table showed it.
    #[serde(default)]
    pub name: String,
    /// The portal's account code of the phone (its detail page): what tells
    /// apart two phones that show one licence, number and name.
    #[serde(default)]
    pub accountcode: String,
    pub reset_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct RecipientsLine {
    recipients: Vec<String>,
}

/// The rows the run was asked to reset: a resumed run whose input leaves
/// some out would end the rotation with them never reset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct AskedLine {
    rows: Vec<AskedRow>,
}

/// A row of the input, as the journal records it (no service: empty; every
/// licence of the client: `*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AskedRow {
    pub client_ref: String,
    pub service_ref: String,
    pub licence: String,
}

impl std::fmt::Display for AskedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{},{},{}",
            self.client_ref, self.service_ref, self.licence
        )
    }
}

/// A part file that an interrupted run wrote, as its journal records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartNote {
    /// Read back, the part's name in the journal's folder (a part is
    /// always beside its journal), whatever folder the run was started in.
    pub file: PathBuf,
    pub passwords: usize,
    /// The part file's SHA-256 as written: a file at its name that is not
    /// that one (replaced, damaged) holds nothing the journal may rely on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl PartNote {
    /// Whether the file at its name is still the part it records, byte
    /// for byte: a regular file with the digest written down.
    pub fn is_intact(&self) -> bool {
        self.sha256
            .as_deref()
            .is_some_and(|wanted| is_as_written(&self.file, wanted))
    }
}

/// The report a stopped run wrote, as its journal records it: the run
/// that finishes the rotation writes the report of the whole rotation,
/// which takes its place (a dated `--report` gives it another name).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportNote {
    /// Read back, its name in the journal's folder (only a report beside
    /// the journal is noted): never a path elsewhere, whatever the line
    /// says, and the folder may have moved or been copied since.
    pub file: PathBuf,
    /// Its SHA-256 as written: a file at its name that is not that one
    /// (edited, replaced) is not removed.
    pub sha256: String,
}

impl ReportNote {
    /// Whether the file at its name is still the report written, byte for
    /// byte: a regular file with the digest written down.
    pub fn is_intact(&self) -> bool {
        is_as_written(&self.file, &self.sha256)
    }
}

/// Whether `path` is a regular file (no link) whose SHA-256 is `wanted`.
fn is_as_written(path: &Path, wanted: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
        && digest_of(path).is_ok_and(|d| d == wanted)
}

/// The SHA-256 of a file, in hex.
fn digest_of(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = files::open_read(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What a journal says in clear.
#[derive(Debug, Default)]
pub struct JournalContents {
    /// The recipients its entries are encrypted to (`None`: not recorded).
    pub recipients: Option<Vec<String>>,
    /// The rows its rotation was asked to reset (`None`: not recorded).
    pub asked: Option<Vec<AskedRow>>,
    /// Its complete entries, in order.
    pub entries: Vec<JournalMark>,
    pub parts: Vec<PartNote>,
    /// The reports of the runs that stopped.
    pub reports: Vec<ReportNote>,
    /// A run finished the rotation it records, though the journal had to
    /// stay (it alone holds passwords no file has): no run is to finish.
    pub finished: bool,
}

/// The journal's name for an output.
pub fn journal_path(output: &Path) -> PathBuf {
    files::with_suffix(output, ".journal")
}

/// Whether a run holds the journal at `path` now (it is locked).
pub fn journal_in_use(path: &Path) -> bool {
    files::open_read(path).is_ok_and(|file| file.try_lock().is_err())
}

/// The append-only journal of a run, locked while the run holds it.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// The file may end inside a line (an entry cut by a crash or a failed
    /// write): the next line starts on a new line, or it would be lost.
    cut: bool,
    /// Entries this run wrote.
    appended: usize,
}

impl Journal {
    /// Creates a new journal, recording `recipients` and the rows `asked`;
    /// fails if anything is at its path (an unfinished run, a symbolic link).
    pub fn create(
        path: &Path,
        recipients: &Recipients,
        asked: Vec<AskedRow>,
    ) -> Result<Journal, VaultError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err(path))?;
        let mut journal = Journal::locked(path, file, false)?;
        let line = RecipientsLine {
            recipients: recipients.texts().to_vec(),
        };
        journal.write_line(RECIPIENTS, &serde_json::to_string(&line).expect("strings"))?;
        let line = AskedLine { rows: asked };
        journal.write_line(ASKED, &serde_json::to_string(&line).expect("strings"))?;
        files::sync_dir(path);
        Ok(journal)
    }

    /// Opens an existing journal to add to it (`--resume`), never through a
    /// symbolic link.
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
        Journal::locked(path, file, cut)
    }

    fn locked(path: &Path, file: File, cut: bool) -> Result<Journal, VaultError> {
        // Two runs never write one journal, whatever their portal account.
        file.try_lock().map_err(|_| VaultError::JournalInUse {
            path: path.to_path_buf(),
        })?;
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
        let entry = Journal::entry(recipients, record).map_err(io_err(&self.path))?;
        self.write(entry)?;
        self.appended += 1;
        Ok(())
    }

    /// One entry as the journal writes it: the clear mark line, then the
    /// armored age block of the record. No secret in clear.
    pub fn entry(recipients: &Recipients, record: &ResetRecord) -> std::io::Result<Vec<u8>> {
        let mark = JournalMark {
            client_ref: record.client_ref.clone(),
            service_ref: record.service_ref.clone(),
            licence: record.licence.clone(),
            sda: record.sda.clone(),
            name: record.name.clone(),
            accountcode: record.accountcode.clone(),
            reset_at: record.reset_at.clone(),
        };
        let mut entry = format!(
            "{ENTRY}{}\n",
            serde_json::to_string(&mark).expect("plain strings")
        )
        .into_bytes();
        let armored = ArmoredWriter::wrap_output(&mut entry, Format::AsciiArmor)?;
        let mut writer = recipients
            .encryptor()
            .map_err(std::io::Error::other)?
            .wrap_output(armored)?;
        writer.write_all(&record.csv_line())?;
        writer.finish().and_then(|a| a.finish())?;
        if !entry.ends_with(b"\n") {
            entry.push(b'\n');
        }
        Ok(entry)
    }

    /// Records that `file` holds `passwords` of this run's new passwords.
    pub fn note_part(&mut self, file: &Path, passwords: usize) -> Result<(), VaultError> {
        let note = PartNote {
            file: file.file_name().map(PathBuf::from).unwrap_or_default(),
            passwords,
            sha256: digest_of(file).ok(),
        };
        self.write_line(PART, &serde_json::to_string(&note).expect("strings"))
    }

    /// Records the report a run that stopped wrote (`path`, as written),
    /// if it is beside the journal: by its name.
    pub fn note_report(&mut self, path: &Path) -> Result<(), VaultError> {
        let beside = |p: &Path| std::path::absolute(files::folder_of(p)).ok();
        if beside(path).is_none() || beside(path) != beside(&self.path) {
            return Ok(());
        }
        let note = ReportNote {
            sha256: digest_of(path).map_err(io_err(path))?,
            file: path.file_name().map(PathBuf::from).unwrap_or_default(),
        };
        self.write_line(REPORT, &serde_json::to_string(&note).expect("strings"))
    }

    /// Records that a run finished the rotation, the journal kept: a later
    /// run starts afresh beside it rather than taking it for one to finish.
    pub fn note_finished(&mut self) -> Result<(), VaultError> {
        self.write(FINISHED.as_bytes().to_vec())
    }

    fn write_line(&mut self, kind: &str, json: &str) -> Result<(), VaultError> {
        self.write(format!("{kind}{json}\n").into_bytes())
    }

    /// One write of the whole text, then fsync: a crash leaves a cut line at
    /// worst. A write that fails (a full disk) is taken back: the journal
    /// ends where its last whole line did, so that entries rescued from the
    /// terminal and appended to it (as the summary says) read as entries;
    /// one appended after a cut line was glued to it, and read as neither.
    fn write(&mut self, mut text: Vec<u8>) -> Result<(), VaultError> {
        if !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        if self.cut {
            text.insert(0, b'\n');
        }
        let before = self.file.metadata().map(|m| m.len());
        self.cut = true;
        let written = self
            .file
            .write_all(&text)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            if let Ok(before) = before
                && self.file.set_len(before).is_ok()
                && self.file.sync_data().is_ok()
            {
                self.cut = false;
            }
            return Err(io_err(&self.path)(e));
        }
        self.cut = false;
        Ok(())
    }

    /// Entries this run wrote (and synced).
    pub fn appended(&self) -> usize {
        self.appended
    }
}

/// Reads what a journal says in clear; a cut last entry is left out.
pub fn read_journal(path: &Path) -> Result<JournalContents, VaultError> {
    let mut contents = JournalContents::default();
    let mut file = BufReader::new(files::open_read(path).map_err(io_err(path))?);
    let folder = files::folder_of(path);
    scan(&mut file, |line| match line {
        Line::Recipients(r) => contents.recipients = Some(r),
        Line::Asked(rows) => contents.asked = Some(rows),
        Line::Part(mut p) => {
            // Its name, in the journal's folder: never a path elsewhere.
            p.file = folder.join(p.file.file_name().unwrap_or_default());
            contents.parts.push(p)
        }
        Line::Entry(m, _) => contents.entries.push(m),
        Line::Report(mut r) => {
            // Its name, in the journal's folder: never a path elsewhere.
            r.file = folder.join(r.file.file_name().unwrap_or_default());
            contents.reports.push(r)
        }
        Line::Finished => contents.finished = true,
        Line::Torn(_) => {}
    })
    .map_err(io_err(path))?;
    Ok(contents)
}

/// The complete entries of a journal, each with its armored block, and
/// the marks of the entries cut off before their end.
pub(super) type Entries = (Vec<(JournalMark, String)>, Vec<JournalMark>);

pub(super) fn entries(input: &mut dyn BufRead) -> std::io::Result<Entries> {
    let (mut all, mut torn) = (Vec::new(), Vec::new());
    scan(input, |line| match line {
        Line::Entry(m, block) => all.push((m, block)),
        Line::Torn(m) => torn.push(m),
        _ => {}
    })?;
    Ok((all, torn))
}

enum Line {
    Recipients(Vec<String>),
    Asked(Vec<AskedRow>),
    Part(PartNote),
    Report(ReportNote),
    Entry(JournalMark, String),
    /// An entry whose block ends before its armor does: a run killed while
    /// writing it, or one still writing.
    Torn(JournalMark),
    Finished,
}

fn scan(input: &mut dyn BufRead, mut found: impl FnMut(Line)) -> std::io::Result<()> {
    let mut current: Option<(JournalMark, String)> = None;
    for read in input.split(b'\n') {
        let read = String::from_utf8_lossy(&read?).into_owned();
        // A line appended to a cut one (no newline between them) is read
        // as its own: the cut one is torn, the appended one whole. Only
        // within a block's line: a mark's own line is taken whole,
        // whatever its names hold.
        let glued = if MARKS.iter().any(|p| read.starts_with(p)) {
            None
        } else {
            MARKS
                .iter()
                .filter_map(|p| read.find(p).filter(|&at| at > 0))
                .min()
        };
        let (cut, appended) = match glued {
            Some(at) => (&read[..at], Some(&read[at..])),
            None => (read.as_str(), None),
        };
        for line in std::iter::once(cut).chain(appended) {
            scan_line(line, &mut current, &mut found);
        }
    }
    if let Some((mark, _)) = current {
        found(Line::Torn(mark));
    }
    Ok(())
}

/// One line of a journal; `current`: the entry whose block it may continue.
fn scan_line(
    line: &str,
    current: &mut Option<(JournalMark, String)>,
    found: &mut impl FnMut(Line),
) {
    let starts_another = MARKS.iter().any(|p| line.starts_with(p)) || line.trim_end() == FINISHED;
    if starts_another && let Some((mark, _)) = current.take() {
        found(Line::Torn(mark));
    }
    if let Some(json) = line.strip_prefix(ENTRY) {
        *current = serde_json::from_str(json).ok().map(|m| (m, String::new()));
    } else if let Some(json) = line.strip_prefix(RECIPIENTS) {
        *current = None;
        if let Ok(r) = serde_json::from_str::<RecipientsLine>(json) {
            found(Line::Recipients(r.recipients));
        }
    } else if let Some(json) = line.strip_prefix(ASKED) {
        *current = None;
        if let Ok(a) = serde_json::from_str::<AskedLine>(json) {
            found(Line::Asked(a.rows));
        }
    } else if line.trim_end() == FINISHED {
        *current = None;
        found(Line::Finished);
    } else if let Some(json) = line.strip_prefix(REPORT) {
        *current = None;
        if let Ok(r) = serde_json::from_str::<ReportNote>(json) {
            found(Line::Report(r));
        }
    } else if let Some(json) = line.strip_prefix(PART) {
        *current = None;
        if let Ok(p) = serde_json::from_str::<PartNote>(json) {
            found(Line::Part(p));
        }
    } else if let Some((_, block)) = current.as_mut() {
        block.push_str(line);
        block.push('\n');
        if line.trim_end() == ARMOR_END {
            let (mark, block) = current.take().expect("just matched");
            found(Line::Entry(mark, block));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

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

    /// A journal in a folder of its own, for one recipient.
    fn new_journal() -> (tempfile::TempDir, PathBuf, String, Recipients, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.age.journal");
        let (_, public) = super::super::generate_identity();
        let recipients = Recipients::parse(std::slice::from_ref(&public), &[]).unwrap();
        let journal = Journal::create(&path, &recipients, Vec::new()).unwrap();
        (dir, path, public, recipients, journal)
    }

    #[test]
    fn an_entry_after_a_cut_one_is_still_found() {
        let (_dir, path, public, recipients, mut journal) = new_journal();
        journal.append(&recipients, &record("A")).unwrap();
        journal.append(&recipients, &record("B")).unwrap();
        // Locked while held: a second run cannot open it.
        assert!(matches!(
            Journal::reopen(&path),
            Err(VaultError::JournalInUse { .. })
        ));
        drop(journal);
        // A crash in the middle of B's entry, then a resumed run adds C.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
        let mut journal = Journal::reopen(&path).unwrap();
        journal.append(&recipients, &record("C")).unwrap();
        journal.note_part(Path::new("out.age.part1"), 1).unwrap();
        let contents = read_journal(&path).unwrap();
        let licences: Vec<&str> = contents
            .entries
            .iter()
            .map(|m| m.licence.as_str())
            .collect();
        assert_eq!(licences, ["A", "C"]);
        assert_eq!(contents.recipients, Some(vec![public]));
        assert_eq!(contents.parts[0].passwords, 1);
        assert!(std::fs::read(&path).unwrap().starts_with(MAGIC));
    }

    /// Entries rescued from the terminal and appended (`cat >>`) to a
    /// journal that a full disk cut in the middle of an entry: the cut one
    /// is torn, the rescued ones whole (they were read as one entry that
    /// decrypted to nothing). A name holding a mark's words stays a name.
    #[test]
    fn entries_appended_to_a_cut_line_are_read_as_their_own() {
        let (_dir, path, _, recipients, mut journal) = new_journal();
        journal.append(&recipients, &record("A")).unwrap();
        let mut named = record("B");
        named.name = format!("x {ENTRY}{{}} {PART}");
        journal.append(&recipients, &named).unwrap();
        drop(journal);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 40);
        bytes.extend(Journal::entry(&recipients, &record("C")).unwrap());
        std::fs::write(&path, &bytes).unwrap();
        let (whole, torn) = entries(&mut std::io::BufReader::new(&bytes[..])).unwrap();
        let whole: Vec<&str> = whole.iter().map(|(m, _)| m.licence.as_str()).collect();
        assert_eq!(whole, ["A", "C"]);
        assert_eq!(torn.len(), 1);
        assert_eq!(torn[0].licence, "B");
        assert_eq!(torn[0].name, named.name);
    }
}
