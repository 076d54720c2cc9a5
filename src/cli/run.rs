//! `run` and `plan`: read the CSV, resolve it on the portal, then (for `run`)
//! ask, reset, journal, encrypt, report. `demo` goes through `execute` too.

use super::args::{PlanArgs, RunArgs};
use super::config::{self, RunConfig};
use super::logging;
use crate::input;
use crate::portal::Portal;
use crate::report::{self, ReportRow, Status, Summary};
use crate::runner::{self, ResetSettings, Sink, Target};
use crate::vault::{self, Journal, Output};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Exit codes, as the README lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    AllDone = 0,
    Partial = 1,
    NothingDone = 2,
    Aborted = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// A failure after resets started: exit 3, not 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Aborted(pub String);

/// What a run left behind, for the caller to show.
pub struct RunResult {
    pub exit: Exit,
    pub summary: Summary,
    pub output: Option<std::path::PathBuf>,
    pub rows: Vec<ReportRow>,
}

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    logging::init(args.log_format, args.quiet);
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let file = config::Loaded::read(args.portal.config.as_deref())?;
    let config = RunConfig::new(&args, &file, interactive)?;
    let portal = config::portal(&args.portal, &file)?;
    let result = execute(config, portal).await?;
    Ok(result.exit.into())
}

pub async fn plan(args: PlanArgs) -> Result<ExitCode> {
    logging::init(args.log_format, false);
    let file = config::Loaded::read(args.portal.config.as_deref())?;
    let rows = input::read(&config::input(args.input.as_ref(), &file)?)?;
    let portal = Arc::new(config::portal(&args.portal, &file)?);
    let started = Instant::now();
    portal.connect().await?;
    let resolution = runner::resolve(&portal, &rows).await?;
    let mut out = std::io::stdout().lock();
    for t in &resolution.targets {
        writeln!(
            out,
            "line {}: reset {} ({}, SDA {}, {}) of client {}, service {}",
            t.line,
            t.licence.licence,
            t.licence.licence_type,
            if t.licence.sda.is_empty() {
                "none"
            } else {
                &t.licence.sda
            },
            t.licence.name,
            t.client_ref,
            t.service_ref
        )?;
    }
    for r in &resolution.rejected {
        writeln!(
            out,
            "line {}: {} {}: {}",
            r.line,
            r.status.as_str(),
            r.licence,
            r.detail
        )?;
    }
    let plan_rows = resolution.plan_rows();
    if let Some(path) = &args.report {
        report::write(path, &plan_rows)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    let summary = Summary::new(
        &plan_rows,
        portal.stats(),
        started.elapsed(),
        config::rate(&args.portal, &file),
    );
    eprintln!("{summary}");
    eprintln!(
        "run would reset {} licences (phones cut off until reconfigured)",
        resolution.targets.len()
    );
    Ok(if resolution.unresolved().next().is_some() {
        Exit::Partial
    } else {
        Exit::AllDone
    }
    .into())
}

fn ask(question: &str) -> Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_lowercase().as_str(),
        "y" | "yes" | "o" | "oui"
    ))
}

/// Stops handing out resets on Ctrl-C or SIGTERM; the in-flight ones finish.
fn stop_on_signals(stop: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        logging::say("stopping: no new reset is started; waiting for the ones in flight...");
        stop.cancel();
    });
}

/// The licences that the interrupted run already reset (`--resume`): their
/// passwords are in the journal, and they are not reset again.
struct Resumed {
    /// Phones in the journal, and how many entries each has: a portal may
    /// show one reference for two phones, even with one number.
    done: HashMap<PhoneKey, usize>,
    journal: PathBuf,
    earlier: usize,
}

impl Resumed {
    fn read(config: &RunConfig) -> Result<Resumed> {
        let mut done = HashMap::new();
        if config.resume {
            for m in vault::journal_marks(&config.journal)? {
                let key = PhoneKey::new(&m.client_ref, &m.service_ref, &m.licence, &m.sda);
                *done.entry(key).or_default() += 1;
            }
        }
        Ok(Resumed {
            done,
            journal: config.journal.clone(),
            earlier: 0,
        })
    }

    /// `Some(target)` to reset it; `None`, with its report row, if it was done before.
    fn keep(&mut self, target: Target, report: &mut Vec<ReportRow>) -> Option<Target> {
        let key = PhoneKey::new(
            &target.client_ref,
            &target.service_ref,
            &target.licence.licence,
            &target.licence.sda,
        );
        match self.done.get_mut(&key) {
            Some(n) if *n > 0 => *n -= 1,
            _ => return Some(target),
        }
        self.earlier += 1;
        let detail = format!(
            "reset by the interrupted run: password in {}",
            self.journal.display()
        );
        report.push(target.report(Status::Reset, detail, 0, 0));
        None
    }
}

/// A phone as the journal names it in clear: client, service, licence and number.
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

/// Opens what the resets write to, and the progress bar that listens to them.
fn open_sink(config: &RunConfig, length: u64) -> Result<(Sink<'_>, ProgressBar)> {
    // The output first: if the journal cannot be made, its temporary file goes
    // away, whereas an empty journal left behind would block the next run.
    let output = Output::create(&config.output, &config.recipients)?;
    let journal = if config.resume {
        Journal::reopen(&config.journal)?
    } else {
        Journal::create(&config.journal)?
    };
    let bar = if config.progress {
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} resetting [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        logging::show_bar(&bar);
        bar
    } else {
        ProgressBar::hidden()
    };
    let listener = bar.clone();
    let mut failed = 0;
    let sink = Sink {
        recipients: &config.recipients,
        journal,
        output,
        on_progress: Box::new(move |row: &ReportRow| {
            if row.status == Status::Failed {
                failed += 1;
                listener.set_message(format!("{failed} failed"));
            }
            listener.inc(1);
        }),
    };
    Ok((sink, bar))
}

/// The whole of `run` after its flags were checked.
pub async fn execute(config: RunConfig, portal: Portal) -> Result<RunResult> {
    // Held until the run ends: two runs with one lock never overlap.
    let _lock = config::lock(&config.lock)?;
    config.check_files()?;
    let rows = input::read(&config.input)?;
    let portal = Arc::new(portal);
    let started = Instant::now();
    portal.connect().await?;
    let mut resumed = Resumed::read(&config)?;
    let settings = ResetSettings {
        workers: config.workers,
        canary: config.canary,
        max_failures: config.max_failures,
        max_tries: config.max_resets,
    };
    let stop = CancellationToken::new();
    let mut report_rows: Vec<ReportRow> = Vec::new();

    // Resets may start while other clients still resolve only when nothing
    // needs the whole resolution first: with --skip-unresolved no unresolved
    // row holds the run back, and with --yes nobody is asked for a count.
    let pipelined = config.skip_unresolved && !config.ask;
    let (sink, bar, (rows_done, mut why), resolved) = if pipelined {
        stop_on_signals(stop.clone());
        let (mut sink, bar) = open_sink(&config, 0)?;
        let (tx, queue) = mpsc::unbounded_channel();
        let resolving = async {
            let tx = tx;
            let resolved = runner::resolve_each(&portal, &rows, &stop, |client| {
                report_rows.extend(client.rejected);
                for target in client.targets {
                    if let Some(target) = resumed.keep(target, &mut report_rows) {
                        bar.inc_length(1);
                        tx.send(target)
                            .expect("the resets take targets until the end");
                    }
                }
            })
            .await;
            if resolved.is_err() {
                stop.cancel();
            }
            resolved
        };
        let resetting = runner::reset_all(&portal, queue, &settings, &mut sink, stop.clone());
        let (resolved, done) = tokio::join!(resolving, resetting);
        (sink, bar, done, resolved)
    } else {
        let resolution = runner::resolve(&portal, &rows).await?;
        let unresolved: Vec<&ReportRow> = resolution.unresolved().collect();
        if !unresolved.is_empty() && !config.skip_unresolved {
            for r in &unresolved {
                eprintln!("{}, line {}: {}", config.input.display(), r.line, r.detail);
            }
            write_report(&config, &resolution.plan_rows())?;
            bail!(
                "{} row{} of {} did not resolve: nothing was reset. Fix them, or add --skip-unresolved to reset the other rows.",
                unresolved.len(),
                if unresolved.len() > 1 { "s" } else { "" },
                config.input.display()
            );
        }
        report_rows.extend(resolution.rejected);
        let targets: Vec<Target> = resolution
            .targets
            .into_iter()
            .filter_map(|t| resumed.keep(t, &mut report_rows))
            .collect();
        if config.ask && !targets.is_empty() {
            let n = targets.len();
            let s = if n > 1 { "s" } else { "" };
            let question = format!(
                "About to reset {n} SIP password{s}: {n} phone{s} will be cut off until reconfigured. Continue?"
            );
            if !ask(&question)? {
                bail!("not confirmed: nothing was reset");
            }
        }
        stop_on_signals(stop.clone());
        let (mut sink, bar) = open_sink(&config, targets.len() as u64)?;
        let queue = runner::queue_of(targets);
        let done = runner::reset_all(&portal, queue, &settings, &mut sink, stop.clone()).await;
        (sink, bar, done, Ok(()))
    };
    bar.finish_and_clear();
    logging::hide_bar();
    let earlier = resumed.earlier;
    let tried = rows_done
        .iter()
        .any(|r| matches!(r.status, Status::Reset | Status::Failed));
    report_rows.extend(rows_done);
    let Sink {
        journal, output, ..
    } = sink;
    let journal_path = journal.path().to_path_buf();
    let journaled = journal.appended();
    drop(journal);
    let reset_now = output.rows();
    if let Err(e) = resolved {
        if !tried {
            // As when resolution fails before any reset: nothing left behind, exit 2.
            discard(output, &journal_path, earlier);
            return Err(e.into());
        }
        why.get_or_insert_with(|| format!("resolution failed: {e}"));
    }
    // Stopped early: for a reason, or by a signal that left rows untried.
    let stopped = why.is_some() || report_rows.iter().any(|r| r.status == Status::Skipped);

    let mut written = None;
    let mut part = None;
    let exit = if stopped {
        // What this run reset goes to a complete `OUTPUT.partN`; the journal,
        // which holds every new password of the rotation, stays for --resume.
        if reset_now > 0 {
            part = Some(
                output
                    .finish_part()
                    .map_err(|e| aborted(e, &journal_path))?,
            );
        } else {
            discard(output, &journal_path, earlier);
        }
        Exit::Aborted
    } else {
        written = Some(output.finish().map_err(|e| aborted(e, &journal_path))?);
        if earlier == 0 {
            std::fs::remove_file(&journal_path)
                .with_context(|| format!("cannot remove the journal {}", journal_path.display()))?;
        }
        let all_reset = report_rows
            .iter()
            .all(|r| matches!(r.status, Status::Reset | Status::Duplicate));
        if all_reset {
            Exit::AllDone
        } else {
            Exit::Partial
        }
    };
    // In input order; the licences of one line in the order they were done.
    report_rows.sort_by_key(|r| r.line);
    write_report(&config, &report_rows)?;
    let summary = Summary::new(&report_rows, portal.stats(), started.elapsed(), config.rate);
    if !config.quiet || exit == Exit::Aborted {
        eprintln!("{summary}");
        if let Some(why) = &why {
            eprintln!("stopped: {why}");
        }
        for r in report_rows.iter().filter(|r| r.status == Status::Failed) {
            eprintln!("failed: line {}: {}: {}", r.line, r.licence, r.detail);
        }
        if let Some(path) = &written {
            eprintln!("new passwords: {} ({reset_now} licences)", path.display());
        }
        if let Some(part) = &part {
            if journaled < reset_now {
                // The journal could not take them all: the part file is the one copy of the others.
                eprintln!(
                    "the {reset_now} new passwords of this run are in {}; {} holds only {journaled} of them. Keep {}: --resume will reset again the {} licences missing from the journal",
                    part.display(),
                    journal_path.display(),
                    part.display(),
                    reset_now - journaled
                );
            } else {
                eprintln!(
                    "the {reset_now} new passwords of this run are in {} and in {}; run the same command with --resume to finish",
                    part.display(),
                    journal_path.display()
                );
            }
        }
        if earlier > 0 && written.is_some() {
            let parts = earlier_parts(&config.output);
            eprintln!(
                "the {earlier} passwords from the interrupted run{} are in {}{}; that journal holds every password of the rotation (sip-rotate decrypt -i IDENTITY {})",
                if parts.len() > 1 { "s" } else { "" },
                journal_path.display(),
                if parts.is_empty() {
                    String::new()
                } else {
                    format!(" and in {}", parts.join(", "))
                },
                journal_path.display()
            );
        }
    }
    Ok(RunResult {
        exit,
        summary,
        output: written,
        rows: report_rows,
    })
}

/// A run that reset nothing leaves nothing: no output, and no journal unless
/// an earlier run's passwords are in it.
fn discard(output: Output, journal: &std::path::Path, earlier: usize) {
    drop(output);
    if earlier == 0 {
        let _ = std::fs::remove_file(journal);
    }
}

/// The output could not be finished after resets: say where the passwords are.
fn aborted(e: vault::VaultError, journal: &std::path::Path) -> Aborted {
    Aborted(format!(
        "{e}\n  every new password is in {} (sip-rotate decrypt -i IDENTITY {})",
        journal.display(),
        journal.display()
    ))
}

/// The `OUTPUT.partN` files that interrupted runs left.
fn earlier_parts(output: &std::path::Path) -> Vec<String> {
    (1..)
        .map(|n| format!("{}.part{n}", output.display()))
        .take_while(|p| std::path::Path::new(p).exists())
        .collect()
}

fn write_report(config: &RunConfig, rows: &[ReportRow]) -> Result<()> {
    if let Some(path) = &config.report {
        report::write(path, rows)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    Ok(())
}
