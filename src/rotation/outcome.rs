//! What a run did, typed: each licence's fate, why it stopped, which
//! files hold which passwords, counted from what was written.

use super::*;

/// Why a run stopped before it went through every licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C or SIGTERM, in the phase named.
    Interrupted(Phase),
    /// The question before the resets was answered no.
    NotConfirmed,
    /// Rows did not resolve, and the rule is all or nothing.
    Unresolved {
        rows: usize,
    },
    LoginRefused,
    /// The canary resets failed.
    Canary {
        canaries: usize,
        /// Its `Confirmer` was sent: its phone may be cut off, and the
        /// report (which names it) is no report of a run that reset nothing.
        confirmed: bool,
    },
    MaxFailures {
        failed: usize,
        limit: usize,
    },
    /// No further request made sense: a session that kept ending, a portal
    /// that leads outside its origin, no HTTP client; with what would fix
    /// it, where its cause says.
    Portal {
        why: String,
        remedy: Option<crate::portal::Remedy>,
    },
    /// The journal or the output could not take the new passwords.
    WriteFailed(String),
    /// A page showed a new password where none was expected: a phone may
    /// be cut off, whether or not a `Confirmer` was sent.
    PasswordShown(String),
}

/// Where a run was when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Login,
    Resolution,
    Question,
    Resets,
}

impl StopReason {
    /// What would fix it, where its cause says.
    pub fn remedy(&self) -> Option<crate::portal::Remedy> {
        match self {
            StopReason::Portal { remedy, .. } => *remedy,
            _ => None,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Interrupted(phase) => write!(
                f,
                "interrupted {}",
                match phase {
                    Phase::Login => "while logging in",
                    Phase::Resolution => "while resolving the licences",
                    Phase::Question => "at the question",
                    Phase::Resets => "during the resets",
                }
            ),
            StopReason::NotConfirmed => f.write_str("not confirmed"),
            StopReason::Unresolved { rows } => write!(
                f,
                "{rows} row{} did not resolve",
                if *rows > 1 { "s" } else { "" }
            ),
            StopReason::LoginRefused => f.write_str(
                "the portal refused the login: check the login, the password and the profile",
            ),
            StopReason::Canary { canaries, .. } => write!(
                f,
                "the canary reset{} failed: nothing else was reset",
                if *canaries > 1 { "s" } else { "" }
            ),
            StopReason::MaxFailures { failed, limit } => {
                let noun = if *failed == 1 { "licence" } else { "licences" };
                write!(f, "{failed} {noun} failed (the limit is {limit})")
            }
            StopReason::Portal { why, .. } => f.write_str(why),
            StopReason::WriteFailed(why) => write!(f, "cannot write the new passwords: {why}"),
            StopReason::PasswordShown(why) => f.write_str(why),
        }
    }
}

/// A file that holds new passwords, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldIn {
    pub path: PathBuf,
    pub passwords: usize,
}

/// What became of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalFate {
    /// No journal holds anything of this run: none was made (stopped
    /// before), or the one made stayed empty (a refused login, nothing to
    /// reset) and was removed.
    NotCreated,
    /// Every password it held is in the complete result file: removed.
    Removed,
    Kept {
        path: PathBuf,
        /// Complete entries in it, earlier runs' included.
        entries: usize,
        /// Entries this run wrote.
        this_run: usize,
        because: KeptBecause,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptBecause {
    /// The run stopped: `--resume` finishes it.
    Stopped,
    /// It holds passwords of earlier runs that the result file does not.
    EarlierRuns,
    /// It does not match the result file on disk.
    Mismatch(String),
    RemovalFailed(String),
}

/// Where the new passwords are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwords {
    /// The complete result files (one, or one per client), when the run
    /// went to its end.
    pub result: Vec<HeldIn>,
    /// This run's passwords when it stopped (`OUTPUT.partN`, per file).
    pub part: Vec<HeldIn>,
    pub journal: JournalFate,
    /// Reset by this run but written nowhere (both writes failed).
    pub lost: usize,
    /// Resumed: what earlier runs left.
    pub earlier: Option<Earlier>,
    /// Passwords that neither the journal nor a result file could take
    /// (a full disk): their encrypted entries, for the caller to show.
    pub stranded: Option<Stranded>,
}

impl Passwords {
    /// Passwords earlier runs left that this run's result does not hold
    /// (they stay in their parts or their journal): what a resumed run
    /// must still say, and what keeps its exit from saying "nothing cut off".
    pub fn earlier_waiting(&self) -> Option<&Earlier> {
        self.earlier.as_ref().filter(|e| e.in_journal > 0)
    }
}

/// Encrypted journal entries that no file could take: shown to the
/// operator, who saves them; `sip-rotate decrypt` reads them as a journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stranded {
    pub count: usize,
    /// Of them, those that no file took at all (neither the journal nor
    /// the result stream): shown even if a part file is written.
    pub in_no_file: usize,
    /// Journal text: clear mark lines and armored age blocks, no secret.
    pub journal_text: String,
}

/// The passwords of earlier runs, for a resumed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    /// Complete entries the journal held when this run began.
    pub in_journal: usize,
    /// Of those, how many of each client (the journal names the phone of
    /// each entry in clear): with one file per client, the passwords each
    /// client's file lacks.
    pub by_client: std::collections::BTreeMap<String, usize>,
    /// Whether the run writes one file per client.
    pub per_client: bool,
    /// Part files the earlier runs wrote, as the journal records them.
    pub parts: Vec<EarlierPart>,
}

/// A part file an earlier run wrote, as its journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierPart {
    pub held: HeldIn,
    /// Whether the file at its name is still the one written, byte for
    /// byte (the digest the journal records), and named once: a part
    /// deleted or replaced since holds nothing anyone may rely on.
    pub intact: bool,
}

impl Earlier {
    /// Entries of runs that ended without a word (killed): a run that
    /// stopped wrote its passwords to a part file, which the journal
    /// records, and counted them in its metrics; the others were never
    /// counted.
    pub fn never_counted(&self) -> usize {
        let in_parts: usize = self.parts.iter().map(|p| p.held.passwords).sum();
        self.in_journal.saturating_sub(in_parts)
    }
}

/// A failure after the resets that hides nothing: the passwords are where
/// `Passwords` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LateProblem {
    Report {
        path: PathBuf,
        why: String,
    },
    /// The journal holds the same passwords as the result, but stays: the
    /// next run will not start until it is moved away.
    JournalNotRemoved {
        path: PathBuf,
        why: String,
    },
}

/// What the same command does when run again after a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRerun {
    /// It would start afresh: `--resume` is to be added.
    #[default]
    StartsAfresh,
    /// It resumes (`--resume`, `--resume=auto`, `resume` in the config
    /// file) without an identity: only `-i` is to be added.
    Resumes,
    /// It resumes with an identity: run again as it is.
    ResumesWithIdentity,
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One row per licence (or per input line that did not resolve), in input order.
    pub rows: Vec<ReportRow>,
    /// `None` when the run went through every licence.
    pub stopped: Option<StopReason>,
    /// Whether any licence was handed to the resets.
    pub resets_began: bool,
    /// `Confirmer` requests sent.
    pub confirmations: u64,
    pub passwords: Passwords,
    /// The report written, if one was asked for and could be.
    pub report: Option<PathBuf>,
    pub problems: Vec<LateProblem>,
    /// The reports of the stopped runs this run's took the place of: removed.
    pub replaced_reports: Vec<PathBuf>,
    /// What the same command does when run again: the advice to finish
    /// a stopped rotation names what to add, and nothing it has already.
    pub on_rerun: OnRerun,
    pub requests: Requests,
    pub elapsed: Duration,
    /// When the input was a report of an earlier run: the rows not retried.
    pub left_out: LeftOutCounts,
}

/// The rows of an input report that a retry leaves out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeftOutCounts {
    /// Whether the input was a report of an earlier run at all.
    pub from_report: bool,
    /// Reset by the earlier run.
    pub reset: usize,
    /// Covered by another row.
    pub duplicate: usize,
}

impl LeftOutCounts {
    pub(super) fn of(left_out: &[LeftOut], from_report: bool) -> LeftOutCounts {
        LeftOutCounts {
            from_report,
            reset: left_out
                .iter()
                .filter(|r| r.status == Reported::Reset)
                .count(),
            duplicate: left_out
                .iter()
                .filter(|r| r.status == Reported::Duplicate)
                .count(),
        }
    }
}

impl Outcome {
    pub fn count(&self, status: Status) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }

    /// Whether no phone of the rotation was cut off: no `Confirmer` sent by
    /// this run, and none by an earlier run it resumes (whose passwords
    /// wait in the journal, or went into this run's result).
    pub fn no_phone_cut_off(&self) -> bool {
        self.confirmations == 0
            && self.passwords.earlier_waiting().is_none()
            && !self
                .rows
                .iter()
                .any(|r| r.origin == crate::report::Origin::EarlierRun && r.status == Status::Reset)
    }
}
