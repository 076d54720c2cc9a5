//! What happened to each requested licence, without secrets: the report
//! CSV, one row per licence (or per input line that did not resolve).

use crate::files::NewFile;
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
}

#[derive(Debug, Clone)]
pub struct ReportRow {
    pub line: u64,
    pub client_ref: String,
    pub service_ref: String,
    pub licence: String,
    pub status: Status,
    pub detail: String,
    /// `Confirmer` requests sent for the licence: more than one only after an
    /// unknown outcome, and each may have reset the password.
    pub confirmations: u32,
    /// Portal requests the reset of this licence took (4 without faults).
    pub requests: u64,
}

pub const REPORT_HEADER: [&str; 8] = [
    "line",
    "client_ref",
    "service_ref",
    "licence",
    "status",
    "confirmations",
    "requests",
    "detail",
];

/// Whether a file is a report (its first line is the report's header): the
/// only kind of file a run may replace.
pub fn is_report(path: &Path) -> bool {
    use std::io::{BufRead, BufReader, Read};
    let Ok(file) = crate::files::open_read(path) else {
        return false;
    };
    let mut first = String::new();
    let _ = BufReader::new(file.take(256)).read_line(&mut first);
    first.trim_end() == REPORT_HEADER.join(",")
}

/// Writes the report, complete or not at all (mode 0600: it names clients
/// and licences), rows sorted by input line. It never replaces a file unless
/// `replace`, and never writes through a link.
pub fn write(path: &Path, rows: &[ReportRow], replace: bool) -> std::io::Result<PathBuf> {
    let mut sorted: Vec<&ReportRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.line);
    let mut w = csv::Writer::from_writer(NewFile::create(path)?);
    w.write_record(REPORT_HEADER)?;
    for r in sorted {
        w.write_record([
            r.line.to_string().as_str(),
            &r.client_ref,
            &r.service_ref,
            &r.licence,
            r.status.as_str(),
            &r.confirmations.to_string(),
            &r.requests.to_string(),
            &r.detail,
        ])?;
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    if replace {
        file.commit_replacing()
    } else {
        file.commit()
    }
}
