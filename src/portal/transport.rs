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
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No answer, a cut connection, a timeout or a 5xx: the request may or may not have been done.
    #[error("no usable answer from the portal ({0})")]
    Transient(String),
    /// The portal refused a form (403): typically a token of an ended session.
    #[error("the portal refused the request (403 Forbidden)")]
    Forbidden,
    /// An answer that is neither a page nor a redirect, to a request for
    /// the path named (no query: it may hold a form's values).
    #[error("the portal answered {0} to {1}")]
    Status(StatusCode, String),
    #[error("the portal kept asking to slow down (429) after {0} pauses")]
    RateLimited(usize),
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("cannot reach the portal: {0}")]
    Connect(String),
    /// The portal's address could not be reached, for a reason said in
    /// words: nothing was sent.
    #[error("{0}")]
    Unreachable(Unreachable),
    /// Cut short by Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// The browser engine could not be started or driven.
    #[error("{0}")]
    Engine(String),
    #[error("the portal's answer is larger than {0} MiB: refused")]
    TooLarge(usize),
    /// A redirect, a link or a form leads outside the portal's origin: the
    /// login, the session and the passwords are trusted to that origin only.
    #[error(
        "the portal's page leads to {to}, outside the portal's own address {origin}: refused, nothing was sent there"
    )]
    ForeignOrigin { to: String, origin: String },
    /// The browser refused a request of the page to another origin: a
    /// script or a style may be let through (`--allow-origin`), nothing else.
    #[error("{}", foreign_resource(to, kind, allowable))]
    ForeignResource {
        /// Its origin and path (no query).
        to: String,
        /// What the browser asked it for (Script, Stylesheet, XHR, …).
        kind: String,
        /// A script or a style, which `--allow-origin` may let through.
        allowable: Option<String>,
    },
}

fn foreign_resource(to: &str, kind: &str, allowable: &Option<String>) -> String {
    match allowable {
        Some(origin) => format!(
            "the portal's page loads {to} ({kind}) from another origin: refused; if that is the portal's own (a CDN), let its scripts and styles through with --allow-origin {origin}"
        ),
        None => format!(
            "the portal's page asks {to} ({kind}), outside the portal's own origin: refused, nothing was sent there"
        ),
    }
}

/// Why the portal's address could not be reached. A certificate, a
/// protocol or a name that is wrong stays wrong: not retried. Nothing
/// listening, or no answer to the connection, may pass: retried briefly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    #[error(
        "the portal's certificate is not trusted ({0}): check the --portal address; a portal whose certificate comes from a private authority needs that authority's certificate in SSL_CERT_FILE (a PEM file)"
    )]
    Certificate(String),
    #[error(
        "the portal's address answers, but not with TLS: check the --portal address (https:// to a plain http port?)"
    )]
    NotTls,
    #[error("the secure connection to the portal failed ({0}): check the --portal address")]
    Tls(String),
    #[error(
        "the portal's host name is not known (no DNS answer): check the --portal address and this machine's name servers"
    )]
    UnknownHost,
    #[error(
        "nothing answers at the portal's address (connection refused): check the --portal address and port, and that the portal is up"
    )]
    Refused,
    #[error(
        "the portal's address gives no answer (the connection timed out): check the --portal address, and any firewall or proxy in the way"
    )]
    NoAnswer,
}

impl Unreachable {
    /// Whether trying again a moment later may help.
    pub fn may_pass(&self) -> bool {
        matches!(self, Unreachable::Refused | Unreachable::NoAnswer)
    }
}

/// How many times a connection that nothing answered is tried again, and
/// the longest wait between: a portal that is down is said in seconds.
const UNREACHABLE_RETRIES: usize = 2;
const UNREACHABLE_WAIT: Duration = Duration::from_millis(500);

impl TransportError {
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Transient(_) => true,
            TransportError::Unreachable(u) => u.may_pass(),
            _ => false,
        }
    }

    /// Whether every request of the run would fail the same way.
    pub fn is_permanent(&self) -> bool {
        matches!(self, TransportError::Unreachable(u) if !u.may_pass())
    }
}

/// The wait before the next try (`None`: no more): the backoff's, but
/// short and few for a connection nothing answered.
fn next_wait(
    unreachable_tries: &mut usize,
) -> impl FnMut(&TransportError, Option<Duration>) -> Option<Duration> + '_ {
    move |e, wait| match e {
        TransportError::Unreachable(_) => {
            *unreachable_tries += 1;
            (*unreachable_tries <= UNREACHABLE_RETRIES)
                .then(|| wait.unwrap_or(UNREACHABLE_WAIT).min(UNREACHABLE_WAIT))
        }
        _ => wait,
    }
}

/// Which part of the run a request belongs to, for the request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Login = 0,
    Resolve = 1,
    Reset = 2,
}

impl Phase {
    pub fn from_index(i: u8) -> Phase {
        match i {
            0 => Phase::Login,
            1 => Phase::Resolve,
            _ => Phase::Reset,
        }
    }
}

/// What the portal was asked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Requests {
    pub login: u64,
    pub resolve: u64,
    pub reset: u64,
    pub too_many: u64,
    pub retries: u64,
    pub sessions: u64,
    /// Requests per second from the first sent to the last (`None` under two).
    pub achieved_rate: Option<f64>,
    /// Which engine performed the steps.
    pub engine: super::EngineRan,
}

impl Requests {
    pub fn of(stats: &Stats) -> Requests {
        Requests {
            login: stats.requests(Phase::Login),
            resolve: stats.requests(Phase::Resolve),
            reset: stats.requests(Phase::Reset),
            too_many: stats.too_many_requests.load(Ordering::Relaxed),
            retries: stats.retries.load(Ordering::Relaxed),
            sessions: stats.sessions.load(Ordering::Relaxed),
            achieved_rate: stats.achieved_rate(),
            engine: stats.engine(),
        }
    }

    pub fn total(&self) -> u64 {
        self.login + self.resolve + self.reset
    }
}

/// Requests made, by phase, and how often the portal asked to slow down.
#[derive(Debug, Default)]
pub struct Stats {
    by_phase: [AtomicU64; 3],
    pub too_many_requests: AtomicU64,
    pub retries: AtomicU64,
    /// Sessions opened (successful logins).
    pub sessions: AtomicU64,
    /// Whether a session ran in the browser.
    pub browser: std::sync::atomic::AtomicBool,
    /// When the first and the last request were sent: n requests at the
    /// full rate take n - 1 periods, which the rate shown is measured over.
    sent_between: Mutex<Option<(Instant, Instant)>>,
}

impl Stats {
    pub fn requests(&self, phase: Phase) -> u64 {
        self.by_phase[phase as usize].load(Ordering::Relaxed)
    }
    /// The engine that ran: the browser once one of its sessions started.
    pub fn engine(&self) -> super::EngineRan {
        if self.browser.load(Ordering::Relaxed) {
            super::EngineRan::Browser
        } else {
            super::EngineRan::Http
        }
    }

    pub fn total(&self) -> u64 {
        self.by_phase
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests per second from the first request sent to the last: what
    /// the rate limit bounds (`None` under two requests).
    pub fn achieved_rate(&self) -> Option<f64> {
        let (first, last) = (*self.sent_between.lock().unwrap())?;
        let span = last.duration_since(first).as_secs_f64();
        let n = self.total();
        (n >= 2 && span > 0.0).then(|| (n - 1) as f64 / span)
    }

    fn sent_now(&self) {
        let now = Instant::now();
        let mut between = self.sent_between.lock().unwrap();
        let first = between.map_or(now, |(first, _)| first);
        *between = Some((first, now));
    }
}

/// Whether a request may be sent again after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Yes,
    /// A `Confirmer`: sending it again could reset twice; its redirects are still retried.
    FirstHopOnce,
}

/// What every session of a run shares: the concurrency gate, the rate
/// limiter, the `Retry-After` pause and the counters.
pub struct Throttle {
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    paused_until: Mutex<Option<Instant>>,
    pub stats: Stats,
    /// The time between two requests at the full rate.
    period: Duration,
    /// What tells the pool whether another session would be of use.
    demand: Demand,
}

/// Whether the rate has room the open sessions leave unused: requests held
/// back by the limiter (or a `Retry-After` pause) now or lately, the portal
/// failing requests, and how long a session takes from one request to its
/// next.
struct Demand {
    /// When this throttle was made: the origin of the times below.
    since: Instant,
    /// Requests held back right now.
    held: AtomicUsize,
    /// When a request was last let go after being held back, or last failed
    /// for a reason worth a retry, in µs since `since`.
    last_held_us: AtomicU64,
    /// A session's cycle, from sending a request to being ready to send its
    /// next (the answer, reading and parsing it, the work in between): a
    /// moving average in µs (0: none yet).
    cycle_us: AtomicU64,
    /// Answers received so far.
    answers: AtomicU64,
    /// When the portal last asked to slow down (429), in µs since `since`
    /// (0: never).
    last_429_us: AtomicU64,
    /// When each request now waiting for its answer was sent, by a number
    /// of its own: a page that takes long shows here before it is answered.
    asked: Mutex<Vec<(u64, Instant)>>,
    next_ask: AtomicU64,
}

impl Demand {
    fn now_us(&self) -> u64 {
        self.since.elapsed().as_micros() as u64
    }

    /// Adds a sample to a moving average over about the last eight.
    fn average_in(average: &AtomicU64, sample: Duration) {
        let sample = (sample.as_micros() as u64).max(1);
        // Two sessions racing here lose one sample, which an average can afford.
        let old = average.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        average.store(new.max(1), Ordering::Relaxed);
    }
}

/// A request waiting for the portal's answer, for as long as it waits.
struct Asked<'a>(&'a Demand, u64);

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        let mut asked = self.0.asked.lock().unwrap();
        if let Some(i) = asked.iter().position(|(n, _)| *n == self.1) {
            asked.swap_remove(i);
        }
    }
}

/// A request held back by the limiter: counted while it waits, and its
/// release noted, also when the wait is cut short.
struct Held<'a>(&'a Demand);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let d = self.0;
        d.last_held_us.fetch_max(d.now_us(), Ordering::Relaxed);
        d.held.fetch_sub(1, Ordering::Relaxed);
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
        /// Boxed: a tab is far larger than an HTTP client.
        tab: tokio::sync::OnceCell<Box<super::chromium::Tab>>,
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
    sent: Arc<[AtomicU64; 3]>,
    /// When this session sent its last request, while it is at work: the
    /// start of its cycle. Cleared while it is idle or backs off.
    last_sent: Mutex<Option<Instant>>,
    /// The portal's scheme, host and port: no request goes anywhere else.
    origin: url::Origin,
    interruptions: super::Interruptions,
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
const MAX_PAUSES: usize = 20;
const LONGEST_PAUSE: Duration = Duration::from_secs(600);

impl Throttle {
    pub fn new(rate: f64, concurrency: usize) -> Throttle {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        // A burst of 10 ms worth of requests (1 below 100/s): a waiter woken a
        // little late by the timer would otherwise lose its slot for good,
        // and at high rates the run would fall well short of --rate.
        let burst = NonZeroU32::new((rate / 100.0).ceil().max(1.0) as u32).expect("at least 1");
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(burst);
        Throttle {
            limiter: RateLimiter::direct(quota),
            in_flight: Semaphore::new(concurrency.max(1)),
            paused_until: Mutex::new(None),
            stats: Stats::default(),
            period,
            demand: Demand {
                since: Instant::now(),
                held: AtomicUsize::new(0),
                last_held_us: AtomicU64::new(0),
                cycle_us: AtomicU64::new(0),
                answers: AtomicU64::new(0),
                last_429_us: AtomicU64::new(0),
                asked: Mutex::new(Vec::new()),
                next_ask: AtomicU64::new(0),
            },
        }
    }

    /// The time between two requests at the full rate.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Whether the limiter held a request back, or the portal failed one,
    /// now or within `window`: the rate is in use (another session would
    /// only wait its turn), or the portal is struggling (another session
    /// would only add to its load).
    pub fn saturated(&self, window: Duration) -> bool {
        let d = &self.demand;
        if d.held.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let last = d.last_held_us.load(Ordering::Relaxed);
        last > 0 && d.now_us() <= last + window.as_micros() as u64
    }

    /// How long the limiter has held nothing back (nor the portal failed a
    /// request worth a retry): since this throttle was made if never.
    pub fn room_for(&self) -> Duration {
        let d = &self.demand;
        if d.held.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = d.last_held_us.load(Ordering::Relaxed);
        Duration::from_micros(d.now_us().saturating_sub(last))
    }

    /// How long a session takes from one request to its next: on average
    /// lately, or longer while a request has been waiting over twice that
    /// for its answer (a page stuck; the usual spread of answer times is in
    /// the average already); zero until a request was sent.
    pub fn cycle(&self) -> Duration {
        let average = Duration::from_micros(self.demand.cycle_us.load(Ordering::Relaxed));
        let longest = self
            .demand
            .asked
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| at.elapsed())
            .max()
            .unwrap_or_default();
        if longest > 2 * average {
            longest
        } else {
            average
        }
    }

    /// Answers received so far: the pool opens no session while the last
    /// one opened has seen none (a portal that hangs gets no more logins).
    pub fn answers(&self) -> u64 {
        self.demand.answers.load(Ordering::Relaxed)
    }

    /// Whether the portal asked to slow down (429) within `window`: its own
    /// limit is below `--rate`, and more sessions would only meet it sooner.
    pub fn slowed_down_within(&self, window: Duration) -> bool {
        let d = &self.demand;
        let last = d.last_429_us.load(Ordering::Relaxed);
        last > 0 && d.now_us() <= last + window.as_micros() as u64
    }

    /// Notes a request sent, until the guard is dropped.
    fn ask(&self) -> Asked<'_> {
        let d = &self.demand;
        let n = d.next_ask.fetch_add(1, Ordering::Relaxed);
        d.asked.lock().unwrap().push((n, Instant::now()));
        Asked(d, n)
    }

    /// A request failed in a way worth a retry: the portal is struggling.
    fn troubled(&self) {
        let d = &self.demand;
        d.last_held_us.fetch_max(d.now_us(), Ordering::Relaxed);
    }

    /// A request of the browser engine: its turn at the limiter, counted
    /// like any other. `waiting` drops it before it is sent.
    pub async fn admit(
        &self,
        phase: Phase,
        waiting: &CancellationToken,
    ) -> Result<(), TransportError> {
        tokio::select! {
            _ = waiting.cancelled() => return Err(TransportError::Interrupted),
            _ = self.turn() => {}
        }
        self.stats.by_phase[phase as usize].fetch_add(1, Ordering::Relaxed);
        self.stats.sent_now();
        Ok(())
    }

    /// Waits for this request's turn: any `Retry-After` pause, then the limiter.
    async fn turn(&self) {
        let paused = self
            .paused_until
            .lock()
            .unwrap()
            .is_some_and(|t| t > Instant::now());
        if !paused && self.limiter.check().is_ok() {
            return;
        }
        self.demand.held.fetch_add(1, Ordering::Relaxed);
        let _held = Held(&self.demand);
        self.wait_for_pause().await;
        self.limiter.until_ready().await;
    }

    async fn wait_for_pause(&self) {
        loop {
            let until = *self.paused_until.lock().unwrap();
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    /// The portal answered 429 (to either engine): every request pauses
    /// `wait` seconds, and no session opens for a while.
    fn slowed_down(&self, wait: u64) {
        self.stats.too_many_requests.fetch_add(1, Ordering::Relaxed);
        let d = &self.demand;
        d.last_429_us
            .fetch_max(d.now_us().max(1), Ordering::Relaxed);
        tracing::warn!(
            pause_seconds = wait,
            "the portal asked to slow down (429): every request pauses"
        );
        self.pause(Duration::from_secs(wait));
    }

    fn pause(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after.min(LONGEST_PAUSE);
        let mut p = self.paused_until.lock().unwrap();
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }
}

impl Transport {
    /// A session whose requests may go to `origin` only.
    pub fn new(
        throttle: Arc<Throttle>,
        timeout: Duration,
        origin: url::Origin,
        interruptions: super::Interruptions,
    ) -> Result<Transport, TransportError> {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
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
            sent: Default::default(),
            last_sent: Mutex::new(None),
            origin,
            interruptions,
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
                tab: tokio::sync::OnceCell::new(),
                handed: Mutex::new(handed),
            },
            throttle,
            sent: Default::default(),
            last_sent: Mutex::new(None),
            origin,
            interruptions,
        }
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

    /// The browser page of this session, opened at its first use.
    async fn tab(&self) -> Result<&super::chromium::Tab, TransportError> {
        let Carrier::Browser {
            engine,
            tab,
            handed,
        } = &self.carrier
        else {
            unreachable!("asked of a browser session only")
        };
        let tab = tab
            .get_or_try_init(|| async {
                let handed = handed.lock().unwrap().take();
                engine
                    .session(
                        self.throttle.clone(),
                        self.origin.clone(),
                        self.sent.clone(),
                        self.interruptions.clone(),
                        handed,
                    )
                    .await
                    .map(Box::new)
            })
            .await
            .map_err(|e| TransportError::Engine(e.to_string()))?;
        // Only a browser that started counts as the engine that ran.
        self.throttle.stats.browser.store(true, Ordering::Relaxed);
        Ok(tab)
    }

    /// Presses the control at `path` of the session's page (browser only),
    /// and reads the page once it settled; with the answers to the requests
    /// the press made. `commit`: the press may commit a reset, so it is cut
    /// short only by a second interruption.
    pub async fn click(
        &self,
        phase: Phase,
        path: &str,
        commit: bool,
    ) -> Result<super::chromium::Settled, TransportError> {
        let cancel = if commit {
            &self.interruptions.confirmations
        } else {
            &self.interruptions.reads
        };
        let _asked = self.browser_step();
        let tab = self.tab().await?;
        let timeout = self.engine_timeout();
        let settled = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(TransportError::Interrupted),
            settled = tab.click(phase, path, timeout, commit) => settled,
        };
        if settled.is_ok() {
            self.throttle.demand.answers.fetch_add(1, Ordering::Relaxed);
        }
        settled
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
        phase: Phase,
        req: &Req,
        commit: bool,
    ) -> Result<Fetched, TransportError> {
        let _asked = self.browser_step();
        let tab = self.tab().await?;
        let timeout = self.engine_timeout();
        for _ in 0..MAX_PAUSES {
            let settled = match req {
                Req::Get(url) => tab.load(phase, url, "GET", None, timeout, commit).await?,
                Req::Post(url, pairs) => {
                    tab.load(phase, url, "POST", Some(pairs), timeout, commit)
                        .await?
                }
            };
            self.throttle.demand.answers.fetch_add(1, Ordering::Relaxed);
            let page = settled.page;
            let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK);
            tracing::debug!(
                target: "sip_rotate::http",
                "{} {} -> {} (browser)",
                req.method(),
                req.path(),
                status.as_u16()
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = settled
                    .answers
                    .iter()
                    .rev()
                    .find_map(|a| a.retry_after)
                    .unwrap_or(1);
                self.throttle.slowed_down(wait);
                continue;
            }
            if let Some(e) = refusal(status, req) {
                return Err(e);
            }
            return Ok(Fetched {
                method: req.method(),
                ..page
            });
        }
        Err(TransportError::RateLimited(MAX_PAUSES))
    }

    /// The session goes idle: the time until its next request is no part
    /// of its cycle.
    pub fn rest(&self) {
        *self.last_sent.lock().unwrap() = None;
    }

    /// Requests sent by this session so far, all phases.
    pub fn sent(&self) -> u64 {
        self.sent.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Requests sent by this session so far in `phase`.
    pub fn sent_in(&self, phase: Phase) -> u64 {
        self.sent[phase as usize].load(Ordering::Relaxed)
    }

    /// Fetches a page, following redirects with GET, retrying what is safe
    /// to retry. An interruption drops it at once, waits included: any
    /// request but a `Confirmer` on the first, a `Confirmer` and the page
    /// that shows its password only on the second.
    pub async fn fetch(
        &self,
        phase: Phase,
        req: Req,
        retry: Retry,
    ) -> Result<Fetched, TransportError> {
        let cancel = match retry {
            Retry::Yes => &self.interruptions.reads,
            Retry::FirstHopOnce => &self.interruptions.confirmations,
        };
        if self.runs_scripts() {
            let commit = retry == Retry::FirstHopOnce;
            let once = || self.in_browser_once(phase, &req, commit);
            let stepped = async {
                match retry {
                    Retry::FirstHopOnce => once().await,
                    Retry::Yes => self.with_retries(once).await,
                }
            };
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
        phase: Phase,
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
            let answer = if hop == 0 && retry == Retry::FirstHopOnce {
                once().await?
            } else if retry == Retry::FirstHopOnce {
                // On the way to the page of a press the portal took: only
                // the press's own answer can say it was not taken (see
                // `gate`), so a refusal here is an answer read.
                self.retried(phase, &current, waiting)
                    .await
                    .map_err(|e| match e {
                        TransportError::Forbidden => {
                            TransportError::Status(StatusCode::FORBIDDEN, current.path())
                        }
                        TransportError::RateLimited(n) => {
                            TransportError::Transient(format!("asked to slow down {n} times"))
                        }
                        e => e,
                    })?
            } else {
                self.retried(phase, &current, waiting).await?
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

    /// One request, sent again with backoff while it fails transiently:
    /// the one rule of what is retried for a request that changes nothing.
    async fn retried(
        &self,
        phase: Phase,
        req: &Req,
        waiting: &CancellationToken,
    ) -> Result<Answer, TransportError> {
        self.with_retries(|| self.send(phase, req, waiting)).await
    }

    /// `once`, sent again while it fails in a way worth trying again: the
    /// one rule of what is retried, for both engines.
    async fn with_retries<T, F, Fut>(&self, once: F) -> Result<T, TransportError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TransportError>>,
    {
        let mut tries = 0;
        once.retry(backoff())
            .when(TransportError::is_transient)
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
        phase: Phase,
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
            permit = throttle.in_flight.acquire() => permit.expect("semaphore never closed"),
        };
        for _ in 0..MAX_PAUSES {
            tokio::select! {
                _ = waiting.cancelled() => return Err(TransportError::Interrupted),
                _ = throttle.turn() => {}
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
            self.sent[phase as usize].fetch_add(1, Ordering::Relaxed);
            let sent_at = Instant::now();
            *self.last_sent.lock().unwrap() = Some(sent_at);
            let asked = throttle.ask();
            let response = builder.send().await.map_err(classify);
            drop(asked);
            let response = response?;
            throttle.demand.answers.fetch_add(1, Ordering::Relaxed);
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

/// What an answer that is no page and no redirect means, by its status
/// (both engines): a 5xx is transient, a 403 a refused form token, any
/// other failure an answer read.
fn refusal(status: StatusCode, req: &Req) -> Option<TransportError> {
    if status.is_server_error() {
        Some(TransportError::Transient(status.to_string()))
    } else if status == StatusCode::FORBIDDEN {
        Some(TransportError::Forbidden)
    } else if !status.is_success() {
        Some(TransportError::Status(status, req.path()))
    } else {
        None
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

fn classify(e: reqwest::Error) -> TransportError {
    if e.is_builder() {
        TransportError::Connect(source_text(e))
    } else if let Some(why) = unreachable(&e) {
        TransportError::Unreachable(why)
    } else if e.is_connect() && !e.is_timeout() {
        // Refused before anything was sent: nothing was done, but it is worth retrying too.
        TransportError::Transient(format!("connection failed: {}", source_text(e)))
    } else {
        TransportError::Transient(source_text(e))
    }
}

/// Why a connection could not be made, from the error's causes: TLS's
/// own error, the system's (refused), the resolver's.
fn unreachable(e: &reqwest::Error) -> Option<Unreachable> {
    if !e.is_connect() {
        return None;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        // An I/O error shows the error it wraps (another I/O error, TLS's),
        // but does not give it as its source: dug out here.
        let mut inner = Some(c);
        while let Some(candidate) = inner {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return Some(match tls {
                    rustls::Error::InvalidCertificate(why) => {
                        Unreachable::Certificate(certificate_problem(why))
                    }
                    rustls::Error::InvalidMessage(_)
                    | rustls::Error::InappropriateMessage { .. } => Unreachable::NotTls,
                    other => Unreachable::Tls(other.to_string()),
                });
            }
            let io = candidate.downcast_ref::<std::io::Error>();
            if io.is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
                return Some(Unreachable::Refused);
            }
            inner = io
                .and_then(|io| io.get_ref())
                .map(|w| w as &(dyn std::error::Error + 'static));
        }
        cause = c.source();
    }
    // Only looked at, never shown: the URL in it does not matter.
    let text = chain_text(e);
    if text.contains("dns error") || text.contains("failed to lookup address") {
        return Some(Unreachable::UnknownHost);
    }
    e.is_timeout().then_some(Unreachable::NoAnswer)
}

/// What is wrong with a certificate, in words.
fn certificate_problem(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match why {
        C::UnknownIssuer => "signed by an authority this machine does not trust".into(),
        C::Expired | C::ExpiredContext { .. } => "expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "made for another name than the portal's".into()
        }
        C::Revoked => "revoked".into(),
        C::BadSignature => "its signature does not verify".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "not made for a web server".into(),
        // webpki's own words for a self-signed certificate.
        C::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => "self-signed".into(),
        C::Other(other) => other.to_string(),
        other => format!("{other:?}"),
    }
}

/// An error and its causes, joined.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The error and its causes, without the URL (which could carry a query).
fn source_text(e: reqwest::Error) -> String {
    chain_text(&e.without_url())
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
}
