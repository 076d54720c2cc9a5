//! What happened to each requested licence, without secrets: the report
//! CSV, one row per licence (or per input line that did not resolve).

use crate::dialect::{Dialect, FormulaCells, push_row};
use crate::files::NewFile;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Reset,
    Failed,
    Unresolved,
    Duplicate,
    Skipped,
    /// `plan` only: what `run` would reset.
    Planned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reset => "reset",
            Status::Failed => "failed",
            Status::Unresolved => "unresolved",
            Status::Duplicate => "duplicate",
            Status::Skipped => "skipped",
            Status::Planned => "planned",
        }
    }

    /// Every status, in the order a summary counts them.
    pub const ALL: [Status; 6] = [
        Status::Reset,
        Status::Failed,
        Status::Unresolved,
        Status::Duplicate,
        Status::Skipped,
        Status::Planned,
    ];
}

/// A report's `status` column, read back (case and spaces aside).
impl std::str::FromStr for Status {
    type Err = ();

    fn from_str(s: &str) -> Result<Status, ()> {
        let s = s.trim();
        Status::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

#[derive(Debug, Clone)]
pub struct ReportRow {
    pub line: u64,
    pub client_ref: String,
    pub service_ref: String,
    pub licence: String,
    /// The phone's number as the portal shows it (empty when unknown): with
    /// the references, what tells two phones with one reference apart.
    pub sda: String,
    /// The phone's `État` before the reset, as the portal showed it.
    pub state: String,
    /// The portal's account code of the phone, when its detail page was
    /// read: what tells apart phones that look the same in the users table.
    pub accountcode: String,
    pub status: Status,
    pub detail: String,
    /// `Confirmer` requests sent for the licence: more than one only after an
    /// unknown outcome, and each may have reset the password.
    pub confirmations: u32,
    /// Portal requests the reset of this licence took (4 without faults).
    pub requests: u64,
    /// Which of the run's logins sent its `Confirmer` (1 for the first):
    /// what ties the reset to the portal's security log. `None` when no
    /// `Confirmer` was sent.
    pub session: Option<u64>,
    /// Whether this run found the row so, or took it from an earlier run
    /// (its journal, its report, or the portal showing a phone it reset).
    pub origin: Origin,
    /// What would fix a failure, where its cause says (not in the CSV).
    pub remedy: Option<crate::portal::Remedy>,
}

/// Where a report row's status comes from: counters across runs (the
/// metrics) add only what this run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    ThisRun,
    EarlierRun,
}

pub const REPORT_HEADER: [&str; 13] = [
    "line",
    "client_ref",
    "service_ref",
    "licence",
    "sda",
    "state",
    "accountcode",
    "status",
    "confirmations",
    "requests",
    "session",
    "engine",
    "detail",
];

/// Whether a file's first line begins with `columns` (either dialect).
pub(crate) fn first_line_starts(path: &Path, columns: &[&str]) -> bool {
    use std::io::{BufRead, BufReader, Read};
    let Ok(file) = crate::files::open_read(path) else {
        return false;
    };
    let mut first = String::new();
    let _ = BufReader::new(file.take(256)).read_line(&mut first);
    let first = first.trim_start_matches('\u{feff}');
    let found: Vec<&str> = first.trim_end().split([',', ';']).collect();
    found.starts_with(columns)
}

/// Whether a file is a report (its first line is the report's header): the
/// only kind of file a run may replace.
pub fn is_report(path: &Path) -> bool {
    use std::io::{BufRead, BufReader, Read};
    let Ok(file) = crate::files::open_read(path) else {
        return false;
    };
    let mut first = String::new();
    let _ = BufReader::new(file.take(256)).read_line(&mut first);
    let first = first.trim_start_matches('\u{feff}');
    // Either dialect; reports of earlier versions had no sda column.
    let columns: Vec<&str> = first.trim_end().split([',', ';']).collect();
    columns.starts_with(&REPORT_HEADER[..4])
        && columns.contains(&"status")
        && columns.contains(&"detail")
}

/// Whether the report at `path` records nothing done on the portal: no
/// licence reset, no `Confirmer` sent (a run that stopped on unresolved
/// rows, a question answered no, a plan). Such a report may be replaced by
/// the run that follows its advice: nothing in it is lost.
pub fn records_no_reset(path: &Path) -> bool {
    use std::io::Read;
    if !is_report(path) {
        return false;
    }
    let Ok(file) = crate::files::open_read(path) else {
        return false;
    };
    let mut text = String::new();
    if file.take(64 << 20).read_to_string(&mut text).is_err() {
        return false;
    }
    let text = text.trim_start_matches('\u{feff}');
    let delimiter = if text.lines().next().is_some_and(|l| l.contains(';')) {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let Ok(headers) = reader.headers().cloned() else {
        return false;
    };
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(status), Some(confirmations)) = (column("status"), column("confirmations")) else {
        return false;
    };
    reader.records().all(|row| {
        row.is_ok_and(|row| {
            row.get(status) != Some(Status::Reset.as_str())
                && row
                    .get(confirmations)
                    .is_none_or(|c| c.is_empty() || c == "0")
        })
    })
}

/// Writes the report, complete or not at all (mode 0600: it names clients
/// and licences), rows sorted by input line. It never replaces a file unless
/// `replace`, and never writes through a link. People read it: a value that
/// a spreadsheet would run as a formula is written as text, in either dialect.
pub fn write(
    path: &Path,
    rows: &[ReportRow],
    engine: crate::portal::EngineRan,
    replace: bool,
    dialect: Dialect,
) -> std::io::Result<PathBuf> {
    let mut sorted: Vec<&ReportRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.line);
    let mut text = dialect.preamble().to_vec();
    push_row(&mut text, &REPORT_HEADER, dialect, FormulaCells::AsText);
    for r in sorted {
        push_row(
            &mut text,
            &[
                &r.line.to_string(),
                &r.client_ref,
                &r.service_ref,
                &r.licence,
                &r.sda,
                // What this run saw of a phone an earlier run reset is the
                // État after that reset, not before: not said.
                match r.origin {
                    Origin::EarlierRun => "",
                    Origin::ThisRun => &r.state,
                },
                &r.accountcode,
                r.status.as_str(),
                &r.confirmations.to_string(),
                &r.requests.to_string(),
                &r.session.map(|n| n.to_string()).unwrap_or_default(),
                // The engine of this run; an earlier run's row says none.
                match r.origin {
                    Origin::ThisRun => engine.name(),
                    Origin::EarlierRun => "",
                },
                // Portal text may stand in it: through the one scrubber.
                &crate::scrub::message(&r.detail),
            ],
            dialect,
            FormulaCells::AsText,
        );
    }
    write_whole(path, &text, replace)
}

/// Writes `text` as the file `path`, complete or not at all (mode 0600),
/// replacing what has the name only when `replace` (checked earlier to be a
/// file of the same kind).
pub(crate) fn write_whole(path: &Path, text: &[u8], replace: bool) -> std::io::Result<PathBuf> {
    let mut file = NewFile::create(path)?;
    file.write_all(text)?;
    if replace {
        file.commit_replacing()
    } else {
        file.commit()
    }
}
