//! `sip-rotate plan`: the run up to the question, nothing pressed.

use crate::cli::args::{LogFormat, PlanArgs};
use crate::cli::render::{self, Show};
use crate::cli::settings::{Loaded, PlanSettings, View};
use crate::cli::signals::{Work, watch_signals};
use crate::cli::{Exit, logging};
use crate::events::Interruption;
use crate::portal::Portal;
use crate::rotation::{self, StopReason};
use anyhow::Result;

/// `sip-rotate plan`.
pub async fn plan(args: PlanArgs) -> (Exit, LogFormat) {
    let mut format = args
        .diagnostics
        .log_format
        .or_else(|| Loaded::log_format_of(args.portal.config.as_deref()))
        .unwrap_or(LogFormat::Text);
    let interruption = Interruption::default();
    if let Err(e) = watch_signals(&interruption, format, Work::Reads) {
        return (crate::cli::refused(format, &e), format);
    }
    let settings = match Loaded::read(args.portal.config.as_deref())
        .and_then(|cfg| PlanSettings::new(&args, &cfg))
    {
        Ok(s) => s,
        Err(e) => return (crate::cli::refused(format, &e), format),
    };
    format = settings.view.format;
    logging::init(format, false);
    let exit = match plan_with(settings, &interruption).await {
        Ok(exit) => exit,
        Err(e) => crate::cli::refused(format, &e),
    };
    (exit, format)
}

async fn plan_with(settings: PlanSettings, interruption: &Interruption) -> Result<Exit> {
    let PlanSettings {
        input,
        report,
        portal,
        view,
    } = settings;
    let rate = portal.rate;
    let portal = Portal::new(portal, interruption.portal_interruptions());
    let show = Show::new(
        View {
            progress: view.progress,
            ..view
        },
        rate,
    );
    let plan = rotation::plan(&input, report.as_ref(), portal, &show, interruption).await;
    show.finish();
    let plan = plan?;
    let unresolved = plan
        .rows
        .iter()
        .any(|r| r.status == crate::report::Status::Unresolved);
    let exit = match &plan.stopped {
        // plan never presses Confirmer: only a page that showed a password
        // nobody asked for may have cut a phone off.
        Some(StopReason::PasswordShown(_)) => Exit::Aborted,
        Some(_) => Exit::NothingDone,
        None if unresolved || !plan.problems.is_empty() => Exit::Partial,
        None => Exit::AllDone,
    };
    render::plan(view, &plan, rate, exit)?;
    Ok(exit)
}
