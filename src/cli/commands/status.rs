//! `sip-rotate status`: after a rotation, which phones are back. Renders
//! what `follow::follow` reads (the library checks the files, as for
//! `run`); the exit code says whether all are back.

use crate::cli::args::{LogFormat, StatusArgs};
use crate::cli::render::{self, Show};
use crate::cli::settings::{Loaded, View};
use crate::cli::{Exit, logging};
use crate::events::Interruption;
use crate::follow::{self, Ended, FollowSettings, PhoneState, Round};
use crate::portal::Portal;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// `sip-rotate status`.
pub async fn status(args: StatusArgs) -> (Exit, LogFormat) {
    let format = args
        .diagnostics
        .log_format
        .or_else(|| Loaded::log_format_of(args.portal.config.as_deref()))
        .unwrap_or(LogFormat::Text);
    logging::init(format, false);
    let exit = match follow(&args, format).await {
        Ok(exit) => exit,
        Err(e) => crate::cli::refused(format, &e),
    };
    (exit, format)
}

fn round_line(round: &Round) -> String {
    format!(
        "round {} at {}: {} of {} back",
        round.number,
        chrono::Local::now().format("%H:%M:%S"),
        round.back(),
        crate::cli::render::count(round.phones.len(), "phone", "phones")
    )
}

async fn follow(args: &StatusArgs, format: LogFormat) -> Result<Exit> {
    let cfg = Loaded::read(args.portal.config.as_deref())?;
    let input = crate::cli::settings::input_of(args.input.as_ref(), &cfg)?;
    let settings = FollowSettings {
        input,
        watch: args.watch.map(Duration::from_secs),
        until: args.until.map(Duration::from_secs),
        report: args
            .report
            .clone()
            .map(|path| (path, args.report_style.overwrite_report)),
    };
    let portal_settings = crate::cli::settings::portal_settings(&args.portal, &cfg)?;
    let rate = portal_settings.rate;
    let interruption = Interruption::default();
    crate::cli::signals::watch_signals(&interruption, format, crate::cli::signals::Work::Reads)?;
    let portal = Portal::new(portal_settings, interruption.portal_interruptions());
    let show = Show::new(
        View {
            quiet: false,
            format,
            progress: format == LogFormat::Text && std::io::stderr().is_terminal(),
        },
        rate,
    );
    let mut on_round = |round: &Round| match format {
        LogFormat::Text => logging::say(&round_line(round)),
        LogFormat::Json => render::json_line(json!({
            "level": "INFO",
            "event": "round",
            "round": round.number,
            "back": round.back(),
            "total": round.phones.len(),
        })),
    };
    let outcome = follow::follow(&settings, portal, &show, &interruption, &mut on_round).await;
    show.finish();
    let outcome = outcome?;
    if outcome.last.number == 0 {
        bail!("interrupted before a round was read: no phone's state is known");
    }
    let down: Vec<&PhoneState> = outcome
        .last
        .phones
        .iter()
        .filter(|p| !p.connected())
        .collect();
    // Per client, the phones still down.
    let mut by_client: BTreeMap<&str, (usize, Vec<&PhoneState>)> = BTreeMap::new();
    for p in &outcome.last.phones {
        let entry = by_client.entry(p.client_ref.as_str()).or_default();
        entry.0 += 1;
        if !p.connected() {
            entry.1.push(p);
        }
    }
    match format {
        LogFormat::Text => {
            let mut out = std::io::stdout().lock();
            // Through the scrubber (a name is the portal's text), wrapped
            // to a terminal's width; whole lines in a pipe or cron's mail.
            let shown = |line: String| logging::shown(&line, logging::Stream::Stdout);
            for (client, (total, still)) in &by_client {
                if still.is_empty() {
                    continue;
                }
                writeln!(
                    out,
                    "{}",
                    shown(format!(
                        "client {client}: {} of {} still down",
                        still.len(),
                        crate::cli::render::count(*total, "phone", "phones")
                    ))
                )?;
                for p in still {
                    writeln!(
                        out,
                        "{}",
                        shown(format!(
                            "  {:<12} SDA {:<16} {:<32} {}",
                            p.licence,
                            if p.sda.is_empty() { "none" } else { &p.sda },
                            p.name,
                            if p.state.is_empty() {
                                "(no État shown)"
                            } else {
                                &p.state
                            }
                        ))
                    )?;
                }
            }
            // Rows not found are phones nobody can say are back: listed
            // with the others, where cron's mail shows them.
            for r in &outcome.unresolved {
                writeln!(
                    out,
                    "{}",
                    shown(format!(
                        "client {}: not found: line {}: {}: {}",
                        r.client_ref, r.line, r.licence, r.detail
                    ))
                )?;
            }
            out.flush()?;
            let not_found = match outcome.unresolved.len() {
                0 => String::new(),
                n => format!(", {n} not found"),
            };
            logging::say(&format!(
                "{} of {} back{not_found}{}",
                outcome.last.back(),
                crate::cli::render::count(outcome.last.phones.len(), "phone", "phones"),
                match &outcome.ended {
                    Ended::AllBack | Ended::OneRound => String::new(),
                    Ended::Until => " when --until passed".into(),
                    Ended::Interrupted => " when interrupted".into(),
                    Ended::PortalFailing { error } => format!(
                        " at round {} (the rounds after it could not be read: {error})",
                        outcome.last.number
                    ),
                }
            ));
            for l in render::requests_line(&outcome.requests, outcome.elapsed, rate) {
                logging::say(&l);
            }
        }
        LogFormat::Json => {
            for p in &down {
                render::json_line(json!({
                    "level": "WARN",
                    "event": "down",
                    "client_ref": p.client_ref,
                    "service_ref": p.service_ref,
                    "licence": p.licence,
                    "sda": p.sda,
                    "name": p.name,
                    "state": p.state,
                }));
            }
            render::json_line(json!({
                "level": if down.is_empty() { "INFO" } else { "WARN" },
                "event": "summary",
                "back": outcome.last.back(),
                "total": outcome.last.phones.len(),
                "rounds": outcome.last.number,
                "ended": match &outcome.ended {
                    Ended::AllBack => "all_back",
                    Ended::OneRound => "one_round",
                    Ended::Until => "until",
                    Ended::Interrupted => "interrupted",
                    Ended::PortalFailing { .. } => "portal_failing",
                },
                "not_found": outcome.unresolved.len(),
                "requests": outcome.requests.total(),
                "elapsed_seconds": outcome.elapsed.as_secs_f64(),
            }));
        }
    }
    if let Some(path) = &args.report {
        let dialect = args
            .report_style
            .csv_dialect
            .map(Into::into)
            .unwrap_or_default();
        crate::follow::write_report(
            path,
            &outcome.last.phones,
            args.report_style.overwrite_report,
            dialect,
        )
        .with_context(|| format!("cannot write the status report {}", path.display()))?;
    }
    // The states of a portal that stopped answering are stale: that run
    // could not tell, whatever the last round said.
    Ok(if matches!(outcome.ended, Ended::PortalFailing { .. }) {
        Exit::NothingDone
    } else if down.is_empty() && outcome.unresolved.is_empty() {
        Exit::AllDone
    } else {
        Exit::Partial
    })
}
