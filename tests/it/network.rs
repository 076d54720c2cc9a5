//! A portal address that cannot be reached: said in words, and tried again
//! only when trying again may help (a certificate stays untrusted).

use crate::common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A loopback port nothing listens on (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sip-rotate run` of one client against `portal`; its exit code and stderr.
fn run_against(
    dir: &Path,
    portal: &str,
    public: &str,
    more: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let input = dir.join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let mut run = Command::new(bin());
    run.arg("run")
        .arg("--input")
        .arg(&input)
        .args([
            "--portal", portal, "--login", LOGIN, "-r", public, "--yes", "-o",
        ])
        .arg(dir.join("out.age"))
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .env("XDG_STATE_HOME", dir.join("state"))
        .args(more)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let out = run.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An HTTPS server with a self-signed certificate for `localhost`, on `port`.
struct TlsServer(Child);

impl TlsServer {
    fn start(dir: &Path, port: u16) -> TlsServer {
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success());
        TlsServer::serve(dir, port)
    }

    /// `openssl s_server` on `port` with `dir`'s cert.pem and key.pem.
    fn serve(dir: &Path, port: u16) -> TlsServer {
        let server = TlsServer(
            Command::new("openssl")
                .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
                .arg("-cert")
                .arg(dir.join("cert.pem"))
                .arg("-key")
                .arg(dir.join("key.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Waits until it listens (a connection, not a sleep of a guessed length).
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("openssl s_server did not listen");
    }
}

impl TlsServer {
    /// A server whose certificate (CA:FALSE, for localhost) a private
    /// authority signed; the authority's certificate is `dir/ca.pem`.
    fn start_signed(dir: &Path, port: u16) -> TlsServer {
        let openssl = |args: &[&str]| {
            let made = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(made.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Private CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ]);
        TlsServer::serve(dir, port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The number of portal requests the summary counts.
fn requests(stderr: &str) -> u64 {
    let at = stderr.find("portal requests: ").expect(stderr) + "portal requests: ".len();
    stderr[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A run against `SCHEME://localhost:PORT/`, where a TLS server with a
/// self-signed certificate (`openssl req -x509`) listens.
fn run_against_self_signed(scheme: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = TlsServer::start(dir.path(), port);
    let (_, public) = identity(dir.path());
    run_against(
        dir.path(),
        &format!("{scheme}://localhost:{port}/"),
        &public,
        &[],
        &[],
    )
}

#[test]
fn an_untrusted_certificate_is_named_and_not_tried_again() {
    if !have("openssl") {
        return;
    }
    let (code, stderr) = run_against_self_signed("https");
    assert_eq!(code, Some(2), "{stderr}");
    // What `openssl req -x509` makes: an authority's certificate, which no
    // authority given to trust can make pass; said so.
    assert!(
        stderr.contains("the portal's certificate is an authority's own (self-signed, CA:TRUE)"),
        "{stderr}"
    );
    assert!(stderr.contains("CA:FALSE"), "{stderr}");
    assert_eq!(requests(&stderr), 1, "tried again: {stderr}");
    assert!(!stderr.contains("retried"), "{stderr}");
    assert!(!stderr.contains("OtherError"), "{stderr}");
}

#[test]
fn https_to_a_plain_port_and_a_closed_port_are_said_in_words() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    // The simulator speaks plain HTTP: asked with https://.
    let plain = sim.url.replacen("http://", "https://", 1);
    let (code, stderr) = run_against(dir.path(), &plain, &public, &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("answers, but not with TLS"), "{stderr}");
    assert!(!stderr.contains("InvalidContentType"), "{stderr}");
    assert_eq!(requests(&stderr), 1, "tried again: {stderr}");
    // Nothing listening: tried again briefly (twice), then said.
    let closed = format!("https://127.0.0.1:{}/", free_port());
    let (code, stderr) = run_against(dir.path(), &closed, &public, &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
    assert_eq!(requests(&stderr), 3, "{stderr}");
    // A plan that never got in claims nothing of what a run would reset.
    let out = Command::new(bin())
        .arg("plan")
        .arg("--input")
        .arg(dir.path().join("in.csv"))
        .args(["--portal", &closed, "--login", LOGIN])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(
        !stderr.lines().any(|l| l.starts_with("run would reset")),
        "{stderr}"
    );
    assert!(stderr.contains("is not known"), "{stderr}");
    assert!(sim.resets().is_empty());
}

/// A web server on loopback that answers every request with one page of
/// another site; its address.
fn another_site() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            use std::io::{Read, Write};
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body =
                "<html><body><h1>Welcome to our shop</h1><a href=\"/cart\">Cart</a></body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/")
}

#[test]
fn another_site_at_the_portal_s_address_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = identity(dir.path());
    let (code, stderr) = run_against(dir.path(), &another_site(), &public, &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("is --portal the MyOpenIP portal's address?"),
        "{stderr}"
    );
    assert_eq!(requests(&stderr), 1, "{stderr}");
}

/// A path at the portal's address that has no page (a typo in --portal):
/// said as a wrong address at once, not as a portal that failed.
#[test]
fn a_portal_address_without_a_page_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = identity(dir.path());
    let sim = Sim::start(dir.path(), &[]);
    let wrong = format!("{}/nowhere/", sim.url.trim_end_matches('/'));
    let (code, stderr) = run_against(dir.path(), &wrong, &public, &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("answered 404 Not Found: is --portal the MyOpenIP portal's address"),
        "{stderr}"
    );
    assert_eq!(requests(&stderr), 1, "not tried again: {stderr}");
    assert!(sim.resets().is_empty());
}

/// A portal address that takes the connection and never answers (a hung
/// server, a proxy that holds): tried again as briefly as a refused
/// connection, then said in words that name the address and the timeout.
#[test]
fn a_portal_that_takes_the_request_and_never_answers_is_tried_briefly_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
    }
    let (_, public) = identity(dir.path());
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let out = Command::new(bin())
        .arg("run")
        .arg("--input")
        .arg(&input)
        .args([
            "--portal",
            &format!("http://127.0.0.1:{port}/"),
            "--login",
            LOGIN,
        ])
        .args(["-r", &public, "--yes", "--timeout", "1", "-o"])
        .arg(dir.path().join("out.age"))
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("sent no answer within the time allowed (--timeout)"),
        "{stderr}"
    );
    assert!(!stderr.contains("operation timed out"), "{stderr}");
    assert_eq!(requests(&stderr), 3, "{stderr}");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "{stderr}"
    );
}

/// A portal whose certificate a private authority signed: untrusted, said
/// with what to give; trusted with --ca-file (the page is then read: here
/// no portal's). A SSL_CERT_FILE that names nothing readable would leave
/// no authority trusted: refused before anything is sent.
#[test]
fn a_private_authority_is_trusted_with_ca_file() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = TlsServer::start_signed(dir.path(), port);
    let (_, public) = identity(dir.path());
    let portal = format!("https://localhost:{port}/");
    let (code, stderr) = run_against(dir.path(), &portal, &public, &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("signed by an authority this machine does not trust"),
        "{stderr}"
    );
    assert!(stderr.contains("--ca-file"), "{stderr}");
    let ca = dir.path().join("ca.pem");
    let (code, stderr) = run_against(
        dir.path(),
        &portal,
        &public,
        &["--ca-file", ca.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("certificate"), "{stderr}");
    assert!(stderr.contains("no login form"), "{stderr}");
    // A file that is no certificate, and a SSL_CERT_FILE that is not there.
    let (code, stderr) = run_against(
        dir.path(),
        &portal,
        &public,
        &["--ca-file", dir.path().join("ext.cnf").to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
    // The authority's certificate with its key, as a bundle given by mistake.
    let bundle = dir.path().join("bundle.pem");
    let mut both = std::fs::read(&ca).unwrap();
    both.extend(std::fs::read(dir.path().join("ca.key")).unwrap());
    std::fs::write(&bundle, both).unwrap();
    let (code, stderr) = run_against(
        dir.path(),
        &portal,
        &public,
        &["--ca-file", bundle.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("it holds a private key"), "{stderr}");
    assert!(!stderr.contains("portal requests"), "{stderr}");
    let (code, stderr) = run_against(
        dir.path(),
        &portal,
        &public,
        &[],
        &[("SSL_CERT_FILE", "/nonexistent/ca.pem")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("SSL_CERT_FILE names /nonexistent/ca.pem"),
        "{stderr}"
    );
    assert!(!stderr.contains("portal requests"), "{stderr}");
    // A SSL_CERT_FILE without the portal's authority: the refusal says
    // that file took the place of the system's authorities.
    let other = dir.path().join("cert.pem");
    let (code, stderr) = run_against(
        dir.path(),
        &portal,
        &public,
        &[],
        &[("SSL_CERT_FILE", other.to_str().unwrap())],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("SSL_CERT_FILE is set: the authorities of")
            && stderr.contains("in place of the system's"),
        "{stderr}"
    );
}

/// Plain http:// to a port that speaks TLS: the connection is closed
/// unanswered; said so, tried again as briefly as a refused connection
/// (it was five times over 10 s, then hyper's words).
#[test]
fn http_to_a_tls_port_is_said_in_words() {
    if !have("openssl") {
        return;
    }
    let (code, stderr) = run_against_self_signed("http");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("http:// to a port that speaks https?"),
        "{stderr}"
    );
    assert!(requests(&stderr) <= 3, "{stderr}");
    assert!(!stderr.contains("SendRequest"), "{stderr}");
}
