//! The second phase: the resets, on a pool of workers under the portal's
//! rate limit. Their results flow over a channel to one collector, which
//! journals each new password (fsync) before counting it; the canary goes
//! first and alone, and a run that goes wrong stops early.

use super::resolve::Target;
use super::{Event, Limits, Observer, StopReason, Stranded};
use crate::portal::gate::{CommitPermit, Verdict, VerdictState};
use crate::portal::{
    AfterUnknown, Browser, Lease, NewPassword, Portal, PortalError, Priority, ResetError,
    TransportError,
};
use crate::report::{Origin, ReportRow, Status};
use crate::vault::{Journal, Recipients, ResetRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where the passwords go.
pub(super) struct Sink<'a> {
    pub recipients: &'a Recipients,
    pub journal: Journal,
    pub outputs: super::outputs::Outputs<'a>,
    /// The encrypted entries of the passwords the journal could not take.
    pub stranded: Stranded,
}

/// What became of one licence, sent by a worker to the collector.
enum Attempt {
    Tried {
        target: Target,
        /// `Confirmer` requests sent.
        confirmations: u32,
        /// Portal requests the licence took.
        requests: u64,
        /// The run's login whose session sent the last `Confirmer`.
        session: u64,
        result: Result<NewPassword, Failure>,
    },
    /// Taken from the queue just as the run stopped, or its first pages cut
    /// short by the stop: nothing changed on the portal. With the requests
    /// it took (the report's add up to the summary's).
    NotTried(Target, u64),
    /// Its detail page showed a phone an earlier run reset: left as it is.
    AlreadyReset {
        target: Target,
        accountcode: String,
        requests: u64,
    },
}

struct Failure {
    reason: String,
    /// What would fix it, where its cause says.
    remedy: Option<crate::portal::Remedy>,
    /// Set when no further request makes sense (a refused login, a portal
    /// that leads elsewhere): the whole run stops for it.
    stops_the_run: Option<StopReason>,
}

/// The licences to reset, in the order they were resolved. The sender may
/// still be resolving: resets start with the first target.
pub(super) type Queue = mpsc::UnboundedReceiver<Target>;

/// A queue that holds `targets`, with nothing more to come.
pub(super) fn queue_of(targets: Vec<Target>) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    for target in targets {
        tx.send(target).expect("the receiver is here");
    }
    rx
}

/// What the second phase did.
pub(super) struct Resets {
    /// One per target: reset, failed or skipped.
    pub rows: Vec<ReportRow>,
    /// Why it stopped before the queue was empty, when it stopped for a
    /// reason of its own (a signal is the caller's to know).
    pub stopped: Option<StopReason>,
    /// Whether any target was handed to a worker.
    pub began: bool,
    /// `Confirmer` requests sent in all.
    pub confirmations: u64,
    /// Reset, but the password could be written to neither file.
    pub lost: usize,
}

/// Second phase: resets every target of the queue, the canary first. A
/// reason to stop cancels `stop`, which also stops resolution.
///
/// The canary's licences (the first resolved) are reset alone, by one
/// worker. Meanwhile the other workers walk their licences up to
/// `Confirmer` and wait there, at the gate (`CommitPermit::after`): they
/// press it only once the canary succeeded, and never if it failed. The
/// portal's rate is not left unused while the canary runs, and nothing
/// else is reset before it ends.
///
/// `resolved`: while resolution still goes on and a row left unresolved
/// must stop the run before any reset (the all-or-nothing rule), the
/// verdict of the whole resolution. The canary then walks up to its
/// `Confirmer` meanwhile and presses it only on a go; the other workers
/// start only then (parked at the gate, they would hold the sessions
/// resolution needs).
#[allow(clippy::too_many_arguments)]
pub(super) async fn reset_all(
    portal: &Arc<Portal>,
    mut queue: Queue,
    limits: &Limits,
    workers: usize,
    resolved: Option<&Arc<Verdict>>,
    sink: &mut Sink<'_>,
    stop: &CancellationToken,
    observer: &dyn Observer,
) -> Resets {
    let mut done = Resets {
        rows: Vec::new(),
        stopped: None,
        began: false,
        confirmations: 0,
        lost: 0,
    };
    // Counted by the workers, so that the stop comes before the next licence
    // is taken, not when the collector catches up.
    let failures = Arc::new(AtomicUsize::new(0));
    // The journal is open: what a Confirmer brings back has a place to go.
    let permit = CommitPermit::journaled(&sink.journal);
    let permit = match resolved {
        Some(verdict) => permit.after(verdict),
        None => permit,
    };
    let mut canaries = Vec::new();
    while canaries.len() < limits.canary {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            target = queue.recv() => target,
        };
        match next {
            Some(target) => canaries.push(target),
            None => break,
        }
    }
    let mut canaries_left = canaries.len();
    let canary = (canaries_left > 0).then(Verdict::pending);
    let queues = [
        Arc::new(tokio::sync::Mutex::new(queue_of(canaries))),
        Arc::new(tokio::sync::Mutex::new(queue)),
    ];
    let (tx, mut rx) = mpsc::channel::<(Role, Attempt)>(64);
    let mut pool = JoinSet::new();
    // Workers that walk ahead of the resolution's verdict, up to their
    // Confirmer: as many as the rate keeps busy beyond one session (a fast
    // portal needs one: nobody walks ahead, and no login is added), at
    // most half of them, and always fewer than the sessions the portal
    // will open, so that resolution keeps one to finish with (the browser
    // opens at most two a core: four walkers parked there took them all,
    // and the run waited forever).
    let mut ahead = match resolved {
        Some(_) => portal
            .sessions_needed()
            .saturating_sub(1)
            .min(workers / 2)
            .min(portal.sessions_assured().saturating_sub(1)),
        None => usize::MAX,
    };
    for (role, workers) in [(Role::Canary, 1), (Role::After, workers.max(1))] {
        let permit = match (&canary, role) {
            (Some(canary), Role::After) => permit.after(canary),
            _ => permit.clone(),
        };
        // The canary's worker takes its session first: the others, held at
        // the gate with theirs, must not leave it none.
        let (leased, has_lease) = tokio::sync::oneshot::channel();
        let mut leased = (role == Role::Canary).then_some(leased);
        // Without a canary, its worker takes nothing: no place ahead.
        let takes_work = role == Role::After || canary.is_some();
        for _ in 0..workers {
            let hold = if ahead > 0 && takes_work {
                ahead -= 1;
                None
            } else {
                resolved.cloned()
            };
            let worker = Worker {
                portal: portal.clone(),
                queue: queues[role as usize].clone(),
                // A canary that fails before its Confirmer takes the next
                // target of the others' queue in its place (see `run`).
                spare: (role == Role::Canary).then(|| queues[Role::After as usize].clone()),
                replacements: MAX_CANARY_REPLACEMENTS.min(limits.max_failures.saturating_sub(1)),
                results: tx.clone(),
                stop: stop.clone(),
                failures: failures.clone(),
                role,
                max_tries: limits.max_resets,
                max_failures: limits.max_failures,
                permit: permit.clone(),
                leased: leased.take(),
                hold,
            };
            pool.spawn(worker.run());
        }
        // Until it has one, or ended without (no canary: at once).
        let _ = has_lease.await;
    }
    drop(tx);
    while let Some((role, attempt)) = rx.recv().await {
        let canary_done = role == Role::Canary;
        let (t, confirmations, requests, session, result) = match attempt {
            Attempt::NotTried(t, requests) => {
                let detail = if requests == 0 {
                    "not tried: the run stopped"
                } else {
                    "the run stopped before its Confirmer: not reset"
                };
                let row = t.report(Status::Skipped, detail.into(), 0, requests);
                observer.event(Event::Done(&row));
                done.rows.push(row);
                if canary_done && let Some(canary) = &canary {
                    canary.settle(VerdictState::NoGo);
                }
                continue;
            }
            Attempt::AlreadyReset {
                target: t,
                accountcode,
                requests,
            } => {
                let detail =
                    format!("reset by an earlier run (account code {accountcode}), not again");
                let mut row = t.report(Status::Reset, detail, 0, requests);
                row.accountcode = accountcode;
                row.origin = Origin::EarlierRun;
                observer.event(Event::Done(&row));
                done.rows.push(row);
                if canary_done {
                    canaries_left -= 1;
                    if canaries_left == 0
                        && let Some(canary) = &canary
                    {
                        canary.settle(VerdictState::Go);
                    }
                }
                continue;
            }
            Attempt::Tried {
                target,
                confirmations,
                requests,
                session,
                result,
            } => (target, confirmations, requests, session, result),
        };
        done.began = true;
        done.confirmations += u64::from(confirmations);
        let succeeded = result.is_ok();
        let mut row = match result {
            Ok(password) => {
                let record = ResetRecord {
                    client_ref: t.client_ref.clone(),
                    service_ref: t.service_ref.clone(),
                    licence: t.licence.licence.clone(),
                    licence_type: t.licence.licence_type.clone(),
                    sda: t.licence.sda.clone(),
                    name: t.licence.name.clone(),
                    accountcode: password.accountcode,
                    password: password.password,
                    reset_at: now(),
                };
                if keep(sink, &record, &mut done, stop) {
                    let mut row = t.report(Status::Reset, String::new(), confirmations, requests);
                    row.accountcode = record.accountcode.clone();
                    row
                } else {
                    done.lost += 1;
                    let detail =
                        "reset, but its new password could not be written anywhere: reset it again"
                            .into();
                    t.report(Status::Failed, detail, confirmations, requests)
                }
            }
            Err(Failure {
                reason,
                stops_the_run,
                remedy,
            }) => {
                let failed = failures.load(Ordering::SeqCst);
                if let Some(why) = stops_the_run {
                    done.stopped = Some(why);
                } else if failed >= limits.max_failures && done.stopped.is_none() {
                    done.stopped = Some(StopReason::MaxFailures {
                        failed,
                        limit: limits.max_failures,
                    });
                }
                let mut row = t.report(Status::Failed, reason, confirmations, requests);
                row.remedy = remedy;
                row
            }
        };
        if confirmations > 0 && session > 0 {
            row.session = Some(session);
        }
        observer.event(Event::Done(&row));
        done.rows.push(row);
        keep_strays(portal, Some(&t), sink, &mut done, stop);
        if canary_done && let Some(canary) = &canary {
            // Its password journaled (or the run stopped): the resets held
            // at the gate go on, or never press.
            canaries_left -= 1;
            if !succeeded || stop.is_cancelled() {
                if done.stopped.is_none() && !stop.is_cancelled() {
                    done.stopped = Some(StopReason::Canary {
                        canaries: limits.canary,
                        confirmed: confirmations > 0,
                    });
                }
                canary.settle(VerdictState::NoGo);
                stop.cancel();
            } else if canaries_left == 0 {
                canary.settle(VerdictState::Go);
            }
        }
    }
    while pool.join_next().await.is_some() {}
    keep_strays(portal, None, sink, &mut done, stop);
    // Resolved but not tried. When the run stopped, resolution stops too and
    // closes the queue soon.
    for queue in &queues {
        let mut queue = queue.lock().await;
        while let Some(t) = queue.recv().await {
            let row = t.report(Status::Skipped, "not tried: the run stopped".into(), 0, 0);
            observer.event(Event::Done(&row));
            done.rows.push(row);
        }
    }
    done
}

/// Which workers a worker is among: the canary's, or those after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Canary = 0,
    After = 1,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Journals `record` (on disk, encrypted, flushed) and adds it to the
/// result; whether it is kept anywhere (the journal, the result, or the
/// summary's encrypted entries). A write that fails stops the run, but never
/// aborts a worker: one that already sent Confirmer still brings its
/// password back, to whichever of the files (or the summary) can still
/// take it.
fn keep(
    sink: &mut Sink<'_>,
    record: &ResetRecord,
    done: &mut Resets,
    stop: &CancellationToken,
) -> bool {
    // The fsync blocks: let the runtime move the workers' tasks to another
    // thread meanwhile.
    let journaled = tokio::task::block_in_place(|| sink.journal.append(sink.recipients, record));
    // Kept, encrypted, in case no file can take it either.
    let stranded = match &journaled {
        Ok(()) => false,
        Err(_) => match Journal::entry(sink.recipients, record) {
            Ok(entry) => {
                sink.stranded.count += 1;
                sink.stranded
                    .journal_text
                    .push_str(&String::from_utf8_lossy(&entry));
                true
            }
            Err(_) => false,
        },
    };
    let added = sink.outputs.add(record);
    if journaled.is_err() && added.is_err() && stranded {
        sink.stranded.in_no_file += 1;
    }
    let kept = journaled.is_ok() || added.is_ok() || stranded;
    if let Some(e) = journaled.err().or(added.err()) {
        done.stopped
            .get_or_insert(StopReason::WriteFailed(e.to_string()));
        stop.cancel();
    }
    kept
}

/// Journals the new passwords pages showed where none was expected, before
/// anything else, and stops the run: the portal commits where the walk
/// did not expect it, or shows an earlier password again. Which phone such
/// a password belongs to is not sure: its row says where it was seen.
fn keep_strays(
    portal: &Portal,
    during: Option<&Target>,
    sink: &mut Sink<'_>,
    done: &mut Resets,
    stop: &CancellationToken,
) {
    for stray in portal.take_stray() {
        let walked = stray.licence.as_deref().unwrap_or("no licence");
        let why = format!(
            "the portal showed a new password on the {} page while walking to {walked}, where none was expected: it is journaled, in a row of its own; a phone may have been cut off (decrypt the result, then run sip-rotate check)",
            stray.page
        );
        done.stopped.get_or_insert(StopReason::PasswordShown(why));
        stop.cancel();
        let client_ref = during
            .filter(|t| Some(&t.licence.licence) == stray.licence.as_ref())
            .map(|t| t.client_ref.clone())
            .unwrap_or_default();
        let record = ResetRecord {
            client_ref,
            service_ref: String::new(),
            licence: String::new(),
            licence_type: String::new(),
            sda: String::new(),
            name: format!(
                "(seen on the {} page while walking to {walked}: its phone is not known for sure)",
                stray.page
            ),
            accountcode: String::new(),
            password: stray.password,
            reset_at: now(),
        };
        if !keep(sink, &record, done, stop) {
            done.lost += 1;
        }
    }
}

/// How many canaries that failed before their `Confirmer` (nothing sent,
/// a page of that licence failing) are replaced by the next licence before
/// the run stops: a licence that keeps failing on its own must not stop
/// every resume of its rotation (found by a helper: a resume took it as
/// its canary each time, and never finished), while a portal that fails
/// every licence still stops the run after a few.
const MAX_CANARY_REPLACEMENTS: usize = 2;

/// One of the workers: takes targets from its queue until it is empty and
/// closed, or the run stops (a canary, at its first failure).
struct Worker {
    portal: Arc<Portal>,
    queue: Arc<tokio::sync::Mutex<Queue>>,
    /// The canary's worker: the others' queue, where a canary that failed
    /// before its `Confirmer` takes its replacement.
    spare: Option<Arc<tokio::sync::Mutex<Queue>>>,
    /// Replacements left (see `MAX_CANARY_REPLACEMENTS`).
    replacements: usize,
    results: mpsc::Sender<(Role, Attempt)>,
    stop: CancellationToken,
    failures: Arc<AtomicUsize>,
    role: Role,
    /// Told once this worker has its session (the canary's worker).
    leased: Option<tokio::sync::oneshot::Sender<()>>,
    max_tries: u32,
    max_failures: usize,
    permit: CommitPermit,
    /// A verdict to wait for before the first target: on a no-go, none
    /// is taken.
    hold: Option<Arc<Verdict>>,
}

impl Worker {
    async fn run(mut self) {
        if let Some(verdict) = self.hold.take() {
            let go = tokio::select! {
                _ = self.stop.cancelled() => false,
                go = verdict.go() => go,
            };
            if !go {
                // The lease the canary's worker promised: none comes.
                drop(self.leased.take());
                return;
            }
        }
        // One browser (one portal session) for its resets, given back while
        // it waits for resolution to bring more.
        let mut browser: Option<Lease> = None;
        let mut replacement: Option<Target> = None;
        while !self.stop.is_cancelled() {
            let next = match replacement.take() {
                Some(target) => Some(target),
                None => self.next(&mut browser).await,
            };
            let Some(target) = next else {
                return;
            };
            if self.stop.is_cancelled() {
                let _ = self
                    .results
                    .send((self.role, Attempt::NotTried(target, 0)))
                    .await;
                return;
            }
            if browser.is_none() {
                browser = self.portal.lease(Priority::Reset).await.ok();
                if let Some(leased) = self.leased.take() {
                    let _ = leased.send(());
                }
            }
            let attempt = match browser.as_mut() {
                Some(b) => {
                    let before = b.reset_requests();
                    let tries = reset_one(b, &target, self.max_tries, &self.permit).await;
                    let requests = b.reset_requests() - before;
                    match tries {
                        Tries::Interrupted => Attempt::NotTried(target, requests),
                        Tries::AlreadyReset(accountcode) => Attempt::AlreadyReset {
                            target,
                            accountcode,
                            requests,
                        },
                        Tries::Done(confirmations, result) => Attempt::Tried {
                            target,
                            confirmations,
                            requests,
                            session: b.confirmed_in(),
                            result,
                        },
                    }
                }
                None => Attempt::Tried {
                    target,
                    confirmations: 0,
                    requests: 0,
                    session: 0,
                    result: Err(Failure {
                        reason: "cannot start an HTTP client".into(),
                        stops_the_run: Some(StopReason::Portal {
                            why: "cannot start an HTTP client".into(),
                            remedy: None,
                        }),
                        remedy: None,
                    }),
                },
            };
            let failed = matches!(&attempt, Attempt::Tried { result: Err(_), .. });
            if let Attempt::Tried {
                result: Err(failure),
                ..
            } = &attempt
                && (failure.stops_the_run.is_some()
                    || self.failures.fetch_add(1, Ordering::SeqCst) + 1 >= self.max_failures)
            {
                self.stop.cancel();
            }
            // A canary that failed: the canaries after it are not reset,
            // unless it failed before its Confirmer and another licence
            // can take its place (its row is then one of the others').
            let canary_failed = failed && self.role == Role::Canary;
            if canary_failed
                && let Attempt::Tried {
                    confirmations: 0,
                    result: Err(Failure {
                        stops_the_run: None,
                        ..
                    }),
                    ..
                } = &attempt
                && !self.stop.is_cancelled()
                && self.replacements > 0
                // (A worker waiting there for more holds it: none to take.)
                && let Some(next) = self
                    .spare
                    .as_ref()
                    .and_then(|spare| spare.try_lock().ok()?.try_recv().ok())
            {
                self.replacements -= 1;
                replacement = Some(next);
                if self.results.send((Role::After, attempt)).await.is_err() {
                    return;
                }
                continue;
            }
            if self.results.send((self.role, attempt)).await.is_err() || canary_failed {
                return;
            }
        }
    }

    /// The next target; `None` once the queue is closed and empty, or the run stops.
    async fn next(&self, browser: &mut Option<Lease>) -> Option<Target> {
        if let Ok(mut queue) = self.queue.try_lock() {
            match queue.try_recv() {
                Ok(target) => return Some(target),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
        }
        // Nothing to reset yet: the session goes back meanwhile, for
        // resolution to use.
        *browser = None;
        let mut queue = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return None,
            queue = self.queue.lock() => queue,
        };
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => None,
            target = queue.recv() => target,
        }
    }
}

/// What the tries at one licence came to.
enum Tries {
    /// The confirmations sent, and the result.
    Done(u32, Result<NewPassword, Failure>),
    /// The stop cut it short before any `Confirmer`.
    Interrupted,
    /// An earlier run reset this phone (its account code).
    AlreadyReset(String),
}

/// Resets one licence, again after an unknown outcome, up to `max_tries`
/// confirmations.
async fn reset_one(
    browser: &mut Browser,
    target: &Target,
    max_tries: u32,
    permit: &CommitPermit,
) -> Tries {
    let mut confirmations = 0;
    let mut last_unknown = String::new();
    while confirmations < max_tries {
        match browser
            .reset(
                &target.licence,
                &target.licence.sda,
                &target.already,
                permit,
            )
            .await
        {
            Ok(password) => {
                let sent_now = u32::from(!password.earlier);
                return Tries::Done(confirmations + sent_now, Ok(password));
            }
            Err(ResetError::AlreadyReset { accountcode }) => {
                return Tries::AlreadyReset(accountcode);
            }
            Err(ResetError::Unknown { reason, next }) => {
                confirmations += 1;
                let what_to_do = match next {
                    AfterUnknown::ResetAgain => {
                        if confirmations < max_tries {
                            // Not yet reset again: a page on the way may still
                            // show this reset's password, which is then read.
                            tracing::warn!(licence = %target.licence.licence, "{reason}: outcome unknown, taken again");
                        }
                        last_unknown = reason;
                        continue;
                    }
                    AfterUnknown::StopRun => "find out why the portal leads elsewhere",
                    AfterUnknown::GiveUp => "check the portal's pages (see the labels)",
                    AfterUnknown::Abandoned => {
                        "its answer was abandoned (the run's report retries it with --input)"
                    }
                };
                let failure = Failure {
                    stops_the_run: (next == AfterUnknown::StopRun).then(|| StopReason::Portal {
                        why: reason.clone(),
                        remedy: None,
                    }),
                    remedy: None,
                    reason: format!(
                        "{reason}: the password may have changed and is unknown; {what_to_do}, then reset this licence again"
                    ),
                };
                return Tries::Done(confirmations, Err(failure));
            }
            Err(ResetError::NotDone(PortalError::Transport(TransportError::Interrupted))) => {
                if confirmations == 0 {
                    return Tries::Interrupted;
                }
                let failure = Failure {
                    reason: format!(
                        "interrupted before resetting again ({last_unknown}): the password may have changed and is unknown; reset this licence again"
                    ),
                    stops_the_run: None,
                    remedy: None,
                };
                return Tries::Done(confirmations, Err(failure));
            }
            Err(ResetError::NotDone(e)) => {
                let stops_the_run = e.is_fatal().then(|| super::stop_reason_of(&e));
                let failure = Failure {
                    reason: e.to_string(),
                    stops_the_run,
                    remedy: e.remedy(),
                };
                return Tries::Done(confirmations, Err(failure));
            }
        }
    }
    let reason = format!(
        "Confirmer sent {max_tries} time{} without a password shown ({last_unknown}): the password may have changed; reset this licence again",
        if max_tries == 1 { "" } else { "s" }
    );
    Tries::Done(
        confirmations,
        Err(Failure {
            reason,
            stops_the_run: None,
            remedy: None,
        }),
    )
}
