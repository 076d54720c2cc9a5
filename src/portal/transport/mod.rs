//! Every request to the portal goes through here, and through one path:
//! concurrency permit, then any `Retry-After` pause, then the rate limiter,
//! then the request. Transient failures are retried with backoff where a
//! retry is safe; redirects are followed by hand so that each hop is counted
//! and rate limited like any other request.

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;
use zeroize::{Zeroize, Zeroizing};

mod error;
mod throttle;
mod trust;

use error::*;
pub use error::{TransportError, Unreachable};
use throttle::*;
pub use throttle::{Purpose, Requests, Retry, Standing, Stats, Tally, Throttle};
pub use trust::Trust;

/// A request: a GET of a URL, or a form sent with POST. A login form holds
/// the portal password: `Debug` shows no value, and values are wiped on drop.
#[derive(Clone)]
pub enum Req {
    Get(Url),
    Post(Url, Vec<(String, String)>),
}

impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Up to the path: a query may carry the values of a GET form.
        match self {
            Req::Get(url) => write!(f, "GET {}", &url[..url::Position::AfterPath]),
            Req::Post(url, pairs) => {
                let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
                write!(
                    f,
                    "POST {} [{}]",
                    &url[..url::Position::AfterPath],
                    names.join(", ")
                )
            }
        }
    }
}

impl Drop for Req {
    fn drop(&mut self) {
        if let Req::Post(_, pairs) = self {
            pairs.iter_mut().for_each(|(_, value)| value.zeroize());
        }
    }
}

impl Req {
    fn method(&self) -> &'static str {
        match self {
            Req::Get(_) => "GET",
            Req::Post(..) => "POST",
        }
    }

    fn url(&self) -> &Url {
        match self {
            Req::Get(url) | Req::Post(url, _) => url,
        }
    }

    /// The URL's path for a message: no query (a GET form puts its values
    /// there) and no `;` parameters (where some servers put a session id).
    fn path(&self) -> String {
        self.url()
            .path()
            .split('/')
            .map(|segment| segment.split(';').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// A form submission with its own method: GET puts the fields in the query.
    pub fn form(post: bool, mut action: Url, pairs: Vec<(String, String)>) -> Req {
        if post {
            Req::Post(action, pairs)
        } else {
            action.query_pairs_mut().clear().extend_pairs(pairs);
            Req::Get(action)
        }
    }
}

/// A page received: the address its links resolve against, and its decoded text.
pub struct Fetched {
    /// Where links and form actions of the page lead from, as a browser
    /// resolves them: its `<base href>` where it has one, else the address
    /// it came from (after redirects).
    pub url: Url,
    pub body: Zeroizing<String>,
    /// The request that got it (the last hop), for a capture's index.
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    /// Redirects followed to reach it.
    pub hops: usize,
    /// The page's own address (its `url` is where its links lead from).
    pub address: Url,
    /// Where the request's own answer redirected to, if it did.
    pub first_redirect: Option<Url>,
    /// The browser's picture of the page (PNG), with `--capture`; never
    /// of the page after a press that may commit.
    pub screenshot: Option<Vec<u8>>,
    /// The address a load asked for, when the page shown is elsewhere and
    /// no redirect led there: a script of the page (or a refresh) took it
    /// on. Only the browser sees that.
    pub asked: Option<Url>,
}

impl Fetched {
    /// Where the page went by itself, in words, if it did.
    pub fn went_on(&self) -> Option<String> {
        let asked = self.asked.as_ref()?;
        Some(format!(
            "the page asked for ({}) went on by itself to {} (a script of the page or a refresh, not a link or a redirect)",
            asked.path(),
            self.address.path()
        ))
    }
}

/// What carries a session's requests.
enum Carrier {
    /// An HTTP client with its own cookie jar.
    Http {
        client: reqwest::Client,
        jar: Arc<reqwest::cookie::Jar>,
    },
    /// A browser context of the run's browser, opened at the first request.
    Browser {
        engine: Arc<super::chromium::Engine>,
        /// Its page; replaced by a new one (a new context: the portal's
        /// session is left, and the walk logs in again) when its renderer
        /// is gone.
        tab: tokio::sync::Mutex<Option<Arc<super::chromium::Tab>>>,
        /// Tabs opened: a press is not made on a page a new tab reloaded.
        tabs_opened: AtomicU64,
        /// The cookies of the HTTP session it carries on, if any: set in
        /// its context before its first request.
        handed: Mutex<Option<HandedCookies>>,
    },
}

/// The cookies an HTTP session holds for the portal, handed to the browser
/// session that carries it on (`--engine auto` moving to the browser): the
/// portal's session goes on without a new login.
pub struct HandedCookies {
    /// Name and value of each, as the session would send them to the portal.
    pub pairs: Vec<(String, Zeroizing<String>)>,
    /// Where they are sent: the portal's address.
    pub url: Url,
}

/// One session (its own cookies) behind the shared throttle: an HTTP
/// client, or a context of the browser.
pub struct Transport {
    carrier: Carrier,
    throttle: Arc<Throttle>,
    /// Requests this session sent, by phase: the report counts a licence's
    /// reset requests, not the logins its session needed.
    tally: Arc<Tally>,
    /// When this session sent its last request, while it is at work: the
    /// start of its cycle. Cleared while it is idle or backs off.
    last_sent: Mutex<Option<Instant>>,
    /// The portal's scheme, host and port: no request goes anywhere else.
    origin: url::Origin,
    interruptions: super::Interruptions,
    /// The authorities of `--ca-file`, and the portal keys verified by them.
    trust: Trust,
    /// The page that last stopped answering in this session's browser.
    last_hung: Mutex<Option<String>>,
    /// The licence this session's walk is for, if any: in the browser, a
    /// request of the page that would change something and names another
    /// licence is refused.
    in_hand: Mutex<Option<String>>,
}

const MAX_REDIRECTS: usize = 10;

/// How a request that changes nothing is sent again after a transient
/// failure (the one rule, for both engines): up to five times, from a
/// quarter of a second to eight seconds apart.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(8))
        .with_max_times(5)
        .with_jitter()
}

/// A step of the browser, bounded whatever holds it up: the step waits
/// for its answers up to `timeout` by itself, but a browser that stops
/// answering DevTools (a page held by something nobody answers) would
/// hold it forever.
async fn within<T>(
    timeout: Duration,
    step: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    // The step's own waits, then as long again for the browser's answers.
    let limit = timeout * 2 + Duration::from_secs(5);
    tokio::time::timeout(limit, step).await.unwrap_or_else(|_| {
        Err(TransportError::Transient(format!(
            "the browser did not finish the step within {} s",
            limit.as_secs()
        )))
    })
}

impl Transport {
    /// A session whose requests may go to `origin` only.
    pub fn new(
        throttle: Arc<Throttle>,
        timeout: Duration,
        origin: url::Origin,
        interruptions: super::Interruptions,
        trust: &Trust,
    ) -> Result<Transport, TransportError> {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .tls_certs_merge(trust.certificates.iter().cloned())
            .tls_info(!trust.is_empty())
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("sip-rotate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        Ok(Transport {
            carrier: Carrier::Http { client, jar },
            throttle,
            tally: Default::default(),
            last_sent: Mutex::new(None),
            origin,
            interruptions,
            trust: trust.clone(),
            last_hung: Mutex::new(None),
            in_hand: Mutex::new(None),
        })
    }

    /// A session in a context of the run's browser.
    /// `handed`: the cookies of the HTTP session it carries on.
    pub fn in_browser(
        engine: Arc<super::chromium::Engine>,
        throttle: Arc<Throttle>,
        origin: url::Origin,
        interruptions: super::Interruptions,
        handed: Option<HandedCookies>,
    ) -> Transport {
        Transport {
            carrier: Carrier::Browser {
                engine,
                tab: tokio::sync::Mutex::new(None),
                tabs_opened: AtomicU64::new(0),
                handed: Mutex::new(handed),
            },
            throttle,
            tally: Default::default(),
            last_sent: Mutex::new(None),
            origin,
            interruptions,
            trust: Trust::default(),
            last_hung: Mutex::new(None),
            in_hand: Mutex::new(None),
        }
    }

    /// This transport, counting its requests with `earlier`'s: the session
    /// goes on in it (a move to the browser), and a licence's requests are
    /// counted across the move (the one before it was left out, and a
    /// session that had reset licences before would count less than none).
    pub fn counting_with(mut self, earlier: &Transport) -> Transport {
        self.tally = earlier.tally.clone();
        *self.in_hand.get_mut().unwrap() = earlier.in_hand.lock().unwrap().clone();
        self
    }

    /// The licence the session's walk is for from now on (`None`: none).
    pub fn hold(&self, licence: Option<&str>) {
        *self.in_hand.lock().unwrap() = licence.map(str::to_string);
    }

    /// The cookies this HTTP session would send to `url`, for a browser
    /// session to carry it on; none from a browser session.
    pub fn cookies_for(&self, url: &Url) -> Option<HandedCookies> {
        use reqwest::cookie::CookieStore;
        let Carrier::Http { jar, .. } = &self.carrier else {
            return None;
        };
        let header = jar.cookies(url)?;
        let header = Zeroizing::new(header.to_str().ok()?.to_string());
        let pairs = header
            .split(';')
            .filter_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                Some((name.to_string(), Zeroizing::new(value.to_string())))
            })
            .collect();
        Some(HandedCookies {
            pairs,
            url: url.clone(),
        })
    }

    /// Whether this session can press a control that runs a script.
    pub fn runs_scripts(&self) -> bool {
        matches!(self.carrier, Carrier::Browser { .. })
    }

    /// The browser page of this session, opened at its first use, and
    /// again when its renderer is gone; with how many were opened.
    async fn tab(&self) -> Result<(Arc<super::chromium::Tab>, u64), TransportError> {
        let Carrier::Browser {
            engine,
            tab,
            tabs_opened,
            handed,
        } = &self.carrier
        else {
            unreachable!("asked of a browser session only")
        };
        let mut current = tab.lock().await;
        if let Some(open) = current.as_ref().filter(|t| !t.gone()) {
            return Ok((open.clone(), tabs_opened.load(Ordering::SeqCst)));
        }
        let handed = handed.lock().unwrap().take();
        let opened = engine
            .session(
                self.throttle.clone(),
                self.origin.clone(),
                self.tally.clone(),
                self.interruptions.clone(),
                handed,
            )
            .await
            .map_err(|e| match e {
                super::chromium::EngineError::Ended => TransportError::BrowserEnded,
                e => TransportError::Engine(e.to_string()),
            })?;
        let opened = Arc::new(opened);
        *current = Some(opened.clone());
        // Only a browser that started counts as the engine that ran.
        self.throttle.stats.browser.store(true, Ordering::Relaxed);
        Ok((opened, tabs_opened.fetch_add(1, Ordering::SeqCst) + 1))
    }

    /// A step of the browser, bounded (`within`); one that failed is
    /// judged by the page: a page that no longer answers (a script of its
    /// own in a loop) is closed and the step is not taken again (it would
    /// hang again, as long); a page whose renderer crashed is left for a
    /// new tab, and the step may be taken again there.
    async fn in_tab<T>(
        &self,
        tab: &super::chromium::Tab,
        timeout: Duration,
        at: &str,
        step: impl std::future::Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        match within(timeout, step).await {
            Err(TransportError::Transient(why)) => {
                if tab.gone() {
                    Err(tab.gone_error())
                } else if !tab.responds().await {
                    // Named as it is shown: a step asked for `at` may hang
                    // on the page it was sent on to (the login page).
                    let page = tab.shown_path().await.unwrap_or_else(|| at.to_string());
                    tracing::debug!("the page {page} does not answer ({why}): closed");
                    tab.abandon();
                    let again =
                        self.last_hung.lock().unwrap().replace(page.clone()) == Some(page.clone());
                    Err(TransportError::PageHung { page, again })
                } else {
                    Err(TransportError::Transient(why))
                }
            }
            other => other,
        }
    }

    /// Presses the control at `path` of the session's page (browser only),
    /// and reads the page once it settled; with the answers to the requests
    /// the press made. `commit`: the press may commit a reset, so it is cut
    /// short only by a second interruption. `shown`: what the press should
    /// show; waited for, until a request of the press is answered.
    pub async fn click(
        &self,
        phase: Purpose,
        path: &str,
        commit: bool,
        shown: &super::chromium::Shown<'_>,
    ) -> Result<super::chromium::Settled, TransportError> {
        let cancel = if commit {
            &self.interruptions.confirmations
        } else {
            &self.interruptions.reads
        };
        // Where the control was pressed first: a press whose script failed
        // is made again on that page loaded afresh (the script may have
        // left it, or reloaded it into an error page).
        let from: std::sync::Mutex<Option<url::Url>> = std::sync::Mutex::new(None);
        // The tab the control was first pressed in.
        let first_tab: std::sync::Mutex<Option<u64>> = std::sync::Mutex::new(None);
        let once = || async {
            let _asked = self.browser_step();
            let (tab, opened) = self.tab().await?;
            tab.hold(self.in_hand.lock().unwrap().clone());
            let in_a_new_tab = *first_tab.lock().unwrap().get_or_insert(opened) != opened;
            let timeout = self.engine_timeout();
            for _ in 0..MAX_PAUSES {
                let again = from.lock().unwrap().clone();
                match again {
                    Some(url) => {
                        let at = url.path().to_string();
                        let reloaded = tokio::select! {
                            biased;
                            _ = cancel.cancelled() => Err(TransportError::Interrupted),
                            page = self.in_tab(&tab, timeout, &at, tab.load(phase, &url, "GET", None, timeout, false)) => page,
                        }?;
                        self.throttle.demand.answers.fetch_add(1, Ordering::Relaxed);
                        let status =
                            StatusCode::from_u16(reloaded.page.status).unwrap_or(StatusCode::OK);
                        if status == StatusCode::TOO_MANY_REQUESTS {
                            self.throttle.slowed_down(1);
                            continue;
                        }
                        if let Some(e) = refusal(status, &Req::Get(url)) {
                            return Err(e);
                        }
                        // A new tab is a new context: the portal's session
                        // was left with the old one. The page it shows (its
                        // login page) goes to the walk, which logs in again
                        // and takes the step from its start.
                        if in_a_new_tab {
                            return Ok(reloaded);
                        }
                        // The page came back without the control (the login
                        // page of a session that ended): the walk reads it
                        // (a login, then the step again); pressing there
                        // only failed again and again.
                        let doc = scraper::Html::parse_document(&reloaded.page.body);
                        let there = scraper::Selector::parse(path)
                            .map(|control| doc.select(&control).next().is_some())
                            .unwrap_or(true);
                        if !there {
                            return Ok(reloaded);
                        }
                    }
                    // Only a harmless press is made again.
                    None if !commit => *from.lock().unwrap() = tab.address().await,
                    None => {}
                }
                let pressed_at = from.lock().unwrap().clone();
                let at = match pressed_at {
                    Some(url) => url.path().to_string(),
                    None => tab
                        .address()
                        .await
                        .map_or_else(|| "shown".to_string(), |u| u.path().to_string()),
                };
                let settled = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => Err(TransportError::Interrupted),
                    settled = self.in_tab(&tab, timeout, &at, tab.click(phase, path, timeout, commit, shown)) => settled,
                }?;
                self.throttle.demand.answers.fetch_add(1, Ordering::Relaxed);
                // A press that may commit is judged by the gate's rule on
                // what its script's requests were answered; any other is
                // one step, whose script's requests are retried as the
                // requests of the HTTP engine: a 429 pauses, then the
                // control is pressed again; a 5xx is transient.
                if commit {
                    // Its page answered 429 (a reload of its script, say):
                    // the pause is kept, and the walk judges the answer.
                    if settled.page.status == StatusCode::TOO_MANY_REQUESTS.as_u16() {
                        self.throttle.slowed_down(settled.retry_after());
                    }
                    return Ok(settled);
                }
                // The page the press led to answered 429 or 5xx: a step
                // that changes nothing, paused and pressed again, or taken
                // again as any request (helper-19: a 429 page was read as
                // the confirmation, and its missing label blamed).
                let document = StatusCode::from_u16(settled.page.status).unwrap_or(StatusCode::OK);
                if document == StatusCode::TOO_MANY_REQUESTS {
                    self.throttle.slowed_down(settled.retry_after());
                    continue;
                }
                if document.is_server_error() {
                    return Err(TransportError::ServerError(document));
                }
                let script = |a: &&super::chromium::Answer| {
                    a.kind == super::chromium::Answered::Script
                        && (a.status >= 429 || a.status == super::chromium::NO_ANSWER)
                };
                match settled
                    .answers
                    .iter()
                    .find(script)
                    .map(|a| (a.status, a.retry_after))
                {
                    Some((429, retry_after)) => {
                        self.throttle.slowed_down(retry_after.unwrap_or(1));
                        continue;
                    }
                    Some((super::chromium::NO_ANSWER, _)) => {
                        return Err(TransportError::Transient(format!(
                            "no answer to a request of the page's script, pressing the control at {}",
                            settled.page.path
                        )));
                    }
                    Some((status, _)) if status >= 500 => {
                        return Err(TransportError::Transient(format!(
                            "{status} to a request of the page's script, pressing the control at {}",
                            settled.page.path
                        )));
                    }
                    _ => return Ok(settled),
                }
            }
            Err(TransportError::RateLimited(MAX_PAUSES))
        };
        let retry = if commit {
            Retry::FirstHopOnce
        } else {
            Retry::Yes
        };
        self.with_retries(retry, once).await
    }

    fn engine_timeout(&self) -> Duration {
        match &self.carrier {
            Carrier::Browser { engine, .. } => engine.timeout(),
            Carrier::Http { .. } => Duration::from_secs(30),
        }
    }

    /// A step of the browser begins: the end of this session's cycle, as
    /// `send` measures it for HTTP, so that sessions open as the rate needs
    /// them with either engine; the step counts as waiting for its answer
    /// until the guard is dropped.
    fn browser_step(&self) -> Asked<'_> {
        let throttle = &*self.throttle;
        let now = Instant::now();
        if let Some(last) = self.last_sent.lock().unwrap().replace(now) {
            Demand::average_in(&throttle.demand.cycle_us, last.elapsed());
        }
        throttle.ask()
    }

    /// One step of the browser: loads a page or sends a form as the page
    /// would, with the pauses a 429 asks for; the browser follows redirects
    /// (each request through the throttle).
    async fn in_browser_once(
        &self,
        phase: Purpose,
        req: &Req,
        commit: bool,
    ) -> Result<Fetched, TransportError> {
        let _asked = self.browser_step();
        let (tab, _) = self.tab().await?;
        tab.hold(self.in_hand.lock().unwrap().clone());
        let timeout = self.engine_timeout();
        let at = req.path();
        for _ in 0..MAX_PAUSES {
            let settled = match req {
                Req::Get(url) => {
                    self.in_tab(
                        &tab,
                        timeout,
                        &at,
                        tab.load(phase, url, "GET", None, timeout, commit),
                    )
                    .await?
                }
                Req::Post(url, pairs) => {
                    self.in_tab(
                        &tab,
                        timeout,
                        &at,
                        tab.load(phase, url, "POST", Some(pairs), timeout, commit),
                    )
                    .await?
                }
            };
            self.throttle.demand.answers.fetch_add(1, Ordering::Relaxed);
            let status = StatusCode::from_u16(settled.page.status).unwrap_or(StatusCode::OK);
            tracing::debug!(
                target: "sip_rotate::http",
                "{} {} -> {} (browser)",
                req.method(),
                req.path(),
                status.as_u16()
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.throttle.slowed_down(settled.retry_after());
                continue;
            }
            if let Some(e) = refusal(status, req) {
                return Err(e);
            }
            return Ok(Fetched {
                method: req.method(),
                ..settled.page
            });
        }
        Err(TransportError::RateLimited(MAX_PAUSES))
    }

    /// The session goes idle: the time until its next request is no part
    /// of its cycle.
    pub fn rest(&self) {
        *self.last_sent.lock().unwrap() = None;
    }

    /// The session logged in: its requests go before the logins of
    /// sessions still opening (see `Standing`).
    pub fn at_work(&self) {
        self.tally.at_work();
    }

    /// Requests sent by this session so far, all phases.
    pub fn sent(&self) -> u64 {
        self.tally
            .sent
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests sent by this session so far in `phase`.
    pub fn sent_in(&self, phase: Purpose) -> u64 {
        self.tally.sent[phase as usize].load(Ordering::Relaxed)
    }

    /// Fetches a page, following redirects with GET, retrying what is safe
    /// to retry. An interruption drops it at once, waits included: any
    /// request but a `Confirmer` on the first, a `Confirmer` and the page
    /// that shows its password only on the second.
    pub async fn fetch(
        &self,
        phase: Purpose,
        req: Req,
        retry: Retry,
    ) -> Result<Fetched, TransportError> {
        let cancel = match retry {
            Retry::Yes | Retry::Credentials => &self.interruptions.reads,
            Retry::FirstHopOnce => &self.interruptions.confirmations,
        };
        if self.runs_scripts() {
            let commit = retry == Retry::FirstHopOnce;
            let once = || self.in_browser_once(phase, &req, commit);
            let stepped = async { self.with_retries(retry, once).await };
            return tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(TransportError::Interrupted),
                fetched = stepped => fetched,
            };
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(TransportError::Interrupted),
            fetched = self.follow(phase, req, retry) => fetched,
        }
    }

    async fn follow(
        &self,
        phase: Purpose,
        req: Req,
        retry: Retry,
    ) -> Result<Fetched, TransportError> {
        let mut current = req;
        let mut first_redirect = None;
        for hop in 0..MAX_REDIRECTS {
            // A `Confirmer` still waiting for its turn is dropped on the first
            // interruption like any request: nothing was sent yet.
            let waiting = match hop {
                0 => &self.interruptions.reads,
                _ => &self.interruptions.confirmations,
            };
            let once = || self.send(phase, &current, waiting);
            let answer = if hop == 0 {
                self.with_retries(retry, once).await?
            } else if retry == Retry::FirstHopOnce {
                // On the way to the page of a press the portal took: only
                // the press's own answer can say it was not taken (see
                // `gate`), so a refusal here is an answer read.
                self.with_retries(Retry::Yes, once)
                    .await
                    .map_err(|e| match e {
                        TransportError::Forbidden => {
                            TransportError::Status(StatusCode::FORBIDDEN, current.path())
                        }
                        TransportError::RateLimited(n) => {
                            TransportError::Transient(format!("asked to slow down {n} times"))
                        }
                        // The press was answered (it redirected here): a
                        // portal that then went away took it all the same.
                        TransportError::Unreachable(why) => TransportError::Transient(format!(
                            "the page its answer led to, {}: {why}",
                            current.path()
                        )),
                        e => e,
                    })?
            } else {
                self.with_retries(Retry::Yes, once).await?
            };
            match answer {
                Answer::Redirect(to) => {
                    first_redirect.get_or_insert_with(|| to.clone());
                    current = Req::Get(to)
                }
                Answer::Page(page) => {
                    return Ok(Fetched {
                        hops: hop,
                        first_redirect,
                        ..*page
                    });
                }
            }
        }
        Err(TransportError::TooManyRedirects)
    }

    /// `once`, sent again with backoff while it fails in a way worth trying again
    /// (`TransportError::worth_another_try`), for both engines.
    async fn with_retries<T, F, Fut>(&self, retry: Retry, once: F) -> Result<T, TransportError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TransportError>>,
    {
        let mut tries = 0;
        once.retry(backoff())
            .when(|e| e.worth_another_try(retry))
            .adjust(next_wait(&mut tries))
            .notify(|e, wait| self.retrying(e, wait))
            .await
    }

    /// A request is sent again after `wait`, whichever engine sends it:
    /// counted, and the portal noted as struggling.
    fn retrying(&self, e: &TransportError, wait: Duration) {
        self.throttle.stats.retries.fetch_add(1, Ordering::Relaxed);
        // The backoff is no part of the session's cycle.
        self.rest();
        self.throttle.troubled();
        tracing::debug!("retrying in {wait:?} after: {e}");
    }

    /// One request, with the 429 pauses it takes to be heard.
    /// `waiting` cancels the request while it waits for its turn, before
    /// anything is sent.
    async fn send(
        &self,
        phase: Purpose,
        req: &Req,
        waiting: &CancellationToken,
    ) -> Result<Answer, TransportError> {
        // Every request passes here, redirects and form actions included.
        let url = req.url();
        if url.origin() != self.origin {
            return Err(TransportError::ForeignOrigin {
                to: format!("{}{}", url.origin().ascii_serialization(), req.path()),
                origin: self.origin.ascii_serialization(),
            });
        }
        let throttle = &*self.throttle;
        // The end of this session's cycle: from its last request to this one.
        if let Some(last) = self.last_sent.lock().unwrap().take() {
            Demand::average_in(&throttle.demand.cycle_us, last.elapsed());
        }
        let _permit = tokio::select! {
            _ = waiting.cancelled() => return Err(TransportError::Interrupted),
            _ = throttle.closed.cancelled() => return Err(TransportError::Interrupted),
            permit = throttle.in_flight.acquire() => permit.expect("semaphore never closed"),
        };
        for _ in 0..MAX_PAUSES {
            tokio::select! {
                _ = waiting.cancelled() => return Err(TransportError::Interrupted),
                _ = throttle.closed.cancelled() => return Err(TransportError::Interrupted),
                _ = throttle.turn(self.tally.standing()) => {}
            }
            let Carrier::Http { client, .. } = &self.carrier else {
                unreachable!("a browser session sends through the browser")
            };
            let builder = match req {
                Req::Get(url) => client.get(url.clone()),
                Req::Post(url, pairs) => client.post(url.clone()).form(pairs),
            };
            throttle.stats.by_phase[phase as usize].fetch_add(1, Ordering::Relaxed);
            throttle.stats.sent_now();
            self.tally.sent[phase as usize].fetch_add(1, Ordering::Relaxed);
            let sent_at = Instant::now();
            *self.last_sent.lock().unwrap() = Some(sent_at);
            let asked = throttle.ask();
            let response = builder.send().await.map_err(|e| {
                let closed = chain_text(&e).contains("connection closed before message completed");
                match classify(e) {
                    // Plain HTTP that a TLS port closes: said so, and tried
                    // again as briefly as a refused connection.
                    TransportError::Transient(_)
                        if closed
                            && url.scheme() == "http"
                            && throttle.demand.answers.load(Ordering::Relaxed) == 0 =>
                    {
                        TransportError::Unreachable(Unreachable::ClosedAtOnce)
                    }
                    other => other,
                }
            });
            drop(asked);
            let response = response?;
            throttle.demand.answers.fetch_add(1, Ordering::Relaxed);
            if let Some(leaf) = response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|info| info.peer_certificate())
            {
                self.trust.verified(leaf);
            }
            // A session cookie is a secret: nothing written shows it.
            for cookie in response.cookies() {
                crate::scrub::remember(cookie.value(), crate::scrub::Secret::Token);
            }
            let status = response.status();
            tracing::debug!(
                target: "sip_rotate::http",
                "{} {} -> {} ({} ms)",
                req.method(),
                req.path(),
                status.as_u16(),
                sent_at.elapsed().as_millis()
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                throttle.slowed_down(wait);
                continue;
            }
            let url = response.url().clone();
            if status.is_redirection() {
                let to = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| TransportError::Status(status, req.path()))?;
                // Read the (empty) body so that the connection can be reused.
                response.bytes().await.map_err(classify)?;
                return Ok(Answer::Redirect(to));
            }
            if let Some(e) = refusal(status, req) {
                return Err(e);
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = read_body(response).await?;
            let body = Zeroizing::new(super::html::decode(&bytes, content_type.as_deref()));
            let address = url.clone();
            let url = super::html::document_base(&body, url);
            return Ok(Answer::Page(Box::new(Fetched {
                address,
                first_redirect: None,
                asked: None,
                screenshot: None,
                url,
                body,
                method: req.method(),
                path: req.path(),
                status: status.as_u16(),
                hops: 0,
            })));
        }
        Err(TransportError::RateLimited(MAX_PAUSES))
    }
}

/// The largest page read: a portal page is tens of kilobytes, and an answer
/// without end must not take the machine's memory.
pub const MAX_PAGE: usize = 8 << 20;

/// Reads a body up to `MAX_PAGE`, into a buffer wiped when dropped.
async fn read_body(mut response: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, TransportError> {
    let too_large = TransportError::TooLarge(MAX_PAGE >> 20);
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PAGE as u64)
    {
        return Err(too_large);
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > MAX_PAGE {
            return Err(too_large);
        }
        // Grown by hand: a reallocation would leave a copy behind, unwiped.
        if body.capacity() < body.len() + chunk.len() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (body.len() + chunk.len()).next_power_of_two(),
            ));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

enum Answer {
    Redirect(Url),
    Page(Box<Fetched>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_form_value() {
        let url = Url::parse("https://portal.example/login?next=/x").unwrap();
        let post = Req::Post(url.clone(), vec![("password".into(), "s3cret".into())]);
        assert_eq!(
            format!("{post:?}"),
            "POST https://portal.example/login [password]"
        );
        let get = Req::form(false, url, vec![("pw".into(), "s3cret".into())]);
        assert!(!format!("{get:?}").contains("s3cret"));
    }

    #[test]
    fn a_logged_path_has_no_query_and_no_session_parameter() {
        let url = Url::parse("https://portal.example/app;jsessionid=ABC/user?lic=1&pw=x").unwrap();
        assert_eq!(Req::Get(url).path(), "/app/user");
    }

    /// A session still opening waits at the limiter while a session at work
    /// has a request waiting, however long it has waited itself.
    #[tokio::test]
    async fn work_waiting_goes_before_a_login_of_a_session_opening() {
        let throttle = Arc::new(Throttle::new(20.0, 8));
        throttle.turn(Standing::Working).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let opening = {
            let (throttle, order) = (throttle.clone(), order.clone());
            tokio::spawn(async move {
                throttle.turn(Standing::Opening).await;
                order.lock().unwrap().push(Standing::Opening);
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let working = {
            let (throttle, order) = (throttle.clone(), order.clone());
            tokio::spawn(async move {
                throttle.turn(Standing::Working).await;
                order.lock().unwrap().push(Standing::Working);
            })
        };
        working.await.unwrap();
        opening.await.unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            [Standing::Working, Standing::Opening]
        );
    }
}
