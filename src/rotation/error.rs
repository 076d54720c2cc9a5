//! Refusals known before the portal is asked anything: then no request
//! was sent. They describe; the command line adds what to do.

use super::*;

/// The files a run writes or reads, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRole {
    Output,
    Journal,
    Report,
    Lock,
    Metrics,
    Input,
    Read(String),
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileRole::Output => f.write_str("the output"),
            FileRole::Journal => f.write_str("the journal"),
            FileRole::Report => f.write_str("the report"),
            FileRole::Lock => f.write_str("the lock"),
            FileRole::Metrics => f.write_str("the metrics file"),
            FileRole::Input => f.write_str("the input"),
            FileRole::Read(what) => write!(f, "the {what}"),
        }
    }
}

/// A rotation refused before any portal request.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("{role}: {problem}")]
    Path {
        role: FileRole,
        problem: PathProblem,
    },
    #[error("{a} and {b} are one file: {}", path.display())]
    SameFile {
        a: FileRole,
        b: FileRole,
        path: PathBuf,
    },
    #[error("the report {} has the name of a part file the run may write (OUTPUT.partN)", .0.display())]
    PartName(PathBuf),
    #[error("{} is not a sip-rotate report: only a report is ever replaced", .0.display())]
    NotAReport(PathBuf),
    #[error("{} is not a status report: only a status report is ever replaced", .0.display())]
    NotAStatusReport(PathBuf),
    #[error("{} exists: an earlier run did not finish, and its new passwords are in that journal", .0.display())]
    JournalExists(PathBuf),
    /// The journal of a rotation that finished, kept because only it holds
    /// some of its passwords: nothing to resume, but in the way.
    #[error("{} exists: it holds passwords of a finished rotation that no other file holds", .0.display())]
    FinishedJournalExists(PathBuf),
    #[error("there is no journal {} to resume from", .0.display())]
    NoJournal(PathBuf),
    #[error(
        "the run {} began was also asked to reset {} that this input leaves out: {}{}",
        journal.display(),
        if missing.len() == 1 { "a row".to_string() } else { format!("{} rows", missing.len()) },
        missing.iter().take(5).map(|r| format!("'{r}'")).collect::<Vec<_>>().join(", "),
        if missing.len() > 5 { ", ..." } else { "" }
    )]
    InputLeavesOut {
        journal: PathBuf,
        missing: Vec<crate::vault::AskedRow>,
    },
    #[error(
        "the journal {} is encrypted to {}; this run's recipients are another set ({})",
        path.display(), journal.join(", "), run.join(", ")
    )]
    RecipientsDiffer {
        path: PathBuf,
        journal: Vec<String>,
        run: Vec<String>,
    },
    /// The portal could not be read (`status`, which changes nothing).
    #[error(transparent)]
    Portal(#[from] crate::portal::PortalError),
    /// The users tables have no column of the phones' registration: which
    /// phones are back cannot be told, and following would say none is.
    #[error(
        "the users tables show no '{label}' column: which phones are registered cannot be told"
    )]
    NoStateColumn { label: String },
    /// `status` over a report without a `reset` row, or an empty input.
    #[error("{} names no phone to follow (a report's reset rows, or an input's rows)", .0.display())]
    NothingToFollow(PathBuf),
    #[error("no recipient for client{} {}: each client's file is encrypted to its own recipients too", if .0.len() > 1 { "s" } else { "" }, .0.join(", "))]
    ClientWithoutRecipient(Vec<String>),
    #[error("{} does not say which recipients it is encrypted to: it is not a journal this version can finish", .0.display())]
    JournalWithoutRecipients(PathBuf),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl RotationError {
    /// Whether the refusal is about the metrics file itself: then that
    /// file must stay as it is, rather than record the refused run.
    pub fn concerns_the_metrics_file(&self) -> bool {
        match self {
            RotationError::Metrics(_) => true,
            RotationError::SameFile { a, b, .. } => {
                *a == FileRole::Metrics || *b == FileRole::Metrics
            }
            _ => false,
        }
    }
}
