//! What a run is asked to do, merged and checked by the command line:
//! the library never reads a flag.

use super::*;

/// Limits that stop a run going wrong before it cuts off many phones.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Licences reset first, alone; the rest only if they all succeed.
    pub canary: usize,
    /// Failed licences after which the run stops.
    pub max_failures: usize,
    /// `Confirmer` requests per licence while the answer is lost.
    pub max_resets: u32,
}

/// The report file: created new, or replacing an earlier report.
#[derive(Debug, Clone)]
pub struct ReportFile {
    pub path: PathBuf,
    pub replace: bool,
    pub dialect: crate::dialect::Dialect,
}

impl ReportFile {
    /// Whether the report at its name may be replaced: when asked, or when
    /// the one there records no reset (looked at each time), so that the
    /// rerun its advice calls for (--skip-unresolved, --yes) is not blocked.
    pub(super) fn may_replace(&self) -> bool {
        self.replace || report::records_no_reset(&self.path)
    }
}

/// What a rotation does, merged and checked by the caller.
pub struct Settings {
    pub input: PathBuf,
    /// The result file; with `{client}` in its name, one file per client.
    pub output: PathBuf,
    /// Each client's own recipients (public keys), for one file per client;
    /// `None`: not given, the run's recipients read every file.
    pub client_recipients: Option<std::collections::HashMap<String, Vec<String>>>,
    pub report: Option<ReportFile>,
    /// The run lock (see `lock_name`).
    pub lock: PathBuf,
    /// The portal account, one run at a time on the machine (see `account_key`).
    pub account: String,
    /// What this command does when run again (see `OnRerun`).
    pub on_rerun: super::OnRerun,
    pub recipients: Recipients,
    /// Files the run only reads (recipients, labels, password, settings),
    /// each with what it is: no file the run writes may be one of them.
    pub read_files: Vec<(String, PathBuf)>,
    pub limits: Limits,
    /// Sessions at most (the portal client's concurrency).
    pub workers: usize,
    /// Reset the rows that resolve even if others do not.
    pub skip_unresolved: bool,
    /// Continue from the journal of an earlier run of this output.
    pub resume: bool,
    /// Identities that open that journal: the resumed run's result then
    /// holds the earlier runs' passwords too, and the parts and the journal
    /// go (none: they stay beside it).
    pub resume_identities: Vec<PathBuf>,
    /// Ask the observer before the first reset.
    pub confirm: bool,
    /// The metrics file the caller writes after the run: checked here with
    /// the others, so that it never takes the place of one of them.
    pub metrics: Option<PathBuf>,
}

/// How the two phases meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// The whole resolution first: the question needs it.
    OneAfterTheOther,
    /// Resets start as soon as a client is resolved. Under the
    /// all-or-nothing rule (no `--skip-unresolved`), no `Confirmer` is
    /// pressed before the whole resolution is in and every row resolved:
    /// the canary walks up to it meanwhile.
    Overlapped,
}

impl Settings {
    pub fn phases(&self) -> Schedule {
        if self.confirm {
            Schedule::OneAfterTheOther
        } else {
            Schedule::Overlapped
        }
    }
}
