//! The browser engine: headless Chromium driven over the DevTools protocol
//! (`chromiumoxide`), for portals whose steps run scripts. The walk is the
//! same as with the HTTP engine: a page is read from a snapshot of the live
//! DOM with the same label rules, and the engine acts on the live page where
//! the snapshot found the element (`css_path`). An engine only performs a
//! step: it loads an address, sends a form as the page would, or presses a
//! control and waits for the page to settle.
//!
//! What the run promises holds here too, by construction:
//! - every request Chromium makes (documents, scripts, XHR and fetch)
//!   pauses in the `Fetch` domain and goes on only through the run's one
//!   throttle (rate limit, `Retry-After`), counted like any other; images,
//!   fonts, media and the favicon are never sent;
//! - a request to another origin is refused; `--allow-origin` lets a script
//!   or a style through, never a document, a form or an XHR;
//! - the browser gets a fresh profile in a 0700 temporary folder, no disk
//!   cache, no crash reports; it runs in a process group of its own, which
//!   is killed when the engine is dropped (and by the kernel if sip-rotate
//!   dies first), then the profile is removed;
//! - no other local user can reach the browser: DevTools runs over pipes,
//!   never a port (`pipe`);
//! - what the browser prints goes nowhere: its standard error is drained
//!   unread.

mod pipe;
mod process;

pub use process::{Chromium, end_all, executable, installed};

use super::transport::{Fetched, Purpose, Standing, Tally, Throttle, TransportError};
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EnableParams, EventRequestPaused, FailRequestParams, HeaderEntry,
};
use chromiumoxide::cdp::browser_protocol::network::{
    BlockPattern, CookieParam, ErrorReason, EventLoadingFailed, EventLoadingFinished,
    EventRequestWillBeSent, EventResponseReceived, ResourceType, SetCookiesParams,
};
use chromiumoxide::cdp::browser_protocol::page::{
    DialogType, EventJavascriptDialogOpening, HandleJavaScriptDialogParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CloseTargetParams, CreateBrowserContextParams, CreateTargetParams, EventTargetCreated,
};
use chromiumoxide::handler::HandlerConfig;
use futures::StreamExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use url::Url;
use zeroize::Zeroizing;

/// Why the browser could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "no browser at {0}: the portal needs one for a step that runs a script; install Chromium (apt-get install chromium) or name another with --browser PATH"
    )]
    NotInstalled(PathBuf),
    #[error("the browser {path} did not start: {why}")]
    Start { path: PathBuf, why: String },
    #[error("the browser failed: {0}")]
    Protocol(String),
    /// The browser's process ended under the run: no session can be had.
    #[error("the browser ended under the run (its process exited or was killed)")]
    Ended,
    /// `--ca-file` with `--engine browser`: the browser would start before
    /// any HTTP answer verified the portal's certificate.
    #[error(
        "the browser trusts a private authority (--ca-file) through the portal's certificate the HTTP engine verified first: with --engine browser there is none; run with --engine auto"
    )]
    UnverifiedPortal,
}

/// The browser engine of a run: the browser, started at the first session
/// that needs it, and what every session of it shares.
pub struct Engine {
    executable: PathBuf,
    timeout: Duration,
    allowed: Arc<Vec<url::Origin>>,
    /// The authorities trusted beside the system's (`--ca-file`), and the
    /// portal keys the HTTP engine verified by them.
    trust: super::transport::Trust,
    /// Each page settled is also pictured, for `--capture`.
    screenshots: bool,
    browser: tokio::sync::OnceCell<Chromium>,
}

impl Engine {
    pub fn new(
        executable: PathBuf,
        timeout: Duration,
        allowed: Vec<url::Origin>,
        trust: super::transport::Trust,
        screenshots: bool,
    ) -> Engine {
        Engine {
            executable,
            timeout,
            allowed: Arc::new(allowed),
            trust,
            screenshots,
            browser: tokio::sync::OnceCell::new(),
        }
    }

    /// How long one step may take to settle.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the browser was started.
    pub fn started(&self) -> bool {
        self.browser.initialized()
    }

    /// The browser, started for `origin` if it is not yet (or while it starts).
    async fn browser(&self, origin: &url::Origin) -> Result<&Chromium, EngineError> {
        // The only names the browser may look up: the portal's, and those
        // of the origins whose scripts and styles it may load.
        let hosts: Vec<String> = std::iter::once(origin)
            .chain(self.allowed.iter())
            .filter_map(|o| match o {
                url::Origin::Tuple(_, host, _) => Some(host.to_string()),
                url::Origin::Opaque(_) => None,
            })
            .collect();
        self.browser
            .get_or_try_init(|| async {
                // Chromium keeps its own authorities: it is told the keys
                // of the portal's certificate the HTTP engine verified (a
                // portal sends its certificate without its authority's).
                let https = matches!(origin, url::Origin::Tuple(scheme, ..) if scheme == "https");
                if https && !self.trust.is_empty() && !self.trust.any_verified() {
                    return Err(EngineError::UnverifiedPortal);
                }
                Chromium::launch(
                    &self.executable,
                    self.timeout,
                    &hosts,
                    &self.trust.browser_keys(),
                )
                .await
            })
            .await
    }

    /// Starts the browser in the background, for the sessions about to
    /// need it. One that cannot start is said by the first session.
    pub fn start_ahead(self: &Arc<Self>, origin: url::Origin) {
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.browser(&origin).await {
                tracing::debug!("the browser did not start ahead: {e}");
            }
        });
    }

    /// A new session (a browser context), the browser started first if need be.
    pub async fn session(
        &self,
        throttle: Arc<Throttle>,
        origin: url::Origin,
        tally: Arc<Tally>,
        interruptions: super::Interruptions,
        handed: Option<super::transport::HandedCookies>,
    ) -> Result<Tab, EngineError> {
        let browser = self.browser(&origin).await?;
        // A browser whose pages never come up (a renderer that dies as it
        // starts) is said, not waited for.
        let limit = self.timeout.max(Duration::from_secs(20));
        let session = browser.session(
            throttle,
            origin,
            self.allowed.clone(),
            tally,
            interruptions,
            handed,
        );
        tokio::time::timeout(limit, session)
            .await
            .unwrap_or_else(|_| {
                Err(EngineError::Protocol(format!(
                    "it opened no page within {} s (its renderer does not start: see 'The two engines' in docs/operating.md for what the browser needs)",
                    limit.as_secs()
                )))
            })
            .map(|mut tab| {
                tab.screenshots = self.screenshots;
                tab
            })
    }
}

/// A task that hands each event `E` of `page` to `on`, the network marked
/// as stirring first.
async fn follow<E>(
    page: &Page,
    watch: &Arc<Watch>,
    on: impl Fn(&Watch, &E) + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, chromiumoxide::error::CdpError>
where
    E: chromiumoxide::cdp::IntoEventKind + Unpin + Send + Sync + 'static,
{
    let mut events = page.event_listener::<E>().await?;
    let watch = watch.clone();
    Ok(tokio::spawn(async move {
        while let Some(e) = events.next().await {
            watch.stirred();
            on(&watch, &e);
        }
    }))
}

/// What a request paused in the `Fetch` domain may do: go on after its turn
/// at the throttle, or fail without being sent.
async fn admit(
    event: &EventRequestPaused,
    throttle: &Throttle,
    origin: &url::Origin,
    allowed: &[url::Origin],
    watch: &Watch,
    standing: Standing,
    waiting: &CancellationToken,
) -> Result<(), ErrorReason> {
    use ResourceType as R;
    if matches!(
        event.resource_type,
        R::Image | R::Media | R::Font | R::TextTrack | R::Manifest | R::Ping | R::Prefetch
    ) {
        return Err(ErrorReason::BlockedByClient);
    }
    let Ok(url) = Url::parse(&event.request.url) else {
        return Err(ErrorReason::BlockedByClient);
    };
    // A page's icon (`<link rel=icon>`) comes as a request of no type
    // asking for an image: not needed, never sent, from whatever origin
    // (helper-19: one on a CDN stopped every run as "a page" elsewhere).
    let asks_an_image = event
        .request
        .headers
        .inner()
        .as_object()
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("accept")))
        .and_then(|(_, v)| v.as_str())
        .is_some_and(|accept| accept.starts_with("image/"));
    if url.path() == "/favicon.ico" || (event.resource_type == R::Other && asks_an_image) {
        return Err(ErrorReason::BlockedByClient);
    }
    // A service worker's own requests would not pass here: none is
    // registered (its script is fetched with this header).
    let registers_a_worker = event
        .request
        .headers
        .inner()
        .as_object()
        .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("service-worker")));
    if registers_a_worker {
        return Err(ErrorReason::BlockedByClient);
    }
    if url.scheme() == "data" || url.scheme() == "about" {
        return Ok(());
    }
    let here = url.origin();
    if &here != origin {
        let sub_resource = matches!(event.resource_type, R::Script | R::Stylesheet)
            && event.request.method.eq_ignore_ascii_case("GET");
        if !(sub_resource && allowed.contains(&here)) {
            watch.foreign.lock().unwrap().get_or_insert_with(|| {
                let kind = match event.resource_type {
                    R::Script => "a script",
                    R::Stylesheet => "a style sheet",
                    R::Document | R::Other => "a page",
                    R::Xhr | R::Fetch | R::EventSource => "a request of its script",
                    R::WebSocket => "a WebSocket",
                    _ => "a resource",
                }
                .to_string();
                TransportError::ForeignResource {
                    to: format!("{}{}", here.ascii_serialization(), url.path()),
                    allowable: matches!(event.resource_type, R::Script | R::Stylesheet)
                        .then(|| here.ascii_serialization()),
                    kind,
                }
            });
            return Err(ErrorReason::BlockedByClient);
        }
    }
    if !watch.may_change(event, url.path()) {
        return Err(ErrorReason::BlockedByClient);
    }
    // A page that keeps asking would spend the rate the run needs: past
    // what a step could need, what it asks is refused, and the step says so.
    if watch.asked.fetch_add(1, Ordering::SeqCst) >= STEP_REQUESTS {
        watch.flooded.lock().unwrap().get_or_insert_with(|| {
            format!(
                "the portal's page sent more than {STEP_REQUESTS} requests in one step (the latest {} {}): the rest were refused, not to spend the run's rate on them; a page that keeps asking cannot be driven: send a capture (sip-rotate check --capture DIR) to whoever maintains sip-rotate",
                event.request.method.to_ascii_uppercase(),
                url.path()
            )
        });
        return Err(ErrorReason::BlockedByClient);
    }
    // A tab closed meanwhile: what it asked is dropped from the limiter's
    // queue, neither sent nor counted.
    tokio::select! {
        _ = watch.closed.cancelled() => Err(ErrorReason::Aborted),
        turn = throttle.admit(standing, waiting) => turn.map_err(|_| ErrorReason::Aborted),
    }
}

/// The requests a page may send in one step (documents, scripts, styles,
/// XHR and fetch; what is blocked does not count). A portal's page needs a
/// few; a script that asks again and again (a poll gone wrong, a loop)
/// would hold the limiter, and every session with it, until the step's
/// time is up, and the step would be taken for a portal that failed.
const STEP_REQUESTS: usize = 60;

/// A request of the page that was answered, as the walk's rule reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// A page (or a frame) the browser loaded.
    Document,
    /// A request of the page's scripts (XHR, fetch).
    Script,
}

/// The status of a request of the page's script that got no answer: its
/// connection was cut, or it never connected.
pub const NO_ANSWER: u16 = 0;

#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub kind: Answered,
    pub status: u16,
    pub retry_after: Option<u64>,
}

impl Watch {
    fn stirred(&self) {
        *self.last_event.lock().unwrap() = Some(std::time::Instant::now());
    }

    fn quiet_for(&self) -> Duration {
        self.last_event
            .lock()
            .unwrap()
            .map_or(Duration::MAX, |t| t.elapsed())
    }
}

/// The requests of a page in flight. Each kind of event comes through a
/// listener of its own, so their order is not kept: a request may be seen
/// to end before it is seen to start, or to start after the document that
/// replaced its own (the browser cancels those without always saying so).
#[derive(Default)]
struct Pending {
    /// By id: the loader (document) that made it, and its path (no query),
    /// to name what a step waited for.
    flying: std::collections::HashMap<String, (String, String)>,
    /// Ended before they were seen to start.
    ended_early: std::collections::HashSet<String>,
    /// The loader of the latest document.
    document: Option<String>,
}

impl Pending {
    fn started(&mut self, id: &str, loader: &str, document: bool, path: String) {
        if self.ended_early.remove(id) {
            return;
        }
        if document && loader == id {
            // A new document: the requests of the one it replaces end.
            self.document = Some(loader.to_string());
            self.flying.retain(|_, (l, _)| l == loader);
        } else if self.document.as_deref().is_some_and(|d| d != loader) {
            // Made by a document already replaced.
            return;
        }
        self.flying
            .insert(id.to_string(), (loader.to_string(), path));
    }

    fn ended(&mut self, id: &str) {
        if self.flying.remove(id).is_none() {
            self.ended_early.insert(id.to_string());
        }
    }

    fn is_empty(&self) -> bool {
        self.flying.is_empty()
    }

    fn paths(&self) -> Vec<String> {
        self.flying.values().map(|(_, p)| p.clone()).collect()
    }

    /// A step begins: what the last one left is none of its business.
    fn clear(&mut self) {
        self.flying.clear();
        self.ended_early.clear();
    }
}

#[derive(Default)]
struct Watch {
    /// Requests sent and not yet finished or failed.
    pending: Mutex<Pending>,
    /// The phase the session's requests count in.
    phase: AtomicU8,
    /// Redirects the page's documents went through.
    redirects: AtomicUsize,
    /// Where the first of a step's document redirects led.
    first_redirect: Mutex<Option<String>>,
    /// The step may commit a reset: its requests are cut short only by a
    /// second interruption, as the HTTP engine's `Confirmer`.
    committing: std::sync::atomic::AtomicBool,
    /// When the network last did anything for the page.
    last_event: Mutex<Option<std::time::Instant>>,
    answers: Mutex<Vec<Answer>>,
    /// A request refused because it led elsewhere, first one.
    foreign: Mutex<Option<TransportError>>,
    /// A dialog of the page's own (`confirm()`, `prompt()`) dismissed in a
    /// step that may not commit, said in words; the step fails with it.
    dismissed: Mutex<Option<String>>,
    /// The words of a `confirm()` the press's own script asked, answered
    /// yes: nothing the page sends in this step may change anything at
    /// the portal from then on (see `Acting`).
    said_yes: Mutex<Option<String>>,
    /// The page's renderer is gone (it crashed, or it hung and was made to
    /// crash): nothing more can be done in this tab.
    crashed: std::sync::atomic::AtomicBool,
    /// The browser itself ended (see `Chromium::ended`).
    browser_ended: Arc<std::sync::atomic::AtomicBool>,
    /// What the session is doing (an `Acting`): whether a request of the
    /// page that changes something at the portal may leave (see `admit`).
    acting: AtomicU8,
    /// Requests that change something let go in this step.
    changes: AtomicUsize,
    /// Such a request refused, said in words: the step fails with it.
    unasked: Mutex<Option<String>>,
    /// Requests the page asked since its step began (see `STEP_REQUESTS`).
    asked: AtomicUsize,
    /// The page asked more than a step may, said in words: the step fails
    /// with it, or the next one if the page asked between two steps.
    flooded: Mutex<Option<String>>,
    /// The tab is closed: its requests still waiting for their turn are
    /// dropped.
    closed: CancellationToken,
    /// The licence the session's walk is for (`Tab::hold`): a request that
    /// would change something and names another licence is refused.
    in_hand: Mutex<Option<String>>,
    /// The first such request of the tab, said in words, whenever it came:
    /// nothing more the page sends may change anything, and every step
    /// fails with it but the one whose Confirmer went before it (its
    /// password is read); the run stops (helper-20: one refused after the
    /// password showed let the run go on to the end, exit 0).
    hostile: Mutex<Option<String>>,
}

/// What a session is doing in its page, for the requests the page sends
/// that would change something at the portal (any method but GET, HEAD
/// and OPTIONS): a page sends one only as the consequence of a press of
/// ours (a login, a search, a dialog a script opens), and only one in the
/// press of `Confirmer` (the gate's, `committing`). Sent by the page of
/// itself, as it loads or between two steps, it is refused: a page's
/// script that reset another licence as its page loaded, in `run` and in
/// `check`, reset one nobody asked for; one that sent `Confirmer` again
/// once the password showed left the phone with a password nobody has
/// (both found by a helper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Acting {
    Idle = 0,
    Loading = 1,
    Pressing = 2,
    /// The press led to a page (a document was asked for): what that
    /// page's scripts send as it loads is the page's own doing, not the
    /// press's. Only the press's own request, redirected with its method
    /// kept (307, 308), may still change something. Without it, a page
    /// reached by a login or a search form could reset a licence as it
    /// loaded (seen in CI: the test of this rule let it through).
    Following = 3,
}

impl Watch {
    /// Whether a request of the page with `method` may leave now; a
    /// refusal is said by the step (once), and logged.
    fn may_change(&self, event: &EventRequestPaused, path: &str) -> bool {
        let method = &event.request.method;
        let document = event.resource_type == ResourceType::Document;
        // A press that asks for a page is followed from then on.
        if document {
            let _ = self.acting.compare_exchange(
                Acting::Pressing as u8,
                Acting::Following as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        if ["GET", "HEAD", "OPTIONS"]
            .iter()
            .any(|m| method.eq_ignore_ascii_case(m))
        {
            return true;
        }
        let acting = self.acting.load(Ordering::SeqCst);
        let said_yes = self.said_yes.lock().unwrap().clone();
        let was_hostile = self.hostile.lock().unwrap().is_some();
        // A page's script that changes what a press sends (another
        // licence's reset in place of, or beside, the one pressed for):
        // refused, and so is all the page would still change (helper-19).
        // Outside a press it is refused below as sent by itself; the tab
        // is done all the same (helper-20).
        let in_hand = self.in_hand.lock().unwrap().clone();
        if let Some(ours) = in_hand
            && let Some(other) = names_another(&ours, &what_it_sends(event))
        {
            let method = method.to_ascii_uppercase();
            let pressing = self.committing.load(Ordering::SeqCst)
                || acting == Acting::Pressing as u8
                || acting == Acting::Following as u8;
            if pressing {
                let said = format!(
                    "the portal's page sent {method} {path} naming the licence {other} while pressing for {ours}: refused, and nothing more may change; a page that changes what a press sends is not driven further"
                );
                tracing::warn!("{said}");
                self.hostile.lock().unwrap().get_or_insert(said);
                return false;
            }
            self.hostile.lock().unwrap().get_or_insert_with(|| {
                format!(
                    "the portal's page sent {method} {path} naming the licence {other}, in the walk for {ours}: refused; a page that sends for another licence is not driven further"
                )
            });
        }
        let why = if was_hostile {
            "after a request of the page naming another licence".to_string()
        } else if self.committing.load(Ordering::SeqCst) {
            if self.changes.fetch_add(1, Ordering::SeqCst) == 0 {
                return true;
            }
            "a second time in the press of Confirmer".to_string()
        } else if let Some(asked) = said_yes {
            format!("once its question '{asked}' was answered yes (that question was no Confirmer)")
        } else if !document
            && (acting == Acting::Pressing as u8 || acting == Acting::Following as u8)
        {
            // Only Confirmer's script may change something; a script that
            // posts as another control is pressed may be resetting a
            // licence nobody asked for (helper-19: in `check` too).
            "from its script, as a control that changes nothing was pressed".to_string()
        } else if acting == Acting::Following as u8
            // The press's own document, asked for at first: a form sent
            // (or where it was redirected).
            && document
            && (event.redirected_request_id.is_some()
                || self.changes.fetch_add(1, Ordering::SeqCst) == 0)
        {
            return true;
        } else {
            "by itself (no press of sip-rotate asked for it)".to_string()
        };
        let said = format!(
            "the portal's page sent {} {path} {why}: refused, nothing was sent (sip-rotate lets a page change something at the portal only as a press of its own asks, and only once at Confirmer)",
            method.to_ascii_uppercase()
        );
        tracing::warn!("{said}");
        self.unasked.lock().unwrap().get_or_insert(said);
        false
    }
}

/// One session of the browser engine: its own browser context, one page.
pub struct Tab {
    page: Arc<Page>,
    watch: Arc<Watch>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Each page settled is pictured too (`--capture`), but never after a
    /// press that may commit: there is nothing to picture after Confirmer.
    screenshots: bool,
}

impl Drop for Tab {
    fn drop(&mut self) {
        self.watch.closed.cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Where a step of the browser began.
struct Step {
    /// Answers and redirects counted before it (see `Tab::mark`).
    from: (usize, usize),
    began: std::time::Instant,
}

/// What a press should show once its page settled (a dialog's label, say).
pub type Shown<'a> = dyn Fn(&Settled) -> bool + Send + Sync + 'a;

/// What a step in the browser came to: the page after it settled, and the
/// answers to the requests it made.
pub struct Settled {
    pub page: Fetched,
    pub answers: Vec<Answer>,
}

impl Settled {
    /// The seconds the latest `Retry-After` of the step asked for (1 when
    /// none said): the pause after a 429.
    pub fn retry_after(&self) -> u64 {
        self.answers
            .iter()
            .rev()
            .find_map(|a| a.retry_after)
            .unwrap_or(1)
    }
}

/// How often a page is looked at while it settles, and for how long it
/// must stay quiet.
const LOOK_EVERY: Duration = Duration::from_millis(10);
const QUIET_LOOKS: u32 = 2;
const QUIET: Duration = Duration::from_millis(30);

/// How long a page that missed its step's time has to answer the simplest
/// question before it is taken for hung.
const HUNG_AFTER: Duration = Duration::from_secs(2);

impl Tab {
    fn step_error(e: chromiumoxide::error::CdpError) -> TransportError {
        let text = e.to_string();
        // A certificate the browser refused stays refused: said as the
        // HTTP engine says it, not tried again.
        if let Some(at) = text.find("net::ERR_CERT_") {
            let code: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            return TransportError::Unreachable(super::transport::Unreachable::Certificate(
                format!("the browser says {code}"),
            ));
        }
        TransportError::Transient(format!("the browser: {text}"))
    }

    /// Whether the page's renderer is gone: the session needs another tab.
    pub fn gone(&self) -> bool {
        self.watch.crashed.load(Ordering::SeqCst) || self.browser_ended()
    }

    /// Whether the browser itself ended: no tab can be had any more.
    fn browser_ended(&self) -> bool {
        self.watch.browser_ended.load(Ordering::SeqCst)
    }

    /// Why a page that is gone is gone.
    pub fn gone_error(&self) -> TransportError {
        if self.browser_ended() {
            TransportError::BrowserEnded
        } else {
            TransportError::PageCrashed
        }
    }

    /// Whether the page answers a question at once. A script of the page
    /// that never returns (a loop) holds its renderer: every step waits
    /// its whole time, and so do the other sessions that renderer serves.
    pub async fn responds(&self) -> bool {
        !self.gone()
            && tokio::time::timeout(HUNG_AFTER, self.page.evaluate("1"))
                .await
                .is_ok_and(|r| r.is_ok())
    }

    /// Ends a page that stopped answering: its renderer is made to crash
    /// (a script in a loop is stopped no other way; the sessions that
    /// renderer served see their pages crash, and go on in new tabs), and
    /// the tab is closed. Said to the session at its next step.
    pub fn abandon(&self) {
        self.watch.crashed.store(true, Ordering::SeqCst);
        self.watch.closed.cancel();
        let page = self.page.clone();
        tokio::spawn(async move {
            let crash = chromiumoxide::cdp::browser_protocol::page::CrashParams::default();
            let _ = tokio::time::timeout(HUNG_AFTER, page.execute(crash)).await;
            let close = CloseTargetParams::new(page.target_id().clone());
            let _ = tokio::time::timeout(HUNG_AFTER, page.execute(close)).await;
        });
    }

    /// Loads `url` as a browser follows a link, and waits for it to settle.
    pub async fn load(
        &self,
        phase: Purpose,
        url: &Url,
        method: &'static str,
        form: Option<&[(String, String)]>,
        timeout: Duration,
        commit: bool,
    ) -> Result<Settled, TransportError> {
        // A form sent is a press of ours; a page loaded asks for nothing.
        let acting = if form.is_some() {
            Acting::Pressing
        } else {
            Acting::Loading
        };
        let step = self.begin(phase, commit, acting);
        match form {
            // Bounded by the step's time: a page whose script never
            // returns never ends loading either.
            None => {
                tokio::time::timeout(timeout, self.page.goto(url.as_str()))
                    .await
                    .map_err(|_| TransportError::Transient("the page did not load in time".into()))?
                    .map_err(Self::step_error)?;
            }
            // A form sent as the page's own form would send it.
            Some(pairs) => {
                let fields: Vec<serde_json::Value> = pairs
                    .iter()
                    .map(|(n, v)| serde_json::json!([n, v]))
                    .collect();
                let script = Zeroizing::new(format!(
                    "(() => {{ const f = document.createElement('form'); f.method = {}; f.action = {}; \
                     for (const [n, v] of {}) {{ const i = document.createElement('input'); i.type = 'hidden'; i.name = n; i.value = v; f.appendChild(i); }} \
                     document.body.appendChild(f); f.submit(); }})()",
                    serde_json::Value::String(method.to_ascii_lowercase()),
                    serde_json::Value::String(url.to_string()),
                    serde_json::Value::Array(fields)
                ));
                let navigation = self.page.wait_for_navigation();
                self.page
                    .evaluate(script.as_str())
                    .await
                    .map_err(Self::step_error)?;
                // Bounded as a link is: the navigation ends with the
                // answer, and a portal that keeps a login unanswered would
                // have it waited for past --timeout, then read as refused.
                tokio::time::timeout(timeout, navigation)
                    .await
                    .map_err(|_| {
                        TransportError::Transient("the form's answer did not come in time".into())
                    })?
                    .map_err(Self::step_error)?;
            }
        }
        let mut settled = self.end(step, "load", timeout, &|_| true).await?;
        // A page loaded (no form) that no redirect led elsewhere, shown at
        // another address: its script or a refresh took it on.
        let page = &settled.page;
        let mut here = page.address.clone();
        here.set_fragment(None);
        let mut asked = url.clone();
        asked.set_fragment(None);
        if form.is_none() && page.hops == 0 && here != asked {
            settled.page.asked = Some(asked);
        }
        Ok(settled)
    }

    /// The licence the steps to come are for (see `Watch::in_hand`).
    pub fn hold(&self, licence: Option<String>) {
        *self.watch.in_hand.lock().unwrap() = licence;
    }

    /// The address of the page shown now.
    pub async fn address(&self) -> Option<Url> {
        self.page
            .url()
            .await
            .ok()
            .flatten()
            .and_then(|u| Url::parse(&u).ok())
    }

    /// The path of the page shown now, as the browser knows it (not the
    /// page's renderer: asked of one that hung, too).
    pub async fn shown_path(&self) -> Option<String> {
        tokio::time::timeout(HUNG_AFTER, self.address())
            .await
            .ok()
            .flatten()
            .map(|u| u.path().to_string())
    }

    /// Presses the element at `path` (a `css_path` of the page as it is),
    /// and waits for the page to settle into what the press should show
    /// (`shown`), or to have had an answer to a request it made.
    pub async fn click(
        &self,
        phase: Purpose,
        path: &str,
        timeout: Duration,
        commit: bool,
        shown: &Shown<'_>,
    ) -> Result<Settled, TransportError> {
        let step = self.begin(phase, commit, Acting::Pressing);
        // Where it shows, brought into view: one question to the page
        // (finding, scrolling and measuring it apart took six).
        let script = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return 'gone'; \
             e.scrollIntoView({{block: 'center', inline: 'center'}}); \
             const r = e.getBoundingClientRect(); \
             return r.width > 0 && r.height > 0 ? [r.left + r.width / 2, r.top + r.height / 2] : []; }})()",
            serde_json::Value::String(path.to_string())
        );
        let at = self
            .page
            .evaluate(script.as_str())
            .await
            .map_err(Self::step_error)?
            .into_value::<serde_json::Value>()
            .map_err(|e| TransportError::Transient(format!("the browser: {e}")))?;
        // A null would come back as no value at all: gone is a word.
        let at: Option<Vec<f64>> = match at {
            serde_json::Value::Array(xy) => Some(xy.iter().filter_map(|v| v.as_f64()).collect()),
            _ => None,
        };
        let point = match at.as_deref() {
            Some([x, y]) => chromiumoxide::layout::Point::new(*x, *y),
            Some(_) => {
                return Err(TransportError::Transient(format!(
                    "the control to press ({path}) is not shown"
                )));
            }
            None => {
                return Err(TransportError::Transient(format!(
                    "the control to press ({path}) is no longer in the page"
                )));
            }
        };
        // Pressed as a person presses it: the pointer moves there, then
        // the button goes down and up (trusted events, as a script sees).
        self.page.click(point).await.map_err(Self::step_error)?;
        self.end(step, "click", timeout, shown).await
    }

    /// A step begins: what its requests count as, and where its answers
    /// and redirects begin.
    fn begin(&self, phase: Purpose, commit: bool, acting: Acting) -> Step {
        self.watch.committing.store(commit, Ordering::SeqCst);
        self.watch.phase.store(phase as u8, Ordering::Relaxed);
        self.watch.changes.store(0, Ordering::SeqCst);
        self.watch.asked.store(0, Ordering::SeqCst);
        // A refusal between two steps was the page's, not this step's.
        *self.watch.unasked.lock().unwrap() = None;
        *self.watch.said_yes.lock().unwrap() = None;
        self.watch.acting.store(acting as u8, Ordering::SeqCst);
        Step {
            from: self.mark(),
            began: std::time::Instant::now(),
        }
    }

    /// The step's action is done: waits for the page to settle, and says
    /// at debug level how long the action and the wait took.
    ///
    /// A page may look settled before a press's script has even sent its
    /// request (the browser says it later, under load): a press whose page
    /// shows neither what it should (`shown`) nor an answer to a request it
    /// made is looked at again until it does, within the step's time. It
    /// stays the press's own meanwhile. (Seen in CI: a dialog read empty.)
    async fn end(
        &self,
        step: Step,
        what: &str,
        timeout: Duration,
        shown: &Shown<'_>,
    ) -> Result<Settled, TransportError> {
        let acted = step.began.elapsed();
        let deadline = tokio::time::Instant::now() + timeout;
        let settled = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.settle(step.from, left).await {
                Ok(page)
                    if page.answers.is_empty()
                        && !shown(&page)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(LOOK_EVERY).await;
                }
                settled => break settled,
            }
        };
        // Settled: what the page sends from now on is its own doing (after
        // a Confirmer, still counted as its second).
        self.watch
            .acting
            .store(Acting::Idle as u8, Ordering::SeqCst);
        tracing::debug!(
            target: "sip_rotate::browser",
            "{what}: done in {acted:?}, settled in {:?}",
            step.began.elapsed()
        );
        settled
    }

    /// Where the answers and redirects of the step about to be taken begin.
    /// The last step settled: what it left counted in flight (a request a
    /// reload cut short, whose end the browser does not report) is none.
    fn mark(&self) -> (usize, usize) {
        self.watch.pending.lock().unwrap().clear();
        *self.watch.first_redirect.lock().unwrap() = None;
        (
            self.watch.answers.lock().unwrap().len(),
            self.watch.redirects.load(Ordering::SeqCst),
        )
    }

    /// Waits until no request is in flight and the document is complete,
    /// a few looks in a row (a script that answers one request with another
    /// keeps it busy), then reads the page.
    async fn settle(
        &self,
        (from, redirects): (usize, usize),
        timeout: Duration,
    ) -> Result<Settled, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut quiet = 0;
        while quiet < QUIET_LOOKS {
            // A question of the page's own, dismissed: the step cannot be
            // done, whatever the page does next (it may reload for ever).
            if let Some(asked) = self.watch.dismissed.lock().unwrap().take() {
                return Err(TransportError::Engine(asked));
            }
            // It would not settle: it keeps asking.
            if let Some(flooded) = self.watch.flooded.lock().unwrap().take() {
                return Err(TransportError::Engine(flooded));
            }
            if self.gone() {
                return Err(self.gone_error());
            }
            if tokio::time::Instant::now() > deadline {
                let waited = self.watch.pending.lock().unwrap().paths();
                let why = if waited.is_empty() {
                    "the page did not settle in time".to_string()
                } else {
                    format!(
                        "the page did not settle in time (waiting for {})",
                        waited.join(", ")
                    )
                };
                return Err(TransportError::Transient(why));
            }
            // Until the network may have been quiet long enough, a look
            // apart at least.
            tokio::time::sleep(LOOK_EVERY.max(QUIET.saturating_sub(self.watch.quiet_for()))).await;
            // Quiet: nothing in flight, the network still a moment, and the
            // document complete. A slow answer is waited for, up to the
            // step's timeout. The page is asked only once the network is
            // quiet: each question is a round trip through the browser.
            let idle =
                self.watch.pending.lock().unwrap().is_empty() && self.watch.quiet_for() >= QUIET;
            // Asked until the step's deadline at most: a page that does not
            // answer is judged once the step's time is up.
            let complete = idle
                && tokio::time::timeout_at(deadline, self.page.evaluate("document.readyState"))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .and_then(|r| r.into_value::<String>().ok())
                    .is_some_and(|s| s == "complete");
            if complete {
                quiet += 1;
            } else {
                quiet = 0;
            }
        }
        if let Some(refused) = self.watch.foreign.lock().unwrap().take() {
            return Err(refused);
        }
        // A request naming another licence, refused: the step fails,
        // unless its Confirmer went before (its page shows its password,
        // read; the tab's next step fails then).
        let confirmed = self.watch.committing.load(Ordering::SeqCst)
            && self.watch.changes.load(Ordering::SeqCst) > 0;
        if let Some(hostile) = self.watch.hostile.lock().unwrap().clone()
            && !confirmed
        {
            return Err(TransportError::Tampered(hostile));
        }
        // A second Confirmer refused leaves the first one's page to read.
        if !self.watch.committing.load(Ordering::SeqCst)
            && let Some(unasked) = self.watch.unasked.lock().unwrap().take()
        {
            return Err(TransportError::Engine(unasked));
        }
        if let Some(asked) = self.watch.dismissed.lock().unwrap().take() {
            return Err(TransportError::Engine(asked));
        }
        let body = Zeroizing::new(self.page.content().await.map_err(Self::step_error)?);
        let screenshot = if self.screenshots && !self.watch.committing.load(Ordering::SeqCst) {
            use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
            use chromiumoxide::page::ScreenshotParams;
            let params = ScreenshotParams::builder()
                .format(CaptureScreenshotFormat::Png)
                .full_page(true)
                .build();
            self.page.screenshot(params).await.ok()
        } else {
            None
        };
        let at = self
            .page
            .url()
            .await
            .map_err(Self::step_error)?
            .and_then(|u| Url::parse(&u).ok())
            .ok_or_else(|| TransportError::Transient("the browser shows no page".into()))?;
        let answers: Vec<Answer> = self.watch.answers.lock().unwrap()[from..].to_vec();
        let documents: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.kind == Answered::Document)
            .collect();
        let status = documents.last().map_or(200, |a| a.status);
        let hops = self.watch.redirects.load(Ordering::SeqCst) - redirects;
        let path = at.path().to_string();
        let address = at.clone();
        let url = super::html::document_base(&body, at);
        Ok(Settled {
            page: Fetched {
                address,
                first_redirect: self
                    .watch
                    .first_redirect
                    .lock()
                    .unwrap()
                    .as_deref()
                    .and_then(|u| Url::parse(u).ok()),
                url,
                body,
                method: "GET",
                path,
                status,
                hops,
                screenshot,
                asked: None,
            },
            answers,
        })
    }
}

/// What a request sends, as text: its address (decoded) and its body
/// (decoded as a form; JSON reads as it is). Wiped when dropped: a login's
/// body holds the portal password.
fn what_it_sends(event: &EventRequestPaused) -> Zeroizing<String> {
    use base64::Engine as _;
    let mut text = Zeroizing::new(String::new());
    let decode = |raw: &[u8]| -> String {
        let spaced = Zeroizing::new(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect::<Vec<u8>>(),
        );
        let decoded =
            Zeroizing::new(percent_encoding::percent_decode(&spaced).collect::<Vec<u8>>());
        String::from_utf8_lossy(&decoded).into_owned()
    };
    text.push_str(&decode(event.request.url.as_bytes()));
    for entry in event.request.post_data_entries.iter().flatten() {
        if let Some(bytes) = &entry.bytes
            && let Ok(raw) =
                base64::engine::general_purpose::STANDARD.decode(AsRef::<str>::as_ref(bytes))
        {
            let raw = Zeroizing::new(raw);
            text.push(' ');
            text.push_str(&Zeroizing::new(decode(&raw)));
        }
    }
    text
}

/// A licence reference other than `ours` that `sent` names: one of the
/// shape of ours, its letters then digits (`FPC` and digits for
/// FPC172908), standing as a word. A reference of another shape cannot be
/// told from any other word, and is not looked for.
fn names_another(ours: &str, sent: &str) -> Option<String> {
    let letters = ours.chars().take_while(|c| c.is_ascii_alphabetic()).count();
    let digits = &ours[letters..];
    if letters == 0 || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let upper = sent.to_ascii_uppercase();
    let prefix = ours[..letters].to_ascii_uppercase();
    let bytes = upper.as_bytes();
    let mut from = 0;
    while let Some(at) = upper[from..].find(&prefix) {
        let start = from + at;
        let numbers = start + prefix.len();
        let end = numbers
            + bytes[numbers..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        let alone = (start == 0 || !bytes[start - 1].is_ascii_alphanumeric())
            && (end == bytes.len() || !bytes[end].is_ascii_alphanumeric());
        if alone && end > numbers && !upper[start..end].eq_ignore_ascii_case(ours) {
            return Some(upper[start..end].to_string());
        }
        from = numbers;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::names_another;

    #[test]
    fn another_licence_is_told_by_the_shape_of_ours() {
        let ours = "FPC172908";
        for sent in [
            "http://p/api/licences/FPC172933/reinitialisation",
            "http://p/reset token=1&licence=fpc172933",
            "{\"licence\":\"FPC1729\"}",
        ] {
            assert!(names_another(ours, sent).is_some(), "{sent}");
        }
        for sent in [
            "http://p/api/licences/FPC172908/reinitialisation",
            "http://p/reset?id=81723 token=FPC172908x",
            "http://p/XFPC172933/ SRV310001 4054",
        ] {
            assert_eq!(names_another(ours, sent), None, "{sent}");
        }
        // A reference of no such shape is not looked for.
        assert_eq!(names_another("L-17", "L-18"), None);
    }
}
