//! A run in two phases. First every input row is resolved to licences of the
//! portal (one search per client, one users table walk per service), exactly:
//! the client reference, the service reference and the licence must match
//! to the letter. Then the resets run on a pool of workers under the
//! transport's rate limit; their results flow over a channel to one
//! collector, which journals each new password (fsync) before counting it.
//!
//! The phases meet at a queue of targets. When the whole resolution must be
//! known first (the all-or-nothing check, a question to answer), the queue is
//! filled and closed before the resets start; otherwise resolution feeds it
//! client by client while the workers reset, and a lease pool that serves
//! resets first keeps every session busy.

use crate::input::{InputRow, LicenceSelector};
use crate::phone;
use crate::portal::{
    AfterUnknown, Browser, Lease, LicenceRow, NewPassword, Portal, PortalError, Priority,
    ResetError, ServiceRow,
};
use crate::report::{ReportRow, Status};
use crate::vault::{Journal, Output, Recipients, ResetRecord};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A licence to reset, and the input line that asked for it.
#[derive(Debug, Clone)]
pub struct Target {
    pub line: u64,
    pub client_ref: String,
    pub service_ref: String,
    pub licence: LicenceRow,
}

/// The outcome of the first phase.
pub struct Resolution {
    pub targets: Vec<Target>,
    /// Rows that will not be reset: unresolved or duplicate.
    pub rejected: Vec<ReportRow>,
}

impl Resolution {
    pub fn unresolved(&self) -> impl Iterator<Item = &ReportRow> {
        self.rejected
            .iter()
            .filter(|r| r.status == Status::Unresolved)
    }

    /// The report rows of a plan: targets as planned, then the rejected rows.
    pub fn plan_rows(&self) -> Vec<ReportRow> {
        let mut rows: Vec<ReportRow> = self
            .targets
            .iter()
            .map(|t| {
                t.report(
                    Status::Planned,
                    format!("{} {}", t.licence.licence_type, t.licence.sda)
                        .trim()
                        .to_string(),
                    0,
                    0,
                )
            })
            .collect();
        rows.extend(self.rejected.iter().cloned());
        rows
    }
}

impl Target {
    /// This licence's row of the report.
    pub fn report(
        &self,
        status: Status,
        detail: String,
        confirmations: u32,
        requests: u64,
    ) -> ReportRow {
        ReportRow {
            line: self.line,
            client_ref: self.client_ref.clone(),
            service_ref: self.service_ref.clone(),
            licence: self.licence.licence.clone(),
            status,
            detail,
            confirmations,
            requests,
        }
    }
}

/// What tells one phone from another within a run: its service and its row
/// in that service's users table. Not the licence reference alone: a portal
/// may show one reference for two phones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PhoneId {
    service_ref: String,
    row: usize,
}

type ClientServices = Result<Vec<(ServiceRow, Vec<LicenceRow>)>, PortalError>;

/// A finished piece of the first phase.
enum Found {
    Services(String, Result<Vec<ServiceRow>, PortalError>),
    Licences(String, usize, Result<Vec<LicenceRow>, PortalError>),
}

/// What is known of one client while its pages are read.
struct Pending<'r> {
    rows: Vec<&'r InputRow>,
    services: Vec<ServiceRow>,
    licences: Vec<Option<Result<Vec<LicenceRow>, PortalError>>>,
    /// Users tables still being walked.
    walks: usize,
}

/// One client fully read: the licences its rows ask for, and the rows that
/// will not be reset.
pub struct ClientResolution {
    pub targets: Vec<Target>,
    pub rejected: Vec<ReportRow>,
}

/// First phase, one client at a time: `found` gets each client's targets as
/// soon as the last of its users tables is read, while other clients still
/// resolve. A client's users tables are walked as soon as its search is done,
/// so that no session waits for the slowest search.
///
/// A licence belongs to one client, so exact matching and duplicates are
/// settled per client; rows are matched in input order. Once `stop` is
/// cancelled, the reads in flight are dropped (they only read) and the rows
/// of clients not fully read are reported as skipped.
pub async fn resolve_each(
    portal: &Arc<Portal>,
    rows: &[InputRow],
    stop: &CancellationToken,
    mut found: impl FnMut(ClientResolution),
) -> Result<(), PortalError> {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    for row in rows {
        pending
            .entry(row.client_ref.clone())
            .or_insert_with(|| Pending {
                rows: Vec::new(),
                services: Vec::new(),
                licences: Vec::new(),
                walks: 0,
            })
            .rows
            .push(row);
    }
    let mut clients: Vec<String> = pending.keys().cloned().collect();
    clients.sort();
    let mut tasks = JoinSet::new();
    for client in clients {
        let portal = portal.clone();
        tasks.spawn(async move {
            let found = match portal.lease(Priority::Resolve).await {
                Ok(mut browser) => browser.services_of(&client).await,
                Err(e) => Err(e),
            };
            Found::Services(client, found)
        });
    }
    let mut requested_on: HashMap<PhoneId, u64> = HashMap::new();
    loop {
        let joined = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            joined = tasks.join_next() => joined,
        };
        let Some(joined) = joined else { break };
        let (client, complete) = match joined.expect("resolve task panicked") {
            Found::Services(_, Err(e)) if e.is_fatal() => return Err(e),
            Found::Services(client, Err(e)) => (client, Some(Err(e))),
            Found::Services(client, Ok(services)) => {
                for (i, service) in services.iter().enumerate() {
                    let (portal, client, service) =
                        (portal.clone(), client.clone(), service.clone());
                    tasks.spawn(async move {
                        let licences = match portal.lease(Priority::Resolve).await {
                            Ok(mut browser) => browser.licences_of(&service).await,
                            Err(e) => Err(e),
                        };
                        Found::Licences(client, i, licences)
                    });
                }
                let p = pending
                    .get_mut(&client)
                    .expect("searched clients are pending");
                p.walks = services.len();
                p.licences = services.iter().map(|_| None).collect();
                p.services = services;
                let complete = (p.walks == 0).then(|| Ok(Vec::new()));
                (client, complete)
            }
            Found::Licences(_, _, Err(e)) if e.is_fatal() => return Err(e),
            Found::Licences(client, i, licences) => {
                let p = pending
                    .get_mut(&client)
                    .expect("walked clients are pending");
                p.licences[i] = Some(licences);
                p.walks -= 1;
                let complete = (p.walks == 0).then(|| {
                    std::mem::take(&mut p.services)
                        .into_iter()
                        .zip(p.licences.drain(..))
                        .map(|(s, l)| Ok((s, l.expect("every walk has ended")?)))
                        .collect()
                });
                (client, complete)
            }
        };
        if let Some(services) = complete {
            let p = pending.remove(&client).expect("a client completes once");
            found(match_client(&p.rows, &services, &mut requested_on));
        }
    }
    // Stopped: what was not read is not reset. Dropping `tasks` drops the reads in flight.
    let mut rejected: Vec<ReportRow> = pending
        .into_values()
        .flat_map(|p| p.rows)
        .map(|row| {
            rejected_row(
                row,
                Status::Skipped,
                &row.licence.to_string(),
                "not resolved: the run stopped".into(),
            )
        })
        .collect();
    if !rejected.is_empty() {
        rejected.sort_by_key(|r| r.line);
        found(ClientResolution {
            targets: Vec::new(),
            rejected,
        });
    }
    Ok(())
}

/// First phase, whole: every row to exact licences of the portal, in input order.
pub async fn resolve(portal: &Arc<Portal>, rows: &[InputRow]) -> Result<Resolution, PortalError> {
    let mut resolution = Resolution {
        targets: Vec::new(),
        rejected: Vec::new(),
    };
    resolve_each(portal, rows, &CancellationToken::new(), |client| {
        resolution.targets.extend(client.targets);
        resolution.rejected.extend(client.rejected);
    })
    .await?;
    // Stable: a `*` row keeps its licences in the portal's order.
    resolution.targets.sort_by_key(|t| t.line);
    resolution.rejected.sort_by_key(|r| r.line);
    Ok(resolution)
}

/// A report row for an input row that will not be reset.
fn rejected_row(row: &InputRow, status: Status, licence: &str, detail: String) -> ReportRow {
    ReportRow {
        line: row.line,
        client_ref: row.client_ref.clone(),
        service_ref: row.service_ref.clone().unwrap_or_default(),
        licence: licence.to_string(),
        status,
        detail,
        confirmations: 0,
        requests: 0,
    }
}

/// One client's rows, in input order, against its services and licences:
/// exact matches only; a licence asked for twice is reset once.
fn match_client(
    rows: &[&InputRow],
    found: &ClientServices,
    requested_on: &mut HashMap<PhoneId, u64>,
) -> ClientResolution {
    let mut targets = Vec::new();
    let mut rejected = Vec::new();
    for &row in rows {
        let reject = |status: Status, licence: &str, detail: String| {
            rejected_row(row, status, licence, detail)
        };
        let wanted = row.licence.to_string();
        let services = match found {
            Err(e) => {
                rejected.push(reject(
                    Status::Unresolved,
                    &wanted,
                    format!("portal error: {e}"),
                ));
                continue;
            }
            Ok(s) if s.is_empty() => {
                rejected.push(reject(
                    Status::Unresolved,
                    &wanted,
                    format!(
                        "no MetaCentrex service has 'Compte client' exactly {}",
                        row.client_ref
                    ),
                ));
                continue;
            }
            Ok(s) => s,
        };
        let in_scope: Vec<&(ServiceRow, Vec<LicenceRow>)> = services
            .iter()
            .filter(|(s, _)| row.service_ref.as_ref().is_none_or(|r| *r == s.service_ref))
            .collect();
        if in_scope.is_empty() {
            let known: Vec<&str> = services
                .iter()
                .map(|(s, _)| s.service_ref.as_str())
                .collect();
            rejected.push(reject(
                Status::Unresolved,
                &wanted,
                format!(
                    "client {} has no MetaCentrex service {} (it has: {})",
                    row.client_ref,
                    row.service_ref.as_deref().unwrap_or(""),
                    known.join(", ")
                ),
            ));
            continue;
        }
        // Every phone in scope, with what identifies it within the run.
        let phones = in_scope.iter().flat_map(|(s, ls)| {
            ls.iter().enumerate().map(move |(row, l)| {
                let id = PhoneId {
                    service_ref: s.service_ref.clone(),
                    row,
                };
                (id, s, l)
            })
        });
        let total: usize = in_scope.iter().map(|(_, ls)| ls.len()).sum();
        let chosen: Vec<(PhoneId, &ServiceRow, &LicenceRow)> = match &row.licence {
            LicenceSelector::All if total == 0 => {
                rejected.push(reject(
                    Status::Unresolved,
                    "*",
                    format!("client {} has no licence", row.client_ref),
                ));
                continue;
            }
            LicenceSelector::All => phones.collect(),
            LicenceSelector::One(wanted) => {
                let named: Vec<_> = phones.filter(|(_, _, l)| l.licence == *wanted).collect();
                // An SDA given in the input picks one phone among several
                // that show the same reference; for one phone it must agree.
                let picked: Vec<_> = match &row.sda {
                    Some(sda) if named.len() > 1 => named
                        .iter()
                        .filter(|(_, _, l)| phone::same_number(sda, &l.sda))
                        .cloned()
                        .collect(),
                    _ => named.clone(),
                };
                match (picked.len(), named.len()) {
                    (_, 0) => {
                        rejected.push(reject(
                            Status::Unresolved,
                            wanted,
                            format!(
                                "licence {wanted} is not among the {total} licences of client {}",
                                row.client_ref
                            ),
                        ));
                        continue;
                    }
                    (1, _) => {
                        let (_, _, l) = &picked[0];
                        if let Some(sda) = &row.sda
                            && !phone::same_number(sda, &l.sda)
                        {
                            rejected.push(reject(
                                Status::Unresolved,
                                &l.licence,
                                format!(
                                    "SDA {sda} of the input is not the portal's '{}' for {}",
                                    l.sda, l.licence
                                ),
                            ));
                            continue;
                        }
                        picked
                    }
                    (_, n) => {
                        let candidates: Vec<String> = named
                            .iter()
                            .map(|(_, s, l)| {
                                format!(
                                    "service {}, SDA {}, '{}'",
                                    s.service_ref,
                                    if l.sda.is_empty() { "none" } else { &l.sda },
                                    l.name
                                )
                            })
                            .collect();
                        rejected.push(reject(
                            Status::Unresolved,
                            wanted,
                            format!(
                                "ambiguous: licence {wanted} is shown for {n} phones ({}); add the service_ref or sda column to pick one",
                                candidates.join("; ")
                            ),
                        ));
                        continue;
                    }
                }
            }
        };
        for (id, service, licence) in chosen {
            if let Some(first) = requested_on.get(&id) {
                rejected.push(reject(
                    Status::Duplicate,
                    &licence.licence,
                    format!("already requested on line {first}"),
                ));
                continue;
            }
            requested_on.insert(id, row.line);
            targets.push(Target {
                line: row.line,
                client_ref: service.client_ref.clone(),
                service_ref: service.service_ref.clone(),
                licence: licence.clone(),
            });
        }
    }
    ClientResolution { targets, rejected }
}

/// How the second phase behaves.
#[derive(Debug, Clone)]
pub struct ResetSettings {
    pub workers: usize,
    /// Resets made first, alone; the rest only if they all succeed.
    pub canary: usize,
    /// Failed licences after which the run stops.
    pub max_failures: usize,
    /// Resets tried per licence when the outcome of `Confirmer` is unknown.
    pub max_tries: u32,
}

/// Where the passwords go, and who hears about progress.
pub struct Sink<'a> {
    pub recipients: &'a Recipients,
    pub journal: Journal,
    pub output: Output,
    pub on_progress: Box<dyn FnMut(&ReportRow) + 'a>,
}

/// What became of one licence, sent by a worker to the collector.
enum Outcome {
    Tried {
        target: Target,
        /// `Confirmer` requests sent.
        confirmations: u32,
        /// Portal requests the licence took.
        requests: u64,
        result: Result<NewPassword, Failure>,
    },
    /// Taken from the queue just as the run stopped.
    NotTried(Target),
}

struct Failure {
    reason: String,
    /// No further request makes sense (login refused).
    fatal: bool,
}

/// The licences to reset, in the order they were resolved. The sender may
/// still be resolving: resets start with the first target.
pub type Queue = mpsc::UnboundedReceiver<Target>;

/// A queue that holds `targets`, with nothing more to come.
pub fn queue_of(targets: Vec<Target>) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    for target in targets {
        tx.send(target).expect("the receiver is here");
    }
    rx
}

/// Second phase: resets every target of the queue, the canary first;
/// returns the report rows (`skipped` for targets not tried) and why the
/// run stopped early, when the canary, `--max-failures`, a fatal error or a
/// failed write stopped it (a signal gives no reason, only skipped rows).
pub async fn reset_all(
    portal: &Arc<Portal>,
    queue: Queue,
    settings: &ResetSettings,
    sink: &mut Sink<'_>,
    stop: CancellationToken,
) -> (Vec<ReportRow>, Option<String>) {
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    let mut rows = Vec::new();
    // Counted by the workers, so that the stop comes before the next licence
    // is taken, not when the collector catches up.
    let failures = Arc::new(AtomicUsize::new(0));
    let mut why_stopped = None;
    let batches = [(1, Some(settings.canary)), (settings.workers.max(1), None)];
    for (workers, limit) in batches {
        if limit == Some(0) || stop.is_cancelled() {
            continue;
        }
        let (tx, mut rx) = mpsc::channel::<Outcome>(64);
        let mut pool = JoinSet::new();
        for _ in 0..workers {
            let worker = Worker {
                portal: portal.clone(),
                queue: queue.clone(),
                results: tx.clone(),
                stop: stop.clone(),
                failures: failures.clone(),
                limit,
                max_tries: settings.max_tries,
                max_failures: settings.max_failures,
            };
            pool.spawn(worker.run());
        }
        drop(tx);
        let mut batch_failed = false;
        while let Some(outcome) = rx.recv().await {
            let (t, confirmations, requests, result) = match outcome {
                Outcome::NotTried(t) => {
                    rows.push(t.report(Status::Skipped, "not tried: the run stopped".into(), 0, 0));
                    continue;
                }
                Outcome::Tried {
                    target,
                    confirmations,
                    requests,
                    result,
                } => (target, confirmations, requests, result),
            };
            let row = match result {
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
                        reset_at: chrono::Utc::now()
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    };
                    // On disk, encrypted, before it counts as done. The fsync blocks:
                    // let the runtime move the workers' tasks to another thread meanwhile.
                    let journaled = tokio::task::block_in_place(|| {
                        sink.journal.append(sink.recipients, &record)
                    });
                    let added = sink.output.add(&record);
                    // A write that fails stops the run, but never aborts a worker: one
                    // that already sent Confirmer still brings its password back, to
                    // whichever of the two files can still take it.
                    let kept = journaled.is_ok() || added.is_ok();
                    if let Some(e) = journaled.err().or(added.err()) {
                        stop.cancel();
                        if why_stopped.is_none() {
                            why_stopped = Some(format!("cannot write the new passwords: {e}"));
                        }
                    }
                    if kept {
                        t.report(Status::Reset, String::new(), confirmations, requests)
                    } else {
                        let detail = "reset, but its new password could not be written anywhere: reset it again".into();
                        t.report(Status::Failed, detail, confirmations, requests)
                    }
                }
                Err(Failure { reason, fatal }) => {
                    batch_failed = true;
                    let failed = failures.load(Ordering::SeqCst);
                    if fatal {
                        why_stopped = Some(reason.clone());
                    } else if failed >= settings.max_failures && why_stopped.is_none() {
                        why_stopped = Some(format!(
                            "{failed} licences failed (--max-failures {})",
                            settings.max_failures
                        ));
                    }
                    t.report(Status::Failed, reason, confirmations, requests)
                }
            };
            (sink.on_progress)(&row);
            rows.push(row);
        }
        while pool.join_next().await.is_some() {}
        if limit.is_some() && batch_failed && !stop.is_cancelled() {
            why_stopped = Some(format!(
                "the canary reset{} failed: nothing else was reset",
                if settings.canary > 1 { "s" } else { "" }
            ));
            stop.cancel();
        }
    }
    // Resolved but not tried. When the run stopped, resolution stops too and
    // closes the queue soon.
    let mut queue = queue.lock().await;
    while let Some(t) = queue.recv().await {
        rows.push(t.report(Status::Skipped, "not tried: the run stopped".into(), 0, 0));
    }
    (rows, why_stopped)
}

/// One of the workers of a batch: takes targets from the queue until it is
/// empty and closed, the run stops, or its `limit` is reached.
struct Worker {
    portal: Arc<Portal>,
    queue: Arc<tokio::sync::Mutex<Queue>>,
    results: mpsc::Sender<Outcome>,
    stop: CancellationToken,
    failures: Arc<AtomicUsize>,
    limit: Option<usize>,
    max_tries: u32,
    max_failures: usize,
}

impl Worker {
    async fn run(self) {
        // One browser (one portal session) for its resets, given back while
        // it waits for resolution to bring more.
        let mut browser: Option<Lease> = None;
        let mut taken = 0;
        while self.limit.is_none_or(|l| taken < l) && !self.stop.is_cancelled() {
            let Some(target) = self.next(&mut browser).await else {
                return;
            };
            taken += 1;
            if self.stop.is_cancelled() {
                let _ = self.results.send(Outcome::NotTried(target)).await;
                return;
            }
            if browser.is_none() {
                browser = self.portal.lease(Priority::Reset).await.ok();
            }
            let outcome = match browser.as_mut() {
                Some(b) => {
                    let before = b.requests();
                    let (confirmations, result) = reset_one(b, &target, self.max_tries).await;
                    let requests = b.requests() - before;
                    Outcome::Tried {
                        target,
                        confirmations,
                        requests,
                        result,
                    }
                }
                None => Outcome::Tried {
                    target,
                    confirmations: 0,
                    requests: 0,
                    result: Err(Failure {
                        reason: "cannot start an HTTP client".into(),
                        fatal: true,
                    }),
                },
            };
            if let Outcome::Tried {
                result: Err(failure),
                ..
            } = &outcome
                && (failure.fatal
                    || self.failures.fetch_add(1, Ordering::SeqCst) + 1 >= self.max_failures)
            {
                self.stop.cancel();
            }
            if self.results.send(outcome).await.is_err() {
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

/// Resets one licence, again after an unknown outcome, up to `max_tries`
/// confirmations; returns the confirmations sent and the result.
async fn reset_one(
    browser: &mut Browser,
    target: &Target,
    max_tries: u32,
) -> (u32, Result<NewPassword, Failure>) {
    let mut confirmations = 0;
    let mut last_unknown = String::new();
    while confirmations < max_tries {
        match browser.reset(&target.licence, &target.licence.sda).await {
            Ok(password) => return (confirmations + 1, Ok(password)),
            Err(ResetError::Unknown { reason, next }) => {
                confirmations += 1;
                match next {
                    AfterUnknown::ResetAgain => {
                        tracing::warn!(licence = %target.licence.licence, "{reason}: resetting again");
                        last_unknown = reason;
                    }
                    AfterUnknown::GiveUp | AfterUnknown::StopRun => {
                        let what_to_do = match next {
                            AfterUnknown::StopRun => "find out why the portal leads elsewhere",
                            _ => "check the portal's pages (see --labels)",
                        };
                        let reason = format!(
                            "{reason}: the password may have changed and is unknown; {what_to_do}, then reset this licence again"
                        );
                        return (
                            confirmations,
                            Err(Failure {
                                reason,
                                fatal: next == AfterUnknown::StopRun,
                            }),
                        );
                    }
                }
            }
            Err(ResetError::NotDone(e)) => {
                return (
                    confirmations,
                    Err(Failure {
                        reason: e.to_string(),
                        fatal: e.is_fatal(),
                    }),
                );
            }
        }
    }
    let reason = format!(
        "Confirmer sent {max_tries} times without a password shown ({last_unknown}): the password may have changed; reset this licence again"
    );
    (
        confirmations,
        Err(Failure {
            reason,
            fatal: false,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn service(reference: &str, client: &str) -> ServiceRow {
        ServiceRow {
            service_ref: reference.into(),
            client_ref: client.into(),
            page: Url::parse("https://portal.example/s").unwrap(),
        }
    }

    fn phone(licence: &str, sda: &str, name: &str) -> LicenceRow {
        LicenceRow {
            licence: licence.into(),
            licence_type: "Licence simple".into(),
            sda: sda.into(),
            name: name.into(),
            detail: Url::parse("https://portal.example/d").unwrap(),
        }
    }

    fn row(line: u64, licence: &str, service_ref: Option<&str>, sda: Option<&str>) -> InputRow {
        InputRow {
            line,
            client_ref: "4021".into(),
            service_ref: service_ref.map(str::to_string),
            licence: if licence == "*" {
                LicenceSelector::All
            } else {
                LicenceSelector::One(licence.into())
            },
            sda: sda.map(str::to_string),
        }
    }

    /// Client 4021: service SRV1 with FPC1, FPC12 and FPC2 shown twice (two
    /// phones, one reference); service SRV2 with FPC3 and FPC1 again.
    fn portal() -> ClientServices {
        Ok(vec![
            (
                service("SRV1", "4021"),
                vec![
                    phone("FPC1", "01 84 00 00 01", "Accueil"),
                    phone("FPC12", "", "Fax"),
                    phone("FPC2", "01 84 00 00 02", "Atelier"),
                    phone("FPC2", "01 84 00 00 03", "Atelier bis"),
                ],
            ),
            (
                service("SRV2", "4021"),
                vec![
                    phone("FPC3", "01 84 00 00 04", "Bureau"),
                    phone("FPC1", "01 84 00 00 05", "Direction"),
                ],
            ),
        ])
    }

    /// (targets as "service licence sda", rejected as "line status licence detail").
    fn resolve(rows: &[InputRow]) -> (Vec<String>, Vec<String>) {
        let rows: Vec<&InputRow> = rows.iter().collect();
        let found = match_client(&rows, &portal(), &mut HashMap::new());
        (
            found
                .targets
                .iter()
                .map(|t| format!("{} {} {}", t.service_ref, t.licence.licence, t.licence.sda))
                .collect(),
            found
                .rejected
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r.line,
                        r.status.as_str(),
                        r.licence,
                        r.detail
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn rows_match_phones_exactly_or_not_at_all() {
        struct Case {
            what: &'static str,
            rows: Vec<InputRow>,
            targets: &'static [&'static str],
            rejected: &'static [&'static str],
        }
        let cases = [
            Case {
                what: "a reference that is a prefix of another is not that other",
                rows: vec![row(2, "FPC12", None, None)],
                targets: &["SRV1 FPC12 "],
                rejected: &[],
            },
            Case {
                what: "one licence in two services needs its service",
                rows: vec![row(2, "FPC1", None, None)],
                targets: &[],
                rejected: &["2 unresolved FPC1 ambiguous: licence FPC1 is shown for 2 phones"],
            },
            Case {
                what: "service_ref picks the service",
                rows: vec![row(2, "FPC1", Some("SRV2"), None)],
                targets: &["SRV2 FPC1 01 84 00 00 05"],
                rejected: &[],
            },
            Case {
                what: "or the SDA picks the phone",
                rows: vec![row(2, "FPC1", None, Some("+33184000001"))],
                targets: &["SRV1 FPC1 01 84 00 00 01"],
                rejected: &[],
            },
            Case {
                what: "one reference for two phones of one service is ambiguous",
                rows: vec![row(2, "FPC2", Some("SRV1"), None)],
                targets: &[],
                rejected: &[
                    "2 unresolved FPC2 ambiguous: licence FPC2 is shown for 2 phones (service SRV1, SDA 01 84 00 00 02, 'Atelier'; service SRV1, SDA 01 84 00 00 03, 'Atelier bis')",
                ],
            },
            Case {
                what: "an SDA that is neither phone's leaves it ambiguous",
                rows: vec![row(2, "FPC2", None, Some("0184000009"))],
                targets: &[],
                rejected: &["2 unresolved FPC2 ambiguous"],
            },
            Case {
                what: "* takes every phone of every service, twins included",
                rows: vec![row(2, "*", None, None)],
                targets: &[
                    "SRV1 FPC1 01 84 00 00 01",
                    "SRV1 FPC12 ",
                    "SRV1 FPC2 01 84 00 00 02",
                    "SRV1 FPC2 01 84 00 00 03",
                    "SRV2 FPC3 01 84 00 00 04",
                    "SRV2 FPC1 01 84 00 00 05",
                ],
                rejected: &[],
            },
            Case {
                what: "* with a service_ref takes that service only",
                rows: vec![row(2, "*", Some("SRV2"), None)],
                targets: &["SRV2 FPC3 01 84 00 00 04", "SRV2 FPC1 01 84 00 00 05"],
                rejected: &[],
            },
            Case {
                what: "a phone asked for twice is reset once",
                rows: vec![row(2, "FPC3", None, None), row(3, "*", Some("SRV2"), None)],
                targets: &["SRV2 FPC3 01 84 00 00 04", "SRV2 FPC1 01 84 00 00 05"],
                rejected: &["3 duplicate FPC3 already requested on line 2"],
            },
            Case {
                what: "a wrong SDA for the one phone is refused",
                rows: vec![row(2, "FPC3", None, Some("0184000001"))],
                targets: &[],
                rejected: &["2 unresolved FPC3 SDA 0184000001 of the input is not the portal's"],
            },
            Case {
                what: "an unknown licence or service is unresolved",
                rows: vec![row(2, "FPC9", None, None), row(3, "*", Some("SRV9"), None)],
                targets: &[],
                rejected: &[
                    "2 unresolved FPC9 licence FPC9 is not among the 6 licences",
                    "3 unresolved * client 4021 has no MetaCentrex service SRV9 (it has: SRV1, SRV2)",
                ],
            },
        ];
        for case in cases {
            let (targets, rejected) = resolve(&case.rows);
            assert_eq!(targets, case.targets, "{}", case.what);
            assert_eq!(
                rejected.len(),
                case.rejected.len(),
                "{}: {rejected:?}",
                case.what
            );
            for (got, wanted) in rejected.iter().zip(case.rejected) {
                assert!(got.starts_with(wanted), "{}: {got}", case.what);
            }
        }
    }

    #[test]
    fn a_client_the_portal_could_not_read_or_without_service_is_unresolved() {
        let rows = [row(2, "*", None, None)];
        let rows: Vec<&InputRow> = rows.iter().collect();
        let none = match_client(&rows, &Ok(Vec::new()), &mut HashMap::new());
        assert!(none.rejected[0].detail.contains("no MetaCentrex service"));
        let failed = match_client(
            &rows,
            &Err(PortalError::SessionLoop(4)),
            &mut HashMap::new(),
        );
        assert!(failed.rejected[0].detail.starts_with("portal error"));
        assert!(none.targets.is_empty() && failed.targets.is_empty());
    }
}
