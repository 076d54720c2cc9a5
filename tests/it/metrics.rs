//! Metrics for scheduled runs: the file node_exporter's textfile collector
//! reads, parsed with a Prometheus text-format parser, its values checked
//! against the run's report, after a success and after an interruption.

use crate::common::*;
use prometheus_parse::{Scrape, Value};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

/// Every sample of the file, by `name` or `name{label=value}`, with its type.
fn scrape(path: &Path) -> HashMap<String, Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).unwrap();
    let sample_lines = text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(scrape.samples.len(), sample_lines, "every line parses");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Vec<String> = ["status", "phase", "exit_code"]
                .iter()
                .filter_map(|k| s.labels.get(k).map(|v| format!("{k}={v}")))
                .collect();
            labels.sort();
            let key = if labels.is_empty() {
                s.metric
            } else {
                format!("{}{{{}}}", s.metric, labels.join(","))
            };
            (key, s.value)
        })
        .collect()
}

fn gauge(m: &HashMap<String, Value>, key: &str) -> f64 {
    match m.get(key) {
        Some(Value::Gauge(v)) => *v,
        other => panic!("{key} is no gauge: {other:?}"),
    }
}

fn counter(m: &HashMap<String, Value>, key: &str) -> f64 {
    match m.get(key) {
        Some(Value::Counter(v)) => *v,
        other => panic!("{key} is no counter: {other:?}"),
    }
}

/// Rows of the report by status, and the reset requests they add up to.
fn report_counts(report: &Path) -> (HashMap<String, f64>, f64) {
    let rows = parse_csv(&std::fs::read(report).unwrap());
    let mut by_status = HashMap::new();
    let mut requests = 0.0;
    for r in &rows {
        *by_status.entry(r["status"].clone()).or_insert(0.0) += 1.0;
        requests += r["requests"].parse::<f64>().unwrap();
    }
    (by_status, requests)
}

fn check_against_report(m: &HashMap<String, Value>, report: &Path) {
    let (by_status, reset_requests) = report_counts(report);
    for status in ["reset", "failed", "unresolved", "duplicate", "skipped"] {
        assert_eq!(
            gauge(
                m,
                &format!("sip_rotate_last_run_licences{{status={status}}}")
            ),
            by_status.get(status).copied().unwrap_or(0.0),
            "{status}"
        );
    }
    assert_eq!(
        gauge(m, "sip_rotate_last_run_portal_requests{phase=reset}"),
        reset_requests
    );
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn the_metrics_of_a_success_then_of_an_interrupted_run() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--latency-ms", "20"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let metrics = dir.path().join("sip-rotate.prom");
    let report = dir.path().join("first.report.csv");
    let before = now().floor();
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("first.age"), &public)
            .args(["--yes", "--rate", "100", "--report"])
            .arg(&report)
            .arg("--metrics-file")
            .arg(&metrics),
        0,
    );
    let mode = std::fs::metadata(&metrics).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the collector, another user, reads it");
    let m = scrape(&metrics);
    check_against_report(&m, &report);
    assert_eq!(gauge(&m, "sip_rotate_last_run_exit_code"), 0.0);
    let start = gauge(&m, "sip_rotate_last_run_start_timestamp_seconds");
    let end = gauge(&m, "sip_rotate_last_run_end_timestamp_seconds");
    assert!(
        before <= start && start <= end && end <= now(),
        "{start} {end}"
    );
    let success = gauge(&m, "sip_rotate_last_success_timestamp_seconds");
    assert_eq!(success, end);
    assert_eq!(counter(&m, "sip_rotate_runs_total{exit_code=0}"), 1.0);
    assert_eq!(counter(&m, "sip_rotate_licences_total{status=reset}"), 16.0);
    let first_requests = counter(&m, "sip_rotate_portal_requests_total{phase=login}");
    assert_eq!(
        first_requests,
        gauge(&m, "sip_rotate_last_run_portal_requests{phase=login}")
    );

    // An interrupted run: its own numbers, the last success kept, counters on.
    let first_duration = gauge(&m, "sip_rotate_last_run_duration_seconds");
    let report = dir.path().join("second.report.csv");
    let resets_before = sim.resets().len();
    let child = run_cmd(&sim, &input, &dir.path().join("second.age"), &public)
        .args(["--yes", "--rate", "10", "--report"])
        .arg(&report)
        .arg("--metrics-file")
        .arg(&metrics)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_resets(&sim, resets_before + 3);
    signal(&child, "-INT");
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(3));
    let m = scrape(&metrics);
    check_against_report(&m, &report);
    assert_eq!(gauge(&m, "sip_rotate_last_run_exit_code"), 3.0);
    assert_eq!(
        gauge(&m, "sip_rotate_last_success_timestamp_seconds"),
        success,
        "the last success is the first run's"
    );
    // The second run's times (to the second: maybe the first's second).
    assert!(gauge(&m, "sip_rotate_last_run_start_timestamp_seconds") >= start);
    assert_ne!(
        gauge(&m, "sip_rotate_last_run_duration_seconds"),
        first_duration
    );
    assert_eq!(counter(&m, "sip_rotate_runs_total{exit_code=0}"), 1.0);
    assert_eq!(counter(&m, "sip_rotate_runs_total{exit_code=3}"), 1.0);
    let (by_status, _) = report_counts(&report);
    assert!(by_status["skipped"] > 0.0, "it was interrupted midway");
    assert_eq!(
        counter(&m, "sip_rotate_licences_total{status=reset}"),
        16.0 + by_status["reset"]
    );
    assert!(counter(&m, "sip_rotate_portal_requests_total{phase=login}") > first_requests);

    // Resumed: its report lists the earlier run's resets too, but the
    // metrics count only what this run did.
    let interrupted_resets = by_status["reset"];
    let report = dir.path().join("third.report.csv");
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("second.age"), &public)
            .args(["--yes", "--resume", "--rate", "100", "--report"])
            .arg(&report)
            .arg("--metrics-file")
            .arg(&metrics),
        0,
    );
    let m = scrape(&metrics);
    let (by_status, _) = report_counts(&report);
    assert_eq!(by_status["reset"], 16.0, "the report lists all 16");
    assert_eq!(
        gauge(&m, "sip_rotate_last_run_licences{status=reset}"),
        16.0 - interrupted_resets
    );
    assert_eq!(
        counter(&m, "sip_rotate_licences_total{status=reset}"),
        sim.resets().len() as f64,
        "one count per reset the portal made"
    );
}

#[test]
fn a_refused_run_is_counted_and_never_a_success() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC999999\n").unwrap();
    let metrics = dir.path().join("sip-rotate.prom");
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--metrics-file"])
            .arg(&metrics),
        2,
    );
    let m = scrape(&metrics);
    assert_eq!(gauge(&m, "sip_rotate_last_run_exit_code"), 2.0);
    assert_eq!(gauge(&m, "sip_rotate_last_success_timestamp_seconds"), 0.0);
    assert_eq!(
        gauge(&m, "sip_rotate_last_run_licences{status=unresolved}"),
        1.0
    );
    assert_eq!(counter(&m, "sip_rotate_runs_total{exit_code=2}"), 1.0);
}

#[test]
fn only_a_metrics_file_is_ever_replaced_and_never_through_a_link() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "not metrics\n").unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--metrics-file"])
            .arg(&other),
        2,
    );
    assert!(stderr.contains("not a sip-rotate metrics file"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "not metrics\n");
    let link = dir.path().join("link.prom");
    std::os::unix::fs::symlink(dir.path().join("elsewhere.prom"), &link).unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--metrics-file"])
            .arg(&link),
        2,
    );
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(!dir.path().join("elsewhere.prom").exists());
    // A pipe planted at the path is refused, never opened: opening it would
    // block the run (and every later one of a timer) before it starts.
    let fifo = dir.path().join("fifo.prom");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
        .args(["--yes", "--metrics-file"])
        .arg(&fifo)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the run blocked on a FIFO at the metrics path");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a sip-rotate metrics file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sim.pages_served().is_empty(), "refused before any request");
}
