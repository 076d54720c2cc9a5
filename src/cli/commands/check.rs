//! `sip-rotate check`: what an operator does before the first run against
//! the real portal. `check` walks one licence's way to its confirmation page
//! and says, label by label, what the run would find; `labels` prints the
//! labels file to edit when the portal words one differently.

use crate::cli::args::{CheckArgs, LogFormat};
use crate::cli::render::{self, Show};
use crate::cli::settings::{Loaded, View};
use crate::cli::{Exit, logging};
use crate::events::Interruption;
use crate::input::{self, LicenceSelector};
use crate::portal::Requests;
use crate::portal::html::Kind;
use crate::portal::inspect::{Check, Found, Target};
use crate::portal::{EngineRan, Portal, PortalError};
use anyhow::Result;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

pub(super) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Link => "link",
        Kind::Button => "button",
        Kind::Field => "field",
        Kind::Choice => "choice",
        Kind::Column => "column",
        Kind::LabelValue => "label",
        Kind::Text => "text",
        Kind::Value => "value",
    }
}

/// The licence `check` walks to.
fn target(args: &CheckArgs, input: &std::path::Path) -> Result<Target> {
    let rows = input::read(input)?.rows;
    let row = match &args.licence {
        None => rows.first(),
        Some(wanted) => rows
            .iter()
            .find(|r| r.licence == LicenceSelector::One(wanted.clone()))
            .or_else(|| rows.iter().find(|r| r.licence == LicenceSelector::All)),
    };
    let Some(row) = row else {
        return Err(crate::cli::Advised::error(
            format!(
                "the input names no licence {} and has no '*' row to find it in",
                args.licence.as_deref().unwrap_or("")
            ),
            "give --licence one of the input's licences, or add a row with its client and '*'",
        ));
    };
    Ok(Target {
        client_ref: row.client_ref.clone(),
        service_ref: row.service_ref.clone(),
        licence: match (&args.licence, &row.licence) {
            (Some(l), _) => Some(l.clone()),
            (None, LicenceSelector::One(l)) => Some(l.clone()),
            (None, LicenceSelector::All) => None,
        },
        sda: row.sda.clone(),
    })
}

fn found_text(found: &Found) -> String {
    match found {
        Found::Yes(note) if note.is_empty() => "ok".into(),
        Found::Yes(note) => format!("ok: {note}"),
        Found::Missing(m) => format!("MISSING: {m}"),
        Found::NotReached => "not reached".into(),
        Found::NotChecked(why) => format!("not checked: {why}"),
        Found::Wrong(what) => format!("WRONG: {what}"),
        Found::NeedsScript(what) => format!("SCRIPT: {what}"),
        Found::NotListed(what) => format!("NOT LISTED: {what}"),
    }
}

/// `sip-rotate check`.
pub async fn check(args: CheckArgs) -> (Exit, LogFormat) {
    let format = args
        .diagnostics
        .log_format
        .or_else(|| Loaded::log_format_of(args.portal.config.as_deref()))
        .unwrap_or(LogFormat::Text);
    if args.print_labels {
        return (
            super::labels::labels().unwrap_or_else(|e| crate::cli::refused(format, &e)),
            format,
        );
    }
    logging::init(format, false);
    let exit = match check_with(&args, format).await {
        Ok(exit) => exit,
        Err(e) => crate::cli::refused(format, &e),
    };
    (exit, format)
}

async fn check_with(args: &CheckArgs, format: LogFormat) -> Result<Exit> {
    let cfg = Loaded::read(args.portal.config.as_deref())?;
    let input = crate::cli::settings::input_of(args.input.as_ref(), &cfg)?;
    let target = target(args, &input)?;
    let settings = crate::cli::settings::portal_settings(&args.portal, &cfg)?;
    let (address, rate) = (settings.start.clone(), settings.rate);
    let interruption = Interruption::default();
    crate::cli::signals::watch_signals(&interruption, format, crate::cli::signals::Work::Reads)?;
    let portal = Arc::new(Portal::new(settings, interruption.portal_interruptions()));
    let started = Instant::now();
    let show = Show::new(
        View {
            quiet: false,
            format,
            progress: false,
        },
        rate,
    );
    let checks = match portal.inspect(&target).await {
        Ok(checks) => checks,
        // The gate refused a press that could commit a reset: the labels
        // or the portal are not what the walk expects.
        Err(e @ PortalError::WouldCommit { .. }) => {
            render::error(
                format,
                &format!("{e}"),
                Some(
                    "check never commits a reset: give reset_button the words of the button that opens the confirmation (sip-rotate labels shows the guide's), not those of Confirmer",
                ),
            );
            return Ok(Exit::NothingDone);
        }
        // A page showed a new password: a phone may be cut off, and check
        // keeps no password.
        Err(e @ PortalError::PasswordShown { .. }) => {
            render::error(
                format,
                &format!("{e}"),
                Some(
                    "check keeps no password: that phone may need a reset by sip-rotate run to be known again; sip-rotate status tells whether it is still online",
                ),
            );
            return Ok(Exit::Aborted);
        }
        Err(PortalError::SessionEnded) => {
            render::error(
                format,
                "the portal could not be walked: its session ended (it answered with its login page where another page was expected)",
                Some(
                    "run check again; if the session ends again so soon, the portal ends sessions after very few requests, or the login profile is wrong",
                ),
            );
            return Ok(Exit::NothingDone);
        }
        Err(e) => return Err(anyhow::Error::new(e).context("the portal could not be walked")),
    };
    show.finish();
    let requests = Requests::of(portal.stats());
    let missing: Vec<&Check> = checks.iter().filter(|c| !c.ok()).collect();
    let walked_to = format!(
        "licence {} of client {}",
        target.licence.as_deref().unwrap_or("(the first)"),
        target.client_ref
    );
    match format {
        LogFormat::Text => {
            let mut out = std::io::stdout().lock();
            let shown = |line: &str| logging::shown(line, logging::Stream::Stdout);
            writeln!(
                out,
                "{}",
                shown(&format!(
                    "check of {walked_to} on {} (Confirmer is never sent)",
                    crate::scrub::url(&address)
                ))
            )?;
            // A heading for each step, then its labels in columns as wide
            // as their longest entry.
            let quoted: Vec<String> = checks.iter().map(|c| format!("'{}'", c.words)).collect();
            let key_width = checks.iter().map(|c| c.key.len()).max().unwrap_or(0);
            let kind_width = checks
                .iter()
                .map(|c| kind_name(c.kind).len())
                .max()
                .unwrap_or(0);
            let words_width = quoted.iter().map(|w| w.chars().count()).max().unwrap_or(0);
            let mut step = None;
            for (c, words) in checks.iter().zip(&quoted) {
                if step != Some(c.step) {
                    step = Some(c.step);
                    writeln!(out, "{}", c.step)?;
                }
                let line = format!(
                    "  {:<key_width$}  {:<kind_width$}  {:<words_width$}  {}",
                    c.key,
                    kind_name(c.kind),
                    words,
                    found_text(&c.found)
                );
                writeln!(out, "{}", shown(&line))?;
            }
            out.flush()?;
            for l in render::requests_line(&requests, started.elapsed(), rate) {
                logging::say(&l);
            }
            let scripted: Vec<&str> = missing
                .iter()
                .filter(|c| matches!(c.found, Found::NeedsScript(_)))
                .map(|c| c.key)
                .collect();
            match requests.engine {
                EngineRan::Browser => logging::say(
                    "walked with the browser engine: a step runs a script of the page (a run uses the browser too)",
                ),
                EngineRan::Http if scripted.is_empty() => logging::say(
                    "walked with the HTTP engine: no step it reached needs a script (a run starts no browser)",
                ),
                EngineRan::Http => {}
            }
            // The advice follows the first thing that went wrong: what
            // came after it was not reached, and is no label's fault.
            let first = missing.first().map(|c| (c.step, c.key, &c.found));
            let wrong_labels: Vec<&str> = missing
                .iter()
                .filter(|c| matches!(c.found, Found::Missing(_) | Found::Wrong(_)))
                .map(|c| c.key)
                .collect();
            if missing.is_empty() {
                logging::say("every label run, plan and status look for is there");
            } else if let Some((_, _, Found::NotListed(what))) = first {
                logging::say(&format!(
                    "{what}: check the client and the licence (the input's row, or --licence); the labels are not at fault"
                ));
            } else if let Some(("login", "password_field", Found::Missing(_))) = first {
                logging::say(
                    "no login form at --portal: is it the MyOpenIP portal's address? If it is, and its words differ, set password_field in a labels file (sip-rotate labels > labels.toml, then edit it)",
                );
            } else if let Some((step, _, Found::Missing(m))) = first
                && let Some(went_on) = &m.went_on
            {
                logging::say(&format!(
                    "at the {step} step, {went_on}: no label fixes that; send a capture (sip-rotate check --capture DIR) to whoever maintains sip-rotate"
                ));
            } else if !scripted.is_empty() {
                logging::say(&format!(
                    "{} runs a script of the page: check again, and run, with --engine browser (see 'The two engines' in docs/operating.md)",
                    scripted.join(", ")
                ));
            } else {
                logging::say(&format!(
                    "{} label{} not as the run needs {}: set {} in a labels file (sip-rotate labels > labels.toml, then edit it), and check again with --labels labels.toml",
                    wrong_labels.len(),
                    if wrong_labels.len() == 1 { "" } else { "s" },
                    if wrong_labels.len() == 1 {
                        "it"
                    } else {
                        "them"
                    },
                    wrong_labels.join(", ")
                ));
            }
        }
        LogFormat::Json => {
            for c in &checks {
                render::json_line(json!({
                    "level": if c.ok() { "INFO" } else { "WARN" },
                    "event": "label",
                    "step": c.step,
                    "key": c.key,
                    "kind": kind_name(c.kind),
                    "words": c.words,
                    "found": c.ok(),
                    "detail": found_text(&c.found),
                }));
            }
            render::json_line(json!({
                "level": if missing.is_empty() { "INFO" } else { "WARN" },
                "event": "summary",
                "walked_to": walked_to,
                "engine": requests.engine.name(),
                "missing": missing.iter().map(|c| c.key).collect::<Vec<_>>(),
                "requests": requests.total(),
            }));
        }
    }
    Ok(if missing.is_empty() {
        Exit::AllDone
    } else {
        Exit::NothingDone
    })
}
