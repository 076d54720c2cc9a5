//! The end of a run, for people and for machines: the headline first,
//! then counts, requests, where the passwords are, and what to do.

use super::*;
use crate::cli::{TO_FINISH, TO_FINISH_ADDING_IDENTITY, TO_FINISH_AGAIN};
use crate::rotation::OnRerun;

pub(super) fn counts(rows: &[ReportRow]) -> Vec<(Status, usize)> {
    Status::ALL
        .iter()
        .map(|&s| (s, rows.iter().filter(|r| r.status == s).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The verb that goes with `n` things.
pub(super) fn is_are(n: usize) -> &'static str {
    if n == 1 { "is" } else { "are" }
}

/// `n` and the noun, singular for one: "1 licence", "2 licences".
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// How many of the phones a run cuts off are in use: "12 phones in use",
/// "3 phones in use and 5 of unknown État".
pub(super) fn phones_in_use(in_use: usize, unknown: usize) -> String {
    let phones = count(in_use, "phone", "phones");
    match unknown {
        0 => format!("{phones} in use"),
        _ => format!("{phones} in use and {unknown} of unknown État"),
    }
}

pub fn requests_line(r: &Requests, elapsed: Duration, rate: f64) -> [String; 2] {
    let mut faults = Vec::new();
    if r.too_many > 0 {
        faults.push(format!("{} answered 429", r.too_many));
    }
    if r.retries > 0 {
        faults.push(format!("{} retried after a fault", r.retries));
    }
    let secs = elapsed.as_secs_f64();
    // Over the span of the requests, the one the limiter bounds (n requests
    // take n - 1 periods), not over the whole run.
    let achieved = r.achieved_rate.unwrap_or(0.0);
    // Sessions count once logged in: a login refused (or stopped before
    // its answer) opened none, with either engine.
    let sessions = match (r.sessions, r.engine) {
        (0, EngineRan::Browser) => "no session logged in (browser engine)".to_string(),
        (0, EngineRan::Http) => "no session logged in".to_string(),
        // Sessions opened over the run (an ended one is opened again),
        // not at once: --concurrency bounds those.
        (1, EngineRan::Browser) => "1 session in the browser".to_string(),
        (1, EngineRan::Http) => "1 session".to_string(),
        (n, EngineRan::Browser) => format!("{n} sessions opened over the run, in the browser"),
        (n, EngineRan::Http) => format!("{n} sessions opened over the run"),
    };
    [
        format!(
            "portal requests: {} (login {}, resolve {}, reset {}), {sessions}{}",
            r.total(),
            r.login,
            r.resolve,
            r.reset,
            faults.iter().map(|f| format!(", {f}")).collect::<String>()
        ),
        // A run that waited long without sending (a browser that did not
        // start, a question, the journal) says over what span the rate is.
        if r.achieved_rate.is_none() {
            // Under two requests: no rate to speak of.
            format!("elapsed: {secs:.1} s (limit {rate:.2}/s)")
        } else if r.sending.as_secs_f64() >= 0.8 * secs {
            format!("elapsed: {secs:.1} s, {achieved:.2} requests/s (limit {rate:.2}/s)")
        } else {
            format!(
                "elapsed: {secs:.1} s, {achieved:.2} requests/s in {:.1} s of requests (limit {rate:.2}/s)",
                r.sending.as_secs_f64()
            )
        },
    ]
}

/// A part file of an earlier run, as the summary names it: one deleted
/// or replaced since holds none of them any more.
pub(super) fn earlier_part(part: &EarlierPart) -> String {
    let HeldIn { path, passwords } = &part.held;
    if part.intact {
        format!("{} holds {passwords} of them", path.display())
    } else {
        format!(
            "{} held {passwords} of them but is gone or changed since",
            path.display()
        )
    }
}

/// How a stopped rotation is finished, by what the same command does
/// when run again: never a flag it has already (clap refuses `--resume`
/// twice, found by a helper).
fn to_finish(o: &Outcome) -> &'static str {
    match o.on_rerun {
        OnRerun::StartsAfresh => TO_FINISH,
        OnRerun::Resumes => TO_FINISH_ADDING_IDENTITY,
        OnRerun::ResumesWithIdentity => TO_FINISH_AGAIN,
    }
}

/// Where the passwords are, one sentence a line: what people act on.
pub(super) fn where_the_passwords_are(o: &Outcome) -> Vec<String> {
    let p = &o.passwords;
    let to_finish = to_finish(o);
    let mut lines = Vec::new();
    let decrypt = crate::cli::decrypt_command;
    for HeldIn { path, passwords } in &p.result {
        lines.push(format!(
            "new passwords: {} ({passwords} licence{})",
            path.display(),
            if *passwords == 1 { "" } else { "s" }
        ));
    }
    let journal = match &p.journal {
        JournalFate::Kept {
            path,
            entries,
            this_run,
            because,
        } => Some((path, *entries, *this_run, because)),
        _ => None,
    };
    if !p.part.is_empty() {
        let passwords: usize = p.part.iter().map(|h| h.passwords).sum();
        let files = if p.part.len() == 1 {
            p.part[0].path.display().to_string()
        } else {
            p.part
                .iter()
                .map(|h| format!("{} ({})", h.path.display(), h.passwords))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match journal {
            Some((j, _, this_run, _)) if this_run < passwords => lines.push(format!(
                "the {} of this run {} in {files}; {} holds only {this_run} of them. Keep {}: --resume will reset again the {} missing from the journal",
                count(passwords, "new password", "new passwords"),
                is_are(passwords),
                j.display(),
                if p.part.len() == 1 { "it" } else { "them" },
                count(passwords - this_run, "licence", "licences")
            )),
            Some((j, ..)) => lines.push(format!(
                "the {} of this run {} in {files} and in {}; {to_finish}",
                count(passwords, "new password", "new passwords"),
                is_are(passwords),
                j.display()
            )),
            None => lines.push(format!(
                "the {} of this run {} in {files}",
                count(passwords, "new password", "new passwords"),
                is_are(passwords),
            )),
        }
    } else if o.stopped.is_some()
        && let Some((j, entries, this_run, _)) = journal
        && entries > 0
        // Of earlier runs only: the line on them says where they are.
        && (this_run > 0 || p.earlier.as_ref().is_none_or(|e| e.in_journal == 0))
    {
        // Stopped without a part file: the journal holds what there is.
        let of_this_run = if this_run > 0 {
            format!(", {this_run} of them from this run")
        } else {
            String::new()
        };
        lines.push(format!(
            "{} holds {entries} new password{}{of_this_run} ({}); {to_finish}",
            j.display(),
            if entries == 1 { "" } else { "s" },
            decrypt(j)
        ));
    }
    if let Some(earlier) = p.earlier_waiting()
        && let Some((j, entries, ..)) = journal
    {
        let parts: Vec<String> = earlier.parts.iter().map(earlier_part).collect();
        lines.push(format!(
            "the {} of earlier runs {} in {}{}; that journal holds all {entries} passwords of the rotation ({}){}",
            match earlier.in_journal {
                1 => "1 password".to_string(),
                n => format!("{n} passwords"),
            },
            is_are(earlier.in_journal),
            j.display(),
            if parts.is_empty() {
                String::new()
            } else {
                format!("; {}", parts.join("; "))
            },
            decrypt(j),
            if o.stopped.is_some() {
                format!("; {to_finish}")
            } else {
                String::new()
            }
        ));
        // One file per client: say whose files lack them, since only the
        // journal (the reseller's) holds them.
        if earlier.per_client {
            let each: Vec<String> = earlier
                .by_client
                .iter()
                .map(|(client, n)| format!("client {client}: {n}"))
                .collect();
            // A run that stopped wrote each client's part: they are there
            // too, until a resume with an identity gathers them.
            if earlier.parts.iter().any(|p| p.intact) {
                lines.push(format!(
                    "not yet in the clients' result files: {}; they are in the part files above and in that journal",
                    each.join(", ")
                ));
            } else {
                lines.push(format!(
                    "not in the clients' files, only in that journal: {}; decrypt the journal to hand them over",
                    each.join(", ")
                ));
            }
        }
    }
    // Resumed without an identity, the journal gone: the earlier runs'
    // passwords stay in the parts they wrote.
    if let Some(earlier) = p.earlier_waiting()
        && journal.is_none()
    {
        let parts: Vec<String> = earlier.parts.iter().map(earlier_part).collect();
        lines.push(format!(
            "the {} of earlier runs {} in the part files they were written to: {} (next time, an identity given to --resume, -i or identities in the config, gathers a stopped rotation into one result)",
            count(earlier.in_journal, "password", "passwords"),
            is_are(earlier.in_journal),
            parts.join("; "),
        ));
    }
    if let Some((j, _, _, KeptBecause::EarlierRuns)) = journal {
        lines.push(format!(
            "the rotation is finished; {} stays, since only it holds some of those passwords: decrypt it, hand them over, then move it away (a later run starts beside it)",
            j.display()
        ));
    }
    if let Some((j, _, _, KeptBecause::Mismatch(why))) = journal {
        lines.push(format!("the journal {} is kept: {why}", j.display()));
    }
    if p.lost > 0 {
        lines.push(format!(
            "{} licence{} reset, but {} new password could be written nowhere: reset {} again (see 'failed' above)",
            p.lost,
            if p.lost == 1 { " was" } else { "s were" },
            if p.lost == 1 { "its" } else { "their" },
            if p.lost == 1 { "it" } else { "them" },
        ));
    }
    for problem in &o.problems {
        lines.push(late_problem(problem));
    }
    lines
}

/// Why a run stopped, with the flag that sets the limit it hit.
pub(super) fn stop_text(why: &StopReason) -> String {
    match why {
        StopReason::MaxFailures { failed, limit } => {
            format!(
                "{} failed (--max-failures {limit})",
                count(*failed, "licence", "licences")
            )
        }
        StopReason::Canary { canaries, .. } => format!(
            "{why} (--canary {canaries}); {}",
            stop_advice(why).unwrap_or_default()
        ),
        StopReason::LoginRefused => format!("{why} ({})", stop_advice(why).unwrap_or_default()),
        StopReason::Unresolved { .. } => format!(
            "{why}: nothing was reset; {}",
            stop_advice(why).unwrap_or_default()
        ),
        _ => why.to_string(),
    }
}

/// What to do about a stop, where its cause says: the person's summary
/// says it beside the stop, the JSON in its `hint`.
fn stop_advice(why: &StopReason) -> Option<String> {
    match why {
        StopReason::LoginRefused => {
            Some("check --login, MYOPENIP_PASSWORD or --password-file, and --profile".into())
        }
        StopReason::Unresolved { rows } => Some(format!(
            "fix {}, or add --skip-unresolved to reset the other rows",
            if *rows == 1 { "it" } else { "them" }
        )),
        // Nothing else was reset: once the cause is found, a run takes them
        // all (a canary whose outcome is unknown is reset again).
        StopReason::Canary { confirmed, .. } => Some(format!(
            "find out why the canary failed (its line below; sip-rotate check walks the portal and never confirms), then run again{}",
            if *confirmed {
                " (a report under a fixed name needs another: this one names the canary, whose phone may be cut off)"
            } else {
                ""
            }
        )),
        _ => None,
    }
}

pub(super) fn late_problem(problem: &LateProblem) -> String {
    match problem {
        LateProblem::Report { path, why } => {
            format!("cannot write the report {}: {why}", path.display())
        }
        LateProblem::JournalNotRemoved { path, why } => format!(
            "cannot remove the journal {} ({why}): it holds the same passwords as the result; remove it once the result is safe, or the next run will not start",
            path.display()
        ),
    }
}

/// The summary of a run, as lines of text. `quiet`: the warnings were not
/// shown, so they are counted.
pub fn summary_text(o: &Outcome, rate: f64, quiet: bool) -> Vec<String> {
    // A resumed run: of the licences reset, those an earlier run did.
    let by_earlier = o
        .rows
        .iter()
        .filter(|r| r.status == Status::Reset && r.origin == crate::report::Origin::EarlierRun)
        .count();
    let counts: Vec<String> = counts(&o.rows)
        .iter()
        .map(|(s, n)| match s {
            Status::Reset if by_earlier > 0 => format!(
                "{n} reset ({} by this run, {by_earlier} by an earlier one)",
                n - by_earlier
            ),
            _ => {
                // A row `*` stands for licences nobody counted: say it.
                let rows = o
                    .rows
                    .iter()
                    .filter(|r| r.status == *s && r.licence == "*")
                    .count();
                match rows {
                    0 => format!("{n} {}", s.as_str()),
                    _ if rows == *n => {
                        format!("{} {}", count(rows, "row '*'", "rows '*'"), s.as_str())
                    }
                    _ => format!(
                        "{n} {} ({} of them)",
                        s.as_str(),
                        count(rows, "row '*'", "rows '*'")
                    ),
                }
            }
        })
        .collect();
    let mut lines = vec![format!(
        "licences: {}",
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        }
    )];
    lines.extend(requests_line(&o.requests, o.elapsed, rate));
    if let Some(hint) = slow_down_hint(o, rate) {
        lines.push(format!("hint: {hint}"));
    }
    let left_out = o.left_out.reset + o.left_out.duplicate;
    if o.left_out.from_report {
        lines.push(format!(
            "input report: {left_out} row{} left out ({} reset by the earlier run, {} duplicates), the others retried",
            if left_out == 1 { "" } else { "s" },
            o.left_out.reset,
            o.left_out.duplicate
        ));
    }
    let warnings = logging::warnings();
    if warnings > 0 && quiet {
        lines.push(format!(
            "warnings: {warnings} (SIP_ROTATE_LOG=sip_rotate=warn shows them)"
        ));
    }
    if let Some(why) = &o.stopped {
        // Rows the portal failed to show are not the input's to fix.
        let portal_failed = |r: &&ReportRow| r.remedy == Some(crate::portal::Remedy::RunAgain);
        let unresolved: Vec<&ReportRow> = o
            .rows
            .iter()
            .filter(|r| r.status == Status::Unresolved)
            .collect();
        match why {
            StopReason::Unresolved { .. }
                if !unresolved.is_empty() && unresolved.iter().all(portal_failed) =>
            {
                lines.push(format!("stopped: {why}: nothing was reset"))
            }
            _ => lines.push(format!("stopped: {}", stop_text(why))),
        }
    }
    for r in o
        .rows
        .iter()
        .filter(|r| matches!(r.status, Status::Failed | Status::Unresolved))
    {
        lines.push(format!(
            "{}: line {}: {}: {}",
            r.status.as_str(),
            r.line,
            r.licence,
            r.detail
        ));
    }
    lines.extend(remedy_hints(o).into_iter().map(|h| format!("hint: {h}")));
    lines.extend(where_the_passwords_are(o));
    if let (Some(report), false) = (&o.report, o.replaced_reports.is_empty()) {
        lines.push(format!(
            "report: {}, of the whole rotation; the stopped run's {} removed",
            report.display(),
            o.replaced_reports
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // Last: everything after its first line is the text to save.
    if let Some(stranded) = &o.passwords.stranded {
        lines.push(format!(
            "{} new password{} could be written to no file: {} encrypted journal entr{} follow{}. Save everything from the next line on into a file (e.g. rescued.journal) and decrypt it with sip-rotate decrypt -i IDENTITY -o rescued.csv rescued.journal; before any --resume, append it to the journal (cat rescued.journal >> OUTPUT.journal), or --resume resets those licences again",
            stranded.count,
            if stranded.count == 1 { "" } else { "s" },
            if stranded.count == 1 { "its" } else { "their" },
            if stranded.count == 1 { "y" } else { "ies" },
            if stranded.count == 1 { "s" } else { "" },
        ));
        lines.push(stranded.journal_text.trim_end().to_string());
    }
    lines
}

/// What to do about the failures, from their typed causes: the labels, or
/// a portal that failed. Doing what a hint says must work: running the same
/// command again is right only when nothing was reset (it would reset the
/// others again, or find its output there); otherwise the report retries
/// exactly what is left, and a journal is finished with --resume.
fn remedy_hints(o: &Outcome) -> Vec<String> {
    let mut hints = Vec::new();
    let stop_remedy = o.stopped.as_ref().and_then(StopReason::remedy);
    let labels = Some(crate::portal::Remedy::Labels);
    if o.rows.iter().any(|r| r.remedy == labels) || stop_remedy == labels {
        hints.push(
            "give the portal's words in a labels file (--labels FILE; sip-rotate labels prints one to edit), and try it with sip-rotate check first: it never confirms".into(),
        );
    }
    let run_again = Some(crate::portal::Remedy::RunAgain);
    let failed_by_the_portal = o.rows.iter().filter(|r| r.remedy == run_again).count();
    if failed_by_the_portal > 0 || stop_remedy == run_again {
        let what = if failed_by_the_portal > 0 {
            format!(
                "{} did not go through",
                count(failed_by_the_portal, "row", "rows")
            )
        } else {
            "the run stopped".to_string()
        };
        let to_do = if matches!(o.passwords.journal, JournalFate::Kept { .. })
            && o.stopped.is_some()
        {
            // How is the journal's hint (--resume, and -i if need be): said once.
            "finish the rotation once the portal answers".to_string()
        } else if o.no_phone_cut_off() {
            "run the same command again once the portal answers (nothing was reset)".to_string()
        } else {
            match &o.report {
                Some(report) => format!(
                    "once the portal answers, retry only what is left: the same command with --input {} (it retries every licence not reset, and leaves out those reset), another -o and another --report (this run's files keep its passwords and its report)",
                    report.display()
                ),
                None => "once the portal answers, retry only what is left (a run with --report writes the report that --input retries exactly); running the same command again would reset the others again".to_string(),
            }
        };
        hints.push(format!(
            "{what} because the portal failed, not because of the input: {to_do}"
        ));
    }
    hints
}

/// Every hint of the summary, as JSON's one `hint`.
fn all_hints(o: &Outcome, rate: f64) -> Option<String> {
    // What the person reads beside the stop and the files, said in the
    // JSON's own field too: a program reading it looks there.
    let stop_advice = o.stopped.as_ref().and_then(stop_advice);
    let to_finish = match &o.passwords.journal {
        JournalFate::Kept {
            because: KeptBecause::Stopped,
            ..
        } if o.on_rerun != OnRerun::StartsAfresh => Some(to_finish(o).to_string()),
        JournalFate::Kept {
            path,
            because: KeptBecause::Stopped,
            ..
        } => Some(crate::cli::unfinished_hint(path)),
        _ => None,
    };
    let hints: Vec<String> = stop_advice
        .into_iter()
        .chain(remedy_hints(o))
        .chain(slow_down_hint(o, rate))
        .chain(to_finish)
        .collect();
    (!hints.is_empty()).then(|| hints.join("; "))
}

/// The summary of a run as one JSON object.
pub fn summary_json(o: &Outcome, rate: f64, exit: Exit) -> serde_json::Value {
    let counts: serde_json::Map<String, serde_json::Value> = counts(&o.rows)
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
        .collect();
    let held = |h: &[HeldIn]| {
        h.iter()
            .map(|h| json!({"path": h.path.display().to_string(), "passwords": h.passwords}))
            .collect::<Vec<_>>()
    };
    let journal = match &o.passwords.journal {
        JournalFate::NotCreated => json!(null),
        JournalFate::Removed => json!("removed"),
        JournalFate::Kept {
            path,
            entries,
            this_run,
            ..
        } => {
            json!({"path": path.display().to_string(), "passwords": entries, "of_this_run": this_run})
        }
    };
    json!({
        "level": if exit == Exit::AllDone { "INFO" } else { "WARN" },
        "event": "summary",
        "exit_code": exit as u8,
        "licences": counts,
        "requests": {
            "total": o.requests.total(),
            "login": o.requests.login,
            "resolve": o.requests.resolve,
            "reset": o.requests.reset,
            "answered_429": o.requests.too_many,
            "retried": o.requests.retries,
            "sessions": o.requests.sessions,
            "engine": o.requests.engine.name(),
        },
        "confirmations": o.confirmations,
        "input_report_left_out": {
            "reset": o.left_out.reset,
            "duplicate": o.left_out.duplicate,
        },
        "elapsed_seconds": o.elapsed.as_secs_f64(),
        "rate_limit": rate,
        "hint": all_hints(o, rate),
        "warnings": logging::warnings(),
        "stopped": o.stopped.as_ref().map(stop_text),
        "results": held(&o.passwords.result),
        "parts": held(&o.passwords.part),
        // Earlier runs' passwords that are not in the result: in their
        // parts (each with whether it is still the file written).
        "earlier_parts": o.passwords.earlier_waiting().map(|e| {
            e.parts
                .iter()
                .map(|p| json!({"path": p.held.path.display().to_string(), "passwords": p.held.passwords, "intact": p.intact}))
                .collect::<Vec<_>>()
        }),
        "journal": journal,
        "lost": o.passwords.lost,
        "stranded": o.passwords.stranded.as_ref().map(|s| json!({
            "passwords": s.count,
            "journal": s.journal_text,
        })),
        "report": o.report.as_ref().map(|p| p.display().to_string()),
        "replaced_reports": o.replaced_reports.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "files": where_the_passwords_are(o),
    })
}

/// What to do when the portal answered 429: a rate below what it let
/// through.
pub(super) fn slow_down_hint(o: &Outcome, rate: f64) -> Option<String> {
    (o.requests.too_many > 0).then(|| {
        format!(
            "the portal asked to slow down {}: try --rate {} (or rate in the config)",
            logging::how_often(o.requests.too_many),
            gentler_rate(rate, o.requests.achieved_rate)
        )
    })
}

/// The summary's first line: whether the run did what it was asked, said
/// before any detail, as the exit code says it.
pub(super) fn headline(exit: Exit, o: &Outcome) -> (String, logging::Tone) {
    use logging::Tone::{Bad, Good};
    // A row `*` that did not resolve stands for licences nobody counted:
    // it is a row, not a licence.
    let (every_licence, one_licence): (Vec<_>, Vec<_>) = o
        .rows
        .iter()
        .filter(|r| !matches!(r.status, Status::Reset | Status::Duplicate))
        .partition(|r| r.licence == "*");
    let not_reset = every_licence.len() + one_licence.len();
    match exit {
        Exit::AllDone => ("done: every licence asked for was reset".into(), Good),
        Exit::Partial if not_reset == 0 => (
            "FAILED in part: every licence was reset, but not all went well (exit 1)".into(),
            Bad,
        ),
        Exit::Partial => (
            format!(
                "FAILED in part: {} not reset{} (exit 1)",
                match (one_licence.len(), every_licence.len()) {
                    (licences, 0) => count(licences, "licence", "licences"),
                    (0, rows) => count(rows, "row '*'", "rows '*'"),
                    (licences, rows) => format!(
                        "{} and {}",
                        count(licences, "licence", "licences"),
                        count(rows, "row '*'", "rows '*'")
                    ),
                },
                // A Confirmer went, no password came back: its phone may
                // be cut off, which "not reset" alone would hide.
                match one_licence
                    .iter()
                    .filter(|r| r.status == Status::Failed && r.confirmations > 0)
                    .count()
                {
                    0 => String::new(),
                    n => format!(
                        ", {n} of them after a Confirmer: {} may be cut off",
                        if n == 1 { "its phone" } else { "their phones" }
                    ),
                }
            ),
            Bad,
        ),
        Exit::NothingDone => ("NOTHING RESET: no phone was cut off (exit 2)".into(), Bad),
        Exit::Aborted => {
            let p = &o.passwords;
            let to_finish = matches!(p.journal, JournalFate::Kept { .. })
                || !p.part.is_empty()
                || !p.result.is_empty()
                || p.stranded.is_some();
            let line = match &o.stopped {
                Some(StopReason::PasswordShown(_)) => {
                    "STOPPED: a page showed a new password nobody asked for: a phone may be cut off (exit 3)"
                }
                _ if to_finish => {
                    "STOPPED: phones may be cut off until the rotation is finished (exit 3)"
                }
                // Nothing to resume: a Confirmer went and no file holds a
                // password, so the phone it named may be cut off.
                _ => {
                    "STOPPED: a phone may be cut off, and no file holds its new password: see below (exit 3)"
                }
            };
            (line.into(), Bad)
        }
    }
}

/// Shows the end of a run: nothing when quiet and all went well.
pub fn outcome(view: View, o: &Outcome, rate: f64, exit: Exit) {
    // Quiet on success, unless the result is not where all the passwords
    // are: some of an earlier run's stay in its part or its journal, and
    // nobody would know it.
    let earlier_elsewhere = o.passwords.earlier_waiting().is_some()
        || matches!(
            o.passwords.journal,
            JournalFate::Kept {
                because: KeptBecause::EarlierRuns,
                ..
            }
        );
    if view.quiet && exit == Exit::AllDone && !earlier_elsewhere {
        return;
    }
    match view.format {
        LogFormat::Text => {
            let (line, tone) = headline(exit, o);
            logging::headline(&line, tone);
            summary_text(o, rate, view.quiet)
                .iter()
                .for_each(|l| logging::say(l))
        }
        LogFormat::Json => json_line(summary_json(o, rate, exit)),
    }
}
