//! The first phase: every input row to phones of the portal, exactly. One
//! search per client, one users-table walk per service; the client
//! reference, the service reference and the licence must match to the
//! letter, and one reference shown for two phones is never settled silently.
//!
//! Each client's targets are handed over as soon as the last of its users
//! tables is read, so that resets can start while other clients resolve.

use super::{Event, Observer, ResolveProgress};
use crate::input::{InputRow, LicenceSelector};
use crate::phone;
use crate::portal::{LicenceRow, Portal, PortalError, Priority, ServiceRow, TransportError};
use crate::report::{Origin, ReportRow, Status};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A licence to reset, and the input line that asked for it.
#[derive(Debug, Clone)]
pub struct Target {
    pub line: u64,
    pub client_ref: String,
    pub service_ref: String,
    pub licence: LicenceRow,
    /// Account codes of phones an earlier run reset that look the same as
    /// this one: its detail page tells whether it is one of them.
    pub already: Vec<String>,
    /// Its service, whose users table shows it.
    pub service: ServiceRow,
}

/// The outcome of the first phase.
pub struct Resolution {
    pub targets: Vec<Target>,
    /// Rows that will not be reset: unresolved or duplicate.
    pub rejected: Vec<ReportRow>,
}

impl Resolution {
    /// Rows left unread because the run stopped.
    pub fn skipped(&self) -> usize {
        self.rejected
            .iter()
            .filter(|r| r.status == Status::Skipped)
            .count()
    }

    /// The report rows when the run stops after resolution: the targets
    /// skipped for `why`, then the rejected rows.
    pub fn rows_when_stopped(&self, why: &impl std::fmt::Display) -> Vec<ReportRow> {
        let mut rows: Vec<ReportRow> = self
            .targets
            .iter()
            .map(|t| t.report(Status::Skipped, format!("not reset: {why}"), 0, 0))
            .collect();
        rows.extend(self.rejected.iter().cloned());
        rows
    }

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
            sda: self.licence.sda.clone(),
            state: self.licence.state.clone(),
            accountcode: String::new(),
            status,
            detail,
            confirmations,
            requests,
            session: None,
            origin: Origin::ThisRun,
            remedy: None,
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
pub(super) async fn resolve_each(
    portal: &Arc<Portal>,
    rows: &[InputRow],
    stop: &CancellationToken,
    observer: &dyn Observer,
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
    let mut progress = ResolveProgress {
        clients: clients.len(),
        ..ResolveProgress::default()
    };
    observer.event(Event::Resolving(progress));
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
        let found_now = joined.expect("resolve task panicked");
        match &found_now {
            Found::Services(_, Ok(services)) => {
                progress.clients_read += 1;
                progress.services += services.len();
            }
            Found::Services(..) => progress.clients_read += 1,
            Found::Licences(..) => progress.services_read += 1,
        }
        progress.pages = portal.stats().requests(crate::portal::Purpose::Resolve);
        observer.event(Event::Resolving(progress));
        let (client, complete) = match found_now {
            // Cut short by the stop: the loop ends at its next turn.
            Found::Services(_, Err(e)) | Found::Licences(_, _, Err(e)) if interrupted(&e) => {
                continue;
            }
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

fn interrupted(e: &PortalError) -> bool {
    matches!(e, PortalError::Transport(TransportError::Interrupted))
}

/// First phase, whole: every row to exact licences of the portal, in input
/// order. Stopped early, the rows not read are `skipped`.
pub(crate) async fn resolve(
    portal: &Arc<Portal>,
    rows: &[InputRow],
    stop: &CancellationToken,
    observer: &dyn Observer,
) -> Result<Resolution, PortalError> {
    let mut resolution = Resolution {
        targets: Vec::new(),
        rejected: Vec::new(),
    };
    resolve_each(portal, rows, stop, observer, |client| {
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
pub(super) fn rejected_row(
    row: &InputRow,
    status: Status,
    licence: &str,
    detail: String,
) -> ReportRow {
    ReportRow {
        line: row.line,
        client_ref: row.client_ref.clone(),
        service_ref: row.service_ref.clone().unwrap_or_default(),
        licence: licence.to_string(),
        sda: row.sda.clone().unwrap_or_default(),
        state: String::new(),
        accountcode: String::new(),
        status,
        detail,
        confirmations: 0,
        requests: 0,
        session: None,
        origin: Origin::ThisRun,
        remedy: None,
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
                let mut row = reject(Status::Unresolved, &wanted, format!("portal error: {e}"));
                row.remedy = e.remedy();
                rejected.push(row);
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
                                    "SDA {sda} of the input is not the portal's '{}' for {}{}",
                                    l.sda,
                                    l.licence,
                                    if phone::lost_leading_zero(sda, &l.sda) {
                                        ": its leading 0 is missing, as when a spreadsheet reads the column as numbers (format the sda column as text, then save the CSV again)"
                                    } else {
                                        ""
                                    }
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
                        let what_to_do = if row.sda.is_some() && row.service_ref.is_some() {
                            "they look the same: reset them all with '*', or by hand"
                        } else {
                            "add the service_ref or sda column to pick one"
                        };
                        rejected.push(reject(
                            Status::Unresolved,
                            wanted,
                            format!(
                                "ambiguous: licence {wanted} is shown for {n} phones ({}); {what_to_do}",
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
                already: Vec::new(),
                service: (*service).clone(),
            });
        }
    }
    ClientResolution { targets, rejected }
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
            state: "Connecté".into(),
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
