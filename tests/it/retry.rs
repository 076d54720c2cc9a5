//! After a partial run: its report fed back as the input retries exactly
//! what was not reset; and the CSV files people open in a spreadsheet.

use crate::common::*;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

fn statuses(report: &Path) -> Vec<(String, String)> {
    parse_csv(&std::fs::read(report).unwrap())
        .into_iter()
        .map(|r| (r["licence"].clone(), r["status"].clone()))
        .collect()
}

#[test]
fn a_report_fed_back_as_input_resets_exactly_what_was_not_reset() {
    // Half the Confirmer answers lost, one try each: some licences fail.
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--drop-rate", "0.5"]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "client_ref,licence\n4054,*\n4082,*\n4094,FPC999999\n",
    )
    .unwrap();
    let first_report = dir.path().join("first.csv");
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("first.age"), &public)
            .args([
                "--yes",
                "--skip-unresolved",
                "--rate",
                "100",
                "--canary",
                "0",
            ])
            .args(["--max-failures", "100", "--max-resets", "1", "--report"])
            .arg(&first_report),
        1,
    );
    let first = statuses(&first_report);
    let not_reset: HashSet<String> = first
        .iter()
        .filter(|(_, s)| s != "reset")
        .map(|(l, _)| l.clone())
        .collect();
    let reset = first.iter().filter(|(_, s)| s == "reset").count();
    assert!(
        not_reset.len() > 1 && reset > 0,
        "some failed, some not: {first:?}"
    );

    // The retry, on a portal without faults.
    let retry_sim = Sim::start(dir.path(), &[]);
    let output = dir.path().join("retry.age");
    let stderr = exits_with(
        run_cmd(&retry_sim, &first_report, &output, &public)
            .args(["--yes", "--skip-unresolved", "--rate", "100", "--report"])
            .arg(dir.path().join("retry.csv")),
        // The unknown licence still does not resolve.
        1,
    );
    assert!(
        stderr.contains(&format!(
            "input report: {reset} rows left out ({reset} reset by the earlier run, 0 duplicates)"
        )),
        "{stderr}"
    );
    let retried: HashSet<String> = retry_sim.resets().into_iter().map(|t| t.licence).collect();
    let mut expected = not_reset.clone();
    expected.remove("FPC999999");
    assert_eq!(retried, expected, "exactly the licences not reset before");
    assert_eq!(retry_sim.resets().len(), expected.len(), "each once");
    let rows = decrypt(&identity, &output);
    assert_eq!(rows.len(), expected.len());
}

#[test]
fn spreadsheets_open_the_excel_dialect_in_columns_and_run_no_formula() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--hostile-user-name", "=1+1"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args([
                "--yes",
                "--rate",
                "100",
                "--csv-dialect",
                "excel",
                "--report",
            ])
            .arg(&report),
        0,
    );
    let report_bytes = std::fs::read(&report).unwrap();
    assert!(report_bytes.starts_with(
        b"\xEF\xBB\xBFline;client_ref;service_ref;licence;sda;state;accountcode;status;"
    ));
    assert!(String::from_utf8_lossy(&report_bytes).contains("\r\n"));

    let decrypted = |dialect: &str| {
        let out = Command::new(bin())
            .args(["decrypt", "-i"])
            .arg(&identity)
            .args(["--csv-dialect", dialect])
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let excel = decrypted("excel");
    assert!(
        excel.starts_with("\u{feff}client_ref;service_ref;licence;"),
        "{excel}"
    );
    assert!(
        excel.contains(";\"=\"\"=1+1\"\"\";"),
        "the name as text: {excel}"
    );
    assert!(excel.contains("Licence simple"), "accents and words intact");
    // For scripts: byte-exact.
    let exact = decrypted("rfc4180");
    assert!(exact.starts_with("client_ref,service_ref,licence,"));
    assert!(exact.contains(",=1+1,"), "{exact}");
    let rows = parse_csv(exact.as_bytes());
    let truth = last_passwords(&sim.resets());
    for row in &rows {
        assert_eq!(row["password"], truth[&row["licence"]]);
    }
    // The Excel report reads back as an input: everything was reset, so
    // nothing is retried.
    let stderr = exits_with(
        run_cmd(&sim, &report, &dir.path().join("again.age"), &public)
            .args(["--yes", "--rate", "100"]),
        0,
    );
    assert!(stderr.contains("input report: 8 rows left out"), "{stderr}");
    assert_eq!(sim.resets().len(), 8, "nothing reset again");
}

#[test]
fn a_retry_never_resets_a_look_alike_phone_the_earlier_run_reset() {
    // Two phones alike in every column; the first's page is slow, so the
    // earlier run, interrupted, resets only the second.
    let mut ds =
        sip_rotate::sim::dataset::Dataset::generate(&sip_rotate::sim::dataset::DatasetSpec {
            seed: 1,
            clients: 12,
            licences_per_client: 8,
        });
    ds.plant_twins();
    ds.make_twins_identical();
    let (a, b) = (ds.licences[0].key.clone(), ds.licences[1].key.clone());
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[
        "--identical-twins",
        "--page-latency",
        &format!("detail:{a}=3000"),
    ]);
    let first = ds.clients[0].reference.clone();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, format!("client_ref,licence\n{first},*\n")).unwrap();
    let report = dir.path().join("first.csv");
    let mut first_run = run_cmd(&sim, &input, &dir.path().join("first.age"), &public)
        .args(["--yes", "--rate", "100", "--canary", "0", "--report"])
        .arg(&report)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !sim.resets().iter().any(|t| t.key == b) {
        assert!(
            std::time::Instant::now() < deadline,
            "the second look-alike never reset"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    signal(&first_run, "-TERM");
    assert_eq!(first_run.wait().unwrap().code(), Some(3));
    let resets = |key: &str| sim.resets().iter().filter(|t| t.key == key).count();
    assert_eq!((resets(&a), resets(&b)), (0, 1));
    // The report, with the rows not reset turned into a '*' row by hand
    // (an operator's quick fix): the '*' brings both look-alikes back.
    let text = std::fs::read_to_string(&report).unwrap();
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.contains(",skipped,") {
                let cells: Vec<&str> = l.split(',').collect();
                format!("{},{},,*,,,,unresolved,0,0,", cells[0], cells[1])
            } else {
                l.to_string()
            }
        })
        .collect();
    let edited_report = dir.path().join("edited.csv");
    std::fs::write(&edited_report, edited.join("\n") + "\n").unwrap();
    let retry = Sim::start(dir.path(), &["--identical-twins"]);
    exits_with(
        run_cmd(
            &retry,
            &edited_report,
            &dir.path().join("retry.age"),
            &public,
        )
        .args(["--yes", "--rate", "100"]),
        0,
    );
    // On the retry's portal, exactly the phones the earlier run did not
    // reset: the slow look-alike, never the other one.
    let done_before: HashSet<String> = sim.resets().into_iter().map(|t| t.key).collect();
    let mut retried: Vec<String> = retry.resets().into_iter().map(|t| t.key).collect();
    retried.sort();
    let mut expected: Vec<String> = (0..ds.licences.len())
        .filter(|&i| ds.client_of_service(ds.licences[i].service).reference == first)
        .map(|i| ds.licences[i].key.clone())
        .filter(|k| !done_before.contains(k))
        .collect();
    expected.sort();
    assert!(expected.contains(&a) && !expected.contains(&b));
    assert_eq!(retried, expected, "never the look-alike already reset");
}

/// A portal that fails every request: the run stops before any reset, and
/// the hint says that the portal failed, not the input, and to run again
/// (from the failure's typed cause).
#[test]
fn a_failing_portal_is_told_apart_from_bad_input() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--fail-rate", "1"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--rate", "100"]),
        2,
    );
    assert!(
        stderr.contains(
            "because the portal failed, not because of the input: run the same command again"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("--skip-unresolved"), "{stderr}");
    assert!(sim.resets().is_empty());
}

/// Rows that did not resolve because the portal failed their pages (every
/// users table answers 503): the stop says nothing was reset and sends the
/// operator to run again, not to fix the input or skip the rows.
#[test]
fn rows_the_portal_failed_to_show_are_not_the_input_s_to_fix() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--fail-page", "users"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let report = dir.path().join("report.csv");
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--rate", "100", "--report"])
            .arg(&report),
        2,
    );
    assert!(
        stderr.contains("stopped: 2 rows did not resolve: nothing was reset"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "2 rows did not go through because the portal failed, not because of the input"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("--skip-unresolved"), "{stderr}");
    assert!(sim.resets().is_empty());
    // Doing what it says, once the portal answers: the same command (the
    // report of a run that reset nothing stands in nobody's way).
    let healthy = Setup::new(&[]);
    let stderr = exits_with(
        run_cmd(
            &healthy.sim,
            &input,
            &dir.path().join("out.age"),
            &healthy.public,
        )
        .args(["--yes", "--rate", "100", "--report"])
        .arg(&report),
        0,
    );
    assert!(
        stderr.contains("done: every licence asked for was reset"),
        "{stderr}"
    );
}

/// A licence whose page the portal keeps failing, the others reset: the
/// hint sends the operator to the report, not to the same command (which
/// would reset the others again), and doing what it says resets the one
/// left, once.
#[test]
fn after_a_portal_failure_the_hint_retries_only_what_is_left() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--fail-page", "detail:FPC172911"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let report = dir.path().join("report.csv");
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--rate", "100", "--max-resets", "1", "--report"])
            .arg(&report),
        1,
    );
    let first = sim.resets().len();
    assert!(first > 0, "{stderr}");
    let hint = format!("the same command with --input {}", report.display());
    assert!(stderr.contains(&hint), "{stderr}");
    assert!(!stderr.contains("run the same command again"), "{stderr}");
    assert!(
        stderr.contains("another -o and another --report"),
        "{stderr}"
    );
    // Done as said, once the page answers: only the one left is reset.
    let healthy = Setup::new(&[]);
    exits_with(
        run_cmd(
            &healthy.sim,
            &report,
            &dir.path().join("out2.age"),
            &healthy.public,
        )
        .args(["--yes", "--rate", "100", "--max-resets", "1", "--report"])
        .arg(dir.path().join("report2.csv")),
        0,
    );
    let resets = healthy.sim.resets();
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert!(resets[0].key.contains("FPC172911"), "{resets:?}");
}

/// A canary whose licence the portal keeps failing before its Confirmer
/// (nothing sent) gives its place to the next licence: the rotation goes
/// on, and a resume that would take it first again finishes (found by a
/// helper: every resume took the same failing licence as its canary, and
/// stopped there). A portal failing licence after licence still stops the
/// run at its third canary, nothing reset.
#[test]
fn a_canary_failing_before_its_confirmer_gives_its_place_to_the_next_licence() {
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--fail-page", "detail:FPC172908"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    // Side by side: each failing licence is tried for some seconds.
    // (The worker that walks ahead to the gate takes one of them too.)
    let failing = Setup::new(&[
        "--fail-page",
        "detail:FPC172908",
        "--fail-page",
        "detail:FPC172910",
        "--fail-page",
        "detail:FPC172911",
        "--fail-page",
        "detail:FPC172913",
    ]);
    let stopping = run_cmd(
        &failing.sim,
        &input,
        &dir.path().join("none.age"),
        &failing.public,
    )
    .args(["--yes", "--rate", "100", "--concurrency", "1"])
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let stderr = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--concurrency", "1", "--report"])
            .arg(&report),
        1,
    );
    let truth = sim.resets();
    assert_eq!(truth.len(), 7, "{stderr}");
    assert_eq!(assert_exact_passwords(&identity, &output, &truth).len(), 7);
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r["status"] == "failed")
        .map(|r| r["licence"].clone())
        .collect();
    assert_eq!(failed, ["FPC172908"], "{stderr}");

    let out = stopping.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("find out why the canary failed"),
        "{stderr}"
    );
    assert!(failing.sim.resets().is_empty(), "{stderr}");
    // The third canary failed, and no fourth was tried.
    assert_eq!(
        stderr.matches("503 Service Unavailable").count(),
        3,
        "{stderr}"
    );
}

/// Every licence failed before its Confirmer, and nothing stopped the run
/// (--canary 0): nothing was reset, so no result is written, and the same
/// command run again, as the hint says, is not refused by a file of the
/// first run (helper-17: an empty result stood in the way).
#[test]
fn a_run_that_reset_nothing_leaves_nothing_in_the_way_of_its_rerun() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--fail-page", "detail:FPC172910"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172910\n").unwrap();
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let mut command = run_cmd(&sim, &input, &output, &public);
    command
        .args(["--yes", "--rate", "100", "--canary", "0", "--report"])
        .arg(&report);
    let said = exits_with(&mut command, 2);
    assert!(said.contains("run the same command again"), "{said}");
    assert!(!output.exists(), "{said}");
    let again = exits_with(&mut command, 2);
    assert!(!again.contains("exists already"), "{again}");
    assert!(sim.resets().is_empty());
}

/// A canary whose Confirmer was sent without a password shown stops the
/// run (exit 3); its report names that phone, so it is not replaced by the
/// next run: the advice says to give the report another name, and done so,
/// the run goes (helper-17: "run again" alone was refused by the report).
#[test]
fn a_canary_stopped_after_its_confirmer_says_how_to_run_again() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--fail-page", "confirm:FPC172910"]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "client_ref,licence\n4054,FPC172910\n4054,FPC172911\n",
    )
    .unwrap();
    let run = |output: &str, report: &str| {
        let mut c = run_cmd(&sim, &input, &dir.path().join(output), &public);
        c.args(["--yes", "--rate", "100", "--report"])
            .arg(dir.path().join(report));
        c
    };
    let said = exits_with(&mut run("a.age", "report.csv"), 3);
    assert!(
        said.contains("a report under a fixed name needs another"),
        "{said}"
    );
    let refused = exits_with(&mut run("b.age", "report.csv"), 2);
    assert!(refused.contains("exists already"), "{refused}");
    // As advised: the run goes (and stops at its canary again here).
    let again = exits_with(&mut run("c.age", "report-2.csv"), 3);
    assert!(!again.contains("exists already"), "{again}");
}
