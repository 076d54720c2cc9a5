//! What a run prints, for people and for machines: `--quiet` prints nothing
//! at all when the run succeeds, colour only on a terminal, and with
//! `--log-format json` every line on stderr is one JSON object, the last one
//! the summary.

use crate::common::*;
use std::path::Path;
use std::process::Command;

/// A portal with faults, so that warnings (retries, new resets) happen.
const FAULTS: [&str; 6] = [
    "--fail-rate",
    "0.05",
    "--drop-rate",
    "0.2",
    "--expire-after",
    "15",
];

fn input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("in.csv");
    std::fs::write(&path, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    path
}

#[test]
fn quiet_means_silent_on_success_even_under_faults() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&FAULTS);
    let out = run_cmd(
        &sim,
        &input(dir.path()),
        &dir.path().join("out.age"),
        &public,
    )
    .args(["--yes", "--quiet", "--rate", "50", "--max-resets", "12"])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Sessions expire every 15 requests; drops and failures are random.
    let counters = sim.stop();
    assert!(
        counters["expired_sessions"] > 0,
        "the faults happened: {counters:?}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(out.stdout.is_empty());
}

#[test]
fn quiet_still_says_what_went_wrong() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = dir.path().join("bad.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4054,FPC999999\n").unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--quiet", "--rate", "50"]),
        2,
    );
    assert!(stderr.contains("did not resolve"), "{stderr}");
    assert!(stderr.contains("FPC999999"), "{stderr}");
}

#[test]
fn no_colour_when_stderr_is_not_a_terminal() {
    // A portal that asks to slow down: warnings for sure (the faults alone
    // gave none in about one run of thirty).
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[&FAULTS[..], &["--rate-limit", "25"]].concat());
    let out = run_cmd(
        &sim,
        &input(dir.path()),
        &dir.path().join("out.age"),
        &public,
    )
    .args(["--yes", "--rate", "50", "--max-resets", "12"])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("WARN"), "warnings shown: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "an escape byte: {stderr:?}");
}

fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{stderr}"))
        })
        .collect()
}

/// A portal that asks to slow down: each 429 is a warning, a JSON line of
/// its own (`event` `log`, its pause as a field, flat), and the summary carries the
/// advice in `hint`, as a person's summary does.
#[test]
fn with_json_the_slow_downs_are_events_and_the_summary_hints_a_rate() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--rate-limit", "5", "--latency-ms", "5"]);
    let out = run_cmd(
        &sim,
        &input(dir.path()),
        &dir.path().join("out.age"),
        &public,
    )
    .args(["--yes", "--rate", "20", "--log-format", "json"])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = json_lines(&stderr);
    let slow_downs = lines
        .iter()
        .filter(|l| {
            l["event"] == "log"
                && l["level"] == "WARN"
                && l["message"].is_string()
                && l["pause_seconds"].is_number()
                && l.get("fields").is_none()
        })
        .count() as u64;
    let summary = lines.last().unwrap();
    let answered = summary["requests"]["answered_429"].as_u64().unwrap();
    assert!(answered > 0, "{stderr}");
    assert_eq!(slow_downs, answered, "one line a 429: {stderr}");
    let hint = summary["hint"]
        .as_str()
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(hint.contains("try --rate "), "{hint}");
}

#[test]
fn with_json_every_line_is_an_object_and_the_last_the_summary() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&FAULTS);
    let out = run_cmd(
        &sim,
        &input(dir.path()),
        &dir.path().join("out.age"),
        &public,
    )
    .args([
        "--yes",
        "--rate",
        "50",
        "--max-resets",
        "12",
        "--log-format",
        "json",
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = json_lines(&stderr);
    let licences: Vec<_> = lines.iter().filter(|l| l["event"] == "licence").collect();
    assert_eq!(licences.len(), 16, "one event per licence");
    assert!(licences.iter().all(|l| l["status"] == "reset"));
    assert!(
        lines
            .iter()
            .all(|l| l["event"].is_string() && l["timestamp"].is_string()),
        "each line says what it is: {stderr}"
    );
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary", "{stderr}");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["licences"]["reset"], 16);
    assert_eq!(summary["results"][0]["passwords"], 16);
    assert_eq!(summary["results"].as_array().unwrap().len(), 1);
    assert_eq!(summary["journal"], "removed");
    let total = summary["requests"]["total"].as_u64().unwrap();
    assert_eq!(
        total,
        summary["requests"]["login"].as_u64().unwrap()
            + summary["requests"]["resolve"].as_u64().unwrap()
            + summary["requests"]["reset"].as_u64().unwrap()
    );
    // Never a secret in the events.
    assert_no_clear_password(
        &sim.resets(),
        &[("stderr".into(), out.stderr.clone())],
        &sim.truth,
    );
}

#[test]
fn with_json_a_refusal_is_an_object_too() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "client_ref,licence\n4054,FPC 1\n").unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &bad, &dir.path().join("out.age"), &public).args([
            "--yes",
            "--log-format",
            "json",
        ]),
        2,
    );
    let lines = json_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(lines[0]["event"], "error");
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("malformed licence"),
        "{stderr}"
    );
}

/// A refusal's advice is the JSON error's `hint`, never inside `message`:
/// a machine shows the two apart.
#[test]
fn with_json_the_advice_is_the_hint_not_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let (_, public) = identity(dir.path());
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &[
                "--portal",
                "https://portal.example.net/",
                "--login",
                "x",
                "--rate",
                "0",
            ],
            "--rate 0: out of range",
            "give between 0.01 and 10000",
        ),
        (
            &[
                "--portal",
                "https://portal.example.net/",
                "--login",
                "x",
                "-r",
                "age1bogus",
            ],
            "invalid recipient",
            "give the public key",
        ),
        (
            &["--portal", "http://portal.example.net/", "--login", "x"],
            "plain http",
            "use https",
        ),
        (&["--login", "x"], "no portal address", "give --portal URL"),
        (
            &["--portal", "https://portal.example.net/"],
            "no portal login",
            "give --login L",
        ),
    ];
    for (args, what, hint) in cases {
        let out = Command::new(bin())
            .arg("run")
            .arg("--input")
            .arg(&input)
            .args(["-r", &public, "-o"])
            .arg(dir.path().join("out.age"))
            .args(["--yes", "--log-format", "json"])
            .args(args)
            .env("MYOPENIP_PASSWORD", "x")
            .env_remove("MYOPENIP_LOGIN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let lines = json_lines(&stderr);
        let message = lines[0]["message"].as_str().unwrap();
        assert!(message.contains(what), "{stderr}");
        assert!(!message.contains(hint), "advice in the message: {stderr}");
        assert!(
            lines[0]["hint"].as_str().is_some_and(|h| h.contains(hint)),
            "{stderr}"
        );
    }
    // An input's error too (the library's error says what, the binary
    // what to do).
    let out = Command::new(bin())
        .arg("run")
        .arg("--input")
        .arg(dir.path().join("nope.csv"))
        .args(["-r", &public, "-o"])
        .arg(dir.path().join("out.age"))
        .args(["--yes", "--log-format", "json"])
        .args(["--portal", "https://portal.example.net/", "--login", "x"])
        .env("MYOPENIP_PASSWORD", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = json_lines(&stderr);
    let message = lines[0]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot read the file") && !message.contains("hint"),
        "{stderr}"
    );
    assert_eq!(lines[0]["hint"], "check the input's path", "{stderr}");
}

/// The rate said is over the time requests were sent: a run that then
/// waited for a slow last answer says over what span (it read "20 s, 97
/// requests/s" for 11 requests).
#[test]
fn the_rate_said_names_its_span_when_the_run_mostly_waited() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--page-latency", "detail:FPC172910=3000"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172910\n").unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public).args(["--yes", "--rate", "50"]),
        0,
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("elapsed: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let number = |after: &str| -> f64 {
        line.split(after)
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let elapsed: f64 = line["elapsed: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let sending = number(" s of requests");
    assert!(sending < elapsed * 0.8, "{line}");
    let requests: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("portal requests: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let rate = number(" requests/s");
    assert!(
        ((requests - 1.0) / rate - sending).abs() < 0.15,
        "{requests} requests at {rate}/s in {sending} s: {line}"
    );
}

/// The JSON summary's `hint` holds what the person's summary advises
/// beside the stop and the files: a program reads it there (it was null
/// while the advice sat in `stopped` and `files`).
#[test]
fn with_json_the_hint_holds_the_advice_of_a_stop() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "client_ref,licence\n4054,FPC172910\n4054,FPC999999\n",
    )
    .unwrap();
    let out = run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
        .args(["--yes", "--rate", "50", "--log-format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let summary = json_lines(&stderr).pop().unwrap();
    let hint = summary["hint"]
        .as_str()
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(hint.contains("--skip-unresolved"), "{hint}");
    assert_eq!(summary["journal"], serde_json::Value::Null, "{stderr}");
}

/// A plan that did not find everything says so on its first line, as a
/// failed run does: rows that do not resolve, a login refused.
#[test]
fn a_plan_that_did_not_find_everything_says_so_first() {
    let Setup { dir, sim, .. } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "client_ref,licence\n4054,FPC172910\n4054,FPC999999\n",
    )
    .unwrap();
    let plan = |password: &str| {
        Command::new(bin())
            .args(["plan", "--input"])
            .arg(&input)
            .args(["--portal", &sim.url, "--login", LOGIN, "--rate", "100"])
            .env("MYOPENIP_PASSWORD", password)
            .env("XDG_STATE_HOME", &sim.state)
            .output()
            .unwrap()
    };
    let out = plan(PASSWORD);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("PLAN INCOMPLETE: 1 row did not resolve (exit 1)\n"),
        "{stderr}"
    );
    let out = plan("not-the-password");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("PLAN STOPPED before every row resolved (exit 2)\n"),
        "{stderr}"
    );
    // Why it stopped, once.
    assert_eq!(
        stderr.matches("the portal refused the login").count(),
        1,
        "{stderr}"
    );
}
