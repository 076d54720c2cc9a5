//! What a scheduled run leaves for monitoring: a file in the Prometheus text
//! format, for node_exporter's textfile collector. A rotation that has not
//! succeeded for weeks must be an alert, not a discovery.
//!
//! The file is replaced whole at the end of every run (a temporary file in
//! its folder, then a rename: the collector never reads half a file). It
//! carries two things: the last run's numbers (gauges), and counters that
//! add up across runs, read back from the previous file, as is the time of
//! the last success when this run was not one.

use crate::files;
use crate::portal::EngineRan;
use crate::portal::Requests;
use crate::report::{Origin, ReportRow, Status};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The first line of every metrics file sip-rotate writes: only such a file
/// is ever replaced.
const MARK: &str = "# sip-rotate metrics: replaced whole at the end of every run";

/// The statuses counted, always all of them (a series that appears only
/// when non-zero is hard to alert on).
const STATUSES: [Status; 5] = [
    Status::Reset,
    Status::Failed,
    Status::Unresolved,
    Status::Duplicate,
    Status::Skipped,
];

/// What one run did, as the metrics file says it.
#[derive(Debug, Clone)]
pub struct RunMetrics {
    pub started: SystemTime,
    pub ended: SystemTime,
    pub exit_code: u8,
    /// Licences by status; empty when the run was refused before the portal.
    pub rows: Vec<ReportRow>,
    pub requests: Requests,
    /// Resets an earlier run journaled and never counted: a run killed
    /// (`kill -9`, a power cut) writes no metrics, and its resets reach the
    /// counters with the run that resumes it.
    pub uncounted_earlier: u64,
}

impl RunMetrics {
    fn succeeded(&self) -> bool {
        self.exit_code == 0
    }

    /// This run's licences of a status: a resumed run's report also lists
    /// what earlier runs did, which their own metrics counted.
    fn count(&self, status: Status) -> u64 {
        let this_run = self
            .rows
            .iter()
            .filter(|r| r.status == status && r.origin == Origin::ThisRun)
            .count() as u64;
        match status {
            Status::Reset => this_run + self.uncounted_earlier,
            _ => this_run,
        }
    }
}

/// Why a metrics file was not written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{} is a symbolic link: the metrics file is never written through one", .0.display())]
    Symlink(PathBuf),
    #[error("{} exists and is not a sip-rotate metrics file: only one is ever replaced", .0.display())]
    NotMetrics(PathBuf),
    #[error("cannot write the metrics file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Whether `path` may take a metrics file: free, or an earlier metrics file
/// (never a link, never another file). Checked before a run begins, and
/// again when the file is written.
pub fn check(path: &Path) -> Result<(), MetricsError> {
    // A pipe or a device is never opened: a FIFO would block the run.
    files::check_replaceable(path, true, is_metrics).map_err(|problem| match problem {
        files::PathProblem::Symlink(path) => MetricsError::Symlink(path),
        files::PathProblem::NotOurs(path) => MetricsError::NotMetrics(path),
        problem => MetricsError::Io {
            path: path.into(),
            source: io::Error::other(problem.to_string()),
        },
    })
}

/// Whether `path` is a regular file: only such a file is ever opened.
fn is_regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

fn is_metrics(path: &Path) -> bool {
    if !is_regular(path) {
        return false;
    }
    let Ok(file) = files::open_read(path) else {
        return false;
    };
    let mut first = String::new();
    let _ = BufReader::new(file.take(256)).read_line(&mut first);
    first.trim_end() == MARK
}

/// The samples of an earlier metrics file, by series (`name{labels}`).
fn previous(path: &Path) -> BTreeMap<String, f64> {
    if !is_regular(path) {
        return BTreeMap::new();
    }
    let Ok(file) = files::open_read(path) else {
        return BTreeMap::new();
    };
    let mut text = String::new();
    if file.take(1 << 20).read_to_string(&mut text).is_err() || !text.starts_with(MARK) {
        return BTreeMap::new();
    }
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(series, value)| Some((series.to_string(), value.parse().ok()?)))
        .collect()
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// The text of the metrics file after `run`, given the samples of the
/// previous one.
pub fn render(run: &RunMetrics, before: &BTreeMap<String, f64>) -> String {
    let mut out = String::new();
    out.push_str(MARK);
    out.push('\n');
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    // A counter goes on from its previous value.
    let total = |name: &str, labels: &str, this_run: u64| {
        let earlier = before
            .get(&format!("{name}{labels}"))
            .copied()
            .unwrap_or(0.0);
        (labels.to_string(), earlier + this_run as f64)
    };
    let requests = [
        ("login", run.requests.login),
        ("resolve", run.requests.resolve),
        ("reset", run.requests.reset),
    ];

    family(
        "sip_rotate_last_run_start_timestamp_seconds",
        "gauge",
        "When the last run started, in seconds since the epoch.",
        &one(seconds(run.started).floor()),
    );
    family(
        "sip_rotate_last_run_end_timestamp_seconds",
        "gauge",
        "When the last run ended, in seconds since the epoch.",
        &one(seconds(run.ended).floor()),
    );
    family(
        "sip_rotate_last_run_duration_seconds",
        "gauge",
        "How long the last run took.",
        &one(run
            .ended
            .duration_since(run.started)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()),
    );
    let last_success = if run.succeeded() {
        seconds(run.ended).floor()
    } else {
        before
            .get("sip_rotate_last_success_timestamp_seconds")
            .copied()
            .unwrap_or(0.0)
    };
    family(
        "sip_rotate_last_success_timestamp_seconds",
        "gauge",
        "When a run last ended with exit code 0, in seconds since the epoch (0: never).",
        &one(last_success),
    );
    family(
        "sip_rotate_last_run_exit_code",
        "gauge",
        "The exit code of the last run (0 all reset, 1 not all well, 2 no phone cut off, 3 interrupted, or stopped after a reset).",
        &one(f64::from(run.exit_code)),
    );
    family(
        "sip_rotate_last_run_licences",
        "gauge",
        "Licences the last run dealt with, by status in its report (not those of earlier runs a resumed run's report lists, but the resets of a killed run, which wrote no metrics).",
        &STATUSES
            .iter()
            .map(|&s| {
                (
                    format!("{{status=\"{}\"}}", s.as_str()),
                    run.count(s) as f64,
                )
            })
            .collect::<Vec<_>>(),
    );
    family(
        "sip_rotate_last_run_portal_requests",
        "gauge",
        "Portal requests of the last run, by phase.",
        &requests
            .iter()
            .map(|(phase, n)| (format!("{{phase=\"{phase}\"}}"), *n as f64))
            .collect::<Vec<_>>(),
    );
    family(
        "sip_rotate_last_run_portal_sessions",
        "gauge",
        "Portal sessions the last run opened.",
        &one(run.requests.sessions as f64),
    );
    family(
        "sip_rotate_last_run_engine",
        "gauge",
        "The engine that performed the last run's steps (1 for the one that ran).",
        &[EngineRan::Http, EngineRan::Browser]
            .iter()
            .map(|&e| {
                (
                    format!("{{engine=\"{}\"}}", e.name()),
                    f64::from(u8::from(run.requests.engine == e)),
                )
            })
            .collect::<Vec<_>>(),
    );
    family(
        "sip_rotate_runs_total",
        "counter",
        "Runs, by exit code.",
        &[0u8, 1, 2, 3]
            .iter()
            .map(|&code| {
                let labels = format!("{{exit_code=\"{code}\"}}");
                total(
                    "sip_rotate_runs_total",
                    &labels,
                    u64::from(code == run.exit_code),
                )
            })
            .collect::<Vec<_>>(),
    );
    family(
        "sip_rotate_licences_total",
        "counter",
        "Licences of every run, by status, each counted by the run that dealt with it.",
        &STATUSES
            .iter()
            .map(|&s| {
                let labels = format!("{{status=\"{}\"}}", s.as_str());
                total("sip_rotate_licences_total", &labels, run.count(s))
            })
            .collect::<Vec<_>>(),
    );
    family(
        "sip_rotate_portal_requests_total",
        "counter",
        "Portal requests of every run, by phase.",
        &requests
            .iter()
            .map(|(phase, n)| {
                let labels = format!("{{phase=\"{phase}\"}}");
                total("sip_rotate_portal_requests_total", &labels, *n)
            })
            .collect::<Vec<_>>(),
    );
    family(
        "sip_rotate_portal_too_many_requests_total",
        "counter",
        "Portal answers 429 Too Many Requests, every run.",
        &[total(
            "sip_rotate_portal_too_many_requests_total",
            "",
            run.requests.too_many,
        )],
    );
    family(
        "sip_rotate_portal_retries_total",
        "counter",
        "Portal requests retried after a transient failure, every run.",
        &[total(
            "sip_rotate_portal_retries_total",
            "",
            run.requests.retries,
        )],
    );
    out
}

/// Replaces the metrics file at `path` with the numbers of `run`, whole or
/// not at all, readable by the collector (mode 0644: counts, no secret).
pub fn write(path: &Path, run: &RunMetrics) -> Result<(), MetricsError> {
    check(path)?;
    let text = render(run, &previous(path));
    let io = |source| MetricsError::Io {
        path: path.into(),
        source,
    };
    let mut file = files::NewFile::create(path).map_err(io)?;
    file.set_mode(0o644).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.commit_replacing().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(exit_code: u8, at: u64) -> RunMetrics {
        RunMetrics {
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
            ended: SystemTime::UNIX_EPOCH + Duration::from_secs(at + 60),
            exit_code,
            rows: Vec::new(),
            uncounted_earlier: 0,
            requests: Requests {
                login: 4,
                engine: crate::portal::EngineRan::Http,
                ..Default::default()
            },
        }
    }

    fn samples(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_counters_go_on() {
        let first = render(&run(0, 1000), &BTreeMap::new());
        let second = render(&run(3, 5000), &samples(&first));
        let s = samples(&second);
        assert_eq!(s["sip_rotate_last_success_timestamp_seconds"], 1060.0);
        assert_eq!(s["sip_rotate_last_run_exit_code"], 3.0);
        assert_eq!(s["sip_rotate_runs_total{exit_code=\"0\"}"], 1.0);
        assert_eq!(s["sip_rotate_runs_total{exit_code=\"3\"}"], 1.0);
        assert_eq!(s["sip_rotate_portal_requests_total{phase=\"login\"}"], 8.0);
        assert_eq!(
            s["sip_rotate_last_run_portal_requests{phase=\"login\"}"],
            4.0
        );
    }

    #[test]
    fn never_a_success_is_zero() {
        let s = samples(&render(&run(2, 1000), &BTreeMap::new()));
        assert_eq!(s["sip_rotate_last_success_timestamp_seconds"], 0.0);
    }
}
