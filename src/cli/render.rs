//! What a person or a machine sees of a run: progress bars on a terminal,
//! one JSON object per line with `--log-format json`, and the summary that
//! says what was done and which file holds which passwords. Rendering only:
//! every fact comes from the library's `Outcome` or `Plan`.

use super::Exit;
use super::args::LogFormat;
use super::logging;
use super::settings::View;
use crate::events::{Event, Observer, Question, ResolveProgress};
use crate::portal::EngineRan;
use crate::portal::Requests;
use crate::report::{ReportRow, Status};
use crate::rotation::{
    EarlierPart, HeldIn, JournalFate, KeptBecause, LateProblem, Outcome, Plan, StopReason,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// Listens to a run and shows it as `view` says.
pub struct Show {
    view: View,
    bars: Option<Bars>,
}

struct Bars {
    all: MultiProgress,
    resolving: ProgressBar,
    resetting: Mutex<Option<(ProgressBar, usize)>>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("static template")
        .progress_chars("=> ")
}

/// A rate the portal may take better than `rate`, as `--rate` is written:
/// half of it, and below what it let through (`achieved`, over the run,
/// its pauses included) when that is known.
pub fn gentler_rate(rate: f64, achieved: Option<f64>) -> String {
    let gentler = match achieved {
        Some(a) if a > 0.0 => (rate / 2.0).min(a * 0.8),
        _ => rate / 2.0,
    };
    if gentler >= 1.0 {
        format!("{}", gentler.floor())
    } else {
        let text = format!("{:.2}", gentler.max(0.01));
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Show {
    /// `rate`: the run's `--rate`, for the advice the warnings give.
    pub fn new(view: View, rate: f64) -> Show {
        logging::advise_on_slow_down(format!("try --rate {} or lower", gentler_rate(rate, None)));
        let bars = view.progress.then(|| {
            let all = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            // Labelled from the first moment: the login comes first.
            let resolving = all.add(ProgressBar::new(0));
            resolving.set_style(style("{spinner} logging in to the portal ({elapsed})"));
            resolving.enable_steady_tick(Duration::from_millis(200));
            logging::show_bars(&all);
            Bars {
                all,
                resolving,
                resetting: Mutex::new(None),
            }
        });
        Show { view, bars }
    }

    /// Logged in: the first bar shows the resolution from now on. Every
    /// line fits the terminal (`wide_msg` takes what is left, cut short).
    fn logged_in(&self) {
        let Some(bars) = &self.bars else { return };
        bars.resolving.set_style(style(
            "{spinner} resolving [{bar:20}] ({elapsed}) {wide_msg}",
        ));
    }

    fn resolving(&self, p: ResolveProgress) {
        let Some(bars) = &self.bars else { return };
        let bar = &bars.resolving;
        if bar.length() == Some(0) {
            // A command that says nothing of its login: its first read.
            self.logged_in();
        }
        bar.set_length((p.clients + p.services) as u64);
        bar.set_position((p.clients_read + p.services_read) as u64);
        bar.set_message(format!(
            "{}/{} clients, {}/{} services, {} pages",
            p.clients_read, p.clients, p.services_read, p.services, p.pages
        ));
        if p.clients_read == p.clients && p.services_read == p.services {
            bar.finish_and_clear();
        }
    }

    fn planned(&self, n: usize) {
        let Some(bars) = &self.bars else { return };
        let mut resetting = bars.resetting.lock().unwrap_or_else(|e| e.into_inner());
        let (bar, _) = resetting.get_or_insert_with(|| {
            let bar = bars.all.add(ProgressBar::new(0));
            bar.set_style(style(
                "{spinner} resetting [{bar:20}] {pos}/{len} ({elapsed}, eta {eta}) {wide_msg}",
            ));
            bar.enable_steady_tick(Duration::from_millis(200));
            (bar, 0)
        });
        bar.set_length(n as u64);
    }

    fn done(&self, row: &ReportRow) {
        if let Some(bars) = &self.bars
            && let Some((bar, failed)) = bars
                .resetting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
        {
            if row.status == Status::Failed {
                *failed += 1;
                bar.set_message(format!("{failed} failed"));
            }
            bar.inc(1);
        }
        if self.view.format == LogFormat::Json && !self.view.quiet {
            json_line(licence_json(row));
        }
    }

    /// Takes the bars off the screen, for good.
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.resolving.finish_and_clear();
            if let Some((bar, _)) = bars
                .resetting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                bar.finish_and_clear();
            }
        }
        logging::hide_bars();
    }
}

impl Observer for Show {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::LoggedIn => self.logged_in(),
            Event::Resolving(p) => self.resolving(p),
            Event::Planned(n) => self.planned(n),
            Event::Done(row) => self.done(row),
        }
    }

    fn confirm(&self, question: &Question) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let n = question.resets;
        let s = if n > 1 { "s" } else { "" };
        let text = format!(
            "About to reset {n} SIP password{s}: {} will be cut off until reconfigured. Continue? [y/N] ",
            phones_in_use(question.in_use, question.state_unknown)
        );
        if let Some(bars) = &self.bars {
            bars.resolving.finish_and_clear();
        }
        // A thread of its own: a run interrupted at the question does not
        // wait for the answer.
        std::thread::spawn(move || {
            let _ = write!(std::io::stderr(), "{text}");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            let yes = std::io::stdin().lock().read_line(&mut answer).is_ok()
                && matches!(
                    answer.trim().to_lowercase().as_str(),
                    "y" | "yes" | "o" | "oui"
                );
            let _ = tx.send(yes);
        });
        rx
    }
}

/// One JSON object on one line of stderr, around the bars.
pub fn json_line(mut value: serde_json::Value) {
    if let Some(map) = value.as_object_mut() {
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.append(map);
        value = serde_json::Value::Object(line);
    }
    logging::say(&value.to_string());
}

fn licence_json(row: &ReportRow) -> serde_json::Value {
    json!({
        "level": if row.status == Status::Failed { "WARN" } else { "INFO" },
        "event": "licence",
        "line": row.line,
        "client_ref": row.client_ref,
        "service_ref": row.service_ref,
        "licence": row.licence,
        "status": row.status.as_str(),
        "confirmations": row.confirmations,
        "requests": row.requests,
        "session": row.session,
        "detail": row.detail,
    })
}

/// An error before or instead of a run: what went wrong, then what to do.
pub fn error(format: LogFormat, message: &str, hint: Option<&str>) {
    match format {
        LogFormat::Text => {
            logging::say(&format!("error: {message}"));
            if let Some(hint) = hint {
                logging::say(&format!("  hint: {hint}"));
            }
        }
        LogFormat::Json => json_line(json!({
            "level": "ERROR",
            "event": "error",
            "message": message,
            "hint": hint,
        })),
    }
}

const STATUSES: [Status; 6] = [
    Status::Reset,
    Status::Failed,
    Status::Unresolved,
    Status::Duplicate,
    Status::Skipped,
    Status::Planned,
];

fn counts(rows: &[ReportRow]) -> Vec<(Status, usize)> {
    STATUSES
        .iter()
        .map(|&s| (s, rows.iter().filter(|r| r.status == s).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The verb that goes with `n` things.
fn is_are(n: usize) -> &'static str {
    if n == 1 { "is" } else { "are" }
}

/// `n` and the noun, singular for one: "1 licence", "2 licences".
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// How many of the phones a run cuts off are in use: "12 phones in use",
/// "3 phones in use and 5 of unknown État".
fn phones_in_use(in_use: usize, unknown: usize) -> String {
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
    [
        format!(
            "portal requests: {} (login {}, resolve {}, reset {}), {} session{}{}{}",
            r.total(),
            r.login,
            r.resolve,
            r.reset,
            r.sessions,
            if r.sessions == 1 { "" } else { "s" },
            match r.engine {
                EngineRan::Browser => " in the browser",
                EngineRan::Http => "",
            },
            faults.iter().map(|f| format!(", {f}")).collect::<String>()
        ),
        format!("elapsed: {secs:.1} s, {achieved:.2} requests/s (limit {rate:.2}/s)"),
    ]
}

/// A part file of an earlier run, as the summary names it: one deleted
/// or replaced since holds none of them any more.
fn earlier_part(part: &EarlierPart) -> String {
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

/// Where the passwords are, one sentence a line: what people act on.
fn where_the_passwords_are(o: &Outcome) -> Vec<String> {
    let p = &o.passwords;
    let mut lines = Vec::new();
    let decrypt = |file: &Path| format!("sip-rotate decrypt -i IDENTITY {}", file.display());
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
                "the {} of this run {} in {files} and in {}; run the same command with --resume to finish",
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
            "{} holds {entries} new password{}{of_this_run} ({}); run the same command with --resume to finish",
            j.display(),
            if entries == 1 { "" } else { "s" },
            decrypt(j)
        ));
    }
    if let Some(earlier) = &p.earlier
        && earlier.in_journal > 0
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
                "; run the same command with --resume to finish"
            } else {
                ""
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
            lines.push(format!(
                "not in the clients' files, only in that journal: {}; decrypt the journal to hand them over",
                each.join(", ")
            ));
        }
    }
    // Resumed without an identity, the journal gone: the earlier runs'
    // passwords stay in the parts they wrote.
    if let Some(earlier) = &p.earlier
        && earlier.in_journal > 0
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
fn stop_text(why: &StopReason) -> String {
    match why {
        StopReason::MaxFailures { failed, limit } => {
            format!(
                "{} failed (--max-failures {limit})",
                count(*failed, "licence", "licences")
            )
        }
        StopReason::Canary { canaries } => format!("{why} (--canary {canaries})"),
        StopReason::LoginRefused => {
            format!("{why} (--login, MYOPENIP_PASSWORD or --password-file, --profile)")
        }
        StopReason::Unresolved { .. } => format!(
            "{why}: nothing was reset. Fix them, or add --skip-unresolved to reset the other rows"
        ),
        _ => why.to_string(),
    }
}

fn late_problem(problem: &LateProblem) -> String {
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
    let stop_remedy = o.stopped.as_ref().and_then(StopReason::remedy);
    let labels = Some(crate::portal::Remedy::Labels);
    if o.rows.iter().any(|r| r.remedy == labels) || stop_remedy == labels {
        lines.push(
            "hint: give the portal's words in a labels file (--labels FILE; sip-rotate labels prints one to edit), and try it with sip-rotate check first: it never confirms".into(),
        );
    }
    let run_again = Some(crate::portal::Remedy::RunAgain);
    let failed_by_the_portal = o.rows.iter().filter(|r| r.remedy == run_again).count();
    if failed_by_the_portal > 0 || stop_remedy == run_again {
        lines.push(format!(
            "hint: {} because the portal failed, not because of the input: run the same command again once the portal answers{}",
            if failed_by_the_portal > 0 {
                format!(
                    "{} did not go through",
                    count(failed_by_the_portal, "row", "rows")
                )
            } else {
                "the run stopped".to_string()
            },
            if o.confirmations == 0 {
                " (nothing was reset)"
            } else {
                ""
            }
        ));
    }
    lines.extend(where_the_passwords_are(o));
    // Last: everything after its first line is the text to save.
    if let Some(stranded) = &o.passwords.stranded {
        lines.push(format!(
            "{} new password{} could be written to no file: {} encrypted journal entr{} follow{}. Save everything from the next line on into a file (e.g. rescued.journal) and decrypt it with sip-rotate decrypt -i IDENTITY rescued.journal; before any --resume, append it to the journal (cat rescued.journal >> OUTPUT.journal), or --resume resets those licences again",
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
        "hint": slow_down_hint(o, rate),
        "warnings": logging::warnings(),
        "stopped": o.stopped.as_ref().map(stop_text),
        "results": held(&o.passwords.result),
        "parts": held(&o.passwords.part),
        "journal": journal,
        "lost": o.passwords.lost,
        "stranded": o.passwords.stranded.as_ref().map(|s| json!({
            "passwords": s.count,
            "journal": s.journal_text,
        })),
        "report": o.report.as_ref().map(|p| p.display().to_string()),
        "files": where_the_passwords_are(o),
    })
}

/// What to do when the portal answered 429: a rate below what it let
/// through.
fn slow_down_hint(o: &Outcome, rate: f64) -> Option<String> {
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
fn headline(exit: Exit, o: &Outcome) -> (String, logging::Tone) {
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
                "FAILED in part: {} not reset (exit 1)",
                match (one_licence.len(), every_licence.len()) {
                    (licences, 0) => count(licences, "licence", "licences"),
                    (0, rows) => count(rows, "row '*'", "rows '*'"),
                    (licences, rows) => format!(
                        "{} and {}",
                        count(licences, "licence", "licences"),
                        count(rows, "row '*'", "rows '*'")
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
    if view.quiet && exit == Exit::AllDone {
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

/// What `plan` found: one line per row on stdout, the summary on stderr.
pub fn plan(view: View, plan: &Plan, rate: f64) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for t in &plan.targets {
        writeln!(
            out,
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
        )?;
    }
    for r in plan.rows.iter().filter(|r| r.status != Status::Planned) {
        writeln!(
            out,
            "line {}: {} {}: {}",
            r.line,
            r.status.as_str(),
            r.licence,
            r.detail
        )?;
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
        "what run would reset is not known: the plan stopped before every row resolved".to_string()
    } else if unresolved > 0 && !plan.targets.is_empty() {
        format!(
            "run would reset nothing: {unresolved} row{} did not resolve; with --skip-unresolved, {would}",
            if unresolved == 1 { "" } else { "s" }
        )
    } else {
        would
    };
    match view.format {
        LogFormat::Text => {
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
