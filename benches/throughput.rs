//! Whole runs against `sip-rotate sim`, measured: requests per licence,
//! elapsed time, achieved rate against `--rate`, CPU time per request and
//! peak memory of the `run` process, with the phases one after the other and
//! overlapped (`--skip-unresolved`), and, for comparison, the same resets
//! made one at a time, one process per licence, as a script would.
//!
//! cargo bench --bench throughput                      # the table of BENCHMARKS.md
//! cargo bench --bench throughput -- --sizes 100,1000  # fewer sizes
//! cargo bench --bench throughput -- --repeat 10      # the small run, ten times at 20 ms
//!                                                     # and three at 200 ms: the spread
//! SIP_ROTATE_BENCH_RUN=/path/to/older/sip-rotate cargo bench --bench throughput
//!                                   # the runs made by another build (before/after)
//!
//! Not a test: nothing here is run by CI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sip-rotate");
const LICENCES_PER_CLIENT: usize = 50;
const PAGE_SIZE: &str = "25";

/// The binary whose `run` is measured: this build, or the one named by
/// SIP_ROTATE_BENCH_RUN (an earlier build, for before/after figures). The
/// simulator is always this build's.
fn run_bin() -> String {
    std::env::var("SIP_ROTATE_BENCH_RUN").unwrap_or_else(|_| BIN.to_string())
}

struct Scenario {
    name: &'static str,
    licences: usize,
    licences_per_client: usize,
    latency_ms: u64,
    rate: f64,
    concurrency: usize,
    /// `--skip-unresolved`: resets start while other clients still resolve.
    overlapped: bool,
}

struct Row {
    scenario: String,
    licences: usize,
    requests: u64,
    /// Logins the simulator accepted: the sessions the run opened.
    logins: u64,
    elapsed: Duration,
    rate: f64,
    bound: String,
    cpu: Duration,
    peak_rss_kib: i64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--sizes")
        .map(|i| {
            args[i + 1]
                .split(',')
                .map(|s| s.parse().expect("--sizes 100,1000"))
                .collect()
        })
        .unwrap_or_else(|| vec![100, 1000, 20_000]);
    let baseline: usize = args
        .iter()
        .position(|a| a == "--baseline")
        .map(|i| args[i + 1].parse().unwrap())
        .unwrap_or(50);

    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        let times: usize = args[i + 1].parse().expect("--repeat N");
        repeated(times);
        return;
    }

    let mut rows = Vec::new();
    // A small run on a portal faster than the rate: one or two sessions
    // fill 20 requests per second; more would be logins for nothing.
    rows.push(run(&Scenario {
        name: "small, fast portal",
        licences: 60,
        licences_per_client: 20,
        latency_ms: 20,
        rate: 20.0,
        concurrency: 8,
        overlapped: false,
    }));
    for &n in &sizes {
        // The rate limit is the bottleneck: latency x rate (10) < concurrency (16).
        // Resolution then resets, and (up to 1,000) the two overlapped.
        for overlapped in [false, true] {
            if overlapped && n > 1000 {
                continue;
            }
            rows.push(run(&Scenario {
                name: "rate-bound",
                licences: n,
                licences_per_client: LICENCES_PER_CLIENT,
                latency_ms: 50,
                rate: 200.0,
                concurrency: 16,
                overlapped,
            }));
        }
    }
    // The portal is the bottleneck: latency x rate (40) > concurrency (8); at best 8 / 0.1 s = 80 requests/s.
    for overlapped in [false, true] {
        rows.push(run(&Scenario {
            name: "portal-bound",
            licences: 1000,
            licences_per_client: LICENCES_PER_CLIENT,
            latency_ms: 100,
            rate: 400.0,
            concurrency: 8,
            overlapped,
        }));
    }
    let sequential = one_at_a_time(baseline, 50, 200.0);

    println!();
    println!(
        "| scenario | licences | requests/licence | logins | elapsed | achieved rate / bound | CPU ms/request | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows.iter().chain(std::iter::once(&sequential)) {
        let achieved = r.requests as f64 / r.elapsed.as_secs_f64();
        println!(
            "| {} | {} | {:.2} | {} | {:.1} s | {:.1}/s / {} ({:.0}%) | {:.3} | {:.1} MiB |",
            r.scenario,
            r.licences,
            r.requests as f64 / r.licences as f64,
            r.logins,
            r.elapsed.as_secs_f64(),
            achieved,
            r.bound,
            100.0 * achieved / r.rate,
            r.cpu.as_secs_f64() * 1000.0 / r.requests as f64,
            r.peak_rss_kib as f64 / 1024.0
        );
    }
    println!();
    println!(
        "one at a time: {:.2} s per licence; 1,000 licences would take {:.0} s",
        sequential.elapsed.as_secs_f64() / sequential.licences as f64,
        sequential.elapsed.as_secs_f64() / sequential.licences as f64 * 1000.0
    );
}

/// The small run repeated: `times` runs on a 20 ms portal and three on a
/// 200 ms one, each 60 licences at `--rate 20 --concurrency 8`; the spread
/// of the rate used (over the whole process), logins, requests a licence.
fn repeated(times: usize) {
    for (latency_ms, times) in [(20, times), (200, 3)] {
        let scenario = Scenario {
            name: "small",
            licences: 60,
            licences_per_client: 20,
            latency_ms,
            rate: 20.0,
            concurrency: 8,
            overlapped: false,
        };
        let rows: Vec<Row> = (0..times).map(|_| run(&scenario)).collect();
        let mut fractions: Vec<f64> = rows
            .iter()
            .map(|r| r.requests as f64 / r.elapsed.as_secs_f64() / r.rate)
            .collect();
        let mut logins: Vec<u64> = rows.iter().map(|r| r.logins).collect();
        let mut per_licence: Vec<f64> = rows
            .iter()
            .map(|r| r.requests as f64 / r.licences as f64)
            .collect();
        fractions.sort_by(f64::total_cmp);
        logins.sort();
        per_licence.sort_by(f64::total_cmp);
        let each: Vec<String> = rows
            .iter()
            .map(|r| {
                // Three decimals: a run at 0.895 must not read 0.90
                // against a criterion of 0.9.
                format!(
                    "{:.3}",
                    r.requests as f64 / r.elapsed.as_secs_f64() / r.rate
                )
            })
            .collect();
        println!(
            "| {latency_ms} ms | {times} | {:.3} / {:.3} / {:.3} | {} / {} / {} | {:.2} / {:.2} | {} |",
            fractions[0],
            fractions[times / 2],
            fractions[times - 1],
            logins[0],
            logins[times / 2],
            logins[times - 1],
            per_licence[0],
            per_licence[times - 1],
            each.join(" ")
        );
    }
}

struct Sim {
    child: Child,
    url: String,
}

fn start_sim(
    dir: &Path,
    licences: usize,
    per_client: usize,
    latency_ms: u64,
    rate_limit: u64,
) -> Sim {
    let clients = licences.div_ceil(per_client).to_string();
    let mut child = Command::new(BIN)
        .args(["sim", "--listen", "127.0.0.1:0", "--clients", &clients])
        .args([
            "--licences-per-client",
            &per_client.to_string(),
            "--page-size",
            PAGE_SIZE,
        ])
        .args([
            "--latency-ms",
            &latency_ms.to_string(),
            "--rate-limit",
            &rate_limit.to_string(),
        ])
        .arg("--dataset-out")
        .arg(dir.join("dataset.csv"))
        .arg("--truth")
        .arg(dir.join("truth.jsonl"))
        .env("SIM_LOGIN", "bench")
        .env("SIM_PASSWORD", "bench")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = format!("{}/", line.trim().strip_prefix("listening on ").unwrap());
    Sim { child, url }
}

fn stop_sim(mut sim: Sim) -> String {
    Command::new("kill")
        .args(["-TERM", &sim.child.id().to_string()])
        .status()
        .unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut sim.child.stderr.take().unwrap(), &mut err).unwrap();
    sim.child.wait().unwrap();
    err
}

fn write_input(dir: &Path, licences: usize, skip: usize) -> PathBuf {
    let dataset = std::fs::read_to_string(dir.join("dataset.csv")).unwrap();
    let mut text = String::from("client_ref,licence\n");
    for line in dataset.lines().skip(1 + skip).take(licences) {
        let f: Vec<&str> = line.split(',').collect();
        text += &format!("{},{}\n", f[0], f[2]);
    }
    let path = dir.join(format!("input-{skip}.csv"));
    std::fs::write(&path, text).unwrap();
    path
}

fn identity(dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["keygen", "-o"])
        .arg(dir.join("id.txt"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run_flags(rate: f64, concurrency: usize, overlapped: bool) -> Vec<String> {
    let mut flags = vec![
        "--rate".to_string(),
        rate.to_string(),
        "--concurrency".to_string(),
        concurrency.to_string(),
    ];
    if overlapped {
        flags.push("--skip-unresolved".into());
    }
    flags
}

/// Runs `sip-rotate run`, waits with wait4 for its CPU time and peak RSS.
// wait4 reaps the child, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn measured_run(
    sim: &Sim,
    dir: &Path,
    input: &Path,
    output: &str,
    public: &str,
    flags: &[String],
) -> (Duration, Duration, i64, u64) {
    let stderr_path = dir.join(format!("{output}.stderr"));
    let started = Instant::now();
    let child = Command::new(run_bin())
        .args(["run", "--yes", "--canary", "1", "--input"])
        .arg(input)
        .args(["--portal", &sim.url, "--login", "bench", "-r", public, "-o"])
        .arg(dir.join(output))
        .args(flags)
        .env("MYOPENIP_PASSWORD", "bench")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's, not yet reaped; the pointers are valid for the call.
    let reaped = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(reaped, child.id() as libc::pid_t);
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "run failed: {stderr}"
    );
    let requests: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("portal requests: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the summary counts requests");
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (
        elapsed,
        tv(usage.ru_utime) + tv(usage.ru_stime),
        usage.ru_maxrss,
        requests,
    )
}

fn run(s: &Scenario) -> Row {
    eprintln!(
        "{}: {} licences, latency {} ms, --rate {}, --concurrency {}{}...",
        s.name,
        s.licences,
        s.latency_ms,
        s.rate,
        s.concurrency,
        if s.overlapped {
            ", --skip-unresolved"
        } else {
            ""
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(
        dir.path(),
        s.licences,
        s.licences_per_client,
        s.latency_ms,
        (s.rate * 1.5) as u64,
    );
    let input = write_input(dir.path(), s.licences, 0);
    let public = identity(dir.path());
    let (elapsed, cpu, rss, requests) = measured_run(
        &sim,
        dir.path(),
        &input,
        "out.age",
        &public,
        &run_flags(s.rate, s.concurrency, s.overlapped),
    );
    let counters = stop_sim(sim);
    let logins = counter(&counters, "logins");
    let resets = std::fs::read_to_string(dir.path().join("truth.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(resets, s.licences, "each licence reset once");
    assert!(
        counters.contains("too_many_requests: 0"),
        "no 429: {counters}"
    );
    let portal_bound = s.concurrency as f64 / (s.latency_ms as f64 / 1000.0);
    let (bound, rate) = if portal_bound < s.rate {
        (
            format!("{portal_bound:.0}/s (concurrency / latency)"),
            portal_bound,
        )
    } else {
        (format!("{:.0}/s (--rate)", s.rate), s.rate)
    };
    Row {
        scenario: if s.overlapped {
            format!("{}, overlapped", s.name)
        } else {
            s.name.into()
        },
        licences: s.licences,
        requests,
        logins,
        elapsed,
        rate,
        bound,
        cpu,
        peak_rss_kib: rss,
    }
}

/// The same resets, one licence per run, one run after the other: each logs
/// in, searches, walks the users table and resets, as a script would.
fn one_at_a_time(licences: usize, latency_ms: u64, rate: f64) -> Row {
    eprintln!("one at a time: {licences} licences, latency {latency_ms} ms...");
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(
        dir.path(),
        licences,
        LICENCES_PER_CLIENT,
        latency_ms,
        (rate * 1.5) as u64,
    );
    let public = identity(dir.path());
    let (mut elapsed, mut cpu, mut rss, mut requests) = (Duration::ZERO, Duration::ZERO, 0, 0);
    for i in 0..licences {
        let input = write_input(dir.path(), 1, i);
        let (e, c, r, q) = measured_run(
            &sim,
            dir.path(),
            &input,
            &format!("out-{i}.age"),
            &public,
            &run_flags(rate, 1, false),
        );
        elapsed += e;
        cpu += c;
        rss = rss.max(r);
        requests += q;
    }
    let logins = counter(&stop_sim(sim), "logins");
    Row {
        scenario: "one at a time".into(),
        licences,
        requests,
        logins,
        elapsed,
        rate,
        bound: format!("{rate:.0}/s (--rate)"),
        cpu,
        peak_rss_kib: rss,
    }
}

/// A counter of the simulator's closing lines (`name: value`).
fn counter(counters: &str, name: &str) -> u64 {
    counters
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("the simulator counts {name}: {counters}"))
}
