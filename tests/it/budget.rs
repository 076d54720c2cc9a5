//! The request budget of a run, counted by the simulator: per licence Détail,
//! Réinitialiser, Confirmer and the result page; per service Paramétrer,
//! Utilisateurs and its further pages; per client one search and its further
//! pages; per session one login and, for sessions that search, the way to
//! the search page. Nothing more.

use crate::common::*;
use sip_rotate::sim::dataset::{Dataset, DatasetSpec, METACENTREX};

fn pages(items: usize, page_size: usize) -> u64 {
    items.div_ceil(page_size).max(1) as u64
}

#[test]
fn a_run_spends_exactly_the_request_budget() {
    let page_size = 3;
    let ds = Dataset::generate(&DatasetSpec {
        seed: 1,
        clients: 12,
        licences_per_client: 8,
    });
    // Clients with two MetaCentrex services, a prefix pair, and a plain one.
    let clients = ["4054", "40542", "4082", "4094", "42011"];
    for client in clients {
        assert!(
            ds.clients.iter().any(|c| c.reference == client),
            "{client} is in the dataset"
        );
    }
    // Gated (resolution, then resets) and overlapped (--skip-unresolved): one budget.
    for (variant, mode) in [
        ("0", ""),
        ("1", ""),
        ("0", "--skip-unresolved"),
        ("1", "--skip-unresolved"),
    ] {
        let Setup {
            dir, sim, public, ..
        } = Setup::new(&["--variant", variant, "--page-size", &page_size.to_string()]);
        let input = dir.path().join("in.csv");
        let rows: String = clients.iter().map(|c| format!("{c},*\n")).collect();
        std::fs::write(&input, format!("client_ref,licence\n{rows}")).unwrap();
        let report = dir.path().join("report.csv");
        let out = run_cmd(&sim, &input, &dir.path().join("o.age"), &public)
            .args(["--yes", "--rate", "200", "--concurrency", "3", "--report"])
            .arg(&report)
            .args([mode].into_iter().filter(|m| !m.is_empty()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let counters = sim.stop();
        let count = |k: &str| counters.get(&format!("requests.{k}")).copied().unwrap_or(0);

        let services: Vec<usize> = (0..ds.services.len())
            .filter(|&s| {
                ds.services[s].service_type == METACENTREX
                    && clients.contains(&ds.client_of_service(s).reference.as_str())
            })
            .collect();
        let licences: u64 = services
            .iter()
            .map(|&s| ds.licences_of(s).len() as u64)
            .sum();
        // A search by reference lists every client whose reference starts with it.
        let search_pages: u64 = clients
            .iter()
            .map(|c| {
                let listed = (0..ds.services.len())
                    .filter(|&s| {
                        ds.services[s].service_type == METACENTREX
                            && ds.client_of_service(s).reference.starts_with(c)
                    })
                    .count();
                pages(listed, page_size)
            })
            .sum();
        let users_pages: u64 = services
            .iter()
            .map(|&s| pages(ds.licences_of(s).len(), page_size))
            .sum();
        // Post/Redirect/Get: the result page is the detail page in variant 0, the users page in variant 1.
        // And one detail page read ahead during resolution (`--engine auto`: would its reset need the browser?).
        let (detail, users) = if variant == "0" {
            (2 * licences + 1, users_pages)
        } else {
            (licences + 1, users_pages + licences)
        };

        let logins = counters["logins"];
        assert!(
            (1..=3).contains(&logins),
            "one login per session, at most --concurrency sessions: {logins}"
        );
        // The portal's address once: later sessions go straight to the
        // login page the first one found.
        assert_eq!(count("root"), 1);
        // The login page, then the form; a session that opened in the
        // run's last moment may have had its login page only (it sends
        // nothing once the run is over).
        assert!(
            (2 * logins..=2 * logins + 2).contains(&count("login")),
            "the login page, then the form: {counters:?}"
        );
        // Home after each login, but for that session's.
        assert!(
            (logins.saturating_sub(2)..=logins).contains(&count("home")),
            "{counters:?}"
        );
        assert_eq!(count("mes-services"), count("search"));
        assert!(
            count("search") <= logins,
            "the search page once per session that searches"
        );
        assert_eq!(
            count("results"),
            search_pages,
            "variant {variant} {mode}: one search per client and its further pages"
        );
        assert_eq!(
            count("service"),
            services.len() as u64,
            "variant {variant} {mode}: Paramétrer once per service"
        );
        assert_eq!(
            count("users"),
            users,
            "variant {variant} {mode}: users pages, once each"
        );
        assert_eq!(count("detail"), detail, "variant {variant} {mode}");
        assert_eq!(count("reset"), licences);
        assert_eq!(count("confirm"), licences);
        assert_eq!(counters["resets"], licences);
        // The report counts each licence's requests: Détail, Réinitialiser, Confirmer, result.
        let report = parse_csv(&std::fs::read(&report).unwrap());
        assert_eq!(report.len() as u64, licences);
        assert!(
            report.iter().all(|r| r["requests"] == "4"),
            "variant {variant} {mode}: 4 requests per licence"
        );
        // The client counts the same requests as the portal.
        assert!(
            stderr.contains(&format!("portal requests: {} ", counters["requests.total"])),
            "{stderr}{counters:?}"
        );
        // And the report's per-licence counts add up to the reset phase.
        let per_licence: u64 = report
            .iter()
            .map(|r| r["requests"].parse::<u64>().unwrap())
            .sum();
        assert!(
            stderr.contains(&format!(", reset {per_licence})")),
            "{stderr}"
        );
    }
}

/// A simulator of `clients` × `per_client` licences answering in about
/// `latency_ms`, and an input naming every one of them.
fn sized(latency_ms: u64, clients: usize, per_client: usize) -> (Setup, std::path::PathBuf, usize) {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset.csv");
    let sim = Sim::start(
        dir.path(),
        &[
            "--latency-ms",
            &latency_ms.to_string(),
            "--clients",
            &clients.to_string(),
            "--licences-per-client",
            &per_client.to_string(),
            "--dataset-out",
            dataset.to_str().unwrap(),
        ],
    );
    let (identity, public) = identity(dir.path());
    let rows = parse_csv(&std::fs::read(&dataset).unwrap());
    let mut text = String::from("client_ref,licence\n");
    for row in &rows {
        text += &format!("{},{}\n", row["client_ref"], row["licence"]);
    }
    let input = dir.path().join("in.csv");
    std::fs::write(&input, text).unwrap();
    let licences = rows.len();
    (
        Setup {
            dir,
            sim,
            identity,
            public,
        },
        input,
        licences,
    )
}

/// The number of sessions the summary says the run opened.
fn sessions_said(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("portal requests: "))
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the summary counts sessions: {stderr}"))
}

/// On a portal that answers well within the time between two requests one
/// session keeps up with the rate: every further login would be a request
/// the portal shares with people and an entry in its security log.
#[test]
fn a_fast_portal_gets_only_the_sessions_the_rate_needs() {
    let (
        Setup {
            dir, sim, public, ..
        },
        input,
        licences,
    ) = sized(20, 3, 20);
    assert_eq!(licences, 60);
    let report = dir.path().join("report.csv");
    let out = run_cmd(&sim, &input, &dir.path().join("o.age"), &public)
        .args(["--yes", "--rate", "20", "--concurrency", "8", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let counters = sim.stop();
    assert_eq!(counters["resets"], 60, "{stderr}");
    let logins = counters["logins"];
    assert!((1..=2).contains(&logins), "{logins} logins: {stderr}");
    assert_eq!(sessions_said(&stderr), logins, "{stderr}");
    let per_licence = counters["requests.total"] as f64 / 60.0;
    assert!(
        per_licence <= 4.5,
        "{per_licence} requests per licence: {stderr}"
    );
    // The rate said is the limiter's: never above the limit.
    let said: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("elapsed: "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("the summary says the rate: {stderr}"));
    assert!(said <= 20.0 * 1.001, "{said} requests/s: {stderr}");
    // Each reset names the login whose session confirmed it.
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    assert_eq!(rows.len(), 60);
    for row in &rows {
        let session: u64 = row["session"].parse().unwrap();
        assert!((1..=logins).contains(&session), "{row:?}");
    }
}

/// On a portal slower than the rate, sessions open up to --concurrency: the
/// open ones cannot fill the rate, and waiting would leave it unused.
#[test]
fn a_slow_portal_gets_sessions_up_to_the_concurrency() {
    // 200 ms an answer at 50 requests/s: ten sessions would be needed.
    let (
        Setup {
            dir, sim, public, ..
        },
        input,
        licences,
    ) = sized(200, 1, 16);
    let out = run_cmd(&sim, &input, &dir.path().join("o.age"), &public)
        .args(["--yes", "--rate", "50", "--concurrency", "4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let counters = sim.stop();
    assert_eq!(counters["resets"], licences as u64, "{stderr}");
    assert_eq!(counters["logins"], 4, "{stderr}");
    assert_eq!(sessions_said(&stderr), 4, "{stderr}");
}
