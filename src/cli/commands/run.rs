//! `sip-rotate run`: settings merged once, signals wired, the library
//! called, its outcome rendered, the exit code decided from it. Nothing
//! here decides what a run does.

use crate::cli::args::{LogFormat, RunArgs};
use crate::cli::render::{self, Show};
use crate::cli::settings::Loaded;
pub use crate::cli::settings::RunSettings;
use crate::cli::signals::{Work, watch_signals};
use crate::cli::{Exit, logging};
use crate::events::Interruption;
use crate::metrics::RunMetrics;
use crate::portal::Portal;
use crate::rotation::{self, Earlier, Outcome, StopReason};
use anyhow::Result;
use std::io::IsTerminal;
use std::time::SystemTime;

/// The exit code of a run, from its outcome alone.
pub fn exit_code(o: &Outcome) -> Exit {
    let all_reset = o.rows.iter().all(|r| {
        matches!(
            r.status,
            crate::report::Status::Reset | crate::report::Status::Duplicate
        )
    });
    // 2 is the promise that no phone was cut off: no Confirmer sent, by
    // this run or by an earlier one it resumes.
    let no_phone_cut_off = o.no_phone_cut_off();
    match &o.stopped {
        // A page showed a password nobody asked for: a phone may be cut off.
        Some(StopReason::PasswordShown(_)) => Exit::Aborted,
        // Interrupted, or stopped for a reason of its own, before any
        // Confirmer, and no earlier run's password waiting in the journal:
        // nothing is cut off, whatever stopped it.
        Some(_) if no_phone_cut_off => Exit::NothingDone,
        Some(_) => Exit::Aborted,
        None if all_reset && o.problems.is_empty() && o.passwords.lost == 0 => Exit::AllDone,
        None if no_phone_cut_off => Exit::NothingDone,
        None => Exit::Partial,
    }
}

/// `sip-rotate run`.
pub async fn run(args: RunArgs) -> (Exit, LogFormat) {
    let started = SystemTime::now();
    let mut format = args
        .diagnostics
        .log_format
        .or_else(|| Loaded::log_format_of(args.portal.config.as_deref()))
        .unwrap_or(LogFormat::Text);
    let interruption = Interruption::default();
    if let Err(e) = watch_signals(&interruption, format, Work::Resets) {
        return (crate::cli::refused(format, &e), format);
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let settings = match Loaded::read(args.portal.config.as_deref())
        .and_then(|cfg| RunSettings::new(&args, &cfg, interactive))
    {
        Ok(s) => s,
        // Flags or a config file that do not make a run: no metrics file
        // is trusted yet (it is checked against the others with them).
        Err(e) => return (crate::cli::refused(format, &e), format),
    };
    format = settings.view.format;
    logging::init(format, settings.view.quiet);
    let metrics = settings.metrics.clone();
    let (exit, outcome, metrics) = match rotate(settings, &interruption).await {
        Ok((exit, outcome)) => (exit, Some(outcome), metrics),
        // Refused for the metrics file itself: it stays as it is.
        Err(e) if e.concerns_the_metrics_file() => {
            (crate::cli::refused(format, &e.into()), None, None)
        }
        Err(e) => (crate::cli::refused(format, &e.into()), None, metrics),
    };
    if let Some(path) = &metrics {
        write_metrics(path, started, exit, outcome.as_ref(), format);
    }
    (exit, format)
}

/// The metrics file after a run, whatever its outcome: monitoring must see
/// failures too. A file that cannot be written is said, and changes nothing
/// else: the run's own files and exit code already tell what it did.
fn write_metrics(
    path: &std::path::Path,
    started: SystemTime,
    exit: Exit,
    outcome: Option<&Outcome>,
    format: LogFormat,
) {
    let run = RunMetrics {
        started,
        ended: SystemTime::now(),
        exit_code: exit as u8,
        rows: outcome.map(|o| o.rows.clone()).unwrap_or_default(),
        requests: outcome.map(|o| o.requests).unwrap_or_default(),
        uncounted_earlier: outcome
            .and_then(|o| o.passwords.earlier.as_ref())
            .map_or(0, Earlier::never_counted) as u64,
    };
    if let Err(e) = crate::metrics::write(path, &run) {
        render::error(format, &e.to_string(), None);
    }
}

/// A run with checked settings: the library's rotation, then its rendering.
pub async fn rotate(
    settings: RunSettings,
    interruption: &Interruption,
) -> Result<(Exit, Outcome), rotation::RotationError> {
    let RunSettings {
        rotation,
        portal,
        view,
        ..
    } = settings;
    let rate = portal.rate;
    let portal = Portal::new(portal, interruption.portal_interruptions());
    let show = Show::new(view, rate);
    let outcome = rotation::rotate(&rotation, portal, &show, interruption).await;
    show.finish();
    let outcome = outcome?;
    let exit = exit_code(&outcome);
    render::outcome(view, &outcome, rate, exit);
    Ok((exit, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::Requests;
    use crate::report::{Origin, ReportRow, Status};
    use crate::rotation::{JournalFate, LateProblem, Passwords, Phase};
    use std::time::Duration;

    fn row(status: Status) -> ReportRow {
        ReportRow {
            line: 2,
            client_ref: "4021".into(),
            service_ref: "SRV1".into(),
            licence: "FPC1".into(),
            sda: String::new(),
            state: String::new(),
            accountcode: String::new(),
            status,
            detail: String::new(),
            confirmations: 0,
            requests: 0,
            session: None,
            origin: Origin::ThisRun,
            remedy: None,
        }
    }

    fn outcome(rows: &[Status], stopped: Option<StopReason>, began: bool, sent: u64) -> Outcome {
        Outcome {
            rows: rows.iter().map(|&s| row(s)).collect(),
            stopped,
            resets_began: began,
            confirmations: sent,
            passwords: Passwords {
                result: Vec::new(),
                part: Vec::new(),
                journal: JournalFate::NotCreated,
                lost: 0,
                earlier: None,
                stranded: None,
            },
            report: None,
            problems: Vec::new(),
            replaced_reports: Vec::new(),
            on_rerun: Default::default(),
            requests: Requests::default(),
            elapsed: Duration::ZERO,
            left_out: Default::default(),
        }
    }

    #[test]
    fn the_exit_code_says_what_cron_may_assume() {
        use Status::*;
        use StopReason::*;
        let cases: [(Outcome, Exit, &str); 11] = [
            (
                outcome(&[Reset, Duplicate], None, true, 1),
                Exit::AllDone,
                "all reset",
            ),
            (
                outcome(&[], None, false, 0),
                Exit::AllDone,
                "nothing left to do",
            ),
            (
                outcome(&[Reset, Failed], None, true, 3),
                Exit::Partial,
                "one failed",
            ),
            (
                outcome(&[Reset, Unresolved], None, true, 1),
                Exit::Partial,
                "skipped unresolved",
            ),
            (
                outcome(&[Unresolved, Unresolved], None, false, 0),
                Exit::NothingDone,
                "nothing resolved, nothing reset",
            ),
            (
                outcome(
                    &[Unresolved, Skipped],
                    Some(StopReason::Unresolved { rows: 1 }),
                    false,
                    0,
                ),
                Exit::NothingDone,
                "all or nothing",
            ),
            (
                outcome(&[Skipped], Some(LoginRefused), false, 0),
                Exit::NothingDone,
                "login",
            ),
            (
                outcome(&[Skipped], Some(NotConfirmed), false, 0),
                Exit::NothingDone,
                "answered no",
            ),
            (
                outcome(&[Skipped], Some(Interrupted(Phase::Resolution)), false, 0),
                Exit::NothingDone,
                "a signal before any Confirmer: no phone cut off",
            ),
            (
                outcome(
                    &[Failed, Skipped],
                    Some(Canary {
                        canaries: 1,
                        confirmed: false,
                    }),
                    true,
                    0,
                ),
                Exit::NothingDone,
                "the canary failed before Confirmer: no phone cut off",
            ),
            (
                outcome(&[Reset, Skipped], Some(WriteFailed("disk".into())), true, 1),
                Exit::Aborted,
                "a write failed after a Confirmer",
            ),
        ];
        for (o, exit, what) in cases {
            assert_eq!(exit_code(&o), exit, "{what}");
        }
        let mut late = outcome(&[Reset], None, true, 1);
        late.problems.push(LateProblem::Report {
            path: "r.csv".into(),
            why: "disk full".into(),
        });
        assert_eq!(
            exit_code(&late),
            Exit::Partial,
            "the report failed after resets: never 2"
        );
        let mut lost = outcome(&[Reset], None, true, 1);
        lost.passwords.lost = 1;
        assert_eq!(exit_code(&lost), Exit::Partial);
        // Resumed, its own licences all failed before any Confirmer: the
        // earlier run's resets (now in this run's result) are the
        // rotation's, so never 2 (found by a helper: "NOTHING RESET").
        let mut resumed = outcome(&[Reset, Failed], None, true, 0);
        resumed.rows[0].origin = Origin::EarlierRun;
        assert_eq!(exit_code(&resumed), Exit::Partial);
        resumed.stopped = Some(MaxFailures {
            failed: 1,
            limit: 1,
        });
        assert_eq!(exit_code(&resumed), Exit::Aborted);
    }
}
