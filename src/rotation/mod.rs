//! A rotation as one library call: `rotate` takes settings that are already
//! merged and checked, runs the whole lifecycle (files checked, lock taken,
//! login, resolution, the question, resets, the result file, the journal's
//! fate, the report) and returns a typed `Outcome`: what became of each
//! licence, why the run stopped if it did, and which files hold which
//! passwords, counted from what was written. It prints nothing; progress
//! goes to an `Observer`. `plan` is the same run up to the question.
//!
//! Every refusal that can be known before the portal is asked anything
//! (bad input, a file in the way, a lock held) is a `RotationError`, and
//! then no request was sent.

mod error;
mod finish;
mod lock;
mod outcome;
pub mod outputs;
mod plan;
mod preflight;
mod reset;
pub(crate) mod resolve;
mod resume;
mod settings;

pub use error::*;
pub use outcome::*;
pub use plan::*;
pub use preflight::journal_of;
use preflight::*;
pub use settings::*;

pub use lock::{LockError, RunLock, account_key, lock_name};
pub use resolve::{Resolution, Target};

use crate::events::{Event, Interruption, Observer, Question, ResolveProgress};
use crate::files::{self, PathProblem};
use crate::input::{self, InputError, InputRow, LeftOut, Reported};
use crate::portal::gate::{Verdict, VerdictState};
use crate::portal::{Portal, PortalError, Requests};
use crate::report::{self, Origin, ReportRow, Status};
use crate::vault::{self, Journal, Recipients, VaultError};
use reset::{Resets, Sink};
use resume::Resumed;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The shared state of a run while it goes.
struct Run<'a> {
    settings: &'a Settings,
    /// The client recipients when none were given.
    no_client_recipients: std::collections::HashMap<String, Vec<String>>,
    /// The rows of an input report not retried: carried into this run's
    /// report, so that a retry of the retry still leaves them out.
    carried: Vec<ReportRow>,
    /// Taken (locked) before the first request; into the sink once resets start.
    journal: std::sync::Mutex<Option<Journal>>,
    portal: Arc<Portal>,
    observer: &'a dyn Observer,
    interruption: &'a Interruption,
    started: Instant,
}

/// A rotation, start to end. Errors are refusals before any request; once
/// the portal has been asked anything, the `Outcome` says what happened.
pub async fn rotate(
    settings: &Settings,
    portal: Portal,
    observer: &dyn Observer,
    interruption: &Interruption,
) -> Result<Outcome, RotationError> {
    let started = Instant::now();
    let holder = format!("output {}", settings.output.display());
    let Prepared {
        rows,
        left_out,
        from_report,
        mut resumed,
        journal,
        _lock,
    } = prepare(settings, &holder)?;
    let carried = left_out
        .iter()
        .map(|r| ReportRow {
            line: r.line,
            client_ref: r.client_ref.clone(),
            service_ref: r.service_ref.clone(),
            licence: r.licence.clone(),
            sda: r.sda.clone(),
            state: String::new(),
            accountcode: r.accountcode.clone(),
            status: match r.status {
                Reported::Reset => Status::Reset,
                Reported::Duplicate => Status::Duplicate,
                Reported::FailedAfterConfirmer => Status::Failed,
            },
            detail: format!("{} in the earlier run, not retried", r.status.as_str()),
            confirmations: 0,
            requests: 0,
            session: None,
            origin: Origin::EarlierRun,
            remedy: None,
        })
        .collect();
    let run = Run {
        settings,
        no_client_recipients: Default::default(),
        carried,
        journal: std::sync::Mutex::new(Some(journal)),
        portal: Arc::new(portal),
        observer,
        interruption,
        started,
    };
    let mut outcome = run.go(&rows, &mut resumed).await;
    // Counted once no request is on its way (see `end_openings`).
    run.portal.end_openings().await;
    outcome.requests = Requests::of(run.portal.stats());
    outcome.left_out = LeftOutCounts::of(&left_out, from_report);
    Ok(outcome)
}

impl Run<'_> {
    fn stopped_by_signal(&self, phase: Phase) -> Option<StopReason> {
        self.interruption
            .stop
            .is_cancelled()
            .then_some(StopReason::Interrupted(phase))
    }

    /// The end of a run that stopped before any reset: its rows as they
    /// stand, no password anywhere.
    fn stopped_before_resets(
        &self,
        mut report: Vec<ReportRow>,
        why: StopReason,
        resumed: &mut Resumed,
    ) -> Outcome {
        // What the resumed run reset stays said (stopped at the login too).
        resumed.earlier_of_skipped(&mut report);
        self.finish(report, None, Some(why), resumed, ResetsDone::default())
    }

    async fn go(&self, rows: &[InputRow], resumed: &mut Resumed) -> Outcome {
        if let Err(e) = self.portal.connect(rows.len()).await {
            let why = self
                .stopped_by_signal(Phase::Login)
                .unwrap_or_else(|| stop_reason_of(&e));
            let skipped = all_skipped(rows, &why);
            return self.stopped_before_resets(skipped, why, resumed);
        }
        self.observer.event(Event::LoggedIn);
        self.portal.look_ahead();
        match self.settings.phases() {
            Schedule::OneAfterTheOther => self.one_after_the_other(rows, resumed).await,
            Schedule::Overlapped => self.overlapped(rows, resumed).await,
        }
    }

    async fn one_after_the_other(&self, rows: &[InputRow], resumed: &mut Resumed) -> Outcome {
        let stop = &self.interruption.stop;
        let resolution = match resolve::resolve(&self.portal, rows, stop, self.observer).await {
            Ok(r) => r,
            Err(e) => {
                let skipped = all_skipped(rows, &e);
                return self.stopped_before_resets(skipped, stop_reason_of(&e), resumed);
            }
        };
        let mut report: Vec<ReportRow> = Vec::new();
        if let Some(why) = self.stopped_by_signal(Phase::Resolution) {
            report.extend(resolution.rows_when_stopped(&why));
            return self.stopped_before_resets(report, why, resumed);
        }
        let unresolved = resolution.unresolved().count();
        if unresolved > 0 && !self.settings.skip_unresolved {
            report.extend(resolution.plan_rows());
            let why = StopReason::Unresolved { rows: unresolved };
            return self.stopped_before_resets(report, why, resumed);
        }
        report.extend(resolution.rejected);
        let targets: Vec<Target> = resumed.keep_all(resolution.targets, &mut report);
        if self.settings.confirm && !targets.is_empty() {
            let (in_use, state_unknown) = in_use(&targets, self.portal.labels());
            let answer = self.observer.confirm(&Question {
                resets: targets.len(),
                in_use,
                state_unknown,
            });
            let yes = tokio::select! {
                _ = stop.cancelled() => None,
                answer = answer => Some(answer.unwrap_or(false)),
            };
            let why = match yes {
                Some(true) => None,
                Some(false) => Some(StopReason::NotConfirmed),
                None => Some(StopReason::Interrupted(Phase::Question)),
            };
            if let Some(why) = why {
                report.extend(
                    targets
                        .iter()
                        .map(|t| t.report(Status::Skipped, format!("not reset: {why}"), 0, 0)),
                );
                return self.stopped_before_resets(report, why, resumed);
            }
        }
        let mut sink = match self.open_sink() {
            Ok(sink) => sink,
            Err(e) => {
                report.extend(
                    targets
                        .iter()
                        .map(|t| t.report(Status::Skipped, format!("not reset: {e}"), 0, 0)),
                );
                let why = StopReason::WriteFailed(e.to_string());
                return self.stopped_before_resets(report, why, resumed);
            }
        };
        self.observer.event(Event::Planned(targets.len()));
        let resets = reset::reset_all(
            &self.portal,
            reset::queue_of(targets),
            &self.settings.limits,
            self.settings.workers,
            None,
            &mut sink,
            stop,
            self.observer,
        )
        .await;
        self.after_resets(report, sink, resets, None, resumed)
    }

    async fn overlapped(&self, rows: &[InputRow], resumed: &mut Resumed) -> Outcome {
        let stop = &self.interruption.stop;
        let mut report: Vec<ReportRow> = Vec::new();
        let mut sink = match self.open_sink() {
            Ok(sink) => sink,
            Err(e) => {
                let why = StopReason::WriteFailed(e.to_string());
                let skipped = all_skipped(rows, &why);
                return self.stopped_before_resets(skipped, why, resumed);
            }
        };
        let (tx, queue) = mpsc::unbounded_channel();
        let mut planned = 0;
        // The all-or-nothing rule: no Confirmer before every row resolved.
        let verdict = (!self.settings.skip_unresolved).then(Verdict::pending);
        let resolving = async {
            let tx = tx;
            let mut unresolved = 0;
            let resolved =
                resolve::resolve_each(&self.portal, rows, stop, self.observer, |client| {
                    unresolved += client
                        .rejected
                        .iter()
                        .filter(|r| r.status == Status::Unresolved)
                        .count();
                    let mut rejected = client.rejected;
                    resumed.earlier_of_skipped(&mut rejected);
                    report.extend(rejected);
                    for target in resumed.keep_all(client.targets, &mut report) {
                        planned += 1;
                        self.observer.event(Event::Planned(planned));
                        tx.send(target)
                            .expect("the resets take targets until the end");
                    }
                })
                .await;
            let refused = match &resolved {
                Err(e) => Some(stop_reason_of(e)),
                Ok(()) if unresolved > 0 && verdict.is_some() => {
                    Some(StopReason::Unresolved { rows: unresolved })
                }
                Ok(()) => None,
            };
            if let Some(verdict) = &verdict {
                verdict.settle(if refused.is_none() && !stop.is_cancelled() {
                    VerdictState::Go
                } else {
                    VerdictState::NoGo
                });
            }
            if refused.is_some() {
                stop.cancel();
            }
            refused
        };
        let resetting = reset::reset_all(
            &self.portal,
            queue,
            &self.settings.limits,
            self.settings.workers,
            verdict.as_ref(),
            &mut sink,
            stop,
            self.observer,
        );
        let (resolution_failed, resets) = tokio::join!(resolving, resetting);
        self.after_resets(report, sink, resets, resolution_failed, resumed)
    }

    /// Opens the result file; with the journal, where the resets write.
    fn open_sink(&self) -> Result<Sink<'_>, VaultError> {
        let outputs = outputs::Outputs::open(
            &self.settings.output,
            &self.settings.recipients,
            self.settings
                .client_recipients
                .as_ref()
                .unwrap_or(&self.no_client_recipients),
        )?;
        let journal = self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("the journal goes to one sink");
        Ok(Sink {
            recipients: &self.settings.recipients,
            journal,
            outputs,
            stranded: Stranded::default(),
        })
    }
}

/// What the resets did, for the outcome.
#[derive(Debug, Default)]
struct ResetsDone {
    began: bool,
    confirmations: u64,
    lost: usize,
}

/// The stop reason a portal error gives, when it ends the run.
fn stop_reason_of(e: &PortalError) -> StopReason {
    match e {
        PortalError::LoginRefused => StopReason::LoginRefused,
        e @ PortalError::PasswordShown { .. } => StopReason::PasswordShown(e.to_string()),
        e => StopReason::Portal {
            why: e.to_string(),
            remedy: e.remedy(),
        },
    }
}

/// Every row skipped, for a run that stopped before resolving any: why.
fn all_skipped(rows: &[InputRow], why: &dyn std::fmt::Display) -> Vec<ReportRow> {
    rows.iter()
        .map(|r| {
            resolve::rejected_row(
                r,
                Status::Skipped,
                &r.licence.to_string(),
                format!("not resolved: {why}"),
            )
        })
        .collect()
}
