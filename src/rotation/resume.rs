//! What earlier runs already reset, and is not reset again: the phones an
//! interrupted run journaled (`--resume`: its journal names them in clear),
//! and the `reset` rows of a report given as input (a retry).

use super::resolve::Target;
use super::{Earlier, EarlierPart, HeldIn};
use crate::input::LeftOut;
use crate::report::{Origin, ReportRow, Status};
use crate::vault::JournalContents;
use std::collections::HashMap;
use std::path::PathBuf;

/// A phone as a users table shows it: client, service, licence, number and
/// name. A portal may show one reference for two phones, so the reference
/// alone would not do; two phones may even look the same in every column
/// (then their account codes, on their detail pages, tell them apart).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PhoneKey(String, String, String, String, String);

impl PhoneKey {
    fn new(client_ref: &str, service_ref: &str, licence: &str, sda: &str, name: &str) -> PhoneKey {
        PhoneKey(
            client_ref.into(),
            service_ref.into(),
            licence.into(),
            crate::phone::canonical(sda),
            name.into(),
        )
    }

    /// The key a report row gives (a report names no user).
    fn without_name(&self) -> PhoneKey {
        PhoneKey(
            self.0.clone(),
            self.1.clone(),
            self.2.clone(),
            self.3.clone(),
            String::new(),
        )
    }

    fn of(target: &Target) -> PhoneKey {
        PhoneKey::new(
            &target.client_ref,
            &target.service_ref,
            &target.licence.licence,
            &target.licence.sda,
            &target.licence.name,
        )
    }
}

/// What earlier runs say is done.
pub(super) struct Resumed {
    journal: Option<PathBuf>,
    /// Phones in the journal, with the account code of each entry.
    done: HashMap<PhoneKey, Vec<String>>,
    /// Phones the report given as input says were reset: its line, and
    /// the account code when the earlier run read it.
    in_report: HashMap<PhoneKey, Vec<(u64, String)>>,
    earlier: Option<Earlier>,
    /// The journal's passwords, decrypted (`--resume -i`): written into
    /// the result when the run completes.
    earlier_rows: Option<Vec<crate::vault::EarlierRow>>,
    /// The reports of the runs that stopped: the report of the run that
    /// finishes the rotation takes their place.
    earlier_reports: Vec<crate::vault::ReportNote>,
}

impl Resumed {
    /// Not resuming: nothing is done yet.
    pub fn none() -> Resumed {
        Resumed {
            journal: None,
            done: HashMap::new(),
            in_report: HashMap::new(),
            earlier: None,
            earlier_rows: None,
            earlier_reports: Vec::new(),
        }
    }

    /// Adds the `reset` rows of a report given as input. A report names no
    /// user: its rows match on client, service, licence and number.
    pub fn with_report(mut self, left_out: &[LeftOut]) -> Resumed {
        for row in left_out
            .iter()
            .filter(|r| r.status == crate::input::Reported::Reset)
        {
            let key = PhoneKey::new(
                &row.client_ref,
                &row.service_ref,
                &row.licence,
                &row.sda,
                "",
            );
            self.in_report
                .entry(key)
                .or_default()
                .push((row.line, row.accountcode.clone()));
        }
        self
    }

    pub fn from_journal(
        path: PathBuf,
        contents: JournalContents,
        earlier_rows: Option<Vec<crate::vault::EarlierRow>>,
    ) -> Resumed {
        let mut done: HashMap<PhoneKey, Vec<String>> = HashMap::new();
        for m in &contents.entries {
            let key = PhoneKey::new(&m.client_ref, &m.service_ref, &m.licence, &m.sda, &m.name);
            done.entry(key).or_default().push(m.accountcode.clone());
        }
        Resumed {
            journal: Some(path),
            done,
            in_report: HashMap::new(),
            earlier_rows,
            earlier_reports: contents.reports.clone(),
            earlier: Some(Earlier {
                in_journal: contents.entries.len(),
                by_client: contents
                    .entries
                    .iter()
                    .fold(Default::default(), |mut n, m| {
                        *n.entry(m.client_ref.clone()).or_default() += 1;
                        n
                    }),
                per_client: false,
                parts: {
                    let mut names = std::collections::HashSet::new();
                    contents
                        .parts
                        .into_iter()
                        .map(|p| EarlierPart {
                            intact: names.insert(p.file.clone()) && p.is_intact(),
                            held: HeldIn {
                                path: p.file,
                                passwords: p.passwords,
                            },
                        })
                        .collect()
                },
            }),
        }
    }

    /// The reports of the runs that stopped.
    pub fn earlier_reports(&self) -> &[crate::vault::ReportNote] {
        &self.earlier_reports
    }

    /// The earlier runs' rows, when the journal was read.
    pub fn earlier_rows(&self) -> Option<&[crate::vault::EarlierRow]> {
        self.earlier_rows.as_deref()
    }

    pub fn is_resuming(&self) -> bool {
        self.journal.is_some()
    }

    pub fn earlier(&self) -> Option<Earlier> {
        self.earlier.clone()
    }

    /// The targets to reset, of one client or more: those an earlier run
    /// reset get their report row instead. Where phones look the same in
    /// every column and the journal holds some of them but not all, each is
    /// reset only if its detail page shows an account code the journal does
    /// not (`Target::already`): never the wrong one, and none left out.
    pub fn keep_all(&mut self, targets: Vec<Target>, report: &mut Vec<ReportRow>) -> Vec<Target> {
        // Nothing done earlier: every target stays, and no copy of each is
        // made (at 20,000 licences the maps and the second list doubled
        // the run's memory).
        if self.done.is_empty() && self.in_report.is_empty() {
            return targets;
        }
        // How many targets look like each phone an earlier run reset.
        let mut alike: HashMap<PhoneKey, usize> = HashMap::new();
        let mut alike_in_report: HashMap<PhoneKey, usize> = HashMap::new();
        for t in &targets {
            let key = PhoneKey::of(t);
            let report_key = key.without_name();
            if self.in_report.contains_key(&report_key) {
                *alike_in_report.entry(report_key).or_default() += 1;
            }
            if self.done.contains_key(&key) {
                *alike.entry(key).or_default() += 1;
            }
        }
        let mut kept = Vec::new();
        for mut target in targets {
            let key = PhoneKey::of(&target);
            let report_key = key.without_name();
            // The report given as input.
            if let Some(entries) = self
                .in_report
                .get_mut(&report_key)
                .filter(|e| !e.is_empty())
            {
                let count = alike_in_report[&report_key];
                if count > entries.len() {
                    // Some of these look-alike phones were reset, not all.
                    if entries.iter().any(|(_, code)| code.is_empty()) {
                        report.push(target.report(
                            Status::Unresolved,
                            format!(
                                "{count} phones look like this one and the input report says {} of them were reset, without telling which: reset them by hand",
                                entries.len()
                            ),
                            0,
                            0,
                        ));
                        continue;
                    }
                    target
                        .already
                        .extend(entries.iter().map(|(_, code)| code.clone()));
                } else {
                    let (line, code) = entries.pop().expect("not empty");
                    *alike_in_report.get_mut(&report_key).expect("counted") -= 1;
                    let detail =
                        format!("reset by the earlier run (line {line} of the input report)");
                    let mut row = target.report(Status::Reset, detail, 0, 0);
                    row.accountcode = code;
                    row.origin = Origin::EarlierRun;
                    report.push(row);
                    continue;
                }
            }
            // The journal of the run resumed.
            let Some(codes) = self.done.get(&key).filter(|c| !c.is_empty()) else {
                kept.push(target);
                continue;
            };
            if alike[&key] > codes.len() {
                // Some of these phones were reset, not all: ask each one's page.
                target.already.extend(codes.iter().cloned());
                kept.push(target);
                continue;
            }
            let code = self
                .done
                .get_mut(&key)
                .and_then(|c| c.pop())
                .unwrap_or_default();
            *alike.get_mut(&key).expect("counted") -= 1;
            let journal = self.journal.as_ref().expect("resuming");
            let detail = earlier_detail(&journal.display().to_string(), &code);
            let mut row = target.report(Status::Reset, detail, 0, 0);
            row.accountcode = code;
            row.origin = Origin::EarlierRun;
            report.push(row);
        }
        kept
    }

    /// Rows of a run stopped before it got to them (`skipped`) whose
    /// licence the journal resumed holds: said reset by the earlier run,
    /// where their password is. Matched by client and licence reference,
    /// the rows not resolved included: a resume stopped while resolving
    /// reported every row skipped, and its report took the place of the
    /// one that said which phones the earlier run had reset (found by a
    /// helper).
    ///
    /// A row for all of a client's licences (`*`) stays skipped for those
    /// the earlier run did not reach, beside a row of its own for each one
    /// it reset.
    pub fn earlier_of_skipped(&mut self, rows: &mut Vec<ReportRow>) {
        let Some(journal) = self.journal.as_ref().map(|j| j.display().to_string()) else {
            return;
        };
        if self.done.is_empty() {
            return;
        }
        // The journal's phones by client, and by client and licence: each
        // row looks once (a stop at 20,000 licences, each row searching
        // the whole journal, would be 400 million comparisons).
        let mut by_client: HashMap<String, Vec<PhoneKey>> = HashMap::new();
        let mut by_licence: HashMap<(String, String), Vec<PhoneKey>> = HashMap::new();
        for key in self.done.keys() {
            by_client
                .entry(key.0.clone())
                .or_default()
                .push(key.clone());
            by_licence
                .entry((key.0.clone(), key.2.clone()))
                .or_default()
                .push(key.clone());
        }
        let skipped = |r: &ReportRow| r.status == Status::Skipped && r.origin == Origin::ThisRun;
        let said_reset = |row: &mut ReportRow, code: String| {
            row.status = Status::Reset;
            row.detail = earlier_detail(&journal, &code);
            row.accountcode = code;
            row.origin = Origin::EarlierRun;
        };
        let every = crate::input::LicenceSelector::All.to_string();
        let mut of_all = Vec::new();
        for row in rows.iter().filter(|r| skipped(r) && r.licence == every) {
            for key in by_client.get(&row.client_ref).into_iter().flatten() {
                for code in self
                    .done
                    .get_mut(key)
                    .map(std::mem::take)
                    .unwrap_or_default()
                {
                    let mut earlier = row.clone();
                    earlier.service_ref = key.1.clone();
                    earlier.licence = key.2.clone();
                    earlier.sda = key.3.clone();
                    said_reset(&mut earlier, code);
                    of_all.push(earlier);
                }
            }
        }
        rows.extend(of_all);
        for row in rows.iter_mut().filter(|r| skipped(r)) {
            let code = by_licence
                .get(&(row.client_ref.clone(), row.licence.clone()))
                .into_iter()
                .flatten()
                .find_map(|key| self.done.get_mut(key)?.pop());
            if let Some(code) = code {
                said_reset(row, code);
            }
        }
    }
}

/// The report's word on a row an earlier run reset: where its password
/// is, and the phone's account code when known.
pub(super) fn earlier_detail(held_in: &str, accountcode: &str) -> String {
    if accountcode.is_empty() {
        format!("reset by an earlier run: password in {held_in}")
    } else {
        format!("reset by an earlier run: password in {held_in} (account code {accountcode})")
    }
}
