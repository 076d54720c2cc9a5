//! What happened to each requested licence, without secrets: the `--report`
//! CSV (one row per licence, or per input line that did not resolve) and the
//! summary printed at the end of a run.

use std::fmt;
use std::path::Path;
use std::time::Duration;

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

/// Writes the report; rows are sorted by input line.
pub fn write(path: &Path, rows: &[ReportRow]) -> std::io::Result<()> {
    let mut sorted: Vec<&ReportRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.line);
    let mut w = csv::Writer::from_path(path)?;
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
    w.flush()
}

/// Counts and rates for the end of a run.
pub struct Summary {
    pub counts: Vec<(Status, usize)>,
    pub requests_login: u64,
    pub requests_resolve: u64,
    pub requests_reset: u64,
    pub too_many_requests: u64,
    pub retries: u64,
    pub elapsed: Duration,
    pub rate: f64,
}

impl Summary {
    pub fn new(
        rows: &[ReportRow],
        stats: &crate::portal::Stats,
        elapsed: Duration,
        rate: f64,
    ) -> Summary {
        use crate::portal::transport::Phase;
        let mut counts = Vec::new();
        for s in [
            Status::Reset,
            Status::Failed,
            Status::Unresolved,
            Status::Duplicate,
            Status::Skipped,
            Status::Planned,
        ] {
            let n = rows.iter().filter(|r| r.status == s).count();
            if n > 0 {
                counts.push((s, n));
            }
        }
        Summary {
            counts,
            requests_login: stats.requests(Phase::Login),
            requests_resolve: stats.requests(Phase::Resolve),
            requests_reset: stats.requests(Phase::Reset),
            too_many_requests: stats
                .too_many_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            retries: stats.retries.load(std::sync::atomic::Ordering::Relaxed),
            elapsed,
            rate,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(s, n)| format!("{n} {}", s.as_str()))
            .collect();
        writeln!(
            f,
            "licences: {}",
            if counts.is_empty() {
                "none".into()
            } else {
                counts.join(", ")
            }
        )?;
        let total = self.requests_login + self.requests_resolve + self.requests_reset;
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "portal requests: {total} (login {}, resolve {}, reset {}){}",
            self.requests_login,
            self.requests_resolve,
            self.requests_reset,
            match (self.too_many_requests, self.retries) {
                (0, 0) => String::new(),
                (slow, 0) => format!(", {slow} answered 429"),
                (0, retried) => format!(", {retried} retried after a fault"),
                (slow, retried) =>
                    format!(", {slow} answered 429, {retried} retried after a fault"),
            }
        )?;
        let achieved = if secs > 0.0 { total as f64 / secs } else { 0.0 };
        write!(
            f,
            "elapsed: {secs:.1} s, {achieved:.2} requests/s (limit {:.2}/s)",
            self.rate
        )
    }
}
