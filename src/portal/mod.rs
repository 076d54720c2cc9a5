//! The MyOpenIP portal client: it logs in, searches clients, reads users
//! tables and resets SIP passwords, navigating like a browser by link text,
//! field labels and table headers (see `../shared/portal-contract.md`).
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

pub use transport::{Phase, Requests, Stats, TransportError};

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

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("the portal refused the login: check the login, the password and the profile")]
    LoginRefused,
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A page that does not show what the contract says.
    #[error("{page} page: {what}")]
    Contract { page: &'static str, what: String },
    /// A label not found, with what the page has instead.
    #[error("{page} page: {missing}")]
    Missing {
        page: &'static str,
        missing: Box<Missing>,
    },
    #[error("the portal session kept ending ({0} logins in a row without progress)")]
    SessionLoop(usize),
    /// The first page at `--portal` shows neither a login form nor the
    /// home page's `Mes Services`: another site, most likely.
    #[error(
        "the page at {address} shows no login form ('{password_field}') and no '{my_services}' link: is --portal the MyOpenIP portal's address? (if it is, and its words differ, set password_field and my_services in a labels file)"
    )]
    NotThePortal {
        address: String,
        password_field: String,
        my_services: String,
    },
    /// The portal showed its login page or refused a form token: log in again.
    #[error("the portal session ended")]
    SessionEnded,
    /// A press that may commit a reset, where the walk expects none (or in
    /// a command that never commits): refused by the gate, nothing sent.
    #[error(
        "pressing '{button}' on the {step} page may commit a reset (the button reads like confirm_button, or the page shows the confirmation): not pressed"
    )]
    WouldCommit { step: &'static str, button: String },
    /// A step the run needs is a control that runs a script of the page
    /// and leads nowhere in HTML: only a browser can press it.
    #[error(
        "the button '{control}' on the {page} page runs a script of the page (no form, no address, no dialog in the page): the HTTP engine does not run scripts; run with --engine browser (see the README's two engines)"
    )]
    NeedsScript { page: &'static str, control: String },
    /// A page of this session showed the password of the `Confirmer` whose
    /// answer was lost, on the way to reset the same licence again: that
    /// reset is done, and the walk stops before pressing anything.
    #[error("the portal showed the new password of the last Confirmer on a later page")]
    EarlierPasswordShown,
    /// A page showed a new password where none was expected: the portal
    /// committed a reset earlier than the walk thought, or shows an earlier
    /// one again. The password is kept (`Portal::take_stray`).
    #[error(
        "the portal showed a new password on the {page} page{}, where none was expected: a phone may have been cut off",
        licence.as_deref().map(|l| format!(" while walking to licence {l}")).unwrap_or_default()
    )]
    PasswordShown {
        page: &'static str,
        licence: Option<String>,
    },
}

/// What fixes a failure, told by its typed cause: the summary's hint is
/// chosen from it, never from the message's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// The portal's words differ from the labels looked for: a labels file
    /// (`--labels`), tried with `check` first.
    Labels,
    /// The portal failed for a while (no answer, a 5xx, 429s): the same
    /// command, later.
    RunAgain,
}

impl PortalError {
    /// What would fix it, when its cause says.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            PortalError::Missing { .. } => Some(Remedy::Labels),
            PortalError::Transport(e) if e.is_transient() => Some(Remedy::RunAgain),
            PortalError::Transport(TransportError::RateLimited(_)) => Some(Remedy::RunAgain),
            _ => None,
        }
    }

    /// Errors after which no further request makes sense.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            PortalError::LoginRefused
                | PortalError::NotThePortal { .. }
                | PortalError::SessionLoop(_)
                | PortalError::WouldCommit { .. }
                | PortalError::PasswordShown { .. }
                | PortalError::NeedsScript { .. }
                | PortalError::Transport(TransportError::ForeignOrigin { .. })
                | PortalError::Transport(TransportError::ForeignResource { .. })
                | PortalError::Transport(TransportError::Engine(_))
        ) || matches!(self, PortalError::Transport(e) if e.is_permanent())
    }
}

/// Why a reset did not give a password.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Nothing was confirmed: the password did not change.
    #[error("{0}")]
    NotDone(PortalError),
    /// `Confirmer` was sent but no password came back: it may have changed.
    #[error("outcome unknown after Confirmer: {reason}")]
    Unknown { reason: String, next: AfterUnknown },
    /// The detail page shows a phone that an earlier run reset: nothing done.
    #[error("reset by an earlier run (account code {accountcode})")]
    AlreadyReset { accountcode: String },
}

/// What to do after a `Confirmer` whose password is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterUnknown {
    /// A cut connection, a 5xx, an ended session: a new reset can be
    /// expected to show the password.
    ResetAgain,
    /// The portal answered with a page that does not hold the password (a
    /// changed portal): resetting again would cut the phone off for nothing.
    GiveUp,
    /// The portal led outside its origin: no further request makes sense.
    StopRun,
}

/// Why a page could not be read as the contract says.
pub enum Problem {
    /// A label is not on it.
    Missing(Missing),
    /// It shows something else than expected (another licence, number...).
    Mismatch(String),
}

impl From<Missing> for Problem {
    fn from(m: Missing) -> Problem {
        Problem::Missing(m)
    }
}

impl From<String> for Problem {
    fn from(s: String) -> Problem {
        Problem::Mismatch(s)
    }
}

pub(crate) fn problem(page: &'static str, p: Problem) -> PortalError {
    match p {
        Problem::Missing(m) => PortalError::Missing {
            page,
            missing: Box::new(m),
        },
        Problem::Mismatch(what) => PortalError::Contract { page, what },
    }
}

const MAX_SESSION_ATTEMPTS: usize = 4;
/// The shortest wait for a busy browser before asking whether to open one more.
const MIN_PATIENCE: Duration = Duration::from_millis(10);
/// How long after a 429 no session is opened: the portal's own limit is
/// below `--rate`, and the sessions open already reach it.
const SLOWED_DOWN_MEMORY: Duration = Duration::from_secs(60);
/// The most sessions the browser engine opens: two a core.
fn browser_sessions_at_most() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many periods of the rate the limiter must have held nothing back
/// before one more session opens whatever a session's cycle says.
const ROOM_PERIODS: u32 = 4;
const MAX_PAGES: usize = 10_000;

/// Where a table walk starts: a link, or a search form filled in the live session.
enum WalkStart<'a> {
    Link(Url),
    Search(&'a (dyn Fn(Form) -> Result<Req, PortalError> + Send + Sync)),
}

impl Shared {
    /// A new session's transport: in the browser once the run uses it.
    fn transport(&self) -> Result<Transport, TransportError> {
        if self.in_browser.load(Ordering::SeqCst) {
            Ok(self.browser_transport(None))
        } else {
            Transport::new(
                self.throttle.clone(),
                self.timeout,
                self.start.origin(),
                self.interruptions.clone(),
            )
        }
    }
}

impl Shared {
    /// A session in the browser; `handed`: the cookies of the HTTP session
    /// it carries on.
    fn browser_transport(&self, handed: Option<transport::HandedCookies>) -> Transport {
        Transport::in_browser(
            self.engine.clone(),
            self.throttle.clone(),
            self.start.origin(),
            self.interruptions.clone(),
            handed,
        )
    }
}

/// Whether a login starts at the address where the run found the login page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shortcut {
    Taken,
    None,
}

/// What a session moving to the browser engine does with the portal's
/// session it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handover {
    /// Carried on in the browser: its cookies go with it.
    CarriedOn,
    /// Left: the browser logs in (`check` walks every step again).
    LogInAgain,
}

/// What every browser of a run shares.
struct Shared {
    labels: Labels,
    start: Url,
    credentials: Credentials,
    timeout: Duration,
    throttle: Arc<Throttle>,
    /// Set once a login was refused: no browser tries again.
    login_refused: AtomicBool,
    interruptions: Interruptions,
    /// New passwords pages showed where none was expected, until the run
    /// takes them to its journal.
    stray: Mutex<Vec<Stray>>,
    /// The address where the login page was found: a press sent straight
    /// there was not taken.
    login_address: Mutex<Option<Url>>,
    engine_choice: EngineChoice,
    /// The browser engine, started at its first session.
    engine: Arc<chromium::Engine>,
    /// New sessions open in the browser (`--engine browser`, or `auto`
    /// once a step needed a script).
    in_browser: AtomicBool,
    /// A run that will reset, with `--engine auto`: the first licence
    /// resolved has its detail page read once, to start the browser ahead
    /// if its reset needs a script (see `Portal::look_ahead`).
    look_ahead: AtomicBool,
    capture: Option<Arc<capture::Capture>>,
}

/// Who asks for a browser. Resets go first: a licence already resolved is
/// reset while other services still resolve, and resolution takes the
/// sessions that resets leave idle, so the portal's rate is never left unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Reset = 0,
    Resolve = 1,
}

/// The browsers of a run: at most `concurrency` of them, idle or leased,
/// opened one by one as the rate needs them (each is a login the portal logs).
struct Pool {
    /// Browsers that may still be created.
    unborn: usize,
    idle: Vec<Browser>,
    /// Who waits for a browser, by priority, first come first served.
    waiting: [std::collections::VecDeque<oneshot::Sender<Lease>>; 2],
    /// Whether one of the waiters watches for room the rate leaves unused
    /// (the others only wait: thousands of them must not all poll).
    watched: bool,
    /// The portal's answers counted when the last browser was opened.
    answers_at_last_opening: u64,
    /// When the last browser was opened.
    last_opening: Option<std::time::Instant>,
}

impl Pool {
    /// Takes the place of one more browser, about to be opened.
    fn reserve(&mut self, answers: u64) {
        self.unborn -= 1;
        self.answers_at_last_opening = answers;
        self.last_opening = Some(std::time::Instant::now());
    }
}

/// The portal as a run sees it: a source of browsers, logged in as needed.
pub struct Portal {
    shared: Arc<Shared>,
    concurrency: usize,
    pool: Mutex<Pool>,
    /// Wakes a waiter to take over the watch when the watcher leaves.
    watch_free: tokio::sync::Notify,
}

/// The watch over the pool, held by one waiter; given up when dropped.
struct Watch<'a>(&'a Portal);

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.0.pool.lock().unwrap().watched = false;
        self.0.watch_free.notify_one();
    }
}

/// A browser borrowed from the portal; it goes to the next in line, or back
/// to the idle ones, when dropped.
pub struct Lease {
    portal: Arc<Portal>,
    browser: Option<Browser>,
}

impl std::ops::Deref for Lease {
    type Target = Browser;
    fn deref(&self) -> &Browser {
        self.browser.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Browser {
        self.browser.as_mut().expect("present until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(b) = self.browser.take() {
            self.portal.give_back(b);
        }
    }
}

impl Portal {
    /// At most `concurrency` browsers, all behind one limiter of `rate`
    /// requests per second, their requests cut short by `interruptions`.
    pub fn new(settings: PortalSettings, interruptions: Interruptions) -> Portal {
        let concurrency = settings.concurrency.max(1);
        // From here on nothing written shows them.
        let credentials = &settings.credentials;
        crate::scrub::remember(credentials.password.expose_secret(), Secret::Credential);
        crate::scrub::remember(&credentials.login, Secret::Credential);
        Portal {
            shared: Arc::new(Shared {
                labels: settings.labels,
                start: settings.start,
                credentials: settings.credentials,
                timeout: settings.timeout,
                throttle: Arc::new(Throttle::new(settings.rate, concurrency)),
                login_refused: AtomicBool::new(false),
                interruptions,
                stray: Mutex::new(Vec::new()),
                login_address: Mutex::new(None),
                engine_choice: settings.engine,
                engine: Arc::new(chromium::Engine::new(
                    settings.browser,
                    settings.timeout,
                    settings.allow_origins,
                    settings.capture.is_some(),
                )),
                in_browser: AtomicBool::new(settings.engine == EngineChoice::Browser),
                look_ahead: AtomicBool::new(false),
                capture: settings.capture,
            }),
            concurrency,
            pool: Mutex::new(Pool {
                unborn: concurrency,
                idle: Vec::new(),
                waiting: Default::default(),
                watched: false,
                answers_at_last_opening: 0,
                last_opening: None,
            }),
            watch_free: tokio::sync::Notify::new(),
        }
    }

    /// The run is about to resolve licences it will reset. With `--engine
    /// auto`, the first licence resolved has its detail page read (once,
    /// before any reset): if its reset needs a script, the browser starts
    /// in the background while resolution goes on, and is ready when the
    /// canary's walk moves to it (starting it takes about a second, which
    /// every reset would otherwise wait for). Nothing else changes: the
    /// move itself is the walk's, at the canary's detail page.
    pub fn look_ahead(&self) {
        if self.shared.engine_choice == EngineChoice::Auto {
            self.shared.look_ahead.store(true, Ordering::SeqCst);
        }
    }

    /// The new passwords pages showed where none was expected, taken once.
    pub fn take_stray(&self) -> Vec<Stray> {
        std::mem::take(&mut *self.shared.stray.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Which engine ran: `http`, or `browser` once a session used it.
    /// The words looked for on the portal's pages.
    pub fn labels(&self) -> &Labels {
        &self.shared.labels
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.throttle.stats
    }

    /// Waits for a free browser: an idle one (logged in, unless its session
    /// ended), the first one, the next one given back (resets first), or a
    /// new one when the rate has room that the open browsers leave unused.
    pub async fn lease(self: &Arc<Self>, priority: Priority) -> Result<Lease, PortalError> {
        let mut waiting = {
            let mut pool = self.pool.lock().unwrap();
            if let Some(b) = pool.idle.pop() {
                return Ok(self.lent(b));
            }
            if pool.unborn == self.concurrency {
                pool.unborn -= 1;
                drop(pool);
                return self.open().map(|b| self.lent(b));
            }
            let (tx, rx) = oneshot::channel();
            pool.waiting[priority as usize].push_back(tx);
            rx
        };
        // Every browser is busy. Waiting is right while the limiter holds
        // requests back (another session would only queue behind them); when
        // it has held none back for a while, the rate has room the open
        // sessions cannot fill, and one more is opened. One waiter watches
        // for that; the others only wait.
        let patience = self.shared.throttle.period().max(MIN_PATIENCE);
        let mut watch: Option<Watch> = None;
        loop {
            if watch.is_none() {
                watch = self.take_watch();
            }
            // The sender lives in the pool until a browser is handed over.
            let handed = "the pool outlives its waiters";
            if watch.is_none() || self.pool.lock().unwrap().unborn == 0 {
                tokio::select! {
                    lease = &mut waiting => return Ok(lease.expect(handed)),
                    _ = self.watch_free.notified(), if watch.is_none() => continue,
                }
            }
            tokio::select! {
                lease = &mut waiting => return Ok(lease.expect(handed)),
                _ = tokio::time::sleep(patience) => {}
            }
            if self.may_open_another(patience) {
                // It logs in on its own, then goes to the first in line:
                // this waiter takes whichever browser is ready first, this
                // one or one given back meanwhile.
                self.open_in_background(self.open()?);
            }
        }
    }

    /// The watch, if no other waiter holds it.
    fn take_watch(&self) -> Option<Watch<'_>> {
        let mut pool = self.pool.lock().unwrap();
        if pool.watched {
            return None;
        }
        pool.watched = true;
        Some(Watch(self))
    }

    /// Whether one more browser is worth a login: fewer than `concurrency`
    /// exist, the portal answered since the last one was opened and did not
    /// ask to slow down (429) in the last minute, and the rate has room the
    /// open ones leave unused. That is so when a session's cycle says the
    /// rate needs more sessions than are open while the limiter holds
    /// nothing back (the ramp), or, whatever the cycle says, when the
    /// limiter has held nothing back for `ROOM_PERIODS` periods since the
    /// last one was opened (an estimate a little short, time a session
    /// spends between two licences, would otherwise leave the rate unused
    /// for the whole run). A waiter asks only when every open browser is
    /// busy. Reserves its place.
    fn may_open_another(&self, patience: Duration) -> bool {
        let throttle = &self.shared.throttle;
        let mut pool = self.pool.lock().unwrap();
        if pool.unborn == 0
            || throttle.slowed_down_within(SLOWED_DOWN_MEMORY)
            || throttle.answers() <= pool.answers_at_last_opening
        {
            return false;
        }
        // A session still logging in counts as open, so that waiters do not
        // open more than the rate can use while it does.
        let open = self.concurrency - pool.unborn;
        if open >= self.sessions_at_most() {
            return false;
        }
        let ramp = open < self.sessions_needed() && !throttle.saturated(patience);
        let long_room = ROOM_PERIODS * throttle.period();
        let unused = throttle.room_for() >= long_room
            && pool.last_opening.is_none_or(|t| t.elapsed() >= long_room);
        if !(ramp || unused) {
            return false;
        }
        pool.reserve(throttle.answers());
        true
    }

    /// How many sessions may be open: `--concurrency`, and in the browser
    /// no more than two contexts a core (each costs a renderer, about 120
    /// MiB, and CPU: more only compete for the machine).
    fn sessions_at_most(&self) -> usize {
        if self.shared.in_browser.load(Ordering::SeqCst) {
            self.concurrency.min(browser_sessions_at_most())
        } else {
            self.concurrency
        }
    }

    /// Sessions the rate keeps busy: one cycle over the time between two
    /// requests (at least one).
    pub fn sessions_needed(&self) -> usize {
        let throttle = &self.shared.throttle;
        ((throttle.cycle().as_secs_f64() / throttle.period().as_secs_f64()).ceil() as usize).max(1)
    }

    /// Logs `browser` in, then gives it to the first in line (or idle). A
    /// login that fails here is tried again by its first lease.
    fn open_in_background(self: &Arc<Self>, mut browser: Browser) {
        let portal = self.clone();
        tokio::spawn(async move {
            let _ = browser.session().await;
            portal.give_back(browser);
        });
    }

    /// A new browser, its place in the pool already reserved.
    fn open(&self) -> Result<Browser, PortalError> {
        match self.shared.transport() {
            Ok(transport) => Ok(Browser {
                shared: self.shared.clone(),
                transport,
                my_services: None,
                search: None,
                login_number: 0,
                confirmed_in: AtomicU64::new(0),
                walking: None,
                unsettled: Mutex::new(None),
                recovered: Mutex::new(None),
                unread_confirmer: AtomicBool::new(false),
            }),
            Err(e) => {
                self.pool.lock().unwrap().unborn += 1;
                Err(e.into())
            }
        }
    }

    fn lent(self: &Arc<Self>, browser: Browser) -> Lease {
        Lease {
            portal: self.clone(),
            browser: Some(browser),
        }
    }

    /// A browser comes back: to the first waiter still waiting, else idle.
    fn give_back(self: &Arc<Self>, mut browser: Browser) {
        browser.transport.rest();
        let mut pool = self.pool.lock().unwrap();
        for priority in [Priority::Reset, Priority::Resolve] {
            while let Some(waiter) = pool.waiting[priority as usize].pop_front() {
                match waiter.send(self.lent(browser)) {
                    Ok(()) => return,
                    // That waiter gave up (its task ended): the next one.
                    Err(mut lease) => browser = lease.browser.take().expect("just lent"),
                }
            }
        }
        pool.idle.push(browser);
    }

    /// Logs one browser in, to fail fast when the login is refused.
    ///
    /// `work`: how many pieces of work will follow (the input's rows), at
    /// most as many sessions as that are worth opening.
    pub async fn connect(self: &Arc<Self>, work: usize) -> Result<(), PortalError> {
        self.lease(Priority::Resolve)
            .await?
            .session()
            .await
            .map(|_| ())?;
        self.ramp_up(work);
        Ok(())
    }

    /// Right after the first login, known good: the sessions the rate will
    /// keep busy (one cycle of the first session over the period, at most
    /// `work`) log in at once, beside the first session's walk. Opened one
    /// by one as waiters find the limiter idle, a slow portal's first
    /// seconds went by at one session's pace. A fast portal needs one
    /// session: nothing opens.
    fn ramp_up(self: &Arc<Self>, work: usize) {
        let throttle = &self.shared.throttle;
        let needed = self
            .sessions_needed()
            .min(work.max(1))
            .min(self.sessions_at_most());
        if throttle.slowed_down_within(SLOWED_DOWN_MEMORY) {
            return;
        }
        loop {
            {
                let mut pool = self.pool.lock().unwrap();
                let open = self.concurrency - pool.unborn;
                if pool.unborn == 0 || open >= needed {
                    return;
                }
                pool.reserve(throttle.answers());
            }
            match self.open() {
                Ok(browser) => self.open_in_background(browser),
                Err(_) => return,
            }
        }
    }
}

/// One portal session, used by one task at a time.
pub struct Browser {
    shared: Arc<Shared>,
    transport: Transport,
    /// The home page's link to `Mes Services`; `None` until logged in.
    my_services: Option<Url>,
    /// The search form of the current session, once opened.
    search: Option<Form>,
    /// Which of the run's logins this browser's session is (1 for the
    /// first); 0 before it logged in.
    login_number: u64,
    /// The login number of the session that sent this browser's last
    /// `Confirmer`; 0 before any.
    confirmed_in: AtomicU64,
    /// The licence this browser is walking to, for a message naming the
    /// phone a stray password may belong to.
    walking: Option<String>,
    /// A `Confirmer` this session sent whose answer could not be read: its
    /// licence and account code. The portal keeps one notification per
    /// session, so a new password a later page of this session shows is
    /// that reset's.
    unsettled: Mutex<Option<(String, String)>>,
    /// That password, once a page showed it.
    recovered: Mutex<Option<SecretString>>,
    /// A `Confirmer` of this session got an answer without a password: the
    /// pages after it are captured only where a known password was found.
    unread_confirmer: AtomicBool,
}

impl Browser {
    /// Reset requests this browser sent so far (Détail, Réinitialiser,
    /// Confirmer, the result page, and their retries; not logins).
    pub fn reset_requests(&self) -> u64 {
        self.transport.sent_in(Phase::Reset)
    }

    /// Which of the run's logins sent this browser's last `Confirmer` (1
    /// for the first): what ties a reset to the portal's security log.
    pub fn confirmed_in(&self) -> u64 {
        self.confirmed_in.load(Ordering::Relaxed)
    }

    /// Fetches a page and reads it with `parse`; a login page ends the session.
    async fn page<T>(
        &self,
        phase: Phase,
        req: Req,
        retry: Retry,
        name: &'static str,
        parse: impl FnOnce(&Html, &Url) -> Result<T, Problem>,
    ) -> Result<T, PortalError> {
        let fetched = self
            .transport
            .fetch(phase, req, retry)
            .await
            .map_err(|e| match e {
                TransportError::Forbidden => PortalError::SessionEnded,
                e => PortalError::Transport(e),
            })?;
        self.read(&fetched, name, parse)
    }

    fn read<T>(
        &self,
        fetched: &Fetched,
        name: &'static str,
        parse: impl FnOnce(&Html, &Url) -> Result<T, Problem>,
    ) -> Result<T, PortalError> {
        let doc = Html::parse_document(&fetched.body);
        self.arrived(fetched, name, &doc)?;
        if html::is_login_page(&doc, &self.shared.labels.password_field) {
            return Err(PortalError::SessionEnded);
        }
        parse(&doc, &fetched.url).map_err(|p| problem(name, p))
    }

    /// What every page read goes through, in any command, before it is
    /// used: its tokens are learnt by the scrubber, it is captured (through
    /// the scrubber), and a new password on it that this process has not
    /// read yet is kept for the journal and stops the walk: a page that
    /// shows one where none was expected means a phone may be cut off. (The
    /// page that answers a `Confirmer` is read by `reset_once`.)
    pub(crate) fn arrived(
        &self,
        fetched: &Fetched,
        name: &'static str,
        doc: &Html,
    ) -> Result<(), PortalError> {
        html::learn_tokens(doc);
        let stray = new_passwords_on(doc, &self.shared.labels)
            .into_iter()
            .find(|p| !crate::scrub::is_known_password(p))
            .map(|p| SecretString::from(p.to_string()));
        if let Some(password) = &stray {
            crate::scrub::remember(password.expose_secret(), Secret::NewPassword);
        }
        self.capture(fetched, name, &[], false);
        let unsettled = self
            .unsettled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match stray {
            None => Ok(()),
            // The answer of this licence's last Confirmer, shown late.
            Some(password)
                if unsettled
                    .as_ref()
                    .is_some_and(|(licence, _)| Some(licence) == self.walking.as_ref()) =>
            {
                *self.recovered.lock().unwrap_or_else(|e| e.into_inner()) = Some(password);
                Err(PortalError::EarlierPasswordShown)
            }
            Some(password) => {
                self.shared
                    .stray
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Stray {
                        page: name,
                        licence: self.walking.clone(),
                        password,
                    });
                Err(PortalError::PasswordShown {
                    page: name,
                    licence: self.walking.clone(),
                })
            }
        }
    }

    /// Writes the page to the capture folder, if there is one.
    pub(crate) fn capture(
        &self,
        fetched: &Fetched,
        kind: &str,
        passwords: &[&str],
        after_confirm: bool,
    ) {
        if let Some(capture) = &self.shared.capture {
            // After a Confirmer whose password was not found, any later page
            // of the session may show it under words the client missed.
            let suspect = after_confirm || self.unread_confirmer.load(Ordering::Relaxed);
            capture.page(
                capture::Page {
                    method: fetched.method,
                    path: &fetched.path,
                    status: fetched.status,
                    kind,
                    body: &fetched.body,
                    screenshot: fetched.screenshot.as_deref(),
                    passwords,
                    after_confirm: suspect,
                },
                &self.shared.labels,
            );
        }
    }

    /// Logs in; returns the home page's link to `Mes Services`.
    async fn login(&self) -> Result<Url, PortalError> {
        // Where an earlier session of the run found the login page: asked
        // first, a request (and a round trip) less than the portal's
        // address and its redirect. A portal that does not show it there,
        // or does not take the login made from there (an address good
        // once), is asked at its address, as the first session asked it.
        let learned = self
            .shared
            .login_address
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(address) = learned {
            match self.login_from(address, Shortcut::Taken).await {
                Err(PortalError::LoginRefused | PortalError::SessionEnded) => {}
                other => return other,
            }
        }
        self.login_from(self.shared.start.clone(), Shortcut::None)
            .await
    }

    /// Logs in from the page at `address`: the login page, or (at the
    /// portal's address) home if the session is still open.
    async fn login_from(&self, address: Url, shortcut: Shortcut) -> Result<Url, PortalError> {
        let l = &self.shared.labels;
        let fetched = self
            .transport
            .fetch(Phase::Login, Req::Get(address), Retry::Yes)
            .await?;
        let login_request = {
            let doc = Html::parse_document(&fetched.body);
            if html::is_login_page(&doc, &l.password_field) {
                self.arrived(&fetched, "login", &doc)?;
                *self
                    .shared
                    .login_address
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(fetched.address.clone());
                let want = want!(l, password_field, Field);
                let form = Form::with_field(&doc, &fetched.url, want.words)
                    .ok_or_else(|| problem("login", html::missing(&doc, want).into()))?;
                Some(self.login_request(&doc, form)?)
            } else if shortcut == Shortcut::Taken {
                // Not the login page there any more: the long way.
                return Err(PortalError::SessionEnded);
            } else {
                None
            }
        };
        let my_services = want!(l, my_services, Link);
        let home = match login_request {
            Some(req) => {
                let answer = self.transport.fetch(Phase::Login, req, Retry::Yes).await?;
                match self.read(&answer, "home", |doc, url| {
                    Ok(html::need_link(doc, url, my_services)?)
                }) {
                    Err(PortalError::SessionEnded) => return Err(PortalError::LoginRefused),
                    other => other?,
                }
            }
            // Still logged in (the session was fine after all): start from home.
            None => match self.read(&fetched, "home", |doc, url| {
                Ok(html::need_link(doc, url, my_services)?)
            }) {
                // No session of this run ever found a login page: the
                // address is more likely wrong than the labels.
                Err(PortalError::Missing { .. })
                    if self
                        .shared
                        .login_address
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_none() =>
                {
                    return Err(PortalError::NotThePortal {
                        // Without query: it may hold a token.
                        address: format!(
                            "{}{}",
                            fetched.address.origin().ascii_serialization(),
                            fetched.address.path()
                        ),
                        password_field: l.password_field.clone(),
                        my_services: l.my_services.clone(),
                    });
                }
                other => other?,
            },
        };
        Ok(home)
    }

    /// The login form, filled in and pressed (through the gate).
    pub(crate) fn login_request(&self, doc: &Html, form: Form) -> Result<Req, PortalError> {
        let l = &self.shared.labels;
        let form = self
            .login_form(form)
            .map_err(|m| problem("login", m.into()))?;
        Press::of(
            Some(doc),
            &form,
            want!(l, login_button, Button),
            Step::Login,
            l,
        )?
        .harmless_request()
    }

    /// The login form, filled in.
    fn login_form(&self, mut form: Form) -> Result<Form, Missing> {
        let l = &self.shared.labels;
        let credentials = &self.shared.credentials;
        let profile = match credentials.profile {
            LoginProfile::Reseller => want!(l, profile_reseller, Choice),
            LoginProfile::Operator => want!(l, profile_operator, Choice),
        };
        let (login, password, button) = (
            want!(l, login_field, Field),
            want!(l, password_field, Field),
            want!(l, login_button, Button),
        );
        form.fill(login.words, &credentials.login)
            .map_err(|_| form.missing(login))?;
        form.fill(password.words, credentials.password.expose_secret())
            .map_err(|_| form.missing(password))?;
        form.choose(profile.words)
            .map_err(|_| form.missing(profile))?;
        if !form.has(button) {
            return Err(form.missing(button));
        }
        Ok(form)
    }

    /// Walks from home to the search page of this session; returns its form.
    async fn open_search(&self, my_services: Url) -> Result<Form, PortalError> {
        let l = &self.shared.labels;
        let search = self
            .page(
                Phase::Resolve,
                Req::Get(my_services),
                Retry::Yes,
                "Mes Services",
                |doc, url| Ok(html::need_link(doc, url, want!(l, settings, Link))?),
            )
            .await?;
        self.page(
            Phase::Resolve,
            Req::Get(search),
            Retry::Yes,
            "search",
            |doc, url| {
                Ok(html::need_form_with_button(
                    doc,
                    url,
                    want!(l, search_button, Button),
                )?)
            },
        )
        .await
    }

    /// Logs in if this browser has no live session; returns the link to `Mes Services`.
    async fn session(&mut self) -> Result<Url, PortalError> {
        if let Some(home) = &self.my_services {
            return Ok(home.clone());
        }
        if self.shared.login_refused.load(Ordering::SeqCst) {
            return Err(PortalError::LoginRefused);
        }
        match self.login().await {
            Err(PortalError::LoginRefused) => {
                self.shared.login_refused.store(true, Ordering::SeqCst);
                Err(PortalError::LoginRefused)
            }
            Err(e) => Err(e),
            Ok(home) => {
                self.login_number = self
                    .shared
                    .throttle
                    .stats
                    .sessions
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                self.my_services = Some(home.clone());
                Ok(home)
            }
        }
    }

    /// The search form of the live session; the search page is opened once
    /// per session, and only by browsers that search.
    async fn search_form(&mut self) -> Result<Form, PortalError> {
        let my_services = self.session().await?;
        if self.search.is_none() {
            self.search = Some(self.open_search(my_services).await?);
        }
        Ok(self.search.clone().expect("just set"))
    }

    /// With `--engine auto`, a step that needs a script moves the run to the
    /// browser: this session goes on in it, and so do the sessions opened
    /// from now on. Whether it did.
    ///
    /// The browser session is handed this session's cookies, and carries
    /// the portal's session on where it stands: no new login on the way of
    /// the canary, which every other reset waits for. A portal that does
    /// not take them back shows its login page, and the walk logs in again
    /// as it does when a session ends.
    fn move_to_the_browser(&mut self, e: &PortalError, session: Handover) -> bool {
        if !matches!(e, PortalError::NeedsScript { .. })
            || self.shared.engine_choice != EngineChoice::Auto
            || self.transport.runs_scripts()
        {
            return false;
        }
        tracing::info!("{e}: going on with the browser engine");
        self.shared.in_browser.store(true, Ordering::SeqCst);
        let at = self.my_services.as_ref().unwrap_or(&self.shared.start);
        let handed = match session {
            Handover::CarriedOn => self.transport.cookies_for(at),
            Handover::LogInAgain => None,
        };
        if handed.is_none() {
            // Nothing to carry on: the browser session logs in.
            self.my_services = None;
            self.search = None;
        }
        self.transport = self.shared.browser_transport(handed);
        true
    }

    /// The session ended: the next step logs in again, up to a bound.
    fn session_ended(&mut self, attempt: usize) -> Result<(), PortalError> {
        tracing::info!("the portal session ended: logging in again");
        self.my_services = None;
        self.search = None;
        // The portal's notification belonged to the session that ended.
        *self.unsettled.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.unread_confirmer.store(false, Ordering::Relaxed);
        if attempt + 1 >= MAX_SESSION_ATTEMPTS {
            return Err(PortalError::SessionLoop(MAX_SESSION_ATTEMPTS));
        }
        Ok(())
    }

    /// Reads a table over its `Suivant` pages. The first page comes from
    /// `start` (a link, or the live session's search form filled in); the
    /// others from links. When the session ends it logs in again and goes on from the
    /// page it was fetching: rows already read are kept, and no form token
    /// of the ended session is sent again.
    async fn walk<T>(
        &mut self,
        name: &'static str,
        start: WalkStart<'_>,
        parse: impl Fn(&Html, &Url) -> Result<Vec<T>, Problem>,
    ) -> Result<Vec<T>, PortalError> {
        let mut rows = Vec::new();
        let mut next: Option<Req> = None;
        let mut ends_in_a_row = 0;
        for _ in 0..MAX_PAGES {
            let req = match next.take() {
                Some(req) => {
                    self.session().await?;
                    req
                }
                None => match &start {
                    WalkStart::Link(url) => {
                        self.session().await?;
                        Req::Get(url.clone())
                    }
                    WalkStart::Search(fill) => fill(self.search_form().await?)?,
                },
            };
            let answer = self
                .page(Phase::Resolve, req.clone(), Retry::Yes, name, |doc, url| {
                    Ok((
                        parse(doc, url)?,
                        find_link(doc, url, &self.shared.labels.next),
                    ))
                })
                .await;
            match answer {
                Ok((page_rows, more)) => {
                    ends_in_a_row = 0;
                    rows.extend(page_rows);
                    match more {
                        Some(url) => next = Some(Req::Get(url)),
                        None => return Ok(rows),
                    }
                }
                Err(PortalError::SessionEnded) => {
                    self.session_ended(ends_in_a_row)?;
                    ends_in_a_row += 1;
                    // Go on from the link that was being fetched; if that fails again
                    // (a link tied to the old session), start over from the first page.
                    if ends_in_a_row == 1 && matches!(req, Req::Get(_)) && !rows.is_empty() {
                        next = Some(req);
                    } else {
                        rows.clear();
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(PortalError::Contract {
            page: name,
            what: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// The MetaCentrex services whose `Compte client` is exactly `client_ref`.
    pub async fn services_of(&mut self, client_ref: &str) -> Result<Vec<ServiceRow>, PortalError> {
        let shared = self.shared.clone();
        let l = &shared.labels;
        let fill = |mut form: Form| {
            let (client, service_type, metacentrex, button) = (
                want!(l, search_client_ref, Field),
                want!(l, search_service_type, Field),
                want!(l, metacentrex, Choice),
                want!(l, search_button, Button),
            );
            let missing = |m: Missing| problem("search", m.into());
            form.fill(client.words, client_ref)
                .map_err(|_| missing(form.missing(client)))?;
            form.select(service_type.words, metacentrex.words)
                .map_err(|e| match e {
                    html::FormError::NoChoice { .. } => missing(form.missing(metacentrex)),
                    _ => missing(form.missing(service_type)),
                })?;
            Press::of(None, &form, button, Step::Search, l)?.harmless_request()
        };

        let parse = |doc: &Html, url: &Url| {
            let wants = [
                want!(l, column_service_ref, Column),
                want!(l, column_client_ref, Column),
                want!(l, column_service_type, Column),
                want!(l, column_action, Column),
            ];
            let rows = match html::need_table(doc, url, &wants) {
                Ok(t) => t.rows,
                // No table at all: no result. A table with some of the
                // headers: the portal words one differently.
                Err(m) if html::has_column_among(doc, &wants) => return Err(m.into()),
                Err(_) => Vec::new(),
            };
            rows.into_iter()
                // Filters match loosely: keep exact references of MetaCentrex services only.
                .filter(|r| r[1].text == client_ref && is_label(&r[2].text, &l.metacentrex))
                .map(|r| {
                    let page = r[3]
                        .links
                        .iter()
                        .find(|a| is_label(&a.text, &l.configure))
                        .map(|a| a.url.clone())
                        .ok_or_else(|| html::missing(doc, want!(l, configure, Link)))?;
                    Ok(ServiceRow {
                        service_ref: r[0].text.clone(),
                        client_ref: r[1].text.clone(),
                        page,
                    })
                })
                .collect()
        };
        self.walk("search results", WalkStart::Search(&fill), parse)
            .await
    }

    /// Every licence of a service, from its users table and further pages.
    pub async fn licences_of(
        &mut self,
        service: &ServiceRow,
    ) -> Result<Vec<LicenceRow>, PortalError> {
        let shared = self.shared.clone();
        let l = &shared.labels;
        let mut users = None;
        for attempt in 0.. {
            self.session().await?;
            let found = self
                .page(
                    Phase::Resolve,
                    Req::Get(service.page.clone()),
                    Retry::Yes,
                    "service",
                    |doc, url| Ok(html::need_link(doc, url, want!(l, users_tab, Link))?),
                )
                .await;
            match found {
                Err(PortalError::SessionEnded) => self.session_ended(attempt)?,
                other => {
                    users = Some(other?);
                    break;
                }
            }
        }
        let users = users.expect("the loop sets it or returns");
        let parse = |doc: &Html, url: &Url| {
            let wants = [
                want!(l, column_licence, Column),
                want!(l, column_sda, Column),
                want!(l, column_name, Column),
                want!(l, column_action, Column),
            ];
            let words: Vec<&str> = wants.iter().map(|w| w.words).collect();
            let table = match html::find_table_with(doc, url, &words, &[&l.column_state]) {
                Some(t) => t,
                None => html::need_table(doc, url, &wants)?,
            };
            table
                .rows
                .into_iter()
                .map(|r| {
                    let (licence, licence_type) =
                        r[0].text.split_once(' ').unwrap_or((&r[0].text, ""));
                    let detail = r[3]
                        .links
                        .iter()
                        .find(|a| is_label(&a.text, &l.detail))
                        .map(|a| a.url.clone())
                        .ok_or_else(|| html::missing(doc, want!(l, detail, Link)))?;
                    Ok(LicenceRow {
                        licence: licence.to_string(),
                        licence_type: licence_type.to_string(),
                        sda: r[1].text.clone(),
                        name: r[2].text.clone(),
                        detail,
                        state: r
                            .get(4)
                            .map(|c| html::label_text(&c.text))
                            .unwrap_or_default(),
                    })
                })
                .collect()
        };
        let rows = self.walk("users", WalkStart::Link(users), parse).await?;
        if let Some(first) = rows.first()
            && self.shared.look_ahead.swap(false, Ordering::SeqCst)
        {
            self.look_at(first).await;
        }
        Ok(rows)
    }

    /// Reads the detail page of `licence` (nothing pressed), and starts
    /// the browser in the background if its reset needs a script. What
    /// goes wrong here is the canary's to find and say: only logged.
    async fn look_at(&mut self, licence: &LicenceRow) {
        if self.transport.runs_scripts() {
            return;
        }
        let shared = self.shared.clone();
        let looked = self
            .page(
                Phase::Resolve,
                Req::Get(licence.detail.clone()),
                Retry::Yes,
                "detail",
                |doc, url| Ok(to_confirmation(doc, url, &shared.labels, false)),
            )
            .await;
        if let Ok(Err(e @ PortalError::NeedsScript { .. })) = looked {
            tracing::info!("{e}: starting the browser ahead");
            shared.engine.start_ahead(shared.start.origin());
        }
    }

    /// Resets the SIP password of one licence: Détail, Réinitialiser, Confirmer.
    /// `Confirmer` is sent only when the pages show this licence and `sda`,
    /// and only with the `permit` of a run whose journal is open.
    /// `already`: the account codes of phones an earlier run reset that show
    /// the same licence and number; if the detail page shows one of them,
    /// nothing is reset (`AlreadyReset`).
    pub async fn reset(
        &mut self,
        licence: &LicenceRow,
        sda: &str,
        already: &[String],
        permit: &CommitPermit,
    ) -> Result<NewPassword, ResetError> {
        self.walking = Some(licence.licence.clone());
        let result = self.reset_walk(licence, sda, already, permit).await;
        self.walking = None;
        result
    }

    async fn reset_walk(
        &mut self,
        licence: &LicenceRow,
        sda: &str,
        already: &[String],
        permit: &CommitPermit,
    ) -> Result<NewPassword, ResetError> {
        for attempt in 0.. {
            self.session().await.map_err(ResetError::NotDone)?;
            match self.reset_once(licence, sda, already, permit).await {
                Err(ResetError::NotDone(PortalError::SessionEnded)) => {
                    self.session_ended(attempt).map_err(ResetError::NotDone)?
                }
                // Before any Confirmer: the step needs a script.
                Err(ResetError::NotDone(e))
                    if self.move_to_the_browser(&e, Handover::CarriedOn) => {}
                Err(ResetError::NotDone(PortalError::EarlierPasswordShown)) => {
                    let (_, accountcode) = self
                        .unsettled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .expect("set with the password");
                    let password = self
                        .recovered
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .expect("set with the error");
                    return Ok(NewPassword {
                        password,
                        accountcode,
                        earlier: true,
                    });
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    /// Détail then Réinitialiser: checks the pages show this licence and SDA,
    /// and returns the account code and the `Confirmer` press. Nothing has
    /// changed on the portal yet: every press on the way is harmless.
    async fn prepare(
        &self,
        licence: &LicenceRow,
        sda: &str,
        already: &[String],
    ) -> Result<(String, Press), ResetError> {
        let l = &self.shared.labels;
        let reset = self
            .page(
                Phase::Reset,
                Req::Get(licence.detail.clone()),
                Retry::Yes,
                "detail",
                |doc, url| {
                    let shown = html::field_value(doc, &l.field_licence)
                        .ok_or_else(|| html::missing(doc, want!(l, field_licence, LabelValue)))?;
                    if shown.split(' ').next() != Some(licence.licence.as_str()) {
                        return Err(
                            format!("shows licence '{shown}', not {}", licence.licence).into()
                        );
                    }
                    if let Some(shown_sda) = html::field_value(doc, &l.field_sda)
                        && !phone::same_number(&shown_sda, sda)
                    {
                        return Err(format!(
                            "shows SDA '{shown_sda}' for {}, expected '{sda}'",
                            licence.licence
                        )
                        .into());
                    }
                    let accountcode =
                        html::field_value(doc, &l.field_accountcode).unwrap_or_default();
                    Ok((
                        accountcode,
                        to_confirmation(doc, url, l, self.transport.runs_scripts()),
                        url.clone(),
                    ))
                },
            )
            .await
            .map_err(ResetError::NotDone)?;
        let (accountcode, to_confirm, detail_url) = reset;
        let to_confirm = to_confirm.map_err(ResetError::NotDone)?;
        if !already.is_empty() {
            if accountcode.is_empty() {
                return Err(ResetError::NotDone(PortalError::Contract {
                    page: "detail",
                    what: format!(
                        "no '{}': cannot tell this phone from another one that shows {} and this number, which an earlier run reset",
                        l.field_accountcode, licence.licence
                    ),
                }));
            }
            if already.contains(&accountcode) {
                return Err(ResetError::AlreadyReset { accountcode });
            }
        }
        let read_confirmation = |doc: &Html, url: &Url| -> Result<_, Problem> {
            let after = html::text_after(doc, &l.associated_number)
                .ok_or_else(|| html::missing(doc, want!(l, associated_number, Text)))?;
            let shown = phone::leading_number(&after);
            if !phone::same_number(&shown, sda) {
                return Err(format!(
                    "associated number '{shown}' is not '{sda}' of {}",
                    licence.licence
                )
                .into());
            }
            let want = want!(l, confirm_button, Button);
            Ok(match html::need_control(doc, url, want)? {
                html::Opens::Form(form) => Press::of(Some(doc), &form, want, Step::Confirmation, l),
                html::Opens::Script { path, .. } if self.transport.runs_scripts() => {
                    Ok(Press::click(doc, path, want, Step::Confirmation, l))
                }
                html::Opens::Script { label, .. } => Err(PortalError::NeedsScript {
                    page: "confirmation",
                    control: label,
                }),
                // A confirmation that opens yet another dialog: not a
                // confirmation the walk knows.
                _ => Err(problem("confirmation", html::missing(doc, want).into())),
            })
        };
        let confirm = match to_confirm {
            ToConfirmation::Request(req) => {
                self.page(
                    Phase::Reset,
                    req,
                    Retry::Yes,
                    "confirmation",
                    read_confirmation,
                )
                .await
            }
            // A dialog of the detail page: read there, nothing fetched.
            ToConfirmation::Shown(dialog) => {
                read_confirmation(&Html::parse_document(&dialog), &detail_url)
                    .map_err(|p| problem("confirmation", p))
            }
            // A script of the page shows it: pressed in the browser.
            ToConfirmation::Click(path) => {
                match self.transport.click(Phase::Reset, &path, false).await {
                    Ok(settled) => self.read(&settled.page, "confirmation", read_confirmation),
                    Err(e) => Err(PortalError::Transport(e)),
                }
            }
        }
        .and_then(|press| press)
        .map_err(ResetError::NotDone)?;
        Ok((accountcode, confirm))
    }

    async fn reset_once(
        &self,
        licence: &LicenceRow,
        sda: &str,
        already: &[String],
        permit: &CommitPermit,
    ) -> Result<NewPassword, ResetError> {
        let l = &self.shared.labels;
        let (accountcode, confirm) = self.prepare(licence, sda, already).await?;
        // Held here while the canary runs; never pressed if it failed.
        let action = confirm
            .commit(permit, &self.shared.interruptions.reads)
            .await
            .map_err(|e| ResetError::NotDone(e.into()))?;
        // From here on the password may have changed: no failure is "not
        // done", unless nothing was sent or the portal did not take it
        // (the gate's rule).
        let before = self.transport.sent();
        self.confirmed_in
            .store(self.login_number, Ordering::Relaxed);
        let unknown = |answer: Answer, reason: String| {
            self.unread_confirmer.store(true, Ordering::Relaxed);
            match answer {
                Answer::NotTaken => unreachable!("handled before"),
                Answer::NotReadable => {
                    // A later page of this session may still show its password.
                    *self.unsettled.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((licence.licence.clone(), accountcode.clone()));
                    ResetError::Unknown {
                        reason,
                        next: AfterUnknown::ResetAgain,
                    }
                }
                Answer::ReadWithoutPassword => ResetError::Unknown {
                    reason,
                    next: AfterUnknown::GiveUp,
                },
                Answer::LeadsElsewhere => ResetError::Unknown {
                    reason,
                    next: AfterUnknown::StopRun,
                },
            }
        };
        let sent = match action {
            Action::Send(req) => self
                .transport
                .fetch(Phase::Reset, req, Retry::FirstHopOnce)
                .await
                .map(|fetched| (fetched, Vec::new())),
            Action::Click(path) => self
                .transport
                .click(Phase::Reset, &path, true)
                .await
                .map(|settled| (settled.page, settled.answers)),
        };
        let (fetched, script_answers) = match sent {
            // A script control pressed, and no request left the browser:
            // nothing was confirmed (interrupted while it waited its turn,
            // or a page that did nothing).
            Ok(_) if self.transport.sent() == before => {
                return Err(ResetError::NotDone(
                    if self.shared.interruptions.reads.is_cancelled() {
                        PortalError::Transport(TransportError::Interrupted)
                    } else {
                        PortalError::Contract {
                            page: "confirmation",
                            what: "pressing Confirmer sent nothing to the portal".into(),
                        }
                    },
                ));
            }
            Ok(answered) => answered,
            Err(e) if self.transport.sent() == before => {
                // Nothing went out (interrupted while waiting its turn).
                return Err(ResetError::NotDone(PortalError::Transport(e)));
            }
            Err(TransportError::Interrupted) => {
                return Err(ResetError::Unknown {
                    reason: "interrupted after Confirmer was sent".into(),
                    next: AfterUnknown::GiveUp,
                });
            }
            Err(e) => {
                return Err(match gate::answer_of_error(&e) {
                    Answer::NotTaken => ResetError::NotDone(match e {
                        TransportError::Forbidden => PortalError::SessionEnded,
                        e => PortalError::Transport(e),
                    }),
                    answer => unknown(answer, format!("Confirmer answered: {e}")),
                });
            }
        };
        let doc = Html::parse_document(&fetched.body);
        html::learn_tokens(&doc);
        // Every password the page shows, wiped when dropped like the body;
        // this reset's is the first this run has not read already (a
        // notification of an earlier reset may be shown again beside it).
        let shown = new_passwords_on(&doc, l);
        let found = shown
            .iter()
            .map(|p| p.as_str())
            .find(|p| !crate::scrub::is_known_password(p));
        if let Some(password) = found {
            // Known to the scrubber before anything can write the page.
            crate::scrub::remember(password, Secret::NewPassword);
        }
        self.capture(&fetched, "result", found.as_slice(), true);
        // A result page that names a licence must name this one: a password
        // shown beside another licence is not this licence's.
        if let Some(shown) = html::field_value(&doc, &l.field_licence)
            && shown.split(' ').next() != Some(licence.licence.as_str())
        {
            return Err(unknown(
                Answer::ReadWithoutPassword,
                format!(
                    "the result page shows licence '{shown}', not {}",
                    licence.licence
                ),
            ));
        }
        let login_address = self
            .shared
            .login_address
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let answer = gate::answer_of_scripts(&script_answers)
            .unwrap_or_else(|| gate::answer_of_page(&doc, l, &fetched, login_address.as_ref()));
        match (found, answer) {
            (Some(password), _) => {
                *self.unsettled.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(NewPassword {
                    password: SecretString::from(password.to_string()),
                    accountcode,
                    earlier: false,
                })
            }
            // The session had ended: the portal did not take the press.
            (None, Answer::NotTaken) => Err(ResetError::NotDone(PortalError::SessionEnded)),
            (None, Answer::NotReadable) => Err(unknown(
                Answer::NotReadable,
                "the session ended after Confirmer, before its result page".into(),
            )),
            // Only passwords read for other licences: the label may name
            // something else than this reset's password.
            (None, answer) if !shown.is_empty() => Err(unknown(
                answer,
                "the result page shows no password this run has not read already".into(),
            )),
            (None, answer) => Err(unknown(
                answer,
                html::missing(&doc, want!(l, new_password, Text)).to_string(),
            )),
        }
    }
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
