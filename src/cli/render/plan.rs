//! What `plan` found: a line per row on stdout, the summary on stderr.

use super::*;

/// What `plan` found: one line per row on stdout, the summary on stderr.
pub fn plan(view: View, plan: &Plan, rate: f64, exit: Exit) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for t in &plan.targets {
        let line = format!(
            "line {}: reset {} ({}, SDA {}, {}, {}) of client {}, service {}",
            t.line,
            t.licence.licence,
            t.licence.licence_type,
            if t.licence.sda.is_empty() {
                "none"
            } else {
                &t.licence.sda
            },
            t.licence.name,
            if t.licence.state.is_empty() {
                "state not shown"
            } else {
                &t.licence.state
            },
            t.client_ref,
            t.service_ref
        );
        writeln!(out, "{}", logging::shown(&line, logging::Stream::Stdout))?;
    }
    for r in plan.rows.iter().filter(|r| r.status != Status::Planned) {
        let line = format!(
            "line {}: {} {}: {}",
            r.line,
            r.status.as_str(),
            r.licence,
            r.detail
        );
        writeln!(out, "{}", logging::shown(&line, logging::Stream::Stdout))?;
    }
    out.flush()?;
    let unresolved = plan
        .rows
        .iter()
        .filter(|r| r.status == Status::Unresolved)
        .count();
    let would = format!(
        "run would reset {}: {} would be cut off until reconfigured",
        count(plan.targets.len(), "licence", "licences"),
        phones_in_use(plan.in_use, plan.state_unknown)
    );
    // A run resets nothing unless every row resolves; a plan that stopped
    // (never got in, interrupted) knows nothing of what a run would reset.
    let would = if plan.stopped.is_some() {
        "what run would reset is not known".to_string()
    } else if unresolved > 0 && !plan.targets.is_empty() {
        format!(
            "run would reset nothing: {unresolved} row{} did not resolve; with --skip-unresolved, {would}",
            if unresolved == 1 { "" } else { "s" }
        )
    } else if unresolved > 0 {
        format!(
            "run would reset nothing: {} did not resolve",
            count(unresolved, "row", "rows")
        )
    } else {
        would
    };
    match view.format {
        LogFormat::Text => {
            // A plan that did not find everything says so first, as a
            // failed run does.
            let first = match (exit, &plan.stopped) {
                (Exit::AllDone, _) => None,
                // Why, the `stopped:` line says, once.
                (_, Some(_)) => Some(format!(
                    "PLAN STOPPED before every row resolved (exit {})",
                    exit as u8
                )),
                (_, None) if unresolved > 0 => Some(format!(
                    "PLAN INCOMPLETE: {} did not resolve (exit {})",
                    count(unresolved, "row", "rows"),
                    exit as u8
                )),
                (_, None) => Some(format!(
                    "PLAN INCOMPLETE: the report could not be written (exit {})",
                    exit as u8
                )),
            };
            if let Some(first) = first {
                logging::headline(&first, logging::Tone::Bad);
            }
            let counts: Vec<String> = counts(&plan.rows)
                .iter()
                .map(|(s, n)| format!("{n} {}", s.as_str()))
                .collect();
            logging::say(&format!(
                "licences: {}",
                if counts.is_empty() {
                    "none".into()
                } else {
                    counts.join(", ")
                }
            ));
            for l in requests_line(&plan.requests, plan.elapsed, rate) {
                logging::say(&l);
            }
            if let Some(why) = &plan.stopped {
                logging::say(&format!("stopped: {}", stop_text(why)));
            }
            for problem in &plan.problems {
                logging::say(&late_problem(problem));
            }
            logging::say(&would);
        }
        LogFormat::Json => {
            let counts: serde_json::Map<String, serde_json::Value> = counts(&plan.rows)
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), json!(n)))
                .collect();
            json_line(json!({
                "level": "INFO",
                "event": "summary",
                "licences": counts,
                "requests": {
                    "total": plan.requests.total(),
                    "login": plan.requests.login,
                    "resolve": plan.requests.resolve,
                    "sessions": plan.requests.sessions,
                    "engine": plan.requests.engine.name(),
                },
                "elapsed_seconds": plan.elapsed.as_secs_f64(),
                "stopped": plan.stopped.as_ref().map(stop_text),
                "would_reset": plan.stopped.is_none().then_some(plan.targets.len()),
                "in_use": plan.in_use,
                "state_unknown": plan.state_unknown,
            }));
        }
    }
    Ok(())
}
