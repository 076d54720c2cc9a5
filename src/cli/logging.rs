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
use std::sync::atomic::{AtomicU64, Ordering};
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
    if let Some(note) = SLOW_DOWN_NOTE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        note.finish_and_clear();
    }
    if let Some(bars) = BARS.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = bars.clear();
    }
}

fn bars_shown() -> bool {
    BARS.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// The field that marks the warning a portal's 429 gives: one a request,
/// so above the bars they are one line that counts them.
const SLOW_DOWN: &str = "pause_seconds";

/// The line above the bars that counts the 429s, once there is one.
static SLOW_DOWN_NOTE: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
static SLOWED_DOWN: AtomicU64 = AtomicU64::new(0);
/// What the line advises: the command line's words, which the library's
/// warning does not know.
static SLOW_DOWN_ADVICE: Mutex<String> = Mutex::new(String::new());

/// The advice the grouped 429 line gives (`try --rate 1`).
pub fn advise_on_slow_down(advice: String) {
    *SLOW_DOWN_ADVICE.lock().unwrap_or_else(|e| e.into_inner()) = advice;
}

/// Groups the 429 warnings into one line above the bars; without bars,
/// the log writes each, as a log should.
struct GroupSlowDowns;

impl<S: tracing::Subscriber> Layer<S> for GroupSlowDowns {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if meta.fields().field(SLOW_DOWN).is_none() || !ours(meta.target()) {
            return;
        }
        let times = SLOWED_DOWN.fetch_add(1, Ordering::Relaxed) + 1;
        let bars = BARS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bars) = bars.as_ref() else { return };
        let mut note = SLOW_DOWN_NOTE.lock().unwrap_or_else(|e| e.into_inner());
        let note = note.get_or_insert_with(|| {
            let note = bars.insert(0, indicatif::ProgressBar::new(0));
            note.set_style(
                indicatif::ProgressStyle::with_template("{wide_msg}").expect("static template"),
            );
            note
        });
        let advice = SLOW_DOWN_ADVICE.lock().unwrap_or_else(|e| e.into_inner());
        note.set_message(format!(
            "warning: the portal asked to slow down {}{}{}",
            how_often(times),
            if advice.is_empty() { "" } else { ": " },
            advice
        ));
    }
}

/// "once", "2 times": how often something happened, in words.
pub fn how_often(times: u64) -> String {
    match times {
        1 => "once".to_string(),
        n => format!("{n} times"),
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
    let size = match to {
        Stream::Stdout => terminal_size::terminal_size_of(std::io::stdout()),
        Stream::Stderr => terminal_size::terminal_size_of(std::io::stderr()),
    };
    // A terminal that says no width (0), or one too narrow to wrap in.
    match size.map(|(w, _)| usize::from(w.0)) {
        Some(width) if width >= 40 && textwrap::core::display_width(line) > width => {
            let indent = line.len() - line.trim_start_matches(' ').len();
            let more = " ".repeat(indent + 2);
            let options = textwrap::Options::new(width)
                .subsequent_indent(&more)
                .break_words(false);
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
    let wanted = EnvFilter::try_from_env(LOG_VARIABLE).unwrap_or_else(|_| EnvFilter::new(default));
    let filter = wanted.and(filter_fn(|meta| {
        // Above the bars, the 429s are one line (GroupSlowDowns).
        ours(meta.target()) && !(meta.fields().field(SLOW_DOWN).is_some() && bars_shown())
    }));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| AroundTheBar)
        .with_target(false)
        .with_ansi(colour());
    let layer = match format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        // The shape of sip-rotate's own lines: `event` says what it is.
        LogFormat::Json => layer.event_format(JsonLog).with_filter(filter).boxed(),
    };
    // Not `init()`: that would also bridge the `log` crate, whose records
    // (page text, cookies) must go nowhere.
    let _ = tracing::subscriber::set_global_default(
        Registry::default()
            .with(layer)
            .with(CountWarnings)
            .with(GroupSlowDowns),
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
