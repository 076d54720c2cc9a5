//! Helpers shared by the integration tests: the real `sip-rotate sim`
//! binary on a free loopback port, its truth file and counters, identities.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const LOGIN: &str = "revendeur-test";
pub const PASSWORD: &str = "s3cret-portal-pw";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sip-rotate"))
}

/// A running simulator, stopped (SIGTERM) when dropped.
pub struct Sim {
    child: Option<Child>,
    pub url: String,
    pub truth: PathBuf,
    pub access_log: PathBuf,
    /// The runs' state folder (`XDG_STATE_HOME`), where their locks are.
    pub state: PathBuf,
}

impl Sim {
    /// Starts `sip-rotate sim` with `args`, its truth file in `dir`.
    pub fn start(dir: &Path, args: &[&str]) -> Sim {
        let id = std::process::id() as u64 * 1000 + rand_suffix();
        let truth = dir.join(format!("truth-{id}.jsonl"));
        let access_log = dir.join(format!("access-{id}.log"));
        let mut child = Command::new(bin())
            .arg("sim")
            .args(["--listen", "127.0.0.1:0", "--truth"])
            .arg(&truth)
            .arg("--access-log")
            .arg(&access_log)
            .args(args)
            .env("SIM_LOGIN", LOGIN)
            .env("SIM_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the simulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Sim {
            child: Some(child),
            url: format!("{url}/"),
            truth,
            access_log,
            state: dir.join(format!("state-{id}")),
        }
    }

    /// Stops the simulator and returns the counters it printed.
    pub fn stop(mut self) -> HashMap<String, u64> {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        child.wait().unwrap();
        err.lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect()
    }

    /// The kind of every page served so far, in order of arrival.
    pub fn pages_served(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, kind)| kind.to_string()))
            .collect()
    }

    /// Every committed reset, in order.
    pub fn resets(&self) -> Vec<TruthLine> {
        read_truth(&self.truth)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug, Clone)]
pub struct TruthLine {
    pub licence: String,
    /// What the simulator names the phone by (its reference, but for twins).
    pub key: String,
    pub sda: String,
    pub client_ref: String,
    pub password: String,
}

pub fn read_truth(path: &Path) -> Vec<TruthLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line still being written has no newline yet.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            TruthLine {
                licence: v["licence"].as_str().unwrap().into(),
                key: v["key"].as_str().unwrap().into(),
                sda: v["sda"].as_str().unwrap().into(),
                client_ref: v["client_ref"].as_str().unwrap().into(),
                password: v["password"].as_str().unwrap().into(),
            }
        })
        .collect()
}

/// The last password the portal gave each licence.
pub fn last_passwords(truth: &[TruthLine]) -> HashMap<String, String> {
    truth
        .iter()
        .map(|t| (t.licence.clone(), t.password.clone()))
        .collect()
}

/// Opens the result `output` with `identity` and checks that each row's
/// password is the last one the portal gave its licence (`truth`); returns
/// the rows.
pub fn assert_exact_passwords(
    identity: &Path,
    output: &Path,
    truth: &[TruthLine],
) -> Vec<HashMap<String, String>> {
    let last = last_passwords(truth);
    let rows = decrypt(identity, output);
    for row in &rows {
        assert_eq!(Some(&row["password"]), last.get(&row["licence"]), "{row:?}");
    }
    rows
}

/// A temporary folder with a simulator (started with `sim_args`) and an age
/// identity in it; tests take it apart with `let Setup { dir, sim, .. } = ...`.
pub struct Setup {
    pub sim: Sim,
    pub identity: PathBuf,
    pub public: String,
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new(sim_args: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::start(dir.path(), sim_args);
        let (identity, public) = identity(dir.path());
        Setup {
            sim,
            identity,
            public,
            dir,
        }
    }
}

/// An age identity file in `dir`; returns (path, public key).
pub fn identity(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("identity.txt");
    let out = Command::new(bin())
        .args(["keygen", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        path,
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

/// Decrypts an output or journal with `sip-rotate decrypt`; returns CSV rows as maps.
pub fn decrypt(identity: &Path, file: &Path) -> Vec<HashMap<String, String>> {
    try_decrypt(identity, file).unwrap_or_else(|e| panic!("decrypt: {e}"))
}

/// Decrypts with `sip-rotate decrypt`: the CSV rows, or what it said on stderr.
pub fn try_decrypt(identity: &Path, file: &Path) -> Result<Vec<HashMap<String, String>>, String> {
    let out = Command::new(bin())
        .args(["decrypt", "-i"])
        .arg(identity)
        .arg(file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(parse_csv(&out.stdout))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn parse_csv(bytes: &[u8]) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(bytes);
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            headers
                .iter()
                .zip(rec.unwrap().iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// `sip-rotate check` against `sim`, with the test credentials.
pub fn check_cmd(sim: &Sim, input: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("check")
        .arg("--input")
        .arg(input)
        .args(["--portal", &sim.url, "--login", LOGIN, "--rate", "100"])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .env("XDG_STATE_HOME", &sim.state);
    c
}

/// `sip-rotate plan` against `sim`, with the test credentials.
pub fn plan_cmd(sim: &Sim, input: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("plan")
        .arg("--input")
        .arg(input)
        .args(["--portal", &sim.url, "--login", LOGIN, "--rate", "100"])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .env("XDG_STATE_HOME", &sim.state);
    c
}

/// `sip-rotate run` against `sim`, with the test credentials.
pub fn run_cmd(sim: &Sim, input: &Path, output: &Path, recipient: &str) -> Command {
    let mut c = Command::new(bin());
    c.arg("run")
        .arg("--input")
        .arg(input)
        .args([
            "--portal", &sim.url, "--login", LOGIN, "-r", recipient, "-o",
        ])
        .arg(output)
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .env("XDG_STATE_HOME", &sim.state)
        .stdin(Stdio::null());
    c
}

/// The run locks taken under `sim.state`.
pub fn locks(sim: &Sim) -> Vec<PathBuf> {
    std::fs::read_dir(sim.state.join("sip-rotate"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// Every file under `dir`, read whole.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            all.extend(files_under(&p));
        } else {
            all.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    all
}

/// Fails if any password of the truth file appears in clear in `haystacks`,
/// the truth file itself excepted.
pub fn assert_no_clear_password(
    truth: &[TruthLine],
    haystacks: &[(PathBuf, Vec<u8>)],
    truth_path: &Path,
) {
    for (path, bytes) in haystacks {
        if path == truth_path {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        for t in truth {
            assert!(
                !text.contains(&t.password),
                "password of {} in clear in {}",
                t.licence,
                path.display()
            );
        }
    }
}

/// Waits (bounded) until the simulator has committed `n` resets.
pub fn wait_for_resets(sim: &Sim, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.resets().len() < n {
        assert!(Instant::now() < deadline, "the run made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(child: &Child, sig: &str) {
    Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
}

/// Runs `command` to its end and fails unless it exits with `code`; returns its stderr.
pub fn exits_with(command: &mut Command, code: i32) -> String {
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    stderr
}

/// As `exits_with`, but a run still going after `limit` is killed and
/// fails the test (a run that waits forever must not hang the suite).
pub fn exits_with_within(command: &mut Command, code: i32, limit: Duration) -> String {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        let _ = pipe.read_to_string(&mut stderr);
        stderr
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("still going after {limit:?}: {}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(code), "{stderr}");
    stderr
}

/// Whether the command-line tool `name` is installed. CI installs every
/// tool the tests use and sets `SIP_ROTATE_REQUIRE_TOOLS`: there a missing
/// one fails the test instead of skipping it.
pub fn have(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()));
    if !found {
        assert!(
            std::env::var_os("SIP_ROTATE_REQUIRE_TOOLS").is_none(),
            "{name} is required here (see .ci/run)"
        );
        eprintln!("{name} is not installed: not checked");
    }
    found
}
