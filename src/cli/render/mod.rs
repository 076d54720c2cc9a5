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
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

mod plan;
mod progress;
mod summary;

pub use plan::*;
pub use progress::*;
pub use summary::*;

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
