//! What a request's failure means: transient or permanent, said in words
//! a person understands (certificates, names, refused connections).

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No answer, a cut connection: the request may or may not have been done.
    #[error("no usable answer from the portal ({0})")]
    Transient(String),
    /// The portal answered with a server error (5xx): it may or may not
    /// have done the request, but it did answer.
    #[error("no usable answer from the portal ({0})")]
    ServerError(StatusCode),
    /// The request was sent and nothing came back within `--timeout`: it may
    /// or may not have been done. Tried again as few times as a connection
    /// nothing answered (a portal that hangs is said in seconds, not minutes).
    #[error(
        "the portal took the request but sent no answer within the time allowed (--timeout): check the --portal address (a proxy or a firewall in the way?) and that the portal is up"
    )]
    Silent,
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
    /// The browser's page died under the step (its renderer crashed, or
    /// was made to because another page it served hung): the step may be
    /// taken again in a new tab.
    #[error("no usable answer from the portal (the browser's page crashed)")]
    PageCrashed,
    /// The portal's page stopped answering in the browser: a script holds
    /// it. Tried once more in a new tab (a loop the last page left in its
    /// renderer hangs the next page too); `again`, it hung there too: a
    /// script of its own, not tried a third time.
    #[error(
        "the portal's page {page} stopped answering in the browser (a script of the page kept it busy past --timeout){}: it was closed",
        if *again { ", in a new tab too" } else { "" }
    )]
    PageHung { page: String, again: bool },
    /// A page's request that would change something named another licence
    /// than the one pressed for: refused, as all the step would still
    /// change. A page that does that is not driven further.
    #[error("{0}")]
    Tampered(String),
    /// The browser itself ended under the run (its process exited or was
    /// killed): no step can be taken in it any more, in any tab.
    #[error("the browser ended under the run (its process exited or was killed)")]
    BrowserEnded,
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
        /// What the browser asked it for, in words ("a script").
        kind: String,
        /// A script or a style, which `--allow-origin` may let through.
        allowable: Option<String>,
    },
}

pub(super) fn foreign_resource(to: &str, kind: &str, allowable: &Option<String>) -> String {
    match allowable {
        Some(origin) => format!(
            "the portal's page loads {kind} from another origin, {to}: refused; if that is the portal's own (a CDN), let its scripts and styles through with --allow-origin {origin}"
        ),
        None => format!(
            "the portal's page asks for {kind} at {to}, outside the portal's own origin: refused, nothing was sent there"
        ),
    }
}

/// Why the portal's address could not be reached. A certificate, a
/// protocol or a name that is wrong stays wrong: not retried. Nothing
/// listening, or no answer to the connection, may pass: retried briefly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    #[error(
        "the portal's certificate is not trusted ({0}): check the --portal address; a portal whose certificate comes from a private authority needs that authority's certificate (PEM) in --ca-file{note}",
        note = trust_store_note()
    )]
    Certificate(String),
    /// webpki's `CaUsedAsEndEntity`: what `openssl req -x509` makes by
    /// default. No authority given to trust can make it pass here (curl,
    /// told to trust that very certificate, takes it).
    #[error(
        "the portal's certificate is an authority's own (self-signed, CA:TRUE), presented as the server's: sip-rotate refuses it whatever it is told to trust (some clients, curl among them, take it when told to); check the --portal address; the portal needs a server certificate (CA:FALSE) signed by an authority, whose certificate then goes in --ca-file if it is a private one"
    )]
    AuthorityAsServer,
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
    /// Plain HTTP, the connection closed before any answer, and the portal
    /// never answered this run: what a TLS port does to plain HTTP.
    #[error(
        "the portal's address closed the connection without an answer: check the --portal address (http:// to a port that speaks https?) and that the portal is up"
    )]
    ClosedAtOnce,
}

impl Unreachable {
    /// Whether trying again a moment later may help.
    pub fn may_pass(&self) -> bool {
        matches!(
            self,
            Unreachable::Refused | Unreachable::NoAnswer | Unreachable::ClosedAtOnce
        )
    }
}

/// How many times a connection that nothing answered is tried again, and
/// the longest wait between: a portal that is down is said in seconds.
pub(super) const UNREACHABLE_RETRIES: usize = 2;
pub(super) const UNREACHABLE_WAIT: Duration = Duration::from_millis(500);

impl TransportError {
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Transient(_)
            | TransportError::ServerError(_)
            | TransportError::Silent
            | TransportError::PageCrashed
            | TransportError::PageHung { again: false, .. } => true,
            TransportError::Unreachable(u) => u.may_pass(),
            _ => false,
        }
    }

    /// Whether a request sent as `retry` says may go again after this
    /// failure: the one rule of what is retried, for both engines.
    pub fn worth_another_try(&self, retry: Retry) -> bool {
        match retry {
            Retry::Yes => self.is_transient(),
            Retry::FirstHopOnce => false,
            // Sent again only when the portal answered (a 5xx) or nothing
            // reached it: a login left unanswered may have been refused
            // late, and each try of a wrong password counts.
            Retry::Credentials => {
                matches!(self, TransportError::ServerError(_))
                    || matches!(self, TransportError::Unreachable(u) if u.may_pass())
            }
        }
    }

    /// Whether every request of the run would fail the same way.
    pub fn is_permanent(&self) -> bool {
        matches!(self, TransportError::Unreachable(u) if !u.may_pass())
            || matches!(self, TransportError::BrowserEnded)
    }
}

/// The wait before the next try (`None`: no more): the backoff's, but
/// short and few for a connection nothing answered, and none for a page
/// that stopped answering: tried at once in a new tab (a loop the last page
/// left in its renderer hangs the next page too); one that hangs there
/// too is no longer transient (`PageHung { again }`).
pub(super) fn next_wait(
    unreachable_tries: &mut usize,
) -> impl FnMut(&TransportError, Option<Duration>) -> Option<Duration> + '_ {
    move |e, wait| match e {
        TransportError::Unreachable(_) | TransportError::Silent => {
            *unreachable_tries += 1;
            (*unreachable_tries <= UNREACHABLE_RETRIES)
                .then(|| wait.unwrap_or(UNREACHABLE_WAIT).min(UNREACHABLE_WAIT))
        }
        TransportError::PageHung { .. } => Some(Duration::ZERO),
        _ => wait,
    }
}

/// What an answer that is no page and no redirect means, by its status
/// (both engines): a 5xx is transient, a 403 a refused form token, any
/// other failure an answer read.
pub(super) fn refusal(status: StatusCode, req: &Req) -> Option<TransportError> {
    if status.is_server_error() {
        Some(TransportError::ServerError(status))
    } else if status == StatusCode::FORBIDDEN {
        Some(TransportError::Forbidden)
    } else if !status.is_success() {
        Some(TransportError::Status(status, req.path()))
    } else {
        None
    }
}

pub(super) fn classify(e: reqwest::Error) -> TransportError {
    if e.is_builder() {
        TransportError::Connect(source_text(e))
    } else if let Some(why) = unreachable(&e) {
        TransportError::Unreachable(why)
    } else if e.is_connect() && !e.is_timeout() {
        // Refused before anything was sent: nothing was done, but it is worth retrying too.
        TransportError::Transient(format!("connection failed: {}", source_text(e)))
    } else if e.is_timeout() {
        TransportError::Silent
    } else {
        TransportError::Transient(source_text(e))
    }
}

/// Why a connection could not be made, from the error's causes: TLS's
/// own error, the system's (refused), the resolver's.
pub(super) fn unreachable(e: &reqwest::Error) -> Option<Unreachable> {
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
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
                        if other.to_string().contains("CaUsedAsEndEntity") =>
                    {
                        Unreachable::AuthorityAsServer
                    }
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

/// Where the authorities trusted came from, when not the system's: the
/// `SSL_CERT_FILE` of the environment takes their place.
fn trust_store_note() -> String {
    match std::env::var_os("SSL_CERT_FILE") {
        Some(file) if !file.is_empty() => format!(
            " (SSL_CERT_FILE is set: the authorities of {} are trusted in place of the system's)",
            std::path::Path::new(&file).display()
        ),
        _ => String::new(),
    }
}

/// What is wrong with a certificate, in words.
pub(super) fn certificate_problem(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match why {
        C::UnknownIssuer => "signed by an authority this machine does not trust".into(),
        C::Expired | C::ExpiredContext { .. } => "expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "made for another name than the portal's".into()
        }
        C::Revoked => "revoked".into(),
        // What webpki says of a self-signed server certificate.
        C::BadSignature => {
            "its signature does not verify against any authority this machine trusts: self-signed?"
                .into()
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "not made for a web server".into(),
        C::Other(other) => other.to_string(),
        other => format!("{other:?}"),
    }
}

/// An error and its causes, joined.
pub(super) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
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
pub(super) fn source_text(e: reqwest::Error) -> String {
    chain_text(&e.without_url())
}
