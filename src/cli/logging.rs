//! Where diagnostics go: `tracing` events on stderr, written around the
//! progress bar when there is one, and never a secret.
//!
//! Only sip-rotate's own events are ever written. Its dependencies log what
//! they handle: the HTML tokenizer logs page text (new passwords among it),
//! the cookie store logs session cookies. So no bridge from the `log` crate
//! is installed, and a filter that `SIP_ROTATE_LOG` cannot widen drops every
//! event whose target is not sip-rotate's. To watch the conversation with
//! the portal, `SIP_ROTATE_LOG=sip_rotate::http=debug` logs one line per
//! request (method, URL path, status, time), without query, form or body.

use super::args::LogFormat;
use indicatif::MultiProgress;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

/// The variable that sets what is logged, in `EnvFilter` syntax.
pub const LOG_VARIABLE: &str = "SIP_ROTATE_LOG";

/// The progress bars on screen, if any: what else goes to stderr is written
/// around them, not through them.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Shows `bars` until `hide_bars`; log lines go around them meanwhile.
pub fn show_bars(bars: &MultiProgress) {
    *BARS.lock().unwrap_or_else(|e| e.into_inner()) = Some(bars.clone());
}

/// The terminal is gone (a hang-up): the bars draw nowhere from now on,
/// since drawing on a closed terminal fails.
pub fn forget_terminal() {
    let mut bars = BARS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bars) = bars.take() {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
}

pub fn hide_bars() {
    // The warnings that stood above the bars stay said, a line each; the
    // slow-down's, the summary says again with its advice.
    let notes = std::mem::take(&mut *NOTES.lock().unwrap_or_else(|e| e.into_inner()));
    let mut kept = Vec::new();
    for note in notes {
        note.bar.finish_and_clear();
        if note.key != Warning::SlowDown {
            kept.push(note.bar.message());
        }
    }
    if let Some(bars) = BARS.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = bars.clear();
    }
    for line in kept {
        let _ = AroundTheBar.write_all(format!("{line}\n").as_bytes());
    }
}

fn bars_shown() -> bool {
    BARS.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// The field that marks the warning a portal's 429 gives: one a request,
/// so above the bars they are one line that counts them.
const SLOW_DOWN: &str = "pause_seconds";

/// What a warning above the bars is grouped by: all 429s are one, whatever
/// their pause; any other is one with the same words, fields included.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Warning {
    SlowDown,
    Said(String),
}

/// A warning above the bars, and how often it came.
struct Note {
    key: Warning,
    times: u64,
    bar: indicatif::ProgressBar,
}

/// The warnings above the bars, in the order they first came.
static NOTES: Mutex<Vec<Note>> = Mutex::new(Vec::new());

/// Past this many different warnings, another is written once as a line
/// of its own: the bars stay on the screen.
const MOST_NOTES: usize = 5;

/// What the slow-down line advises: the command line's words, which the
/// library's warning does not know.
static SLOW_DOWN_ADVICE: Mutex<String> = Mutex::new(String::new());

/// The advice the grouped 429 line gives (`try --rate 1`).
pub fn advise_on_slow_down(advice: String) {
    *SLOW_DOWN_ADVICE.lock().unwrap_or_else(|e| e.into_inner()) = advice;
}

/// While bars are shown, sip-rotate's warnings and errors go above them,
/// each different one on a line that counts how often it came ("warning
/// (4 times): FPC172910: …"), wrapped to the terminal's width, with no
/// timestamp: a person reads them. Without bars, the log writes each
/// event, as a log should.
struct AboveTheBars;

impl<S: tracing::Subscriber> Layer<S> for AboveTheBars {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let bars = BARS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bars) = bars.as_ref() else { return };
        let (key, words) = if event.metadata().fields().field(SLOW_DOWN).is_some() {
            (Warning::SlowDown, String::new())
        } else {
            let words = Words::of(event).0;
            (Warning::Said(words.clone()), words)
        };
        let mut notes = NOTES.lock().unwrap_or_else(|e| e.into_inner());
        let at = match notes.iter().position(|n| n.key == key) {
            Some(at) => at,
            None if notes.len() < MOST_NOTES => {
                let bar = bars.insert(notes.len(), indicatif::ProgressBar::new(0));
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg}").expect("static template"),
                );
                notes.push(Note { key, times: 0, bar });
                notes.len() - 1
            }
            None => {
                let line = shown(&format!("warning: {words}"), Stream::Stderr);
                let _ = bars.suspend(|| writeln!(std::io::stderr(), "{line}"));
                return;
            }
        };
        let note = &mut notes[at];
        note.times += 1;
        let line = match &note.key {
            Warning::SlowDown => {
                let advice = SLOW_DOWN_ADVICE.lock().unwrap_or_else(|e| e.into_inner());
                format!(
                    "warning: the portal asked to slow down {}{}{}",
                    how_often(note.times),
                    if advice.is_empty() { "" } else { ": " },
                    advice
                )
            }
            Warning::Said(words) if note.times == 1 => format!("warning: {words}"),
            Warning::Said(words) => format!("warning ({} times): {words}", note.times),
        };
        // A column spare: the bars pad each line they draw to the width,
        // and the terminal takes the padding's end for a line's.
        note.bar
            .set_message(fit_within(&crate::scrub::message(&line), Stream::Stderr, 1));
    }
}

/// A warning's words as a person reads them: the licence first, then the
/// message, then any other field in brackets.
struct Words(String);

impl Words {
    fn of(event: &tracing::Event<'_>) -> Words {
        #[derive(Default)]
        struct Fields {
            message: String,
            licence: Option<String>,
            others: Vec<String>,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.message = format!("{value:?}"),
                    "licence" => self.licence = Some(format!("{value:?}")),
                    name => self.others.push(format!("{name}={value:?}")),
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                match field.name() {
                    "message" => self.message = value.to_string(),
                    "licence" => self.licence = Some(value.to_string()),
                    name => self.others.push(format!("{name}={value}")),
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut words = match fields.licence {
            Some(licence) => format!("{licence}: {}", fields.message),
            None => fields.message,
        };
        if !fields.others.is_empty() {
            words = format!("{words} ({})", fields.others.join(", "));
        }
        Words(words)
    }
}

/// "once", "2 times": how often something happened, in words.
pub fn how_often(times: u64) -> String {
    match times {
        1 => "once".to_string(),
        n => format!("{n} times"),
    }
}

/// The question is on the screen, the cursor after it: what is written
/// next (a signal's "stopping", the summary after Ctrl-D) starts a line of
/// its own, not on the question's.
static AT_THE_QUESTION: AtomicBool = AtomicBool::new(false);

/// The question was written; `answered` once it is.
pub fn asked() {
    AT_THE_QUESTION.store(true, Ordering::SeqCst);
}

/// The question got its answer: a line typed ends it, an end of input
/// (Ctrl-D) does not, and the line is ended here.
pub fn answered(line_ended: bool) {
    if AT_THE_QUESTION.swap(false, Ordering::SeqCst) && !line_ended {
        let _ = std::io::stderr().write_all(b"\n");
    }
}

/// Stderr, with the progress bar (if any) hidden while a line is written.
pub struct AroundTheBar;

impl Write for AroundTheBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Whole: a log event arrives as one buffer, and goes out as one.
        self.write_all(buf).map(|_| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // Through the one scrubber: no secret the process knows goes out.
        let text = String::from_utf8_lossy(buf);
        let clean = crate::scrub::secrets(&text);
        // On a terminal, each line wrapped to its width.
        let clean: String = clean
            .split_inclusive('\n')
            .map(|line| match line.strip_suffix('\n') {
                Some(line) => fit(line, Stream::Stderr) + "\n",
                None => fit(line, Stream::Stderr),
            })
            .collect();
        let clean = if AT_THE_QUESTION.swap(false, Ordering::SeqCst) {
            format!("\n{clean}")
        } else {
            clean
        };
        let buf = clean.as_bytes();
        let bars = BARS.lock().unwrap_or_else(|e| e.into_inner());
        match bars.as_ref() {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Where a line is written, for the width it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// `line` as written to `to`: through the one scrubber (no secret, no
/// control character a page or a file put in it), then wrapped to the
/// terminal's width (`fit`). Every line on stdout and stderr goes here.
pub fn shown(line: &str, to: Stream) -> String {
    fit(&crate::scrub::message(line), to)
}

/// `line` wrapped at spaces to the width of the terminal `to` is, the lines
/// after the first indented two more than it, so that what is shown fits
/// the terminal's columns. A pipe, a file or cron's mail get each line
/// whole, for grep and for the programs that read them.
fn fit(line: &str, to: Stream) -> String {
    fit_within(line, to, 0)
}

/// As `fit`, leaving `spare` columns at the right end of each line.
fn fit_within(line: &str, to: Stream, spare: usize) -> String {
    let size = match to {
        Stream::Stdout => terminal_size::terminal_size_of(std::io::stdout()),
        Stream::Stderr => terminal_size::terminal_size_of(std::io::stderr()),
    };
    // A terminal that says no width (0), or one too narrow to wrap in.
    match size.map(|(w, _)| usize::from(w.0)) {
        Some(width) if width >= 40 && textwrap::core::display_width(line) > width - spare => {
            let indent = line.len() - line.trim_start_matches(' ').len();
            let more = " ".repeat(indent + 2);
            // Broken at spaces only: a path or a date cut at its hyphens
            // could not be copied whole.
            let options = textwrap::Options::new(width - spare)
                .subsequent_indent(&more)
                .break_words(false)
                .word_splitter(textwrap::WordSplitter::NoHyphenation);
            textwrap::fill(line, options)
        }
        _ => line.to_string(),
    }
}

/// Writes one line on stderr, around the progress bar: no secret, and no
/// control character that a page or a file put in it; on a terminal,
/// wrapped to its width.
pub fn say(line: &str) {
    let line = shown(line, Stream::Stderr);
    let _ = AroundTheBar.write_all(format!("{line}\n").as_bytes());
}

/// How a headline reads: in green or in red on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
}

/// Writes a headline on stderr, bold and coloured where colour may go.
pub fn headline(line: &str, tone: Tone) {
    let line = shown(line, Stream::Stderr);
    let line = if colour() {
        let code = match tone {
            Tone::Good => "1;32",
            Tone::Bad => "1;31",
        };
        format!("\x1b[{code}m{line}\x1b[0m")
    } else {
        line
    };
    let _ = AroundTheBar.write_all(format!("{line}\n").as_bytes());
}

/// Whether stderr may carry colour: a terminal, and `NO_COLOR` not set.
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether an event of `target` may be written at all, whatever the filter says.
fn ours(target: &str) -> bool {
    target == "sip_rotate" || target.starts_with("sip_rotate::")
}

/// Warnings and errors sip-rotate logged, shown or not: a quiet run counts
/// them in its summary.
static WARNINGS: AtomicU64 = AtomicU64::new(0);

pub fn warnings() -> u64 {
    WARNINGS.load(Ordering::Relaxed)
}

/// Counts sip-rotate's warnings and errors, whatever the filter shows.
struct CountWarnings;

impl<S: tracing::Subscriber> Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() <= tracing::Level::WARN && ours(meta.target()) {
            WARNINGS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A log event as one JSON line shaped like the others sip-rotate writes
/// (`timestamp`, `level`, `event`), `event` being `log`, with `message`
/// and the event's fields beside them.
struct JsonLog;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLog
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        struct Fields(serde_json::Map<String, serde_json::Value>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0
                    .insert(field.name().into(), format!("{value:?}").into());
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().into(), value.into());
            }
            fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
                self.0.insert(field.name().into(), value.into());
            }
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                self.0.insert(field.name().into(), value.into());
            }
            fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
                self.0.insert(field.name().into(), value.into());
            }
            fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
                self.0.insert(field.name().into(), value.into());
            }
        }
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("event".into(), "log".into());
        let mut fields = Fields(serde_json::Map::new());
        event.record(&mut fields);
        // `message` first, then the fields in the order written.
        if let Some(message) = fields.0.remove("message") {
            line.insert("message".into(), message);
        }
        line.append(&mut fields.0);
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// Installs the subscriber. `quiet`: nothing unless `SIP_ROTATE_LOG` asks
/// for it; otherwise sip-rotate's warnings and errors.
pub fn init(format: LogFormat, quiet: bool) {
    let default = if quiet { "off" } else { "sip_rotate=warn" };
    let wanted =
        || EnvFilter::try_from_env(LOG_VARIABLE).unwrap_or_else(|_| EnvFilter::new(default));
    let warning = |meta: &tracing::Metadata<'_>| *meta.level() <= tracing::Level::WARN;
    let filter = wanted().and(filter_fn(move |meta| {
        // Above the bars, warnings are AboveTheBars' lines.
        ours(meta.target()) && !(warning(meta) && bars_shown())
    }));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| AroundTheBar)
        .with_target(false)
        .with_ansi(colour());
    let layer = match format {
        // A person at a terminal reads the time off the clock; a file, a
        // pipe or a journal keeps it.
        LogFormat::Text if std::io::stderr().is_terminal() => {
            layer.without_time().with_filter(filter).boxed()
        }
        LogFormat::Text => layer.with_filter(filter).boxed(),
        // The shape of sip-rotate's own lines: `event` says what it is.
        LogFormat::Json => layer.event_format(JsonLog).with_filter(filter).boxed(),
    };
    let above_the_bars = AboveTheBars
        .with_filter(wanted().and(filter_fn(move |meta| ours(meta.target()) && warning(meta))));
    // Not `init()`: that would also bridge the `log` crate, whose records
    // (page text, cookies) must go nowhere.
    let _ = tracing::subscriber::set_global_default(
        Registry::default()
            .with(layer)
            .with(CountWarnings)
            .with(above_the_bars),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_targets_are_written() {
        assert!(ours("sip_rotate"));
        assert!(ours("sip_rotate::http"));
        assert!(!ours("sip_rotate_x"));
        assert!(!ours("html5ever::tokenizer"));
        assert!(!ours("cookie_store::cookie_store"));
    }
}
