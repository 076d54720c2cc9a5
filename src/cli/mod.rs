//! The command line: flags (`args`), merged once with the config file into
//! checked settings (`settings`), the library called by one file per
//! command (`commands`), what it returns shown (`render`, `logging`). The library's
//! errors say what is wrong; the hints that say what to do are added here.

mod args;
mod commands;
mod logging;
mod manual;
mod render;
mod settings;
mod signals;

use crate::files::PathProblem;
use crate::rotation::{FileRole, LockError, RotationError};
use crate::vault::{Unreadable, VaultError};
use args::LogFormat;
use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

/// Exit codes, as the man pages and docs/operating.md list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Every requested reset was done.
    AllDone = 0,
    /// The run went to its end, but not everything went well.
    Partial = 1,
    /// No `Confirmer` was sent: no phone was cut off.
    NothingDone = 2,
    /// Stopped or interrupted after a `Confirmer` was sent, or a page showed
    /// a password nobody asked for.
    Aborted = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// A core dump of this process would hold the new passwords and the portal
/// password in clear: none is ever written. On Linux the process is also not
/// dumpable, which keeps other processes of the same user from reading its
/// memory through `/proc` or a debugger.
fn forbid_core_dumps() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls with valid arguments, before any thread starts.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        // A file over the size limit must be a write error, which the run
        // handles (journal, part file, the summary), not a death.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Whether the command line asks for JSON on stderr, read before clap (a
/// usage error must be JSON too).
fn json_asked(argv: &[std::ffi::OsString]) -> bool {
    argv.windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || argv.iter().any(|a| a == "--log-format=json")
}

pub fn main() -> ExitCode {
    forbid_core_dumps();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match args::Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        // `--resume auto`: clap reads `auto` as another argument, since
        // `--resume` alone means yes; said with the form that works.
        Err(e)
            if e.kind() == clap::error::ErrorKind::UnknownArgument
                && let Some(when) = argv
                    .windows(2)
                    .find(|w| w[0] == "--resume" && (w[1] == "auto" || w[1] == "yes"))
                    .map(|w| w[1].to_string_lossy().into_owned()) =>
        {
            render::error(
                if json_asked(&argv) {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                },
                &format!("'--resume {when}': --resume takes its value after '=' only"),
                Some(&format!(
                    "write --resume={when} (alone, --resume means yes, and '{when}' is read as another argument)"
                )),
            );
            return Exit::NothingDone.into();
        }
        Err(e) if json_asked(&argv) && e.use_stderr() => {
            render::error(LogFormat::Json, e.to_string().trim(), None);
            return Exit::NothingDone.into();
        }
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {e}"
            );
            return Exit::NothingDone.into();
        }
    };
    let exit = runtime.block_on(async {
        match cli.command {
            args::Command::Run(a) => commands::run::run(a).await.0,
            args::Command::Plan(a) => commands::plan::plan(a).await.0,
            args::Command::Check(a) => commands::check::check(a).await.0,
            args::Command::Labels => commands::labels::labels().unwrap_or_else(text_refusal),
            args::Command::Status(a) => commands::status::status(a).await.0,
            args::Command::Decrypt(a) => commands::decrypt::decrypt(a).unwrap_or_else(text_refusal),
            args::Command::Keygen(a) => commands::keygen::keygen(a).unwrap_or_else(text_refusal),
            args::Command::Sim(a) => commands::sim::sim(a).await.unwrap_or_else(text_refusal),
            args::Command::Demo(a) => commands::demo::demo(a).await.unwrap_or_else(text_refusal),
            args::Command::Generate(g) => {
                commands::generate::generate(g).unwrap_or_else(text_refusal)
            }
        }
    });
    // Leave tasks still waiting on the portal behind rather than waiting for them.
    runtime.shutdown_background();
    // No browser outlives the command, nor its profile.
    crate::portal::chromium::end_all();
    exit.into()
}

fn text_refusal(e: anyhow::Error) -> Exit {
    refused(LogFormat::Text, &e)
}

/// Shows an error that stopped a command before it did anything (exit 2).
pub(crate) fn refused(format: LogFormat, e: &anyhow::Error) -> Exit {
    render::error(format, &described(e), hint(e).as_deref());
    // What happened to phones decides, in every command: a page that
    // showed a new password nobody asked for means one may be cut off.
    let password_shown = e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<crate::portal::PortalError>(),
            Some(crate::portal::PortalError::PasswordShown { .. })
        ) || matches!(
            cause.downcast_ref::<RotationError>(),
            Some(RotationError::Portal(
                crate::portal::PortalError::PasswordShown { .. }
            ))
        )
    });
    if password_shown {
        Exit::Aborted
    } else {
        Exit::NothingDone
    }
}

/// An error and its causes, each said once: a message that already quotes
/// its cause (`cannot read FILE: No such file…`) does not get it again.
fn described(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

/// A refusal of the command line and what to do about it, kept apart so
/// that the JSON error's `hint` holds the advice, not its `message`.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub(crate) struct Advised {
    pub what: String,
    pub hint: String,
}

impl Advised {
    /// A refusal that says what is wrong, and apart, what to do.
    pub fn error(what: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
        Advised {
            what: what.into(),
            hint: hint.into(),
        }
        .into()
    }
}

/// What to do about an error, where the library's message alone does not say.
fn hint(e: &anyhow::Error) -> Option<String> {
    if let Some(advised) = e.downcast_ref::<Advised>() {
        return Some(advised.hint.clone());
    }
    if let Some(e) = e.downcast_ref::<RotationError>() {
        return rotation_hint(e);
    }
    if let Some(e) = e.downcast_ref::<crate::input::InputError>() {
        return input_hint(e);
    }
    e.downcast_ref::<VaultError>().and_then(vault_hint)
}

fn vault_hint(e: &VaultError) -> Option<String> {
    Some(match e {
        VaultError::IdentityAsRecipient | VaultError::IdentityInRecipientsFile { .. } => {
            "give its public key instead: age-keygen -y FILE prints it (a sip-rotate keygen file names it on its 'public key' line); the identity stays with whoever decrypts".into()
        }
        VaultError::NoRecipient => {
            "give one with -r/--recipient or -R/--recipients-file (or recipients in the --config file)".into()
        }
        VaultError::JournalInUse { .. } => "another sip-rotate run is using it: let it finish".into(),
        VaultError::BadRecipient(_) | VaultError::RecipientsFileLine { .. } => {
            "give the public key that sip-rotate keygen printed (its file names it on its 'public key' line), age-keygen -y FILE prints, or an SSH .pub file holds".into()
        }
        VaultError::Identity { .. } | VaultError::IdentityLine { .. } => {
            "give the file sip-rotate keygen -o wrote, an age identity (age -p protected too) or an SSH private key, readable by this user".into()
        }
        VaultError::Decrypt { why, .. } => match why {
            Unreadable::NoMatchingKey => "give the identity of one of its recipients with -i (the file a sip-rotate keygen wrote, an age identity, or an SSH private key)".into(),
            Unreadable::NotAge => "give the .age file a run wrote (or its journal, OUTPUT.journal)".into(),
            Unreadable::Damaged => "decrypt the journal of the same run (OUTPUT.journal) if it is still there; it holds the same passwords".into(),
            Unreadable::WrongPassphrase => "type the passphrase again".into(),
            Unreadable::Other(_) => return None,
        },
        _ => return None,
    })
}

/// How a stopped rotation is finished, as every message says it: without
/// an identity the stopped run's passwords stay in its own files.
pub(crate) const TO_FINISH: &str = "run the same command with --resume to finish (add -i IDENTITY: the stopped run's passwords then join this run's result)";

/// The same, to a command that resumes already, without an identity.
pub(crate) const TO_FINISH_ADDING_IDENTITY: &str = "run the same command again to finish (add -i IDENTITY: the stopped run's passwords then join this run's result)";

/// The same, to a run that resumed with an identity already.
pub(crate) const TO_FINISH_AGAIN: &str =
    "run the same command (--resume -i IDENTITY) again to finish";

/// What `--resume` with no unfinished run to finish should do instead.
pub(crate) const NOTHING_TO_RESUME: &str = "--resume finishes a run whose journal is there; without it (or with --resume=auto), start a new run";

/// The command that decrypts `file` (a journal, a result) into a CSV: with
/// `-o`, since decrypt prints no password on a terminal.
pub(crate) fn decrypt_command(file: &std::path::Path) -> String {
    format!(
        "sip-rotate decrypt -i IDENTITY -o FILE.csv {}",
        file.display()
    )
}

/// What to do with the journal of a run that did not finish.
pub(crate) fn unfinished_hint(journal: &std::path::Path) -> String {
    format!(
        "{TO_FINISH}; the licences in the journal are not reset again. \
         Or decrypt the journal ({}) and move it away to start afresh",
        decrypt_command(journal)
    )
}

fn input_hint(e: &crate::input::InputError) -> Option<String> {
    (!e.hint.is_empty()).then(|| e.hint.clone())
}

fn rotation_hint(e: &RotationError) -> Option<String> {
    Some(match e {
        RotationError::Input(e) => return input_hint(e),
        RotationError::JournalExists(journal) => unfinished_hint(journal),
        RotationError::FinishedJournalExists(journal) => format!(
            "decrypt it ({}), hand those passwords over, then move it away; \
             or give each run its own name (-o with %Y%m%d-%H%M%S)",
            decrypt_command(journal)
        ),
        RotationError::InputLeavesOut { .. } => {
            "resume with the input the stopped run had (or one that still holds those rows): finished with this one, the rotation would leave them with their old passwords".into()
        }
        RotationError::NoJournal(_) => NOTHING_TO_RESUME.into(),
        RotationError::JournalWithoutRecipients(journal) => format!(
            "decrypt it ({}), keep what it holds, and move it away to start a new run",
            decrypt_command(journal)
        ),
        RotationError::RecipientsDiffer { .. } => {
            "resume with the recipients the interrupted run had (-r/-R): one journal is readable with one set of identities".into()
        }
        RotationError::SameFile { .. } => "give each file its own name".into(),
        RotationError::ClientWithoutRecipient(_) => {
            "add a row client_ref,recipient for each of them to the --client-recipients file, or leave --client-recipients out (then the run's own recipients read every file)".into()
        }
        RotationError::NoStateColumn { .. } => {
            "sip-rotate check says what the users table has; if the portal words the column otherwise, set column_state in a labels file (--labels)".into()
        }
        RotationError::Portal(e) if e.remedy() == Some(crate::portal::Remedy::Labels) => {
            "give the portal's words in a labels file (--labels FILE; sip-rotate labels prints one to edit), and try it with sip-rotate check first".into()
        }
        RotationError::NothingToFollow(_) => {
            "give the run's input CSV, or the report of a run that reset phones".into()
        }
        RotationError::NotAStatusReport(_) => {
            "choose another --report: status replaces only a status report it wrote".into()
        }
        RotationError::NotAReport(_) | RotationError::PartName(_) => {
            "choose another --report".into()
        }
        RotationError::Path { role, problem } => match (role, problem) {
            (FileRole::Report, PathProblem::Exists(_)) => {
                "choose another --report, or add --overwrite-report to replace it".into()
            }
            (FileRole::Output, PathProblem::Exists(_)) => {
                "choose another -o: that file may hold passwords (each run has its own with a name like rotation-%Y%m%d-%H%M%S.csv.age, or %H%M%S%f for runs within a second)".into()
            }
            (_, PathProblem::Symlink(_)) => {
                "sip-rotate never writes through a symbolic link: remove it, or choose another name".into()
            }
            (_, PathProblem::NoFolder(folder)) => {
                format!("create the folder first: mkdir -p {}", folder.display())
            }
            (_, PathProblem::NameTooLong { .. }) => {
                "choose a shorter name: each file is written under a temporary name 12 bytes longer, then renamed".into()
            }
            (_, PathProblem::ReadOnlyFolder(_)) => {
                "run as a user who may write there, or choose another folder".into()
            }
            _ => return None,
        },
        RotationError::Lock(LockError::Held { .. }) => {
            "one rotation per portal account at a time: let the other run finish".into()
        }
        RotationError::Lock(LockError::HeldElsewhere { .. }) => {
            "one rotation per portal account at a time: let the other run finish (pgrep -a sip-rotate shows it)".into()
        }
        RotationError::Lock(LockError::Symlink { .. }) => {
            "remove the link, or set another lock in the --config file".into()
        }
        RotationError::Lock(LockError::Foreign { .. }) => {
            "set another lock in the --config file: a lock is a file sip-rotate made, or an empty one".into()
        }
        RotationError::Vault(v) => return vault_hint(v),
        _ => return None,
    })
}
