//! A run in two phases. First every input row is resolved to licences of the
//! portal (one search per client, one users table walk per service), exactly:
//! the client reference, the service reference and the licence must match
//! to the letter. Then the resets run on a pool of workers under the
//! transport's rate limit; their results flow over a channel to one
//! collector, which journals each new password (fsync) before counting it.

use crate::input::{InputRow, LicenceSelector};
use crate::phone;
use crate::portal::{Browser, LicenceRow, Portal, PortalError, ResetError, ServiceRow};
use crate::report::{ReportRow, Status};
use crate::vault::{Journal, Output, Recipients, ResetRecord};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

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

type ClientServices = Result<Vec<(ServiceRow, Vec<LicenceRow>)>, PortalError>;

/// A finished piece of the first phase.
enum Found {
    Services(String, Result<Vec<ServiceRow>, PortalError>),
    Licences(String, usize, Result<Vec<LicenceRow>, PortalError>),
}

/// Reads every client's MetaCentrex services and their licences. A client's
/// users tables are walked as soon as its search is done, so that no
/// session waits for the slowest search.
async fn fetch_clients(
    portal: &Arc<Portal>,
    clients: Vec<String>,
) -> Result<HashMap<String, ClientServices>, PortalError> {
    let mut tasks = JoinSet::new();
    for client in clients {
        let portal = portal.clone();
        tasks.spawn(async move {
            let found = match portal.lease().await {
                Ok(mut browser) => browser.services_of(&client).await,
                Err(e) => Err(e),
            };
            Found::Services(client, found)
        });
    }
    let mut services_of: HashMap<String, Result<Vec<ServiceRow>, PortalError>> = HashMap::new();
    let mut licences_of: HashMap<(String, usize), Result<Vec<LicenceRow>, PortalError>> =
        HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("resolve task panicked") {
            Found::Services(client, found) => {
                match &found {
                    Err(e) if e.is_fatal() => return Err(found.unwrap_err()),
                    Err(_) => {}
                    Ok(services) => {
                        for (i, service) in services.iter().enumerate() {
                            let (portal, client, service) =
                                (portal.clone(), client.clone(), service.clone());
                            tasks.spawn(async move {
                                let licences = match portal.lease().await {
                                    Ok(mut browser) => browser.licences_of(&service).await,
                                    Err(e) => Err(e),
                                };
                                Found::Licences(client, i, licences)
                            });
                        }
                    }
                }
                services_of.insert(client, found);
            }
            Found::Licences(client, i, licences) => {
                if let Err(e) = &licences
                    && e.is_fatal()
                {
                    return Err(licences.unwrap_err());
                }
                licences_of.insert((client, i), licences);
            }
        }
    }
    Ok(services_of
        .into_iter()
        .map(|(client, found)| {
            let services = found.and_then(|services| {
                services
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let licences = licences_of
                            .remove(&(client.clone(), i))
                            .expect("every service was walked")?;
                        Ok((s, licences))
                    })
                    .collect()
            });
            (client, services)
        })
        .collect())
}

/// First phase: every row to exact licences of the portal.
pub async fn resolve(portal: &Arc<Portal>, rows: &[InputRow]) -> Result<Resolution, PortalError> {
    let mut clients: Vec<String> = rows.iter().map(|r| r.client_ref.clone()).collect();
    clients.sort();
    clients.dedup();
    let found = fetch_clients(portal, clients).await?;

    let mut targets: Vec<Target> = Vec::new();
    let mut rejected = Vec::new();
    let mut requested_on: HashMap<String, u64> = HashMap::new();
    for row in rows {
        let reject = |status: Status, licence: &str, detail: String| ReportRow {
            line: row.line,
            client_ref: row.client_ref.clone(),
            service_ref: row.service_ref.clone().unwrap_or_default(),
            licence: licence.to_string(),
            status,
            detail,
            confirmations: 0,
            requests: 0,
        };
        let wanted = row.licence.to_string();
        let services = match &found[&row.client_ref] {
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
        let matches: Vec<(&ServiceRow, &LicenceRow)> = in_scope
            .iter()
            .flat_map(|(s, ls)| ls.iter().map(move |l| (s, l)))
            .filter(|(_, l)| match &row.licence {
                LicenceSelector::All => true,
                LicenceSelector::One(wanted) => l.licence == *wanted,
            })
            .collect();
        let total: usize = in_scope.iter().map(|(_, ls)| ls.len()).sum();
        match (&row.licence, matches.len()) {
            (LicenceSelector::One(l), 0) => {
                rejected.push(reject(
                    Status::Unresolved,
                    l,
                    format!(
                        "licence {l} is not among the {total} licences of client {}",
                        row.client_ref
                    ),
                ));
                continue;
            }
            (LicenceSelector::One(l), n) if n > 1 => {
                rejected.push(reject(
                    Status::Unresolved,
                    l,
                    format!("licence {l} appears in {n} services: add the service_ref column"),
                ));
                continue;
            }
            (LicenceSelector::All, 0) => {
                rejected.push(reject(
                    Status::Unresolved,
                    "*",
                    format!("client {} has no licence", row.client_ref),
                ));
                continue;
            }
            _ => {}
        }
        if let (Some(sda), [(_, l)]) = (&row.sda, matches.as_slice())
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
        for (service, licence) in matches {
            if let Some(first) = requested_on.get(&licence.licence) {
                rejected.push(reject(
                    Status::Duplicate,
                    &licence.licence,
                    format!("already requested on line {first}"),
                ));
                continue;
            }
            requested_on.insert(licence.licence.clone(), row.line);
            targets.push(Target {
                line: row.line,
                client_ref: service.client_ref.clone(),
                service_ref: service.service_ref.clone(),
                licence: licence.clone(),
            });
        }
    }
    Ok(Resolution { targets, rejected })
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

/// How the second phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every target was tried.
    Complete,
    /// Stopped by the canary, `--max-failures`, a signal or a fatal error.
    Stopped,
}

/// What became of one licence, sent by a worker to the collector.
struct Outcome {
    target: usize,
    /// `Confirmer` requests sent.
    confirmations: u32,
    /// Portal requests the licence took.
    requests: u64,
    result: Result<crate::portal::NewPassword, Failure>,
}

struct Failure {
    reason: String,
    /// No further request makes sense (login refused).
    fatal: bool,
}

/// Second phase: resets every target; returns the report rows and how it ended.
pub async fn reset_all(
    portal: &Arc<Portal>,
    targets: Vec<Target>,
    settings: &ResetSettings,
    sink: &mut Sink<'_>,
    stop: Arc<AtomicBool>,
) -> (Vec<ReportRow>, Ending, Option<String>) {
    let targets = Arc::new(targets);
    let mut rows = Vec::new();
    let canary = settings.canary.min(targets.len());
    let batches = [
        (0..canary).collect::<VecDeque<usize>>(),
        (canary..targets.len()).collect(),
    ];
    // Counted by the workers, so that the stop comes before the next licence
    // is taken, not when the collector catches up.
    let failures = Arc::new(AtomicUsize::new(0));
    let mut why_stopped = None;
    for (b, batch) in batches.into_iter().enumerate() {
        if batch.is_empty() {
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let queue = Arc::new(Mutex::new(batch));
        let (tx, mut rx) = mpsc::channel::<Outcome>(64);
        let workers = if b == 0 { 1 } else { settings.workers.max(1) };
        let mut pool = JoinSet::new();
        for _ in 0..workers {
            let (portal, targets, queue, tx, stop, failures) = (
                portal.clone(),
                targets.clone(),
                queue.clone(),
                tx.clone(),
                stop.clone(),
                failures.clone(),
            );
            let (max_tries, max_failures) = (settings.max_tries, settings.max_failures);
            pool.spawn(async move {
                // Each worker keeps one browser (one portal session) for all its resets.
                let mut browser = None;
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Some(i) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    if browser.is_none() {
                        browser = portal.lease().await.ok();
                    }
                    let outcome = match browser.as_mut() {
                        Some(b) => {
                            let before = b.requests();
                            let (confirmations, result) =
                                reset_one(b, &targets[i], max_tries).await;
                            Outcome {
                                target: i,
                                confirmations,
                                requests: b.requests() - before,
                                result,
                            }
                        }
                        None => Outcome {
                            target: i,
                            confirmations: 0,
                            requests: 0,
                            result: Err(Failure {
                                reason: "cannot start an HTTP client".into(),
                                fatal: true,
                            }),
                        },
                    };
                    if let Err(failure) = &outcome.result
                        && (failure.fatal
                            || failures.fetch_add(1, Ordering::SeqCst) + 1 >= max_failures)
                    {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if tx.send(outcome).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut batch_failed = false;
        while let Some(Outcome {
            target,
            confirmations,
            requests,
            result,
        }) = rx.recv().await
        {
            let t = &targets[target];
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
                        stop.store(true, Ordering::SeqCst);
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
        if b == 0 && batch_failed && !stop.load(Ordering::SeqCst) {
            why_stopped = Some(format!(
                "the canary reset{} failed: nothing else was reset",
                if canary > 1 { "s" } else { "" }
            ));
            stop.store(true, Ordering::SeqCst);
        }
    }
    let tried: std::collections::HashSet<(u64, String)> =
        rows.iter().map(|r| (r.line, r.licence.clone())).collect();
    let mut ending = Ending::Complete;
    for t in targets.iter() {
        if !tried.contains(&(t.line, t.licence.licence.clone())) {
            ending = Ending::Stopped;
            rows.push(t.report(Status::Skipped, "not tried: the run stopped".into(), 0, 0));
        }
    }
    if why_stopped.is_some() {
        ending = Ending::Stopped;
    }
    (rows, ending, why_stopped)
}

/// Resets one licence, again after an unknown outcome, up to `max_tries`
/// confirmations; returns the confirmations sent and the result.
async fn reset_one(
    browser: &mut Browser,
    target: &Target,
    max_tries: u32,
) -> (u32, Result<crate::portal::NewPassword, Failure>) {
    let mut confirmations = 0;
    let mut last_unknown = String::new();
    while confirmations < max_tries {
        match browser.reset(&target.licence, &target.licence.sda).await {
            Ok(password) => return (confirmations + 1, Ok(password)),
            Err(ResetError::Unknown { reason, again }) => {
                confirmations += 1;
                if !again {
                    let reason = format!(
                        "{reason}: the password may have changed and is unknown; check the portal's pages (see --labels), then reset this licence again"
                    );
                    return (
                        confirmations,
                        Err(Failure {
                            reason,
                            fatal: false,
                        }),
                    );
                }
                tracing::warn!(licence = %target.licence.licence, "{reason}: resetting again");
                last_unknown = reason;
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
