//! `sip-rotate sim`: a simulated MyOpenIP portal on loopback.
//!
//! It serves the nine pages of the portal contract with the web behaviour of a
//! real portal (session cookie, anti-forgery tokens, loose search filters,
//! pagination, Post/Redirect/Get) and optional faults (latency, 5xx, dropped
//! confirmations, session expiry, rate limiting). Every committed reset is
//! appended to a truth file so that tests can check the client's output.
//!
//! It shares no code with the portal client but the client's own types
//! (the login profile): the client must find its way from the pages alone,
//! and depends on nothing here.

pub mod dataset;
pub mod pages;
pub mod routes;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use dataset::{Dataset, DatasetSpec};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use routes::{Route, Variant};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::portal::LoginProfile;

/// Everything `sip-rotate sim` is told on its command line.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub login: String,
    pub password: String,
    pub profile: LoginProfile,
    pub dataset: DatasetSpec,
    pub page_size: usize,
    pub variant: Variant,
    pub latency_ms: u64,
    pub fail_rate: f64,
    pub drop_rate: f64,
    pub expire_after: Option<u32>,
    pub rate_limit: Option<u32>,
    pub truth: Option<PathBuf>,
    /// One line per request: milliseconds since start, page kind.
    pub access_log: Option<PathBuf>,
    /// One line per secret handed out (session id, form token, new
    /// password), so that tests can look for each of them where none may be.
    pub handed_out: Option<PathBuf>,
    /// What a hostile portal does; nothing by default.
    pub hostile: Hostile,
    /// One licence reference for two phones (`Dataset::plant_twins`).
    pub twins: bool,
    /// A reset phone registers again this long after its last reset (a
    /// person reconfigured it), except those that never do
    /// (`Dataset::never_reconnects`); without it, none does.
    pub reconnect_after: Option<Duration>,
    /// Added latency for pages of one kind (`Route::kind`), or of one
    /// licence or service (`kind:key`), in milliseconds.
    pub page_latency: Vec<(String, u64)>,
    /// Pages of one kind, or of one licence or service (`kind:key`), that
    /// always fail (503): a portal failing where a test wants it.
    pub failing_pages: Vec<String>,
    /// Twins look the same in every column (number and name too).
    pub identical_twins: bool,
    /// The words of the portal's labels: the guide's, or another wording.
    pub labels: crate::portal::labels::Labels,
    /// How the portal is built, beyond its variant's markup.
    pub shapes: Vec<Shape>,
}

/// Ways a portal may be built that a browser handles, and that the portal
/// contract allows ("As a browser shows it"): `sim --shape`, any number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    // (Plain comments: a doc comment here would change `sim --help`'s layout.)
    // The confirmation is a dialog already in the detail page: the reset
    // button only opens it (`type="button"`), the dialog holds the number
    // and the form with `Confirmer`.
    Dialog,
    // The notification of a reset is shown again on the session's next
    // page, whatever it is.
    FlashAgain,
    // Every page carries a token in `<meta name="csrf-token">`, and the
    // `Suivant` links carry one in their query.
    LinkTokens,
    // Every page has `<base href="/espace/">` and links relative to it;
    // the portal is served under /espace/.
    BaseHref,
    // The reset button is a link that loads the confirmation into a dialog
    // (`data-toggle="modal"`): the confirmation comes from a GET.
    RemoteDialog,
    // The reset is driven by script: the button fetches the number as
    // JSON, shows it in a dialog whose Confirmer posts to a JSON API with
    // the page's CSRF token (from a <meta>) in a header, and writes the new
    // password into a notification. Without running the script, no reset.
    Scripted,
}

/// Where `Shape::BaseHref` serves the portal.
const BASE: &str = "/espace";

/// Misbehaviours of a hostile or compromised portal, for the tests of what
/// the client refuses: addresses outside the portal's own origin.
#[derive(Debug, Clone, Default)]
pub struct Hostile {
    /// The login form is sent here instead of to the portal.
    pub login_action: Option<String>,
    /// After `Confirmer`, the portal redirects here instead of to its result page.
    pub confirm_redirect: Option<String>,
    /// The home page carries this many MiB of padding: an answer without end.
    pub home_page_mib: usize,
    /// The first licence's user is named this (e.g. `=1+1`, which a
    /// spreadsheet would run as a formula).
    pub first_user_name: Option<String>,
}

impl SimConfig {
    /// A fault-free simulator of the default dataset.
    pub fn new(login: &str, password: &str) -> SimConfig {
        SimConfig {
            login: login.into(),
            password: password.into(),
            profile: LoginProfile::Reseller,
            dataset: DatasetSpec {
                seed: 1,
                clients: 12,
                licences_per_client: 8,
            },
            page_size: 10,
            variant: Variant::Classic,
            latency_ms: 0,
            fail_rate: 0.0,
            drop_rate: 0.0,
            expire_after: None,
            rate_limit: None,
            truth: None,
            access_log: None,
            handed_out: None,
            hostile: Hostile::default(),
            twins: false,
            page_latency: Vec::new(),
            failing_pages: Vec::new(),
            identical_twins: false,
            labels: crate::portal::labels::Labels::default(),
            reconnect_after: None,
            shapes: Vec::new(),
        }
    }
}

/// What the simulator counted; printed on shutdown.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub requests: BTreeMap<&'static str, u64>,
    pub too_many_requests: u64,
    pub resets: u64,
    pub refused_tokens: u64,
    pub injected_failures: u64,
    pub dropped_confirmations: u64,
    pub logins: u64,
    pub refused_logins: u64,
    pub expired_sessions: u64,
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (page, n) in &self.requests {
            writeln!(f, "requests.{page}: {n}")?;
        }
        writeln!(f, "requests.total: {}", self.requests.values().sum::<u64>())?;
        writeln!(f, "too_many_requests: {}", self.too_many_requests)?;
        writeln!(f, "resets: {}", self.resets)?;
        writeln!(f, "refused_tokens: {}", self.refused_tokens)?;
        writeln!(f, "injected_failures: {}", self.injected_failures)?;
        writeln!(f, "dropped_confirmations: {}", self.dropped_confirmations)?;
        writeln!(f, "logins: {}", self.logins)?;
        writeln!(f, "refused_logins: {}", self.refused_logins)?;
        write!(f, "expired_sessions: {}", self.expired_sessions)
    }
}

struct Session {
    requests: u32,
    flash: Option<(usize, String)>,
    /// The notification shown last, to show again on the next page
    /// (`Shape::FlashAgain`).
    again: Option<String>,
}

struct Token {
    session: Option<String>,
    confirms: Option<usize>,
    used: bool,
}

struct PortalState {
    rng: StdRng,
    sessions: HashMap<String, Session>,
    tokens: HashMap<String, Token>,
    window: (u64, u32),
    /// When each reset licence was last reset: its phone is cut off since.
    reset_at: HashMap<usize, Instant>,
}

struct Shared {
    cfg: SimConfig,
    ds: Dataset,
    started: Instant,
    state: Mutex<PortalState>,
    truth: Mutex<Option<File>>,
    counters: Mutex<Counters>,
    access_log: Option<File>,
    handed_out: Option<Mutex<File>>,
}

/// Closes the request's connection without an answer when notified.
#[derive(Clone)]
struct DropConnection(Arc<Notify>);

/// A simulator bound to a port, not yet serving.
pub struct Simulator {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Simulator {
    pub async fn bind(cfg: SimConfig, addr: SocketAddr) -> std::io::Result<Simulator> {
        let truth = match &cfg.truth {
            Some(p) => Some(File::options().create(true).append(true).open(p)?),
            None => None,
        };
        let access_log = match &cfg.access_log {
            Some(p) => Some(File::options().create(true).append(true).open(p)?),
            None => None,
        };
        let handed_out = match &cfg.handed_out {
            Some(p) => Some(Mutex::new(
                File::options().create(true).append(true).open(p)?,
            )),
            None => None,
        };
        let mut ds = Dataset::generate(&cfg.dataset);
        if cfg.twins || cfg.identical_twins {
            ds.plant_twins();
        }
        if cfg.identical_twins {
            ds.make_twins_identical();
        }
        if let Some(name) = &cfg.hostile.first_user_name {
            ds.licences[0].name = name.clone();
        }
        let listener = TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared {
            state: Mutex::new(PortalState {
                rng: StdRng::seed_from_u64(cfg.dataset.seed ^ 0x5eed),
                sessions: HashMap::new(),
                tokens: HashMap::new(),
                window: (0, 0),
                reset_at: HashMap::new(),
            }),
            cfg,
            ds,
            started: Instant::now(),
            truth: Mutex::new(truth),
            counters: Mutex::new(Counters::default()),
            access_log,
            handed_out,
        });
        Ok(Simulator { shared, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn dataset(&self) -> &Dataset {
        &self.shared.ds
    }

    /// Serves until `shutdown` completes, then returns the counters.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) -> Counters {
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.shared.clone());
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let app = app.clone();
            tokio::spawn(async move {
                let killer = Arc::new(Notify::new());
                let k = killer.clone();
                let service =
                    hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(DropConnection(k.clone()));
                        app.clone().oneshot(req)
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = killer.notified() => {}
                }
            });
        }
        self.shared.counters.lock().unwrap().clone()
    }
}

fn html(v: Variant, status: StatusCode, page: String) -> Response<Body> {
    let (bytes, content_type) = match v {
        Variant::Classic => (page.into_bytes(), "text/html; charset=utf-8"),
        // Modern declares its charset only in <meta>, as some portals do.
        Variant::Modern => (
            encoding_rs::WINDOWS_1252.encode(&page).0.into_owned(),
            "text/html",
        ),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(bytes))
        .unwrap()
}

fn json_answer(value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

fn redirect(status: StatusCode, to: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::LOCATION, to)
        .body(Body::empty())
        .unwrap()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn random_string(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Shared {
    fn style(&self) -> pages::Style<'_> {
        pages::Style {
            variant: self.cfg.variant,
            labels: &self.cfg.labels,
        }
    }

    /// Whether a licence's phone is registered now: as the dataset says
    /// until it is reset, cut off by a reset, back `reconnect_after` later
    /// unless it never comes back.
    fn connected(&self, licence: usize) -> bool {
        match self.state.lock().unwrap().reset_at.get(&licence) {
            None => self.ds.initially_connected(licence),
            Some(at) => self
                .cfg
                .reconnect_after
                .is_some_and(|after| at.elapsed() >= after && !self.ds.never_reconnects(licence)),
        }
    }

    /// The `État` the portal shows for a licence.
    fn state_text(&self, licence: usize) -> &str {
        if self.connected(licence) {
            &self.cfg.labels.state_connected
        } else {
            &self.cfg.labels.state_disconnected
        }
    }

    /// Notes a secret the portal hands out (`--handed-out`).
    fn hand_out(&self, kind: &str, value: &str) {
        if let Some(f) = &self.handed_out {
            let mut f = f.lock().unwrap();
            if let Err(e) = f.write_all(format!("{kind} {value}\n").as_bytes()) {
                eprintln!("sim: cannot write the handed-out file: {e}");
            }
        }
    }

    fn new_token(&self, session: Option<&str>, confirms: Option<usize>) -> String {
        let mut st = self.state.lock().unwrap();
        let token = random_string(&mut st.rng, 24);
        self.hand_out("token", &token);
        st.tokens.insert(
            token.clone(),
            Token {
                session: session.map(str::to_string),
                confirms,
                used: false,
            },
        );
        token
    }

    /// Accepts a form token issued to this session (and, for a confirmation,
    /// to this licence, once).
    fn check_token(
        &self,
        params: &HashMap<String, String>,
        session: Option<&str>,
        confirms: Option<usize>,
    ) -> bool {
        let name = self.cfg.variant.names().token;
        let mut st = self.state.lock().unwrap();
        let ok = match params.get(name).and_then(|t| st.tokens.get_mut(t)) {
            Some(t) if t.session.as_deref() == session && t.confirms == confirms && !t.used => {
                if confirms.is_some() {
                    t.used = true;
                }
                true
            }
            _ => false,
        };
        if !ok {
            self.counters.lock().unwrap().refused_tokens += 1;
        }
        ok
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.state.lock().unwrap().rng.random_bool(p.min(1.0))
    }

    /// Counts the request in the current one-second window; false when over the limit.
    fn within_rate_limit(&self) -> bool {
        let Some(limit) = self.cfg.rate_limit else {
            return true;
        };
        let second = self.started.elapsed().as_secs();
        let mut st = self.state.lock().unwrap();
        if st.window.0 != second {
            st.window = (second, 0);
        }
        st.window.1 += 1;
        st.window.1 <= limit
    }

    fn login_page(&self, status: StatusCode, message: Option<&str>) -> Response<Body> {
        let token = self.new_token(None, None);
        html(
            self.cfg.variant,
            status,
            pages::login(
                self.style(),
                &token,
                message,
                self.cfg.hostile.login_action.as_deref(),
            ),
        )
    }

    /// What a request of an ended or missing session is answered with.
    fn logged_out(&self) -> Response<Body> {
        match self.cfg.variant {
            Variant::Classic => redirect(StatusCode::FOUND, &self.cfg.variant.url(&Route::Login)),
            Variant::Modern => self.login_page(StatusCode::OK, Some("Votre session a expiré.")),
        }
    }

    fn refused(&self) -> Response<Body> {
        html(
            self.cfg.variant,
            StatusCode::FORBIDDEN,
            pages::message(
                self.cfg.variant,
                "Accès refusé",
                "Jeton de sécurité invalide ou expiré.",
            ),
        )
    }

    /// The truth file could not take a reset: the portal fails as a
    /// server would.
    fn cannot_commit(&self, e: std::io::Error) -> Response<Body> {
        eprintln!("sim: cannot write the truth file: {e}");
        html(
            self.cfg.variant,
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::message(self.cfg.variant, "Erreur", "Erreur interne."),
        )
    }

    fn not_found(&self) -> Response<Body> {
        html(
            self.cfg.variant,
            StatusCode::NOT_FOUND,
            pages::message(
                self.cfg.variant,
                "Page introuvable",
                "Cette page n'existe pas.",
            ),
        )
    }

    /// Commits a reset: new password, truth line flushed, notification queued.
    fn commit_reset(&self, session: &str, licence: usize) -> std::io::Result<()> {
        let password = {
            let mut st = self.state.lock().unwrap();
            random_string(&mut st.rng, 12)
        };
        self.hand_out("password", &password);
        let l = &self.ds.licences[licence];
        let service = &self.ds.services[l.service];
        if let Some(f) = self.truth.lock().unwrap().as_mut() {
            let line = serde_json::json!({
                "licence": l.reference,
                "key": l.key,
                "sda": l.sda,
                "client_ref": self.ds.clients[service.client].reference,
                "service_ref": service.reference,
                "password": password,
                "at": chrono::Utc::now().to_rfc3339(),
            });
            // One write per line, so that a reader never sees half of one.
            f.write_all(format!("{line}\n").as_bytes())?;
            f.flush()?;
        }
        self.counters.lock().unwrap().resets += 1;
        self.state
            .lock()
            .unwrap()
            .reset_at
            .insert(licence, Instant::now());
        if let Some(s) = self.state.lock().unwrap().sessions.get_mut(session) {
            s.flash = Some((licence, password));
        }
        Ok(())
    }

    /// Takes the pending notification if it is for one of `licences`.
    fn take_flash(&self, session: &str, shown_for: impl Fn(usize) -> bool) -> Option<String> {
        let mut st = self.state.lock().unwrap();
        let s = st.sessions.get_mut(session)?;
        let shown = match &s.flash {
            Some((l, _)) if shown_for(*l) => s
                .flash
                .take()
                .map(|(_, pw)| pages::notification(self.style(), &pw)),
            _ => None,
        };
        if self.has(Shape::FlashAgain) && shown.is_some() {
            s.again = shown.clone();
        }
        shown
    }

    /// A link as the portal writes it: with a token in its query under
    /// `Shape::LinkTokens` (never checked, but a secret all the same).
    fn link_token(&self, session: &str, url: String) -> String {
        if self.has(Shape::LinkTokens) {
            pages::with_param(&url, "_jt", &self.new_token(Some(session), None))
        } else {
            url
        }
    }

    fn has(&self, shape: Shape) -> bool {
        self.cfg.shapes.contains(&shape)
    }

    /// The notification to show again on this page, taken.
    fn take_again(&self, session: Option<&str>) -> Option<String> {
        let mut st = self.state.lock().unwrap();
        st.sessions.get_mut(session?)?.again.take()
    }
}

fn search_values(v: Variant, params: &HashMap<String, String>) -> [String; 9] {
    std::array::from_fn(|i| params.get(v.names().search[i]).cloned().unwrap_or_default())
}

fn starts_with_ci(haystack: &str, needle: &str) -> bool {
    haystack
        .to_lowercase()
        .starts_with(&needle.trim().to_lowercase())
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack
        .to_lowercase()
        .contains(&needle.trim().to_lowercase())
}

/// The loose filters of the search page: prefixes and substrings.
fn search_services(ds: &Dataset, values: &[String; 9]) -> Vec<usize> {
    (0..ds.services.len())
        .filter(|&s| {
            let svc = &ds.services[s];
            let client = ds.client_of_service(s);
            let ty = pages::option_text(&pages::SERVICE_TYPES, &values[4]);
            let state = pages::option_text(&pages::SERVICE_STATES, &values[8]);
            starts_with_ci(&svc.reference, &values[0])
                && contains_ci(&client.name, &values[1])
                && starts_with_ci(&client.reference, &values[2])
                && contains_ci(&client.name, &values[3])
                && ty.is_none_or(|t| t == svc.service_type)
                && (values[6].trim().is_empty()
                    || ds
                        .licences_of(s)
                        .iter()
                        .any(|&l| starts_with_ci(&ds.licences[l].accountcode, &values[6])))
                && starts_with_ci(&svc.ip, &values[7])
                && state.is_none_or(|t| t == svc.state)
        })
        .collect()
}

fn page_of<T: Clone>(items: &[T], page: usize, size: usize) -> (Vec<T>, bool) {
    let start = (page - 1) * size;
    let slice = items.iter().skip(start).take(size).cloned().collect();
    (slice, items.len() > start + size)
}

/// A page as served, with what the shapes add to every page: a token in
/// `<meta>`, a notification shown again.
async fn handle(State(sh): State<Arc<Shared>>, req: Request<Body>) -> Response<Body> {
    if !sh.has(Shape::FlashAgain) && !sh.has(Shape::LinkTokens) && !sh.has(Shape::BaseHref) {
        return serve_page(sh, req).await;
    }
    let mut req = req;
    if sh.has(Shape::BaseHref)
        && let Some(inner) = req.uri().path().strip_prefix(BASE)
    {
        let inner = match req.uri().query() {
            Some(q) => format!("{inner}?{q}"),
            None => inner.to_string(),
        };
        if let Ok(uri) = inner.parse() {
            *req.uri_mut() = uri;
        }
    }
    let sid = cookie(req.headers(), sh.cfg.variant.names().cookie);
    let again = sh.take_again(sid.as_deref());
    let mut response = serve_page(sh.clone(), req).await;
    if sh.has(Shape::BaseHref)
        && let Some(to) = response.headers().get(header::LOCATION)
        && let Ok(to) = to.to_str()
        && to.starts_with('/')
        && let Ok(moved) = HeaderValue::from_str(&format!("{BASE}{to}"))
    {
        response.headers_mut().insert(header::LOCATION, moved);
    }
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.to_str().unwrap_or("").starts_with("text/html"));
    if response.status() != StatusCode::OK || !is_html {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let v = sh.cfg.variant;
    let mut page = match v {
        Variant::Classic => String::from_utf8_lossy(&bytes).into_owned(),
        Variant::Modern => encoding_rs::WINDOWS_1252.decode(&bytes).0.into_owned(),
    };
    if sh.has(Shape::LinkTokens)
        && let Some(at) = page.find("<head>")
    {
        let token = sh.new_token(sid.as_deref(), None);
        page.insert_str(
            at + "<head>".len(),
            &format!("<meta name=\"csrf-token\" content=\"{token}\">"),
        );
    }
    if let Some(notice) = again
        && let Some(at) = page.find("<body>")
    {
        page.insert_str(at + "<body>".len(), &notice);
    }
    if sh.has(Shape::BaseHref) {
        // Every address relative to the base, as a browser would resolve it.
        page = page
            .replace("href=\"/", "href=\"")
            .replace("action=\"/", "action=\"");
        if let Some(at) = page.find("<head>") {
            page.insert_str(at + "<head>".len(), &format!("<base href=\"{BASE}/\">"));
        } else {
            page.insert_str(0, &format!("<base href=\"{BASE}/\">"));
        }
    }
    let mut response = html(v, StatusCode::OK, page);
    let mut headers = parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    *response.headers_mut() = headers;
    response
}

async fn serve_page(sh: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let v = sh.cfg.variant;
    let mut params: HashMap<String, String> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if parts.method == Method::POST {
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        params.extend(url::form_urlencoded::parse(&bytes).into_owned());
    }
    let Some(route) = v.route(parts.uri.path(), &params) else {
        return sh.not_found();
    };
    {
        let mut counters = sh.counters.lock().unwrap();
        *counters.requests.entry(route.kind()).or_default() += 1;
        // Under the counters' lock, so that the log's order is the order of arrival.
        if let Some(mut log) = sh.access_log.as_ref() {
            let line = format!("{} {}\n", sh.started.elapsed().as_millis(), route.kind());
            if let Err(e) = log.write_all(line.as_bytes()) {
                eprintln!("sim: cannot write the access log: {e}");
            }
        }
    }

    if !sh.within_rate_limit() {
        sh.counters.lock().unwrap().too_many_requests += 1;
        let mut r = html(
            v,
            StatusCode::TOO_MANY_REQUESTS,
            pages::message(v, "Trop de requêtes", "Réessayez plus tard."),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    if sh.cfg.latency_ms > 0 {
        let jitter = sh.state.lock().unwrap().rng.random_range(0.5..1.5);
        tokio::time::sleep(Duration::from_secs_f64(
            sh.cfg.latency_ms as f64 / 1000.0 * jitter,
        ))
        .await;
    }
    let this_page = |wanted: &str| match wanted.split_once(':') {
        Some((kind, key)) => kind == route.kind() && route.key() == Some(key),
        None => wanted == route.kind(),
    };
    if let Some((_, ms)) = sh.cfg.page_latency.iter().find(|(k, _)| this_page(k)) {
        tokio::time::sleep(Duration::from_millis(*ms)).await;
    }
    if sh.cfg.failing_pages.iter().any(|k| this_page(k)) {
        sh.counters.lock().unwrap().injected_failures += 1;
        return html(
            v,
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message(v, "Erreur", "Le service est momentanément indisponible."),
        );
    }
    if sh.roll(sh.cfg.fail_rate) {
        sh.counters.lock().unwrap().injected_failures += 1;
        let status = [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ][sh.state.lock().unwrap().rng.random_range(0..3)];
        return html(
            v,
            status,
            pages::message(v, "Erreur", "Le service est momentanément indisponible."),
        );
    }

    let names = v.names();
    let sid = cookie(&parts.headers, names.cookie);
    let session_ok = match &sid {
        Some(id) => {
            let mut st = sh.state.lock().unwrap();
            let expired = match st.sessions.get_mut(id) {
                Some(s) if sh.cfg.expire_after.is_some_and(|n| s.requests >= n) => true,
                Some(s) => {
                    s.requests += 1;
                    false
                }
                None => {
                    drop(st);
                    return match route {
                        Route::Root | Route::Login => {
                            dispatch_anonymous(&sh, route, &parts.method, &params, None)
                        }
                        _ => sh.logged_out(),
                    };
                }
            };
            if expired {
                st.sessions.remove(id);
                drop(st);
                sh.counters.lock().unwrap().expired_sessions += 1;
            }
            !expired
        }
        None => false,
    };
    if !session_ok {
        return match route {
            Route::Root | Route::Login => {
                dispatch_anonymous(&sh, route, &parts.method, &params, None)
            }
            _ => sh.logged_out(),
        };
    }
    let sid = sid.unwrap();
    match route {
        Route::Root => redirect(StatusCode::FOUND, &v.url(&Route::Home)),
        Route::Login => dispatch_anonymous(&sh, route, &parts.method, &params, Some(&sid)),
        Route::Home => {
            let mut page = pages::home(sh.style());
            if sh.cfg.hostile.home_page_mib > 0 {
                page.push_str("<!--");
                page.push_str(&" ".repeat(sh.cfg.hostile.home_page_mib << 20));
                page.push_str("-->");
            }
            html(v, StatusCode::OK, page)
        }
        Route::MyServices => html(v, StatusCode::OK, pages::my_services(sh.style())),
        Route::Search => html(
            v,
            StatusCode::OK,
            pages::search(sh.style(), &sh.new_token(Some(&sid), None)),
        ),
        Route::Results => {
            // The form's token is checked; the pagination links carry none.
            if params.contains_key(names.token) && !sh.check_token(&params, Some(&sid), None) {
                return sh.refused();
            }
            let values = search_values(v, &params);
            let page: usize = params
                .get(names.page)
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            let found = search_services(&sh.ds, &values);
            let (shown, more) = page_of(&found, page, sh.cfg.page_size);
            let next = more.then(|| {
                let mut url = v.url(&Route::Results);
                for (i, value) in values.iter().enumerate() {
                    if !value.is_empty() {
                        url = pages::with_param(&url, names.search[i], value);
                    }
                }
                let url = pages::with_param(&url, names.page, &(page + 1).to_string());
                sh.link_token(&sid, url)
            });
            let token = sh.new_token(Some(&sid), None);
            html(
                v,
                StatusCode::OK,
                pages::results(sh.style(), &token, &values, &sh.ds, &shown, next),
            )
        }
        Route::Service(s) => match sh.ds.service_index(&s) {
            Some(i) => html(v, StatusCode::OK, pages::service(sh.style(), &sh.ds, i)),
            None => sh.not_found(),
        },
        Route::Users(s) => {
            let Some(i) = sh.ds.service_index(&s) else {
                return sh.not_found();
            };
            let all = sh.ds.licences_of(i);
            let page: usize = params
                .get(names.page)
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            let (shown, more) = page_of(all, page, sh.cfg.page_size);
            let next = more.then(|| {
                let url = pages::with_param(
                    &v.url(&Route::Users(s.clone())),
                    names.page,
                    &(page + 1).to_string(),
                );
                sh.link_token(&sid, url)
            });
            let notice = match v {
                Variant::Modern => sh.take_flash(&sid, |l| sh.ds.licences[l].service == i),
                Variant::Classic => None,
            };
            html(
                v,
                StatusCode::OK,
                pages::users(
                    sh.style(),
                    &sh.ds,
                    i,
                    &shown
                        .iter()
                        .map(|&l| (l, sh.state_text(l).to_string()))
                        .collect::<Vec<_>>(),
                    next,
                    notice,
                ),
            )
        }
        Route::Detail(l) => {
            let Some(i) = sh.ds.licence_index(&l) else {
                return sh.not_found();
            };
            let notice = match v {
                Variant::Classic => sh.take_flash(&sid, |f| f == i),
                Variant::Modern => None,
            };
            let token = sh.new_token(Some(&sid), None);
            // The confirmation as a dialog of this page: its form holds
            // the token that confirms this licence.
            let dialog = if sh.has(Shape::Dialog) {
                Some(pages::Dialog::InPage(pages::confirmation(
                    sh.style(),
                    &sh.ds,
                    i,
                    &sh.new_token(Some(&sid), Some(i)),
                )))
            } else if sh.has(Shape::Scripted) {
                Some(pages::Dialog::Scripted {
                    info: v.url(&Route::ApiInfo(l.clone())),
                    confirm: v.url(&Route::ApiConfirm(l.clone())),
                    page_token: sh.new_token(Some(&sid), None),
                })
            } else if sh.has(Shape::RemoteDialog) {
                let mut url = v.url(&Route::Reset(l.clone()));
                if v == Variant::Modern {
                    url = pages::with_param(&url, v.names().licence, &l);
                }
                Some(pages::Dialog::Remote(url))
            } else {
                None
            };
            html(
                v,
                StatusCode::OK,
                pages::detail(
                    sh.style(),
                    &sh.ds,
                    i,
                    sh.state_text(i),
                    &token,
                    notice,
                    dialog,
                ),
            )
        }
        Route::Reset(l) => {
            let Some(i) = sh.ds.licence_index(&l) else {
                return sh.not_found();
            };
            if sh.has(Shape::RemoteDialog) && parts.method == Method::GET {
                // The dialog's content alone, as a modal loads it: without a
                // <meta>, so its charset goes in the header.
                let token = sh.new_token(Some(&sid), Some(i));
                let mut r = html(
                    v,
                    StatusCode::OK,
                    pages::confirmation(sh.style(), &sh.ds, i, &token),
                );
                if v == Variant::Modern {
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/html; charset=windows-1252"),
                    );
                }
                return r;
            }
            if parts.method != Method::POST || !sh.check_token(&params, Some(&sid), None) {
                return sh.refused();
            }
            let token = sh.new_token(Some(&sid), Some(i));
            html(
                v,
                StatusCode::OK,
                pages::confirm(sh.style(), &sh.ds, i, &token),
            )
        }
        Route::ApiInfo(l) => {
            let Some(i) = sh.ds.licence_index(&l).filter(|_| sh.has(Shape::Scripted)) else {
                return sh.not_found();
            };
            let token = sh.new_token(Some(&sid), Some(i));
            json_answer(serde_json::json!({
                "sda": sh.ds.licences[i].sda,
                "token": token,
            }))
        }
        Route::ApiConfirm(l) => {
            let Some(i) = sh.ds.licence_index(&l).filter(|_| sh.has(Shape::Scripted)) else {
                return sh.not_found();
            };
            // The page's token in the header, the confirmation's in the body.
            let header_token = parts
                .headers
                .get("x-csrf-token")
                .and_then(|t| t.to_str().ok())
                .unwrap_or("");
            let page = HashMap::from([(v.names().token.to_string(), header_token.to_string())]);
            let body = HashMap::from([(
                v.names().token.to_string(),
                params.get("token").cloned().unwrap_or_default(),
            )]);
            if parts.method != Method::POST
                || !sh.check_token(&page, Some(&sid), None)
                || !sh.check_token(&body, Some(&sid), Some(i))
            {
                return sh.refused();
            }
            if let Err(e) = sh.commit_reset(&sid, i) {
                return sh.cannot_commit(e);
            }
            // The script writes the password itself: no notification waits.
            let password = {
                let mut st = sh.state.lock().unwrap();
                st.sessions
                    .get_mut(&sid)
                    .and_then(|s| s.flash.take())
                    .map(|(_, pw)| pw)
                    .unwrap_or_default()
            };
            json_answer(serde_json::json!({ "password": password }))
        }
        Route::Confirm(l) => {
            let Some(i) = sh.ds.licence_index(&l) else {
                return sh.not_found();
            };
            if parts.method != Method::POST || !sh.check_token(&params, Some(&sid), Some(i)) {
                return sh.refused();
            }
            if let Err(e) = sh.commit_reset(&sid, i) {
                return sh.cannot_commit(e);
            }
            if sh.roll(sh.cfg.drop_rate) {
                sh.counters.lock().unwrap().dropped_confirmations += 1;
                if let Some(DropConnection(killer)) = parts.extensions.get::<DropConnection>() {
                    killer.notify_one();
                    std::future::pending::<()>().await;
                }
            }
            let to = match v {
                Variant::Classic => v.url(&Route::Detail(l)),
                Variant::Modern => v.url(&Route::Users(
                    sh.ds.services[sh.ds.licences[i].service].reference.clone(),
                )),
            };
            match &sh.cfg.hostile.confirm_redirect {
                Some(elsewhere) => redirect(StatusCode::SEE_OTHER, elsewhere),
                None => redirect(StatusCode::SEE_OTHER, &to),
            }
        }
    }
}

/// The login page and the login form, reachable without a session.
fn dispatch_anonymous(
    sh: &Shared,
    route: Route,
    method: &Method,
    params: &HashMap<String, String>,
    old_session: Option<&str>,
) -> Response<Body> {
    let v = sh.cfg.variant;
    if route == Route::Root || *method != Method::POST {
        return match route {
            Route::Root => redirect(StatusCode::FOUND, &v.url(&Route::Login)),
            _ => sh.login_page(StatusCode::OK, None),
        };
    }
    if !sh.check_token(params, None, None) {
        return sh.refused();
    }
    let names = v.names();
    let wanted_profile = match sh.cfg.profile {
        LoginProfile::Reseller => names.profile_values[0],
        LoginProfile::Operator => names.profile_values[1],
    };
    let ok = params.get(names.login) == Some(&sh.cfg.login)
        && params.get(names.password) == Some(&sh.cfg.password)
        && params.get(names.profile).map(String::as_str) == Some(wanted_profile);
    if !ok {
        sh.counters.lock().unwrap().refused_logins += 1;
        return sh.login_page(
            StatusCode::OK,
            Some("Identifiant, mot de passe ou profil incorrect."),
        );
    }
    sh.counters.lock().unwrap().logins += 1;
    let sid = {
        let mut st = sh.state.lock().unwrap();
        if let Some(old) = old_session {
            st.sessions.remove(old);
        }
        let sid = random_string(&mut st.rng, 32);
        sh.hand_out("session", &sid);
        st.sessions.insert(
            sid.clone(),
            Session {
                requests: 0,
                flash: None,
                again: None,
            },
        );
        sid
    };
    let mut r = redirect(StatusCode::SEE_OTHER, &v.url(&Route::Home));
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{}={sid}; Path=/; HttpOnly; SameSite=Lax",
            names.cookie
        ))
        .unwrap(),
    );
    r
}
