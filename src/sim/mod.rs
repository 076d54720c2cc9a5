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
mod search;
mod serve;
mod state;

use search::*;
use serve::*;
use state::*;

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
    /// How late a refused login is answered.
    pub slow_refusal: Duration,
    /// The words of the portal's labels: the guide's, or another wording.
    pub labels: crate::portal::labels::Labels,
    /// How the portal is built, beyond its variant's markup.
    pub shapes: Vec<Shape>,
    /// The origin (another simulator) the scripted portal's pages load
    /// their kit from, as pages loading a CDN's script do.
    pub scripts_from: Option<String>,
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
    // With scripted: the reset button's script asks "are you sure?" in a
    // dialog of the page's own (confirm()) before anything.
    AskOnReset,
    // With scripted: Confirmer's script asks again in a confirm() before
    // it posts the reset.
    AskOnConfirm,
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
    /// Every page runs this script first (a compromised portal or CDN).
    pub page_script: Option<String>,
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
            slow_refusal: Duration::ZERO,
            labels: crate::portal::labels::Labels::default(),
            reconnect_after: None,
            shapes: Vec::new(),
            scripts_from: None,
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
