//! A hostile or broken portal: nothing leaves the portal's origin (a login
//! form, a link or a redirect that leads to another scheme, host or port is
//! refused before a byte is sent there, and the run stops), and an answer
//! without end does not take the machine's memory.

use crate::common::*;
use std::net::TcpListener;
use std::path::Path;

/// A listener on another port of loopback (another origin), and its URL.
fn elsewhere() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/collect", listener.local_addr().unwrap());
    (listener, url)
}

fn assert_never_contacted(listener: &TcpListener) {
    assert!(
        listener.accept().is_err(),
        "a connection reached the foreign address"
    );
}

fn input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("in.csv");
    std::fs::write(&path, "client_ref,licence\n4054,*\n").unwrap();
    path
}

#[test]
fn a_login_form_sent_to_another_origin_is_refused_before_the_password_leaves() {
    let (listener, url) = elsewhere();
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--hostile-login-action", &url]);
    let output = dir.path().join("out.age");
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path()), &output, &public).arg("--yes"),
        2,
    );
    assert!(stderr.contains(&url), "{stderr}");
    assert!(
        stderr.contains("outside the portal's own address"),
        "{stderr}"
    );
    // No session got in: the summary does not count one.
    assert!(stderr.contains("no session logged in"), "{stderr}");
    assert_never_contacted(&listener);
    assert!(sim.resets().is_empty());
    assert!(!output.exists());
}

#[test]
fn a_redirect_after_confirmer_to_another_origin_stops_the_run_and_records_no_password() {
    let (listener, url) = elsewhere();
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--hostile-confirm-redirect", &url]);
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path()), &output, &public)
            .arg("--yes")
            .arg("--report")
            .arg(&report),
        3,
    );
    assert!(stderr.contains(&url), "{stderr}");
    // No journal to resume: the headline sends nobody to --resume.
    assert!(
        stderr.contains("STOPPED: a phone may be cut off, and no file holds its new password"),
        "{stderr}"
    );
    assert!(!stderr.contains("--resume"), "{stderr}");
    assert_never_contacted(&listener);
    // The canary's Confirmer went through: its password is unknown, and
    // nothing else was reset.
    assert_eq!(sim.resets().len(), 1);
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    let failed: Vec<_> = rows.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{rows:?}");
    assert!(failed[0]["detail"].contains("unknown"), "{rows:?}");
    assert_eq!(failed[0]["confirmations"], "1", "not reset again: {rows:?}");
    assert!(rows.iter().all(|r| r["status"] != "reset"), "{rows:?}");
    assert!(!output.exists());
}

#[test]
fn an_answer_without_end_is_refused() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--hostile-home-page-mib", "9"]);
    let output = dir.path().join("out.age");
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path()), &output, &public).arg("--yes"),
        2,
    );
    assert!(stderr.contains("larger than 8 MiB"), "{stderr}");
    assert!(sim.resets().is_empty());
}
