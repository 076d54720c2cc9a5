//! The MyOpenIP portal client: it logs in, searches clients, reads users
//! tables and resets SIP passwords, navigating like a browser by link text,
//! field labels and table headers (see `docs/portal-contract.md`).
//!
//! A worker drives one `Browser` at a time: its own session cookie, one page
//! at a time, as a person with one window would. A portal keeps one
//! notification per session, so two resets confirmed at once in one session
//! could show one password and lose the other. Browsers open as the rate
//! needs them (each is a login the portal logs): the first at once, another
//! only when every open one is busy and the limiter has room they leave
//! unused (`Portal::lease`). All browsers share one throttle (rate limit,
//! concurrency, `Retry-After`). When a browser's session ends, it logs in
//! again and repeats its step from the last page fetched, with fresh tokens.

/// A label of the labels file, with its key and its kind of element.
macro_rules! want {
    ($labels:expr, $key:ident, $kind:ident) => {
        html::Want {
            key: stringify!($key),
            words: &$labels.$key,
            kind: html::Kind::$kind,
        }
    };
}

pub mod capture;
pub mod chromium;
pub mod gate;
pub mod html;
pub mod inspect;
pub mod labels;
pub mod transport;

use crate::phone;
use crate::scrub::Secret;
use gate::{Action, Answer, CommitPermit, Press, Step};
use html::{Form, Missing, find_link, is_label};
use labels::Labels;
use scraper::Html;
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use transport::{Fetched, Req, Retry, Throttle, Transport};
use url::Url;

pub use transport::{Purpose, Requests, Stats, TransportError, Trust};

mod error;
mod reset_walk;
mod sessions;
mod walk;

pub(crate) use error::problem;
pub use error::{AfterUnknown, PortalError, Problem, Remedy, ResetError};
pub(crate) use sessions::Handover;
use sessions::*;
pub use sessions::{Lease, Portal, Priority};
pub use walk::Browser;

/// The profile chosen on the login page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginProfile {
    /// `Revendeur`.
    Reseller,
    /// `MB / Opérateur`.
    Operator,
}

/// How to log in.
pub struct Credentials {
    pub login: String,
    pub password: SecretString,
    pub profile: LoginProfile,
}

/// Everything a portal client needs, checked by the caller.
pub struct PortalSettings {
    /// The first page; every request stays on its origin.
    pub start: Url,
    pub credentials: Credentials,
    pub labels: Labels,
    /// Requests per second, for every request.
    pub rate: f64,
    /// Sessions (and so requests in flight) at most.
    pub concurrency: usize,
    /// How long to wait for one answer.
    pub timeout: Duration,
    /// Where every page fetched is written, its secrets removed (`--capture`).
    pub capture: Option<Arc<capture::Capture>>,
    /// What performs the steps.
    pub engine: EngineChoice,
    /// The browser of the browser engine.
    pub browser: std::path::PathBuf,
    /// Other origins the browser may load scripts and styles from.
    pub allow_origins: Vec<url::Origin>,
    /// Authorities trusted beside the system's (`--ca-file`).
    pub trust: Trust,
}

/// What performs the walk's steps (`--engine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// HTTP, and the browser from the first step that needs a script.
    #[default]
    Auto,
    /// HTTP alone: a step that needs a script fails, naming it.
    Http,
    /// The browser for every step.
    Browser,
}

/// The engine that performed a run's steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EngineRan {
    #[default]
    Http,
    /// At least one session ran in the browser.
    Browser,
}

impl EngineRan {
    pub fn name(self) -> &'static str {
        match self {
            EngineRan::Http => "http",
            EngineRan::Browser => "browser",
        }
    }
}

/// What cuts requests short. `reads` cancels every request that changes
/// nothing on the portal (pages read, Détail, Réinitialiser, logins): they
/// are dropped at once, waiting ones included. `confirmations` also cancels
/// a `Confirmer` in flight and the page that would show its password.
#[derive(Debug, Clone, Default)]
pub struct Interruptions {
    pub reads: CancellationToken,
    pub confirmations: CancellationToken,
    /// Set once the gate let a press that may commit go: until then an
    /// interruption has no `Confirmer` in flight to wait for.
    pub pressed: Arc<std::sync::atomic::AtomicBool>,
}

/// A MetaCentrex service found by a search.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub service_ref: String,
    pub client_ref: String,
    pub page: Url,
}

/// A row of a users table.
#[derive(Debug, Clone)]
pub struct LicenceRow {
    pub licence: String,
    pub licence_type: String,
    pub sda: String,
    pub name: String,
    pub detail: Url,
    /// The `État` column as the portal shows it (empty if it has none).
    pub state: String,
}

/// Whether a phone is registered, as the users table's `État` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Connected,
    Disconnected,
    /// A word neither `state_connected` nor `state_disconnected` names.
    Other(String),
    /// The table shows no `État` (or an empty cell): nobody can tell.
    NotShown,
}

impl LicenceRow {
    /// Whether its phone is registered now, as the users table said.
    pub fn registration(&self, labels: &Labels) -> Registration {
        if self.state.is_empty() {
            Registration::NotShown
        } else if is_label(&self.state, &labels.state_connected) {
            Registration::Connected
        } else if is_label(&self.state, &labels.state_disconnected) {
            Registration::Disconnected
        } else {
            Registration::Other(self.state.clone())
        }
    }

    /// Whether its phone is registered now, as the users table said.
    pub fn connected(&self, labels: &Labels) -> bool {
        self.registration(labels) == Registration::Connected
    }
}

/// The first word after each place of the new password's label on a page:
/// the passwords it shows, in buffers wiped when dropped.
fn new_passwords_on(doc: &Html, l: &Labels) -> Vec<zeroize::Zeroizing<String>> {
    html::texts_after(doc, &l.new_password)
        .into_iter()
        .map(zeroize::Zeroizing::new)
        .filter_map(|after| {
            after
                .split(' ')
                .next()
                .filter(|p| looks_like_a_password(p))
                .map(|p| zeroize::Zeroizing::new(p.to_string()))
        })
        .collect()
}

/// Whether a word read where the new password stands may be one: six
/// characters at least, and a digit, a sign or a capital past the first
/// letter. A word of the page's own (`est`, `Attention`) is not: taken for
/// the password it would lose the real one while reporting it kept; left
/// out, the outcome is reported unknown, and the canary stops the run.
fn looks_like_a_password(word: &str) -> bool {
    word.chars().count() >= 6
        && (word
            .chars()
            .any(|c| c.is_ascii_digit() || (!c.is_alphanumeric()))
            || word.chars().skip(1).any(char::is_uppercase))
}

/// How a licence's confirmation is reached from its detail page.
pub(crate) enum ToConfirmation {
    /// A request: the reset button's form pressed (a harmless press), or
    /// the content of a dialog loaded from the address the button names.
    Request(Req),
    /// A dialog already in the detail page, shown by the button: its HTML.
    Shown(String),
    /// The button runs a script: the browser presses it on the live page.
    Click(String),
}

/// The reset button of a detail page, and where pressing it leads. A press
/// that may commit a reset is refused by the gate.
pub(crate) fn to_confirmation(
    doc: &Html,
    url: &Url,
    l: &Labels,
    runs_scripts: bool,
) -> Result<ToConfirmation, PortalError> {
    let want = want!(l, reset_button, Button);
    let press = match html::need_control(doc, url, want).map_err(|m| problem("detail", m.into()))? {
        html::Opens::Form(form) => Press::of(Some(doc), &form, want, Step::Detail, l)?,
        html::Opens::Remote(url) => return Ok(ToConfirmation::Request(Req::Get(url))),
        html::Opens::InPage(dialog) => return Ok(ToConfirmation::Shown(dialog)),
        html::Opens::Script { path, .. } if runs_scripts => {
            Press::click(doc, path, want, Step::Detail, l)
        }
        html::Opens::Script { label, .. } => {
            return Err(PortalError::NeedsScript {
                page: "detail",
                control: label,
            });
        }
    };
    Ok(match press.harmless()? {
        Action::Send(req) => ToConfirmation::Request(req),
        Action::Click(path) => ToConfirmation::Click(path),
    })
}

/// A new password a page showed where none was expected.
pub struct Stray {
    /// The page it was on.
    pub page: &'static str,
    /// The licence being walked to then, if any.
    pub licence: Option<String>,
    pub password: SecretString,
}

/// What a confirmed reset gave back.
pub struct NewPassword {
    pub password: SecretString,
    pub accountcode: String,
    /// Shown late, for a `Confirmer` sent earlier whose answer was lost:
    /// this call sent none.
    pub earlier: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portal(concurrency: usize) -> Arc<Portal> {
        Arc::new(Portal::new(
            PortalSettings {
                start: Url::parse("http://127.0.0.1:9/").unwrap(),
                credentials: Credentials {
                    login: "l".into(),
                    password: SecretString::from("p"),
                    profile: LoginProfile::Reseller,
                },
                labels: Labels::default(),
                rate: 100.0,
                concurrency,
                timeout: Duration::from_secs(1),
                capture: None,
                engine: EngineChoice::Http,
                browser: "chromium".into(),
                allow_origins: Vec::new(),
                trust: Trust::default(),
            },
            Interruptions::default(),
        ))
    }

    #[tokio::test]
    async fn a_browser_given_back_goes_to_a_reset_before_resolution() {
        let portal = portal(1);
        let held = portal.lease(Priority::Resolve).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for priority in [Priority::Resolve, Priority::Reset, Priority::Resolve] {
            let (asker, tx) = (portal.clone(), tx.clone());
            waiters.push(tokio::spawn(async move {
                let lease = asker.lease(priority).await.unwrap();
                tx.send(priority).unwrap();
                drop(lease);
            }));
            // Each waiter in line before the next one asks.
            while portal
                .pool
                .lock()
                .unwrap()
                .waiting
                .iter()
                .map(|w| w.len())
                .sum::<usize>()
                < waiters.len()
            {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        let order: Vec<Priority> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            order,
            [Priority::Reset, Priority::Resolve, Priority::Resolve]
        );
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_does_not_keep_the_browser() {
        let portal = portal(1);
        let held = portal.lease(Priority::Reset).await.unwrap();
        let gave_up = tokio::spawn({
            let portal = portal.clone();
            async move { portal.lease(Priority::Reset).await.map(|_| ()) }
        });
        while portal.pool.lock().unwrap().waiting[0].is_empty() {
            tokio::task::yield_now().await;
        }
        gave_up.abort();
        let _ = gave_up.await;
        drop(held);
        // The only browser is idle again, not lost with the waiter.
        let again = tokio::time::timeout(Duration::from_secs(5), portal.lease(Priority::Resolve));
        assert!(again.await.is_ok());
    }
}
