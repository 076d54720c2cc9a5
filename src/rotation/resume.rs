//! What earlier runs already reset, and is not reset again: the phones an
//! interrupted run journaled (`--resume`: its journal names them in clear),
//! and the `reset` rows of a report given as input (a retry).

use super::resolve::Target;
use super::{Earlier, HeldIn};
use crate::input::LeftOut;
use crate::report::{ReportRow, Status};
use crate::vault::JournalContents;
use std::collections::HashMap;
use std::path::PathBuf;

/// A phone as the journal names it: client, service, licence and number.
/// A portal may show one reference for two phones, so the reference alone
/// would not do.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PhoneKey(String, String, String, String);

impl PhoneKey {
    fn new(client_ref: &str, service_ref: &str, licence: &str, sda: &str) -> PhoneKey {
        PhoneKey(
            client_ref.into(),
            service_ref.into(),
            licence.into(),
            crate::phone::canonical(sda),
        )
    }
}

/// What earlier runs say is done.
pub(super) struct Resumed {
    journal: Option<PathBuf>,
    /// Phones in the journal, and how many entries each has: two phones may
    /// show one reference and one number, and each entry stands for one.
    done: HashMap<PhoneKey, usize>,
    /// Phones the report given as input says were reset, with its line.
    in_report: HashMap<PhoneKey, Vec<u64>>,
    earlier: Option<Earlier>,
}

impl Resumed {
    /// Not resuming: nothing is done yet.
    pub fn none() -> Resumed {
        Resumed {
            journal: None,
            done: HashMap::new(),
            in_report: HashMap::new(),
            earlier: None,
        }
    }

    /// Adds the `reset` rows of a report given as input.
    pub fn with_report(mut self, left_out: &[LeftOut]) -> Resumed {
        for row in left_out.iter().filter(|r| r.status == "reset") {
            let key = PhoneKey::new(&row.client_ref, &row.service_ref, &row.licence, &row.sda);
            self.in_report.entry(key).or_default().push(row.line);
        }
        self
    }

    pub fn from_journal(path: PathBuf, contents: JournalContents) -> Resumed {
        let mut done = HashMap::new();
        for m in &contents.entries {
            let key = PhoneKey::new(&m.client_ref, &m.service_ref, &m.licence, &m.sda);
            *done.entry(key).or_default() += 1;
        }
        Resumed {
            journal: Some(path),
            done,
            in_report: HashMap::new(),
            earlier: Some(Earlier {
                in_journal: contents.entries.len(),
                parts: contents
                    .parts
                    .into_iter()
                    .map(|p| HeldIn {
                        path: p.file,
                        passwords: p.passwords,
                    })
                    .collect(),
            }),
        }
    }

    pub fn is_resuming(&self) -> bool {
        self.journal.is_some()
    }

    pub fn earlier(&self) -> Option<Earlier> {
        self.earlier.clone()
    }

    /// `Some(target)` to reset it; `None`, with its report row, if an
    /// earlier run did.
    pub fn keep(&mut self, target: Target, report: &mut Vec<ReportRow>) -> Option<Target> {
        let key = PhoneKey::new(
            &target.client_ref,
            &target.service_ref,
            &target.licence.licence,
            &target.licence.sda,
        );
        if let Some(lines) = self.in_report.get_mut(&key)
            && let Some(line) = lines.pop()
        {
            let detail = format!("reset by the earlier run (line {line} of the input report)");
            report.push(target.report(Status::Duplicate, detail, 0, 0));
            return None;
        }
        match self.done.get_mut(&key) {
            Some(n) if *n > 0 => *n -= 1,
            _ => return Some(target),
        }
        let journal = self.journal.as_ref().expect("resuming");
        let detail = format!("reset by an earlier run: password in {}", journal.display());
        report.push(target.report(Status::Reset, detail, 0, 0));
        None
    }
}
