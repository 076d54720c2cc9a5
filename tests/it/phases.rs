//! When resets may start: with `--skip-unresolved --yes` nothing needs the
//! whole resolution first, so a client's licences are reset while other
//! clients still resolve; otherwise (the all-or-nothing check, or a question
//! to answer) no `Confirmer` is sent before the last page of resolution,
//! though on a slow portal the canary walks up to it meanwhile. The order
//! is read from the simulator's access log.

use crate::common::*;
use sip_rotate::sim::dataset::{Dataset, DatasetSpec, METACENTREX};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

fn dataset() -> Dataset {
    Dataset::generate(&DatasetSpec {
        seed: 1,
        clients: 12,
        licences_per_client: 8,
    })
}

/// Every MetaCentrex licence of the dataset: what `*` on every client asks for.
fn every_licence(ds: &Dataset) -> HashSet<String> {
    ds.licences
        .iter()
        .filter(|l| ds.services[l.service].service_type == METACENTREX)
        .map(|l| l.reference.clone())
        .collect()
}

/// `*` for every client of the dataset, then `extra` rows.
fn write_input(dir: &Path, ds: &Dataset, extra: &str) -> PathBuf {
    let path = dir.join("in.csv");
    let rows: String = ds
        .clients
        .iter()
        .map(|c| format!("{},*\n", c.reference))
        .collect();
    std::fs::write(&path, format!("client_ref,licence\n{rows}{extra}")).unwrap();
    path
}

/// Pages that belong to resolution: search results, Paramétrer, users tables.
/// (In variant 0 the users table is never the page after a reset.)
fn is_resolution(kind: &str) -> bool {
    matches!(kind, "results" | "service" | "users")
}

/// Resolution pages served after the first `Confirmer`.
fn resolution_after_first_reset(pages: &[String]) -> usize {
    let first = pages
        .iter()
        .position(|k| k == "confirm")
        .expect("a reset was confirmed");
    pages[first..].iter().filter(|k| is_resolution(k)).count()
}

/// Every licence of the output has the password the portal gave it last, and
/// every licence the portal reset is in the output, once.
fn assert_output_matches_truth(sim: &Sim, identity: &Path, output: &Path) -> HashSet<String> {
    let truth = sim.resets();
    let last = last_passwords(&truth);
    assert_eq!(last.len(), truth.len(), "no licence reset twice");
    let rows = decrypt(identity, output);
    assert_eq!(rows.len(), truth.len());
    for row in &rows {
        assert_eq!(row["password"], last[&row["licence"]], "{}", row["licence"]);
    }
    last.into_keys().collect()
}

#[test]
fn with_skip_unresolved_and_yes_resets_start_while_other_clients_resolve() {
    let ds = dataset();
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--variant", "0", "--page-size", "2"]);
    // A client that does not exist, and a licence asked twice (already under `*`).
    let twice = ds
        .licences
        .iter()
        .find(|l| ds.services[l.service].service_type == METACENTREX)
        .unwrap();
    let twice_client = &ds.client_of_service(twice.service).reference;
    let extra = format!("99999,*\n{twice_client},{}\n", twice.reference);
    let input = write_input(dir.path(), &ds, &extra);
    let (unknown_line, twice_line) = (ds.clients.len() as u64 + 2, ds.clients.len() as u64 + 3);
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let out = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--skip-unresolved", "--rate", "400"])
        .args(["--concurrency", "2", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "one row unresolved: {stderr}");

    // Exactly the licences asked for, each reset once, each password in the output.
    let reset = assert_output_matches_truth(&sim, &identity, &output);
    assert_eq!(reset, every_licence(&ds));

    let report = parse_csv(&std::fs::read(&report).unwrap());
    let status_of_line = |line: u64| -> Vec<&str> {
        report
            .iter()
            .filter(|r| r["line"] == line.to_string())
            .map(|r| r["status"].as_str())
            .collect()
    };
    assert_eq!(status_of_line(unknown_line), ["unresolved"]);
    assert_eq!(status_of_line(twice_line), ["duplicate"]);
    assert_eq!(
        report.iter().filter(|r| r["status"] == "reset").count(),
        reset.len()
    );
    let lines: Vec<u64> = report.iter().map(|r| r["line"].parse().unwrap()).collect();
    assert!(lines.is_sorted(), "the report is in input order");

    let pages = sim.pages_served();
    assert!(
        resolution_after_first_reset(&pages) > 0,
        "the first reset waited for the whole resolution: {pages:?}"
    );
}

#[test]
fn without_skip_unresolved_no_reset_is_confirmed_before_resolution_ends() {
    let ds = dataset();
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--variant", "0", "--page-size", "2"]);
    let input = write_input(dir.path(), &ds, "");
    let output = dir.path().join("out.age");
    exits_with(
        run_cmd(&sim, &input, &output, &public).args([
            "--yes",
            "--rate",
            "400",
            "--concurrency",
            "2",
        ]),
        0,
    );
    let reset = assert_output_matches_truth(&sim, &identity, &output);
    assert_eq!(reset, every_licence(&ds));
    let pages = sim.pages_served();
    assert_eq!(
        resolution_after_first_reset(&pages),
        0,
        "all or nothing: resolution ends before the first Confirmer"
    );
    let kinds: HashMap<&str, usize> = pages.iter().fold(HashMap::new(), |mut m, k| {
        *m.entry(k.as_str()).or_default() += 1;
        m
    });
    assert_eq!(kinds["confirm"], reset.len());
}

/// A signal while other clients still resolve stops both phases: the resets
/// in flight finish and are journaled, the clients not yet read are reported
/// as skipped, and `--resume` resets each remaining licence once.
#[test]
fn a_signal_stops_resolution_too_and_resume_finishes() {
    let ds = dataset();
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--variant", "1", "--page-size", "1"]);
    let input = write_input(dir.path(), &ds, "");
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let flags = ["--yes", "--skip-unresolved", "--rate", "100"];
    let child = run_cmd(&sim, &input, &output, &public)
        .args(flags)
        .arg("--report")
        .arg(&report)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The canary is done after the first client's pages; a hundred more
    // pages of resolution remain.
    wait_for_resets(&sim, 1);
    signal(&child, "-TERM");
    let stopped = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(3), "{stderr}");
    assert!(!output.exists(), "nothing under the output's name");

    let rows = parse_csv(&std::fs::read(&report).unwrap());
    let lines: HashSet<&str> = rows.iter().map(|r| r["line"].as_str()).collect();
    assert_eq!(
        lines.len(),
        ds.clients.len(),
        "every input line is reported"
    );
    assert!(
        rows.iter()
            .any(|r| r["status"] == "skipped" && r["detail"].contains("not resolved")),
        "resolution stopped with the run: {rows:?}"
    );
    // Every password the portal gave is in the journal and in the part file.
    let journal = PathBuf::from(format!("{}.journal", output.display()));
    let part = PathBuf::from(format!("{}.part1", output.display()));
    let last = last_passwords(&sim.resets());
    for file in [&journal, &part] {
        let got: HashMap<String, String> = decrypt(&identity, file)
            .into_iter()
            .map(|r| (r["licence"].clone(), r["password"].clone()))
            .collect();
        assert_eq!(got, last, "{}", file.display());
    }

    exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(flags)
            .arg("--resume"),
        0,
    );
    let truth = sim.resets();
    let last = last_passwords(&truth);
    assert_eq!(truth.len(), last.len(), "no licence reset twice");
    assert_eq!(
        last.keys().cloned().collect::<HashSet<_>>(),
        every_licence(&ds)
    );
    let mut found = decrypt(&identity, &output);
    found.extend(decrypt(&identity, &part));
    assert_eq!(found.len(), truth.len());
    for row in &found {
        assert_eq!(row["password"], last[&row["licence"]]);
    }
    assert_no_clear_password(&truth, &files_under(dir.path()), &sim.truth);
}

/// On a portal slow enough to need several sessions, the canary walks up to
/// its `Confirmer` while resolution goes on, and waits there: a row left
/// unresolved stops the run before that press (nothing reset), and a
/// resolution that ends well lets it go (each licence reset once).
#[test]
fn on_a_slow_portal_the_canary_waits_at_its_confirmer_for_the_whole_resolution() {
    let ds = dataset();
    let fast = &ds.clients[0].reference;
    // The other client's users tables come slowly: resolution ends late.
    let slow = ds
        .clients
        .iter()
        .enumerate()
        .skip(1)
        .find(|(i, _)| {
            ds.services
                .iter()
                .any(|s| s.client == *i && s.service_type == METACENTREX)
        })
        .map(|(_, c)| c.reference.clone())
        .unwrap();
    let mut sim_args: Vec<String> = ["--latency-ms", "60"].map(String::from).to_vec();
    for s in ds
        .services
        .iter()
        .filter(|s| ds.clients[s.client].reference == slow)
    {
        sim_args.push("--page-latency".into());
        sim_args.push(format!("users:{}=1500", s.reference));
    }
    let sim_args: Vec<&str> = sim_args.iter().map(String::as_str).collect();
    let run = |extra: &str| {
        let Setup {
            dir,
            sim,
            identity,
            public,
        } = Setup::new(&sim_args);
        let input = dir.path().join("in.csv");
        std::fs::write(
            &input,
            format!("client_ref,licence\n{fast},*\n{slow},*\n{extra}"),
        )
        .unwrap();
        let output = dir.path().join("out.age");
        let out = run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "50", "--concurrency", "4"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr, sim, identity, output, dir)
    };

    // A row that does not resolve, known only at the end of resolution.
    let (code, stderr, sim, _, output, _dir) = run(&format!("{slow},FPC999999\n"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("did not resolve"), "{stderr}");
    assert!(sim.resets().is_empty(), "nothing reset");
    let pages = sim.pages_served();
    assert!(
        pages.iter().any(|k| k == "reset"),
        "the canary walked ahead to its Confirmer: {pages:?}"
    );
    assert!(!pages.iter().any(|k| k == "confirm"), "{pages:?}");
    assert!(!output.exists());

    // Every row resolves: the press goes once resolution is in.
    let (code, stderr, sim, identity, output, _dir) = run("");
    assert_eq!(code, Some(0), "{stderr}");
    let reset = assert_output_matches_truth(&sim, &identity, &output);
    let wanted: HashSet<String> = ds
        .licences
        .iter()
        .filter(|l| ds.services[l.service].service_type == METACENTREX)
        .filter(|l| [fast, &slow].contains(&&ds.client_of_service(l.service).reference))
        .map(|l| l.reference.clone())
        .collect();
    assert_eq!(reset, wanted);
    let pages = sim.pages_served();
    assert_eq!(resolution_after_first_reset(&pages), 0, "{pages:?}");
}
