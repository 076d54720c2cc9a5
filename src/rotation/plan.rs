//! `plan`: the same run up to the question, and nothing pressed.

use super::*;

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
                StopReason::Interrupted(Phase::Login)
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
                        (r.skipped() > 0).then_some(StopReason::Interrupted(Phase::Resolution));
                    (r.plan_rows(), r.targets, stopped)
                }
                Err(e) => (Vec::new(), Vec::new(), Some(stop_reason_of(&e))),
            }
        }
    };
    plan_rows.sort_by_key(|r| r.line);
    portal.end_openings().await;
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
