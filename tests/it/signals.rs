//! Ctrl-C and SIGTERM at every phase: the run stops cleanly, says so,
//! writes its report and exits 3, never a default signal death. The first
//! signal drops at once every request that changes nothing; a `Confirmer`
//! in flight finishes, unless a second signal abandons it.

use crate::common::*;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn spawn(sim: &Sim, dir: &Path, extra: &[&str]) -> Child {
    let (_, public) = identity(dir);
    let input = dir.join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    run_cmd(sim, &input, &dir.join("out.age"), &public)
        .args(["--yes", "--report"])
        .arg(dir.join("report.csv"))
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (bounded) until the simulator has served a page of `kind`.
fn wait_for_page(sim: &Sim, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sim.pages_served().iter().any(|k| k == kind) {
        assert!(Instant::now() < deadline, "no {kind} page");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the run's end; returns its exit code, stderr and how long it took.
fn ended(child: Child, since: Instant) -> (Option<i32>, String, Duration) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        since.elapsed(),
    )
}

/// What a child writes on stderr, read as it comes.
struct Said {
    lines: std::sync::mpsc::Receiver<String>,
    seen: std::cell::RefCell<String>,
    reader: std::thread::JoinHandle<()>,
}

fn said_on_stderr(child: &mut Child) -> Said {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = send.send(line);
        }
    });
    Said {
        lines,
        seen: Default::default(),
        reader,
    }
}

impl Said {
    /// Waits (bounded) for a line that holds `text`.
    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.borrow().contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("never said {text:?}: {}", self.seen.borrow()));
            let mut seen = self.seen.borrow_mut();
            seen.push_str(&line);
            seen.push('\n');
        }
    }

    /// Everything written, once the child ended.
    fn all(self) -> String {
        self.reader.join().unwrap();
        let mut seen = self.seen.into_inner();
        for line in self.lines.try_iter() {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    }
}

fn report_statuses(dir: &Path) -> Vec<String> {
    parse_csv(&std::fs::read(dir.join("report.csv")).unwrap())
        .into_iter()
        .map(|r| r["status"].clone())
        .collect()
}

#[test]
fn a_signal_while_logging_in_or_resolving_stops_at_once_with_a_report() {
    for (signal_name, slow) in [("-INT", "login"), ("-TERM", "results"), ("-HUP", "results")] {
        let dir = tempfile::tempdir().unwrap();
        // That page takes 5 s: a run that waited for the request in
        // flight would take that long to stop.
        let sim = Sim::start(dir.path(), &["--page-latency", &format!("{slow}=5000")]);
        let child = spawn(&sim, dir.path(), &["--rate", "100"]);
        wait_for_page(&sim, slow);
        let sent = Instant::now();
        signal(&child, signal_name);
        let (code, stderr, took) = ended(child, sent);
        // No Confirmer was sent: no phone is cut off, and the code says so.
        assert_eq!(code, Some(2), "{signal_name}: {stderr}");
        assert!(took < Duration::from_secs(2), "stopped in {took:?}");
        assert!(stderr.contains("stopping"), "{stderr}");
        assert!(stderr.contains("stopped: interrupted"), "{stderr}");
        let statuses = report_statuses(dir.path());
        assert!(!statuses.is_empty());
        assert!(statuses.iter().all(|s| s == "skipped"), "{statuses:?}");
        assert!(sim.resets().is_empty());
        assert!(!dir.path().join("out.age.journal").exists());
    }
}

#[test]
fn a_confirmer_in_flight_finishes_after_the_first_signal_and_is_abandoned_at_the_second() {
    // The first signal: the canary's Confirmer in flight finishes, its
    // password is kept, nothing else is started.
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--page-latency", "confirm=1500"]);
    let child = spawn(&sim, dir.path(), &["--rate", "100"]);
    wait_for_page(&sim, "confirm");
    let sent = Instant::now();
    signal(&child, "-TERM");
    let (code, stderr, _) = ended(child, sent);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(sim.resets().len(), 1);
    let statuses = report_statuses(dir.path());
    assert_eq!(
        statuses.iter().filter(|s| *s == "reset").count(),
        1,
        "{statuses:?}"
    );
    assert!(stderr.contains("out.age.part1"), "{stderr}");

    // The second: abandoned at once, its password unknown and said so.
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--page-latency", "confirm=5000"]);
    let mut child = spawn(&sim, dir.path(), &["--rate", "100"]);
    wait_for_page(&sim, "confirm");
    let sent = Instant::now();
    // The second signal once the first is taken (the run says so), not
    // after a guess of how long that takes.
    let said = said_on_stderr(&mut child);
    signal(&child, "-TERM");
    said.wait_for("stopping:");
    signal(&child, "-TERM");
    let code = child.wait().unwrap().code();
    let (stderr, took) = (said.all(), sent.elapsed());
    assert_eq!(code, Some(3), "{stderr}");
    assert!(took < Duration::from_secs(3), "abandoned in {took:?}");
    assert!(stderr.contains("abandoning"), "{stderr}");
    assert!(
        stderr.contains("interrupted after Confirmer was sent"),
        "{stderr}"
    );
    let statuses = report_statuses(dir.path());
    assert_eq!(
        statuses.iter().filter(|s| *s == "failed").count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses.iter().all(|s| s == "failed" || s == "skipped"));
}

/// A signal while the last Confirmer is in flight: that reset finishes,
/// and nothing is left, so the run ends as finished (exit 0, the result
/// written, no journal), not as one to resume.
#[test]
fn a_signal_during_the_last_confirmer_stops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--page-latency", "confirm:FPC172910=1500"]);
    let (id, public) = identity(dir.path());
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "client_ref,licence\n4054,FPC172908\n4054,FPC172910\n",
    )
    .unwrap();
    let output = dir.path().join("out.age");
    let child = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--rate", "100", "--concurrency", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim
        .pages_served()
        .iter()
        .filter(|k| *k == "confirm")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "no second confirm");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(sim.resets().len(), 2, "{stderr}");
    assert_eq!(decrypt(&id, &output).len(), 2, "{stderr}");
    assert!(!dir.path().join("out.age.journal").exists(), "{stderr}");
    assert!(!dir.path().join("out.age.part1").exists(), "{stderr}");
}
