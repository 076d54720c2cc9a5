//! After the rotation: which phones are back. A reset cuts a phone off
//! until someone reconfigures it with its new password; the portal's users
//! table shows, in its `État` column, whether each phone is registered.
//! `status` (this module is its library half) reads it for the licences of an input (or the ones a report says
//! were reset), once or round after round until all are back.

use crate::dialect::{Dialect, FormulaCells, push_row};
use crate::events::{Event, Interruption, Observer};
use crate::input::{self, InputRow, LicenceSelector};
use crate::portal::Requests;
use crate::portal::{LicenceRow, Portal, Registration, ServiceRow};
use crate::report::{self, ReportRow, Status};
use crate::rotation::RotationError;
use crate::rotation::resolve::{self, Target};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What `status` reads, and how long it follows.
#[derive(Debug, Clone)]
pub struct FollowSettings {
    /// An input CSV, or a report of a run (whose `reset` rows are followed).
    pub input: PathBuf,
    /// Read again this often, until every phone is back.
    pub watch: Option<Duration>,
    /// Stop following this long after the start.
    pub until: Option<Duration>,
    /// Where each phone's last État goes (`status --report`), and whether
    /// an earlier status report there may be replaced.
    pub report: Option<(PathBuf, bool)>,
}

/// The status report's place, checked before the first request: hours of
/// watching must not end on a file that cannot be written.
fn check_files(settings: &FollowSettings) -> Result<(), RotationError> {
    let Some((report, replace)) = &settings.report else {
        return Ok(());
    };
    crate::files::check_replaceable(report, *replace, is_report).map_err(
        |problem| match problem {
            crate::files::PathProblem::NotOurs(path) => RotationError::NotAStatusReport(path),
            problem => RotationError::Path {
                role: crate::rotation::FileRole::Report,
                problem,
            },
        },
    )?;
    if crate::files::identity_of(report) == crate::files::identity_of(&settings.input) {
        return Err(RotationError::SameFile {
            a: crate::rotation::FileRole::Report,
            b: crate::rotation::FileRole::Input,
            path: report.clone(),
        });
    }
    Ok(())
}

/// One phone, as the last round saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneState {
    pub client_ref: String,
    pub service_ref: String,
    pub licence: String,
    pub sda: String,
    pub name: String,
    /// The portal's text, verbatim (empty: the table has no `État`).
    pub state: String,
    pub registration: Registration,
}

impl PhoneState {
    /// Back: registered again. Any other word, or none, is not back.
    pub fn connected(&self) -> bool {
        self.registration == Registration::Connected
    }
}

/// What one round read.
#[derive(Debug, Clone)]
pub struct Round {
    pub number: usize,
    pub phones: Vec<PhoneState>,
}

impl Round {
    pub fn back(&self) -> usize {
        self.phones.iter().filter(|p| p.connected()).count()
    }
}

/// Rounds in a row that may fail to be read before following stops: a
/// blip during hours of watching is not worth stopping for, a portal that
/// no longer answers is.
const FAILED_ROUNDS_TOLERATED: usize = 3;

/// Why following stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every phone is back.
    AllBack,
    /// One round only (no `watch`), and some are still down.
    OneRound,
    /// `until` passed with some still down.
    Until,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Several rounds in a row could not be read: the states shown are the
    /// last round read whole, no fresher.
    PortalFailing { error: String },
}

/// What `status` found.
#[derive(Debug, Clone)]
pub struct StatusOutcome {
    pub last: Round,
    /// Input rows that did not resolve to a phone.
    pub unresolved: Vec<ReportRow>,
    pub ended: Ended,
    pub requests: Requests,
    pub elapsed: Duration,
}

/// The rows to follow: a report's `reset` rows and its `failed` rows whose
/// `Confirmer` was sent (the reset may have happened), or an input's rows.
fn rows_of(input: input::Input) -> Vec<InputRow> {
    let input::InputKind::Report {
        left_out,
        maybe_cut_off,
    } = input.kind
    else {
        return input.rows;
    };
    let mut rows: Vec<_> = left_out
        .into_iter()
        .filter(|r| r.status == input::Reported::Reset)
        .chain(maybe_cut_off)
        .collect();
    rows.sort_by_key(|r| r.line);
    rows.into_iter()
        .map(|r| InputRow {
            line: r.line,
            client_ref: r.client_ref,
            service_ref: Some(r.service_ref).filter(|s| !s.is_empty()),
            licence: LicenceSelector::One(r.licence),
            sda: Some(r.sda).filter(|s| !s.is_empty()),
        })
        .collect()
}

fn state_of(t: &Target, row: &LicenceRow, portal: &Portal) -> PhoneState {
    PhoneState {
        client_ref: t.client_ref.clone(),
        service_ref: t.service_ref.clone(),
        licence: row.licence.clone(),
        sda: row.sda.clone(),
        name: row.name.clone(),
        state: row.state.clone(),
        registration: row.registration(portal.labels()),
    }
}

/// Follows the phones of `settings.input`; `on_round` hears each round.
pub async fn follow(
    settings: &FollowSettings,
    portal: Portal,
    observer: &dyn Observer,
    interruption: &Interruption,
    on_round: &mut dyn FnMut(&Round),
) -> Result<StatusOutcome, RotationError> {
    let started = Instant::now();
    check_files(settings)?;
    let rows = rows_of(input::read(&settings.input)?);
    if rows.is_empty() {
        return Err(RotationError::NothingToFollow(settings.input.clone()));
    }
    let portal = Arc::new(portal);
    let stop = &interruption.stop;
    let finish =
        |last: Round, unresolved: Vec<ReportRow>, ended: Ended, portal: &Portal| StatusOutcome {
            last,
            unresolved,
            ended,
            requests: Requests::of(portal.stats()),
            elapsed: started.elapsed(),
        };
    let empty = Round {
        number: 0,
        phones: Vec::new(),
    };
    if let Err(e) = portal.connect(rows.len()).await {
        if stop.is_cancelled() {
            return Ok(finish(empty, Vec::new(), Ended::Interrupted, &portal));
        }
        return Err(RotationError::Portal(e));
    }
    observer.event(Event::LoggedIn);
    // The first round finds the phones: one search per client.
    let resolution = match resolve::resolve(&portal, &rows, stop, observer).await {
        Ok(r) => r,
        Err(e) => return Err(RotationError::Portal(e)),
    };
    if stop.is_cancelled() {
        return Ok(finish(
            empty,
            resolution.rejected,
            Ended::Interrupted,
            &portal,
        ));
    }
    let unresolved: Vec<ReportRow> = resolution
        .rejected
        .into_iter()
        .filter(|r| r.status != Status::Duplicate)
        .collect();
    let targets = resolution.targets;
    let mut round = Round {
        number: 1,
        phones: targets
            .iter()
            .map(|t| state_of(t, &t.licence, &portal))
            .collect(),
    };
    // No phone with an État: the table has no such column (or the labels
    // word it otherwise); following would report every phone down forever.
    if !round.phones.is_empty()
        && round
            .phones
            .iter()
            .all(|p| p.registration == Registration::NotShown)
    {
        return Err(RotationError::NoStateColumn {
            label: portal.labels().column_state.clone(),
        });
    }
    on_round(&round);
    let mut failed_rounds = 0;
    loop {
        let all_back = round.back() == round.phones.len();
        let ended = if all_back {
            Some(Ended::AllBack)
        } else if settings.watch.is_none() {
            Some(Ended::OneRound)
        } else if settings.until.is_some_and(|u| started.elapsed() >= u) {
            Some(Ended::Until)
        } else {
            None
        };
        if let Some(ended) = ended {
            return Ok(finish(round, unresolved, ended, &portal));
        }
        let pause = settings.watch.expect("watching");
        let pause = match settings.until {
            Some(until) => pause.min(until.saturating_sub(started.elapsed())),
            None => pause,
        };
        tokio::select! {
            _ = stop.cancelled() => return Ok(finish(round, unresolved, Ended::Interrupted, &portal)),
            _ = tokio::time::sleep(pause) => {}
        }
        // Later rounds: one walk of each users table.
        let read = read_again(&portal, &targets, observer).await;
        if stop.is_cancelled() {
            return Ok(finish(round, unresolved, Ended::Interrupted, &portal));
        }
        match read {
            Ok(phones) => {
                failed_rounds = 0;
                round = Round {
                    number: round.number + 1,
                    phones,
                };
                on_round(&round);
            }
            Err(error) => {
                failed_rounds += 1;
                tracing::warn!(
                    "round {} could not be read: {error}",
                    round.number + failed_rounds
                );
                if failed_rounds >= FAILED_ROUNDS_TOLERATED {
                    let ended = Ended::PortalFailing { error };
                    return Ok(finish(round, unresolved, ended, &portal));
                }
            }
        }
    }
}

/// Reads the users table of every service of `targets` once; the phones
/// in the targets' order, or why the round could not be read whole.
async fn read_again(
    portal: &Arc<Portal>,
    targets: &[Target],
    observer: &dyn Observer,
) -> Result<Vec<PhoneState>, String> {
    // Each service once, in the targets' order.
    let mut seen = std::collections::HashSet::new();
    let services: Vec<ServiceRow> = targets
        .iter()
        .filter(|t| seen.insert(t.service.service_ref.as_str()))
        .map(|t| t.service.clone())
        .collect();
    let total = services.len();
    let mut walks = JoinSet::new();
    for service in services {
        let portal = portal.clone();
        walks.spawn(async move {
            let rows = match portal.lease(crate::portal::Priority::Resolve).await {
                Ok(mut b) => b
                    .licences_of(&service)
                    .await
                    .map_err(|e| format!("users table of {}: {e}", service.service_ref)),
                Err(e) => Err(e.to_string()),
            };
            (service.service_ref, rows)
        });
    }
    let mut tables: HashMap<String, Vec<LicenceRow>> = HashMap::new();
    while let Some(joined) = walks.join_next().await {
        let (service, rows) = joined.map_err(|e| e.to_string())?;
        tables.insert(service, rows?);
        observer.event(Event::Resolving(crate::events::ResolveProgress {
            services: total,
            services_read: tables.len(),
            pages: portal.stats().requests(crate::portal::Purpose::Resolve),
            ..Default::default()
        }));
    }
    // Each target to its row: licence, number and name; look-alikes in
    // the order the table shows them.
    let mut used: HashMap<String, Vec<bool>> = HashMap::new();
    let mut phones = Vec::new();
    for t in targets {
        let table = &tables[&t.service.service_ref];
        let taken = used
            .entry(t.service.service_ref.clone())
            .or_insert_with(|| vec![false; table.len()]);
        let found = table.iter().enumerate().position(|(i, row)| {
            !taken[i]
                && row.licence == t.licence.licence
                && crate::phone::same_number(&row.sda, &t.licence.sda)
                && row.name == t.licence.name
        });
        match found {
            Some(i) => {
                taken[i] = true;
                phones.push(state_of(t, &table[i], portal));
            }
            // Gone from its table: shown as the portal no longer shows it.
            None => phones.push(PhoneState {
                state: "not in the users table any more".into(),
                registration: Registration::Other(String::new()),
                ..state_of(t, &t.licence, portal)
            }),
        }
    }
    Ok(phones)
}

/// The columns of `status --report`.
pub const REPORT_HEADER: [&str; 6] = [
    "client_ref",
    "service_ref",
    "licence",
    "sda",
    "name",
    "state",
];

/// Writes what `status` saw of each phone (`status --report`), as a run
/// writes its report.
pub fn write_report(
    path: &Path,
    phones: &[PhoneState],
    replace: bool,
    dialect: Dialect,
) -> std::io::Result<PathBuf> {
    if replace && path.exists() && !report::first_line_starts(path, &REPORT_HEADER) {
        return Err(std::io::Error::other(format!(
            "{} is not a status report: only one is ever replaced",
            path.display()
        )));
    }
    let mut text = dialect.preamble().to_vec();
    push_row(&mut text, &REPORT_HEADER, dialect, FormulaCells::AsText);
    for p in phones {
        push_row(
            &mut text,
            &[
                &p.client_ref,
                &p.service_ref,
                &p.licence,
                &p.sda,
                &p.name,
                &p.state,
            ],
            dialect,
            FormulaCells::AsText,
        );
    }
    report::write_whole(path, &text, replace)
}

/// Whether `path` is a status report `status --report` wrote.
pub fn is_report(path: &Path) -> bool {
    report::first_line_starts(path, &REPORT_HEADER)
}
