//! Ctrl-C, SIGTERM and SIGHUP, for every command that talks to the portal:
//! the first stops, the second abandons what is in flight, the third exits.

use crate::cli::args::LogFormat;
use crate::cli::render::{self};
use crate::cli::{Exit, logging};
use crate::events::Interruption;
use anyhow::Result;
use tokio::signal::unix::{SignalKind, signal};

/// Ctrl-C, SIGTERM or SIGHUP: the first stops the run (no new reset, waiting
/// requests dropped, a `Confirmer` in flight finishes), the second
/// abandons the `Confirmer` requests in flight too, the third exits.
pub fn watch_signals(interruption: &Interruption, format: LogFormat, work: Work) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    // A dropped ssh session at 2 a.m. is an interruption, not a death.
    let mut hangup = signal(SignalKind::hangup())?;
    let interruption = interruption.clone();
    let say = move |text: &str| match format {
        LogFormat::Text => logging::say(text),
        LogFormat::Json => render::json_line(serde_json::json!({
            "level": "WARN",
            "event": "signal",
            "message": text,
        })),
    };
    tokio::spawn(async move {
        for n in 1.. {
            let hung_up = tokio::select! {
                _ = interrupt.recv() => false,
                _ = terminate.recv() => false,
                _ = hangup.recv() => true,
            };
            if hung_up {
                // The terminal may be gone: nothing may be drawn on it.
                logging::forget_terminal();
            }
            // The message first: once stopped, the command may end (and the
            // process with it) before this task is polled again. A terminal
            // that hung up was forgotten above, so saying it cannot block.
            match n {
                1 => {
                    let pressed = interruption
                        .pressed
                        .load(std::sync::atomic::Ordering::SeqCst);
                    say(match work {
                        Work::Resets if pressed => {
                            "stopping: no new reset is started, waiting requests are dropped; a Confirmer in flight finishes (a second Ctrl-C or signal abandons it)"
                        }
                        Work::Resets => {
                            "stopping: no reset has begun, none will; waiting requests are dropped"
                        }
                        Work::Reads => "stopping: waiting requests are dropped (nothing is reset)",
                    });
                    interruption.stop.cancel();
                }
                2 => {
                    say(
                        "abandoning the Confirmer requests in flight: their passwords will be unknown",
                    );
                    interruption.abort.cancel();
                }
                _ => {
                    crate::portal::chromium::end_all();
                    std::process::exit(Exit::Aborted as i32)
                }
            }
        }
    });
    Ok(())
}

/// What a command sends the portal, for what an interruption says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// `run`: `Confirmer` requests may be in flight.
    Resets,
    /// `plan`, `check`, `status`: pages are only read.
    Reads,
}
