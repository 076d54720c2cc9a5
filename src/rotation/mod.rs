//! A rotation as one library call: `rotate` takes settings that are already
//! merged and checked, runs the whole lifecycle (files checked, lock taken,
//! login, resolution, the question, resets, the result file, the journal's
//! fate, the report) and returns a typed `Outcome`: what became of each
//! licence, why the run stopped if it did, and which files hold which
//! passwords, counted from what was written. It prints nothing; progress
//! goes to an `Observer`. `plan` is the same run up to the question.
//!
//! Every refusal that can be known before the portal is asked anything
//! (bad input, a file in the way, a lock held) is a `RotationError`, and
//! then no request was sent.

mod lock;
pub mod outputs;
mod reset;
pub(crate) mod resolve;
mod resume;

pub use lock::{LockError, RunLock, lock_name};
pub use resolve::{Resolution, Target};

use crate::events::{Event, Interruption, Observer, Question, ResolveProgress};
use crate::files::{self, PathProblem};
use crate::input::{self, InputError, InputRow, LeftOut, Reported};
use crate::portal::gate::{Verdict, VerdictState};
use crate::portal::{Portal, PortalError, Requests};
use crate::report::{self, Origin, ReportRow, Status};
use crate::vault::{self, Journal, Recipients, VaultError};
use reset::{Resets, Sink};
use resume::Resumed;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Limits that stop a run going wrong before it cuts off many phones.
#[derive(Debug, Clone)]
pub struct Guard {
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
    fn may_replace(&self) -> bool {
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
    pub recipients: Recipients,
    /// Files the run only reads (recipients, labels, password, settings),
    /// each with what it is: no file the run writes may be one of them.
    pub read_files: Vec<(String, PathBuf)>,
    pub guard: Guard,
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
pub enum Phases {
    /// The whole resolution first: the question needs it.
    OneAfterTheOther,
    /// Resets start as soon as a client is resolved. Under the
    /// all-or-nothing rule (no `--skip-unresolved`), no `Confirmer` is
    /// pressed before the whole resolution is in and every row resolved:
    /// the canary walks up to it meanwhile.
    Overlapped,
}

impl Settings {
    pub fn phases(&self) -> Phases {
        if self.confirm {
            Phases::OneAfterTheOther
        } else {
            Phases::Overlapped
        }
    }
}

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
    #[error("{} exists: an earlier run did not finish, and its new passwords are in that journal", .0.display())]
    JournalExists(PathBuf),
    /// The journal of a rotation that finished, kept because only it holds
    /// some of its passwords: nothing to resume, but in the way.
    #[error("{} exists: it holds passwords of a finished rotation that no other file holds", .0.display())]
    FinishedJournalExists(PathBuf),
    #[error("there is no journal {} to resume from", .0.display())]
    NoJournal(PathBuf),
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
    #[error("{0}")]
    Portal(String),
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

/// Why a run stopped before it went through every licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C or SIGTERM, in the phase named.
    Interrupted(RunPhase),
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
pub enum RunPhase {
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
                    RunPhase::Login => "while logging in",
                    RunPhase::Resolution => "while resolving the licences",
                    RunPhase::Question => "at the question",
                    RunPhase::Resets => "during the resets",
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
            StopReason::Canary { canaries } => write!(
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
    fn of(left_out: &[LeftOut], from_report: bool) -> LeftOutCounts {
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
}

/// Of `targets`, the phones in use now and those nobody can tell.
fn in_use(targets: &[Target], labels: &crate::portal::labels::Labels) -> (usize, usize) {
    use crate::portal::Registration;
    targets.iter().fold((0, 0), |(used, unknown), t| {
        match t.licence.registration(labels) {
            Registration::Connected => (used + 1, unknown),
            Registration::Disconnected => (used, unknown),
            Registration::Other(_) | Registration::NotShown => (used, unknown + 1),
        }
    })
}

/// The checks made before anything else; what they found.
struct Prepared {
    rows: Vec<InputRow>,
    left_out: Vec<LeftOut>,
    from_report: bool,
    /// Created, or reopened to resume; locked either way.
    journal: Journal,
    resumed: Resumed,
    _lock: RunLock,
}

/// The journal of a run: one file, even with one result per client.
pub fn journal_of(output: &Path) -> PathBuf {
    vault::journal_path(&outputs::shared_name(output))
}

/// The result files a run of `clients` may write.
fn result_files(settings: &Settings, clients: &[String]) -> Vec<PathBuf> {
    if outputs::per_client(&settings.output) {
        clients
            .iter()
            .map(|c| outputs::output_for(&settings.output, c))
            .collect()
    } else {
        vec![settings.output.clone()]
    }
}

/// Refuses a run whose files collide or are in the way, before any request.
fn check_files(settings: &Settings, clients: &[String]) -> Result<(), RotationError> {
    let journal = journal_of(&settings.output);
    let path_err = |role: FileRole| move |problem| RotationError::Path { role, problem };
    let results = result_files(settings, clients);
    for result in &results {
        files::check_creatable(result).map_err(path_err(FileRole::Output))?;
    }
    match (std::fs::symlink_metadata(&journal), settings.resume) {
        (Err(_), false) => {
            files::check_creatable(&journal).map_err(path_err(FileRole::Journal))?;
        }
        (Ok(m), _) if m.file_type().is_symlink() => {
            return Err(RotationError::Path {
                role: FileRole::Journal,
                problem: PathProblem::Symlink(journal),
            });
        }
        (Ok(_), false) => {
            // Held by a run still going, or left by one that stopped.
            let in_use = files::open_read(&journal)
                .map(|f| f.try_lock().is_err())
                .unwrap_or(false);
            return Err(if in_use {
                RotationError::Vault(VaultError::JournalInUse { path: journal })
            } else if crate::vault::read_journal(&journal).is_ok_and(|c| c.finished) {
                RotationError::FinishedJournalExists(journal)
            } else {
                RotationError::JournalExists(journal)
            });
        }
        (Err(_), true) => return Err(RotationError::NoJournal(journal)),
        (Ok(_), true) => {}
    }
    if let Some(report) = &settings.report {
        check_report(report)?;
    }
    files::check_folder(files::folder_of(&settings.lock)).map_err(path_err(FileRole::Lock))?;
    if let Some(metrics) = &settings.metrics {
        crate::metrics::check(metrics)?;
    }
    // Distinct files: a report written over the output or the journal would
    // destroy the only copy of the passwords.
    let mut seen: Vec<(FileRole, PathBuf)> = results
        .iter()
        .map(|r| (FileRole::Output, r.clone()))
        .collect();
    seen.extend([
        (FileRole::Journal, journal),
        (FileRole::Lock, settings.lock.clone()),
    ]);
    if !input::is_stdin(&settings.input) {
        seen.push((FileRole::Input, settings.input.clone()));
    }
    if let Some(r) = &settings.report {
        seen.push((FileRole::Report, r.path.clone()));
    }
    if let Some(m) = &settings.metrics {
        seen.push((FileRole::Metrics, m.clone()));
    }
    for (what, path) in &settings.read_files {
        seen.push((FileRole::Read(what.clone()), path.clone()));
    }
    let identities: Vec<(FileRole, PathBuf)> = seen
        .into_iter()
        .map(|(role, p)| (role, files::identity_of(&p)))
        .collect();
    for (i, (a, pa)) in identities.iter().enumerate() {
        for (b, pb) in &identities[i + 1..] {
            if pa == pb {
                return Err(RotationError::SameFile {
                    a: a.clone(),
                    b: b.clone(),
                    path: pa.clone(),
                });
            }
        }
    }
    // Nor a part file the run may write (`OUTPUT.partN`).
    if let Some((_, report)) = identities.iter().find(|(r, _)| *r == FileRole::Report) {
        for (_, output) in identities.iter().filter(|(r, _)| *r == FileRole::Output) {
            let output = output.as_os_str().to_string_lossy().into_owned();
            if report
                .to_string_lossy()
                .starts_with(&format!("{output}.part"))
            {
                return Err(RotationError::PartName(report.clone()));
            }
        }
    }
    Ok(())
}

/// Everything that can be refused before the first request: the files,
/// the lock, the input, the journal to resume.
fn prepare(settings: &Settings, holder: &str) -> Result<Prepared, RotationError> {
    let input = input::read(&settings.input)?;
    let mut clients: Vec<String> = input
        .rows
        .iter()
        .map(|r| r.client_ref.clone())
        .chain(input.left_out.iter().map(|r| r.client_ref.clone()))
        .collect();
    clients.sort();
    clients.dedup();
    if outputs::per_client(&settings.output)
        && let Some(known) = &settings.client_recipients
    {
        let missing: Vec<String> = clients
            .iter()
            .filter(|c| known.get(*c).is_none_or(|r| r.is_empty()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(RotationError::ClientWithoutRecipient(missing));
        }
    }
    check_files(settings, &clients)?;
    let lock = RunLock::acquire(&settings.lock, holder)?;
    // A killed run's temporaries, of every file this run may write.
    for result in result_files(settings, &clients) {
        vault::clear_stale(&result);
    }
    let journal_path = journal_of(&settings.output);
    // Held from now on: a second run on this output stops here, before asking
    // the portal anything.
    let journal = if settings.resume {
        Journal::reopen(&journal_path)?
    } else {
        Journal::create(&journal_path, &settings.recipients)?
    };
    let resumed = if settings.resume {
        let journal = journal_path.clone();
        let contents = vault::read_journal(&journal)?;
        match &contents.recipients {
            None => return Err(RotationError::JournalWithoutRecipients(journal)),
            Some(recorded) if recorded.as_slice() != settings.recipients.texts() => {
                return Err(RotationError::RecipientsDiffer {
                    path: journal,
                    journal: recorded.clone(),
                    run: settings.recipients.texts().to_vec(),
                });
            }
            Some(_) => {}
        }
        let earlier_rows = if settings.resume_identities.is_empty() {
            None
        } else {
            let identities = vault::read_identities(&settings.resume_identities)?;
            Some(vault::journal_rows(&journal, &identities)?)
        };
        Resumed::from_journal(journal, contents, earlier_rows)
    } else {
        Resumed::none()
    }
    .with_report(&input.left_out);
    Ok(Prepared {
        rows: input.rows,
        left_out: input.left_out,
        from_report: input.is_report,
        resumed,
        journal,
        _lock: lock,
    })
}

/// Whether the part files the earlier runs wrote hold every password of
/// theirs the journal holds: each run that stopped wrote one (a run killed
/// wrote none), and each is still there, a regular file of this output.
fn parts_hold_earlier(earlier: &Earlier, output: &Path) -> bool {
    earlier.in_journal
        == earlier
            .parts
            .iter()
            .map(|p| p.held.passwords)
            .sum::<usize>()
        && earlier
            .parts
            .iter()
            .all(|part| part.intact && outputs::is_part_of(output, &part.held.path))
}

/// Removes the part files the earlier runs wrote, as their journal names
/// them: once the result holds their passwords. Only regular files: a
/// link put at a part's name is left alone.
fn remove_parts(resumed: &Resumed, output: &Path) {
    for EarlierPart { held: part, .. } in resumed.earlier().map(|e| e.parts).unwrap_or_default() {
        // The journal is a file of the folder: whatever else it names is
        // left alone, as is anything at a part's name but a regular file.
        let regular = std::fs::symlink_metadata(&part.path).is_ok_and(|m| m.is_file());
        if !regular || !outputs::is_part_of(output, &part.path) {
            tracing::warn!(
                "{} is not a part file of this output: left as it is",
                part.path.display()
            );
            continue;
        }
        if let Err(e) = std::fs::remove_file(&part.path) {
            tracing::warn!("cannot remove {}: {e}", part.path.display());
        }
    }
}

/// The shared state of a run while it goes.
struct Run<'a> {
    settings: &'a Settings,
    /// The client recipients when none were given.
    no_client_recipients: std::collections::HashMap<String, Vec<String>>,
    /// The rows of an input report not retried: carried into this run's
    /// report, so that a retry of the retry still leaves them out.
    carried: Vec<ReportRow>,
    /// Taken (locked) before the first request; into the sink once resets start.
    journal: std::sync::Mutex<Option<Journal>>,
    portal: Arc<Portal>,
    observer: &'a dyn Observer,
    interruption: &'a Interruption,
    started: Instant,
}

/// A rotation, start to end. Errors are refusals before any request; once
/// the portal has been asked anything, the `Outcome` says what happened.
pub async fn rotate(
    settings: &Settings,
    portal: Portal,
    observer: &dyn Observer,
    interruption: &Interruption,
) -> Result<Outcome, RotationError> {
    let started = Instant::now();
    let holder = format!("output {}", settings.output.display());
    let Prepared {
        rows,
        left_out,
        from_report,
        mut resumed,
        journal,
        _lock,
    } = prepare(settings, &holder)?;
    let carried = left_out
        .iter()
        .map(|r| ReportRow {
            line: r.line,
            client_ref: r.client_ref.clone(),
            service_ref: r.service_ref.clone(),
            licence: r.licence.clone(),
            sda: r.sda.clone(),
            state: String::new(),
            accountcode: r.accountcode.clone(),
            status: match r.status {
                Reported::Reset => Status::Reset,
                Reported::Duplicate => Status::Duplicate,
                Reported::FailedAfterConfirmer => Status::Failed,
            },
            detail: format!("{} in the earlier run, not retried", r.status.as_str()),
            confirmations: 0,
            requests: 0,
            session: None,
            origin: Origin::EarlierRun,
            remedy: None,
        })
        .collect();
    let run = Run {
        settings,
        no_client_recipients: Default::default(),
        carried,
        journal: std::sync::Mutex::new(Some(journal)),
        portal: Arc::new(portal),
        observer,
        interruption,
        started,
    };
    let mut outcome = run.go(&rows, &mut resumed).await;
    outcome.left_out = LeftOutCounts::of(&left_out, from_report);
    Ok(outcome)
}

impl Run<'_> {
    fn stopped_by_signal(&self, phase: RunPhase) -> Option<StopReason> {
        self.interruption
            .stop
            .is_cancelled()
            .then_some(StopReason::Interrupted(phase))
    }

    async fn go(&self, rows: &[InputRow], resumed: &mut Resumed) -> Outcome {
        if let Err(e) = self.portal.connect(rows.len()).await {
            let why = self
                .stopped_by_signal(RunPhase::Login)
                .unwrap_or_else(|| stop_reason_of(&e));
            let skipped = rows
                .iter()
                .map(|r| {
                    resolve::rejected_row(
                        r,
                        Status::Skipped,
                        &r.licence.to_string(),
                        format!("not resolved: {why}"),
                    )
                })
                .collect();
            return self.finish(skipped, None, Some(why), resumed, ResetsDone::default());
        }
        self.observer.event(Event::LoggedIn);
        self.portal.look_ahead();
        match self.settings.phases() {
            Phases::OneAfterTheOther => self.one_after_the_other(rows, resumed).await,
            Phases::Overlapped => self.overlapped(rows, resumed).await,
        }
    }

    async fn one_after_the_other(&self, rows: &[InputRow], resumed: &mut Resumed) -> Outcome {
        let stop = &self.interruption.stop;
        let resolution = match resolve::resolve(&self.portal, rows, stop, self.observer).await {
            Ok(r) => r,
            Err(e) => {
                let skipped = rows
                    .iter()
                    .map(|r| {
                        resolve::rejected_row(
                            r,
                            Status::Skipped,
                            &r.licence.to_string(),
                            format!("not resolved: {e}"),
                        )
                    })
                    .collect();
                return self.finish(
                    skipped,
                    None,
                    Some(stop_reason_of(&e)),
                    resumed,
                    ResetsDone::default(),
                );
            }
        };
        let mut report: Vec<ReportRow> = Vec::new();
        if let Some(why) = self.stopped_by_signal(RunPhase::Resolution) {
            report.extend(resolution.rows_when_stopped(&why));
            return self.finish(report, None, Some(why), resumed, ResetsDone::default());
        }
        let unresolved = resolution.unresolved().count();
        if unresolved > 0 && !self.settings.skip_unresolved {
            report.extend(resolution.plan_rows());
            let why = StopReason::Unresolved { rows: unresolved };
            return self.finish(report, None, Some(why), resumed, ResetsDone::default());
        }
        report.extend(resolution.rejected);
        let targets: Vec<Target> = resumed.keep_all(resolution.targets, &mut report);
        if self.settings.confirm && !targets.is_empty() {
            let (in_use, state_unknown) = in_use(&targets, self.portal.labels());
            let answer = self.observer.confirm(&Question {
                resets: targets.len(),
                in_use,
                state_unknown,
            });
            let yes = tokio::select! {
                _ = stop.cancelled() => None,
                answer = answer => Some(answer.unwrap_or(false)),
            };
            let why = match yes {
                Some(true) => None,
                Some(false) => Some(StopReason::NotConfirmed),
                None => Some(StopReason::Interrupted(RunPhase::Question)),
            };
            if let Some(why) = why {
                report.extend(
                    targets
                        .iter()
                        .map(|t| t.report(Status::Skipped, format!("not reset: {why}"), 0, 0)),
                );
                return self.finish(report, None, Some(why), resumed, ResetsDone::default());
            }
        }
        let mut sink = match self.open_sink() {
            Ok(sink) => sink,
            Err(e) => {
                report.extend(
                    targets
                        .iter()
                        .map(|t| t.report(Status::Skipped, format!("not reset: {e}"), 0, 0)),
                );
                let why = StopReason::WriteFailed(e.to_string());
                return self.finish(report, None, Some(why), resumed, ResetsDone::default());
            }
        };
        self.observer.event(Event::Planned(targets.len()));
        let resets = reset::reset_all(
            &self.portal,
            reset::queue_of(targets),
            &self.settings.guard,
            self.settings.workers,
            None,
            &mut sink,
            stop,
            self.observer,
        )
        .await;
        self.after_resets(report, sink, resets, None, resumed)
    }

    async fn overlapped(&self, rows: &[InputRow], resumed: &mut Resumed) -> Outcome {
        let stop = &self.interruption.stop;
        let mut report: Vec<ReportRow> = Vec::new();
        let mut sink = match self.open_sink() {
            Ok(sink) => sink,
            Err(e) => {
                let why = StopReason::WriteFailed(e.to_string());
                let skipped = rows
                    .iter()
                    .map(|r| {
                        resolve::rejected_row(
                            r,
                            Status::Skipped,
                            &r.licence.to_string(),
                            format!("not resolved: {why}"),
                        )
                    })
                    .collect();
                return self.finish(skipped, None, Some(why), resumed, ResetsDone::default());
            }
        };
        let (tx, queue) = mpsc::unbounded_channel();
        let mut planned = 0;
        // The all-or-nothing rule: no Confirmer before every row resolved.
        let verdict = (!self.settings.skip_unresolved).then(Verdict::pending);
        let resolving = async {
            let tx = tx;
            let mut unresolved = 0;
            let resolved =
                resolve::resolve_each(&self.portal, rows, stop, self.observer, |client| {
                    unresolved += client
                        .rejected
                        .iter()
                        .filter(|r| r.status == Status::Unresolved)
                        .count();
                    report.extend(client.rejected);
                    for target in resumed.keep_all(client.targets, &mut report) {
                        planned += 1;
                        self.observer.event(Event::Planned(planned));
                        tx.send(target)
                            .expect("the resets take targets until the end");
                    }
                })
                .await;
            let refused = match &resolved {
                Err(e) => Some(stop_reason_of(e)),
                Ok(()) if unresolved > 0 && verdict.is_some() => {
                    Some(StopReason::Unresolved { rows: unresolved })
                }
                Ok(()) => None,
            };
            if let Some(verdict) = &verdict {
                verdict.settle(if refused.is_none() && !stop.is_cancelled() {
                    VerdictState::Go
                } else {
                    VerdictState::NoGo
                });
            }
            if refused.is_some() {
                stop.cancel();
            }
            refused
        };
        let resetting = reset::reset_all(
            &self.portal,
            queue,
            &self.settings.guard,
            self.settings.workers,
            verdict.as_ref(),
            &mut sink,
            stop,
            self.observer,
        );
        let (resolution_failed, resets) = tokio::join!(resolving, resetting);
        self.after_resets(report, sink, resets, resolution_failed, resumed)
    }

    /// Opens the result file; with the journal, where the resets write.
    fn open_sink(&self) -> Result<Sink<'_>, VaultError> {
        let outputs = outputs::Outputs::open(
            &self.settings.output,
            &self.settings.recipients,
            self.settings
                .client_recipients
                .as_ref()
                .unwrap_or(&self.no_client_recipients),
        )?;
        let journal = self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("the journal goes to one sink");
        Ok(Sink {
            recipients: &self.settings.recipients,
            journal,
            outputs,
            stranded: Stranded::default(),
        })
    }

    fn after_resets(
        &self,
        mut report: Vec<ReportRow>,
        sink: Sink<'_>,
        resets: Resets,
        resolution_failed: Option<StopReason>,
        resumed: &mut Resumed,
    ) -> Outcome {
        report.extend(resets.rows);
        let phase = if resets.began {
            RunPhase::Resets
        } else {
            RunPhase::Resolution
        };
        let stopped = resets
            .stopped
            .or(resolution_failed)
            .or_else(|| self.stopped_by_signal(phase))
            // Rows left untried without a reason: a signal.
            .or_else(|| {
                report
                    .iter()
                    .any(|r| r.status == Status::Skipped)
                    .then_some(StopReason::Interrupted(phase))
            });
        let done = ResetsDone {
            began: resets.began,
            confirmations: resets.confirmations,
            lost: resets.lost,
        };
        self.finish(report, Some(sink), stopped, resumed, done)
    }

    /// Ends the run: the result file or the part file, the journal's fate,
    /// the report.
    fn finish(
        &self,
        mut rows: Vec<ReportRow>,
        sink: Option<Sink<'_>>,
        mut stopped: Option<StopReason>,
        resumed: &Resumed,
        done: ResetsDone,
    ) -> Outcome {
        let mut passwords = Passwords {
            result: Vec::new(),
            part: Vec::new(),
            journal: JournalFate::NotCreated,
            lost: done.lost,
            earlier: resumed.earlier().map(|e| Earlier {
                per_client: outputs::per_client(&self.settings.output),
                ..e
            }),
            stranded: None,
        };
        let (mut journal, outputs, stranded) = match sink {
            Some(Sink {
                journal,
                outputs,
                stranded,
                ..
            }) => (Some(journal), Some(outputs), stranded),
            None => (
                self.journal
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(),
                None,
                Stranded::default(),
            ),
        };
        if let Some(journal) = journal.as_mut().filter(|_| outputs.is_none()) {
            // Stopped before the resets: a new password a page showed goes
            // to the journal, which then stays (the resets keep theirs).
            for stray in self.portal.take_stray() {
                let record = vault::ResetRecord {
                    client_ref: String::new(),
                    service_ref: String::new(),
                    licence: String::new(),
                    licence_type: String::new(),
                    sda: String::new(),
                    name: format!("(seen on the {} page: its phone is not known)", stray.page),
                    accountcode: String::new(),
                    password: stray.password,
                    reset_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                };
                if journal.append(&self.settings.recipients, &record).is_err() {
                    passwords.lost += 1;
                }
            }
        }
        // The files the earlier runs' passwords went into, when merged.
        let mut merged_into: Option<Vec<HeldIn>> = None;
        if let Some(mut journal) = journal {
            let journal_path = journal.path().to_path_buf();
            let this_run = journal.appended();
            let mut kept_because = None;
            let mut written = 0;
            let mut complete = false;
            let mut merged = 0;
            if let Some(mut outputs) = outputs {
                if stopped.is_none()
                    && let Some(rows) = resumed.earlier_rows()
                {
                    // The rotation finishes as one: the earlier runs'
                    // passwords go into this result beside this run's.
                    for row in rows {
                        match outputs.add_earlier(row) {
                            Ok(()) => merged += 1,
                            Err(e) => {
                                stopped = Some(StopReason::WriteFailed(e.to_string()));
                                break;
                            }
                        }
                    }
                }
                written = outputs.rows();
                if stopped.is_none() {
                    let (held, failed) = outputs.finish();
                    passwords.result = held;
                    match failed {
                        // The passwords of the failed file are in the journal
                        // (and `stranded`) only.
                        Some(e) => stopped = Some(StopReason::WriteFailed(e.to_string())),
                        None => complete = true,
                    }
                } else {
                    let (held, failures) = outputs.finish_parts();
                    for part in &held {
                        // For a later summary; the part file is complete either way.
                        let _ = journal.note_part(&part.path, part.passwords);
                    }
                    for e in failures {
                        tracing::error!("cannot write a part file: {e}");
                    }
                    passwords.part = held;
                }
            }
            drop(journal);
            // Written to no file: what the caller must show, encrypted.
            let in_a_file = !passwords.result.is_empty() || !passwords.part.is_empty();
            if (!in_a_file && stranded.count > 0) || stranded.in_no_file > 0 {
                passwords.stranded = Some(stranded);
            }
            // The journal goes only when every password it holds is in the
            // complete result file, checked on disk.
            let on_disk = vault::read_journal(&journal_path)
                .map(|c| c.entries.len())
                .map_err(|e| e.to_string());
            let in_results: usize = passwords.result.iter().map(|h| h.passwords).sum();
            let removable = match &on_disk {
                Ok(0) if !resumed.is_resuming() => true,
                // Resumed with the journal read: every entry is in the result.
                Ok(n)
                    if complete
                        && merged > 0
                        && *n == this_run + merged
                        && in_results == *n
                        && written == in_results =>
                {
                    true
                }
                Ok(n)
                    if complete
                        && *n == this_run
                        && this_run == in_results
                        && written == in_results =>
                {
                    true
                }
                // Resumed without an identity: the journal may still go
                // when every earlier password is in a part file the
                // journal records, and this run's in the result.
                Ok(n)
                    if complete
                        && merged == 0
                        && resumed.earlier().is_some_and(|e| {
                            *n == this_run + e.in_journal
                                && parts_hold_earlier(&e, &self.settings.output)
                        })
                        && in_results == this_run
                        && written == in_results =>
                {
                    true
                }
                Ok(_) if complete && resumed.is_resuming() => {
                    kept_because = Some(KeptBecause::EarlierRuns);
                    false
                }
                Ok(n) if complete => {
                    kept_because = Some(KeptBecause::Mismatch(format!(
                        "it holds {n} entries, the result files {in_results}"
                    )));
                    false
                }
                Err(e) => {
                    kept_because = Some(KeptBecause::Mismatch(e.clone()));
                    false
                }
                Ok(_) => false,
            };
            let entries = *on_disk.as_ref().unwrap_or(&this_run);
            passwords.journal = if removable {
                match std::fs::remove_file(&journal_path) {
                    Ok(()) if merged > 0 => {
                        // What the earlier runs left is in the result now.
                        passwords.earlier = None;
                        remove_parts(resumed, &self.settings.output);
                        // Their rows name where the passwords are now.
                        merged_into = Some(passwords.result.clone());
                        JournalFate::Removed
                    }
                    // Empty: for whoever reads the summary, there was none.
                    Ok(()) if entries == 0 => JournalFate::NotCreated,
                    Ok(()) => JournalFate::Removed,
                    Err(e) => JournalFate::Kept {
                        path: journal_path,
                        entries,
                        this_run,
                        because: KeptBecause::RemovalFailed(e.to_string()),
                    },
                }
            } else {
                if kept_because == Some(KeptBecause::EarlierRuns) {
                    // The rotation is finished: a later run starts afresh
                    // beside this journal, kept for what only it holds.
                    if let Err(e) =
                        Journal::reopen(&journal_path).and_then(|mut j| j.note_finished())
                    {
                        tracing::warn!("cannot mark {} finished: {e}", journal_path.display());
                    }
                }
                JournalFate::Kept {
                    path: journal_path,
                    entries,
                    this_run,
                    because: kept_because.unwrap_or(KeptBecause::Stopped),
                }
            };
        }
        if let Some(results) = &merged_into {
            let template = &self.settings.output;
            for row in rows
                .iter_mut()
                .filter(|r| r.origin == report::Origin::EarlierRun)
            {
                let file = if outputs::per_client(template) {
                    outputs::output_for(template, &row.client_ref)
                } else {
                    template.clone()
                };
                if let Some(held) = results.iter().find(|h| h.path == file).or(results.first()) {
                    let code = if row.accountcode.is_empty() {
                        String::new()
                    } else {
                        format!(" (account code {})", row.accountcode)
                    };
                    row.detail = format!(
                        "reset by an earlier run: password in {}{code}",
                        held.path.display()
                    );
                }
            }
        }
        // In input order; the licences of one line in the order they were done.
        rows.sort_by_key(|r| r.line);
        let mut problems = Vec::new();
        if let JournalFate::Kept {
            path,
            because: KeptBecause::RemovalFailed(why),
            ..
        } = &passwords.journal
        {
            problems.push(LateProblem::JournalNotRemoved {
                path: path.clone(),
                why: why.clone(),
            });
        }
        let mut report = None;
        if let Some(file) = &self.settings.report {
            let mut all = rows.clone();
            all.extend(self.carried.iter().cloned());
            let engine = self.portal.stats().engine();
            match report::write(&file.path, &all, engine, file.may_replace(), file.dialect) {
                Ok(path) => report = Some(path),
                Err(e) => problems.push(LateProblem::Report {
                    path: file.path.clone(),
                    why: e.to_string(),
                }),
            }
        }
        Outcome {
            rows,
            stopped,
            resets_began: done.began,
            confirmations: done.confirmations,
            passwords,
            report,
            problems,
            requests: Requests::of(self.portal.stats()),
            elapsed: self.started.elapsed(),
            left_out: LeftOutCounts::default(),
        }
    }
}

/// What the resets did, for the outcome.
#[derive(Debug, Default)]
struct ResetsDone {
    began: bool,
    confirmations: u64,
    lost: usize,
}

/// The stop reason a portal error gives, when it ends the run.
fn stop_reason_of(e: &PortalError) -> StopReason {
    match e {
        PortalError::LoginRefused => StopReason::LoginRefused,
        e @ PortalError::PasswordShown { .. } => StopReason::PasswordShown(e.to_string()),
        e => StopReason::Portal {
            why: e.to_string(),
            remedy: e.remedy(),
        },
    }
}

/// What `plan` found.
#[derive(Debug)]
pub struct Plan {
    /// Targets as `planned`, then rows that will not be reset, in input order.
    pub rows: Vec<ReportRow>,
    pub targets: Vec<Target>,
    /// Of the targets, the phones registered now (`État`: in use).
    pub in_use: usize,
    /// And those whose `État` says neither.
    pub state_unknown: usize,
    pub stopped: Option<StopReason>,
    pub report: Option<PathBuf>,
    pub problems: Vec<LateProblem>,
    pub requests: Requests,
    pub elapsed: Duration,
}

/// Whether the report can be written: only an earlier report is replaced,
/// never another file.
fn check_report(report: &ReportFile) -> Result<(), RotationError> {
    files::check_replaceable(&report.path, report.may_replace(), report::is_report).map_err(
        |problem| match problem {
            PathProblem::NotOurs(path) => RotationError::NotAReport(path),
            problem => RotationError::Path {
                role: FileRole::Report,
                problem,
            },
        },
    )
}

/// Resolves `input` on the portal and says what `run` would reset; resets nothing.
pub async fn plan(
    input: &Path,
    report: Option<&ReportFile>,
    portal: Portal,
    observer: &dyn Observer,
    interruption: &Interruption,
) -> Result<Plan, RotationError> {
    let started = Instant::now();
    if let Some(r) = report {
        check_report(r)?;
        if !input::is_stdin(input) && files::identity_of(&r.path) == files::identity_of(input) {
            return Err(RotationError::SameFile {
                a: FileRole::Input,
                b: FileRole::Report,
                path: r.path.clone(),
            });
        }
    }
    let rows = input::read(input)?.rows;
    let portal = Arc::new(portal);
    let stop = &interruption.stop;
    let (mut plan_rows, targets, stopped) = match portal.connect(rows.len()).await {
        Err(e) => {
            let why = if stop.is_cancelled() {
                StopReason::Interrupted(RunPhase::Login)
            } else {
                stop_reason_of(&e)
            };
            (Vec::new(), Vec::new(), Some(why))
        }
        Ok(()) => {
            observer.event(Event::LoggedIn);
            match resolve::resolve(&portal, &rows, stop, observer).await {
                Ok(r) => {
                    let stopped =
                        (r.skipped() > 0).then_some(StopReason::Interrupted(RunPhase::Resolution));
                    (r.plan_rows(), r.targets, stopped)
                }
                Err(e) => (Vec::new(), Vec::new(), Some(stop_reason_of(&e))),
            }
        }
    };
    plan_rows.sort_by_key(|r| r.line);
    let mut problems = Vec::new();
    let mut written = None;
    if let Some(file) = report {
        let engine = portal.stats().engine();
        match report::write(
            &file.path,
            &plan_rows,
            engine,
            file.may_replace(),
            file.dialect,
        ) {
            Ok(path) => written = Some(path),
            Err(e) => problems.push(LateProblem::Report {
                path: file.path.clone(),
                why: e.to_string(),
            }),
        }
    }
    let (in_use, state_unknown) = in_use(&targets, portal.labels());
    Ok(Plan {
        rows: plan_rows,
        in_use,
        state_unknown,
        targets,
        stopped,
        report: written,
        problems,
        requests: Requests::of(portal.stats()),
        elapsed: started.elapsed(),
    })
}
