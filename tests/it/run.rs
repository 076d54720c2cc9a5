//! `sip-rotate run` end to end: the real binary against the real simulator
//! over loopback, every password of the (decrypted) output checked against
//! the simulator's truth file, for both portal variants.

use crate::common::*;
use sip_rotate::sim::dataset::{Dataset, DatasetSpec};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

fn dataset() -> Dataset {
    Dataset::generate(&DatasetSpec {
        seed: 1,
        clients: 12,
        licences_per_client: 8,
    })
}

/// A client whose reference is a prefix of another's, and that other one.
fn prefix_pair(ds: &Dataset) -> (String, String) {
    for c in &ds.clients {
        if let Some(o) = ds
            .clients
            .iter()
            .find(|o| o.reference != c.reference && o.reference.starts_with(&c.reference))
        {
            return (c.reference.clone(), o.reference.clone());
        }
    }
    panic!("the dataset has no prefix pair");
}

fn licences_of_client(ds: &Dataset, client: &str) -> Vec<String> {
    ds.licences
        .iter()
        .filter(|l| ds.client_of_service(l.service).reference == client)
        .map(|l| l.reference.clone())
        .collect()
}

/// Input rows: one explicit licence of the short client, every licence of the
/// long one (`*`), one licence with its SDA to cross-check, one listed twice.
fn write_input(dir: &Path, ds: &Dataset) -> (std::path::PathBuf, HashSet<String>) {
    let (short, long) = prefix_pair(ds);
    let short_licences = licences_of_client(ds, &short);
    let with_sda = ds
        .licences
        .iter()
        .find(|l| {
            !l.sda.is_empty()
                && ds.client_of_service(l.service).reference != short
                && ds.client_of_service(l.service).reference != long
        })
        .unwrap();
    let sda_client = ds.client_of_service(with_sda.service).reference.clone();
    let dotted: String = with_sda.sda.replace(' ', ".");
    let text = format!(
        "client_ref,licence,sda\n{short},{},\n{long},*,\n{sda_client},{},{dotted}\n{short},{},\n",
        short_licences[0], with_sda.reference, short_licences[0]
    );
    let path = dir.join("input.csv");
    std::fs::write(&path, text).unwrap();
    let mut wanted: HashSet<String> = licences_of_client(ds, &long).into_iter().collect();
    wanted.insert(short_licences[0].clone());
    wanted.insert(with_sda.reference.clone());
    (path, wanted)
}

#[test]
fn every_requested_licence_is_reset_once_and_nothing_else_for_both_variants() {
    let ds = dataset();
    for variant in ["0", "1"] {
        let Setup {
            dir,
            sim,
            identity: id,
            public,
        } = Setup::new(&["--variant", variant, "--page-size", "3"]);
        let (input, wanted) = write_input(dir.path(), &ds);
        let output = dir.path().join("out.csv.age");
        let report = dir.path().join("report.csv");
        let out = run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--report"])
            .arg(&report)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "variant {variant}: {stderr}");

        let truth = sim.resets();
        let touched: Vec<&str> = truth.iter().map(|t| t.licence.as_str()).collect();
        assert_eq!(
            touched.len(),
            wanted.len(),
            "variant {variant}: one reset per licence, the duplicate row included"
        );
        assert_eq!(
            touched
                .iter()
                .map(|s| s.to_string())
                .collect::<HashSet<_>>(),
            wanted,
            "variant {variant}: no other licence touched"
        );

        let rows = decrypt(&id, &output);
        assert_eq!(rows.len(), wanted.len());
        let last = last_passwords(&truth);
        for row in &rows {
            assert_eq!(
                row["password"], last[&row["licence"]],
                "variant {variant}: password of {}",
                row["licence"]
            );
            let l = &ds.licences[ds.licence_index(&row["licence"]).unwrap()];
            assert_eq!(row["sda"].replace('.', " "), l.sda, "variant {variant}");
            assert_eq!(row["licence_type"], l.licence_type);
            assert_eq!(row["accountcode"], l.accountcode);
            assert_eq!(row["client_ref"], ds.client_of_service(l.service).reference);
        }
        assert!(
            !Path::new(&format!("{}.journal", output.display())).exists(),
            "the journal goes once the output is complete"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&output).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let report = parse_csv(&std::fs::read(&report).unwrap());
        assert_eq!(
            report.iter().filter(|r| r["status"] == "reset").count(),
            wanted.len()
        );
        assert_eq!(
            report.iter().filter(|r| r["status"] == "duplicate").count(),
            1
        );

        let mut everything = files_under(dir.path());
        everything.push(("stdout".into(), out.stdout.clone()));
        everything.push(("stderr".into(), out.stderr.clone()));
        assert_no_clear_password(&truth, &everything, &sim.truth);
    }
}

#[test]
fn a_row_that_does_not_resolve_stops_the_run_before_any_reset() {
    let ds = dataset();
    let (short, long) = prefix_pair(&ds);
    let foreign = licences_of_client(&ds, &long)[0].clone();
    let mine = licences_of_client(&ds, &short)[1].clone();
    for variant in ["0", "1"] {
        let Setup {
            dir, sim, public, ..
        } = Setup::new(&["--variant", variant, "--page-size", "3"]);
        let input = dir.path().join("in.csv");
        // The licence of client `long` asked under the client `short`, whose search also lists `long`.
        std::fs::write(
            &input,
            format!("client_ref,licence\n{short},{mine}\n{short},{foreign}\n"),
        )
        .unwrap();
        let output = dir.path().join("out.age");
        let report = dir.path().join("report.csv");
        let stderr = exits_with(
            run_cmd(&sim, &input, &output, &public)
                .args(["--yes", "--rate", "100", "--report"])
                .arg(&report),
            2,
        );
        assert!(stderr.contains("line 3"), "names the CSV line: {stderr}");
        assert!(stderr.contains(&foreign), "{stderr}");
        assert!(stderr.contains("add --skip-unresolved"), "{stderr}");
        assert!(sim.resets().is_empty(), "nothing reset");
        assert!(!output.exists());
        assert!(report.exists(), "the report says which row");

        // Followed as it says (the same command, --skip-unresolved added):
        // its report records no reset, and is replaced. The other row is
        // reset, and the exit code says some were not.
        exits_with(
            run_cmd(&sim, &input, &output, &public)
                .args(["--yes", "--rate", "100", "--skip-unresolved", "--report"])
                .arg(&report),
            1,
        );
        let truth = sim.resets();
        assert_eq!(
            truth.iter().map(|t| t.licence.as_str()).collect::<Vec<_>>(),
            vec![mine.as_str()]
        );
        let report = parse_csv(&std::fs::read(&report).unwrap());
        let statuses: HashMap<&str, &str> = report
            .iter()
            .map(|r| (r["licence"].as_str(), r["status"].as_str()))
            .collect();
        assert_eq!(statuses[mine.as_str()], "reset");
        assert_eq!(statuses[foreign.as_str()], "unresolved");
    }
}

#[test]
fn an_sda_that_does_not_match_the_portal_is_refused() {
    let ds = dataset();
    let l = ds.licences.iter().find(|l| !l.sda.is_empty()).unwrap();
    let client = &ds.client_of_service(l.service).reference;
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        format!(
            "client_ref;licence;sda\n{client};{};01 99 99 99 99\n",
            l.reference
        ),
    )
    .unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("o.age"), &public).arg("--yes"),
        2,
    );
    assert!(stderr.contains("SDA"), "{stderr}");
    assert!(!stderr.contains("leading 0"), "{stderr}");
    assert!(sim.resets().is_empty());
    // The same number, its leading 0 dropped as a spreadsheet drops it.
    let digits: String = l.sda.chars().filter(char::is_ascii_digit).collect();
    std::fs::write(
        &input,
        format!(
            "client_ref;licence;sda\n{client};{};{}\n",
            l.reference,
            digits.trim_start_matches('0')
        ),
    )
    .unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("o.age"), &public).arg("--yes"),
        2,
    );
    assert!(stderr.contains("its leading 0 is missing"), "{stderr}");
    assert!(sim.resets().is_empty());
}

#[test]
fn without_a_terminal_yes_is_required_and_a_refused_login_is_not_retried() {
    let ds = dataset();
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        format!("client_ref,licence\n{},*\n", ds.clients[0].reference),
    )
    .unwrap();
    let output = dir.path().join("o.age");
    let stderr = exits_with(&mut run_cmd(&sim, &input, &output, &public), 2);
    assert!(stderr.contains("--yes"), "{stderr}");

    let stderr = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--log-format", "json"])
            .env("MYOPENIP_PASSWORD", "wrong"),
        2,
    );
    assert!(stderr.contains("refused the login"), "{stderr}");
    assert!(!output.exists());
    // No journal to speak of: it never held a password.
    let summary: serde_json::Value = serde_json::from_str(
        stderr
            .lines()
            .rev()
            .find(|l| l.contains("\"summary\""))
            .expect(&stderr),
    )
    .unwrap();
    assert!(summary["journal"].is_null(), "{summary}");
    let counters = sim.stop();
    assert_eq!(
        counters["refused_logins"], 1,
        "one refused login, never retried"
    );
    assert_eq!(counters.get("resets").copied().unwrap_or(0), 0);
}

/// On a slow portal the sessions the rate needs start while the first one
/// logs in; they send the credentials only once the portal took the
/// first's. A wrong password reaches the portal once, not once a session.
#[test]
fn a_wrong_password_is_sent_once_whatever_the_sessions_the_rate_wants() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--latency-ms", "200", "--slow-refusal-ms", "2000"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n4021,*\n").unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("o.age"), &public)
            .args(["--yes", "--rate", "20", "--concurrency", "8"])
            .env("MYOPENIP_PASSWORD", "wrong"),
        2,
    );
    assert!(stderr.contains("refused the login"), "{stderr}");
    let served = sim.pages_served();
    let counters = sim.stop();
    assert_eq!(counters["refused_logins"], 1, "{served:?}");
    // Others did start: their login pages were asked for.
    assert!(
        served.iter().filter(|p| *p == "login").count() > 2,
        "{served:?}"
    );
}

/// A portal that answers a wrong password later than --timeout: the login
/// is not sent again (each try would be one more failed login against the
/// account: a helper saw three), and the run says what to check.
#[test]
fn a_login_left_unanswered_is_not_sent_again() {
    let Setup { dir, sim, .. } = Setup::new(&["--slow-refusal-ms", "4000"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172910\n").unwrap();
    let stderr = exits_with(
        plan_cmd(&sim, &input)
            .args(["--timeout", "1"])
            .env("MYOPENIP_PASSWORD", "wrong"),
        2,
    );
    assert!(
        stderr.contains("did not answer the login")
            && stderr.contains("check the login, the password"),
        "{stderr}"
    );
    // check logs in by a walk of its own: the same rule (helper-18).
    let checked = exits_with(
        check_cmd(&sim, &input)
            .args(["--timeout", "1"])
            .env("MYOPENIP_PASSWORD", "wrong"),
        2,
    );
    assert!(checked.contains("did not answer the login"), "{checked}");
    // In the browser, a login page that hangs is the same login left
    // unanswered, in both commands.
    let mut sent = 2;
    if have("chromium") {
        for command in [plan_cmd(&sim, &input), check_cmd(&sim, &input)] {
            let mut command = command;
            let said = exits_with(
                command
                    .args(["--timeout", "1", "--engine", "browser"])
                    .env("MYOPENIP_PASSWORD", "not-the-password"),
                2,
            );
            assert!(
                said.contains("did not answer the login")
                    && said.contains("the credentials were not sent again"),
                "{said}"
            );
            sent += 1;
        }
    }
    let counters = sim.stop();
    assert_eq!(counters["refused_logins"], sent, "{stderr}\n{checked}");
}

#[test]
fn plain_http_to_a_remote_portal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4021,FPC1\n").unwrap();
    let stderr = exits_with(
        Command::new(bin())
            .args(["run", "--input"])
            .arg(&input)
            .args([
                "--portal",
                "http://portal.example/",
                "--login",
                "x",
                "-r",
                "age1qhy4h0lyvgkt2p009ugrgc5ktnayvwjlqxcmz92hfwsxsu0ltfmse35ryq",
                "-o",
            ])
            .arg(dir.path().join("o.age"))
            .args(["--yes"])
            .env("MYOPENIP_PASSWORD", "x"),
        2,
    );
    assert!(stderr.contains("https"), "{stderr}");
}

#[test]
fn the_age_cli_decrypts_the_output() {
    let Ok(status) = Command::new("age").arg("--version").output() else {
        assert!(
            std::env::var_os("SIP_ROTATE_REQUIRE_AGE").is_none(),
            "the age CLI is required here: apt-get install age"
        );
        eprintln!(
            "the age CLI is not installed (apt-get install age): interoperability not checked"
        );
        return;
    };
    assert!(status.status.success());
    let ds = dataset();
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        format!(
            "client_ref,licence\n{},{}\n",
            ds.clients[2].reference,
            licences_of_client(&ds, &ds.clients[2].reference)[0]
        ),
    )
    .unwrap();
    let output = dir.path().join("o.age");
    let out = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--rate", "100"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&id)
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let rows = parse_csv(&plain.stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["password"], sim.resets()[0].password);
}

#[test]
fn plan_shows_what_run_would_reset_and_resets_nothing() {
    let ds = dataset();
    let (short, long) = prefix_pair(&ds);
    let Setup { dir, sim, .. } = Setup::new(&["--page-size", "3"]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        format!("client_ref,licence\n{long},*\n{short},FPC000001\n"),
    )
    .unwrap();
    let report = dir.path().join("plan.csv");
    let out = Command::new(bin())
        .args(["plan", "--input"])
        .arg(&input)
        .args([
            "--portal", &sim.url, "--login", LOGIN, "--rate", "100", "--report",
        ])
        .arg(&report)
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "one row does not resolve");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for licence in licences_of_client(&ds, &long) {
        assert!(stdout.contains(&format!("reset {licence} ")), "{stdout}");
    }
    assert!(stdout.contains("line 3: unresolved FPC000001"), "{stdout}");
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    assert_eq!(
        rows.iter().filter(|r| r["status"] == "planned").count(),
        licences_of_client(&ds, &long).len()
    );
    assert!(sim.resets().is_empty(), "plan resets nothing");
    assert_eq!(
        sim.stop().get("requests.reset").copied().unwrap_or(0),
        0,
        "not even Réinitialiser"
    );
}

#[test]
fn the_operator_profile_logs_in_as_an_operator() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--profile", "operateur", "--variant", "1"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4082,FPC173010\n").unwrap();
    let out = run_cmd(&sim, &input, &dir.path().join("a.age"), &public)
        .args(["--yes", "--rate", "100"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "the default profile (revendeur) is refused"
    );
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("b.age"), &public).args([
            "--yes",
            "--rate",
            "100",
            "--profile",
            "operateur",
        ]),
        0,
    );
    assert_eq!(sim.resets().len(), 1);
}

#[test]
fn the_demo_runs_the_sample_end_to_end() {
    let stderr = exits_with(
        Command::new(bin()).args(["demo", "--latency-ms", "5", "--rate", "200"]),
        0,
    );
    // Every row of samples/licences.csv resolves against the default dataset.
    assert!(stderr.contains("licences: 12 reset"), "{stderr}");
    assert!(
        stderr.contains("decrypt it with:") && stderr.contains("age -d -i"),
        "{stderr}"
    );
    assert!(
        stderr.contains("passwords masked") && stderr.contains("••••"),
        "{stderr}"
    );
    let folder = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("encrypted result:"))
        .map(|p| {
            std::path::PathBuf::from(p.trim())
                .parent()
                .unwrap()
                .to_path_buf()
        })
        .expect("the demo names its result");
    let rows = decrypt(
        &folder.join("identity.txt"),
        &folder.join("rotation.csv.age"),
    );
    assert_eq!(rows.len(), 12);
    for row in &rows {
        assert!(
            !stderr.contains(&row["password"]),
            "a password in clear on the terminal"
        );
    }
    std::fs::remove_dir_all(folder).unwrap();
}

#[test]
fn one_reference_shown_for_two_phones_is_never_resolved_silently() {
    let mut ds = dataset();
    ds.plant_twins();
    let first = ds.clients[0].reference.clone();
    let third = ds.clients[2].reference.clone();
    let twin = ds.licences[0].reference.clone();
    let across = ds
        .licences
        .iter()
        .find(|l| ds.client_of_service(l.service).reference == third)
        .unwrap();
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--twins"]);

    // Explicitly, the twin reference is ambiguous: nothing is reset.
    let input = dir.path().join("explicit.csv");
    std::fs::write(&input, format!("client_ref,licence\n{first},{twin}\n")).unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("none.age"), &public)
            .args(["--yes", "--rate", "50"]),
        2,
    );
    let twins: Vec<_> = ds.licences.iter().filter(|l| l.reference == twin).collect();
    assert_eq!(twins.len(), 2);
    assert!(stderr.contains("ambiguous"), "{stderr}");
    for t in &twins {
        assert!(
            stderr.contains(&t.sda),
            "every candidate is named: {stderr}"
        );
    }
    assert!(sim.resets().is_empty());

    // `*` resets both phones, and the same reference of another client is
    // another phone, not a duplicate.
    let input = dir.path().join("all.csv");
    std::fs::write(
        &input,
        format!(
            "client_ref,licence\n{first},*\n{third},{}\n",
            across.reference
        ),
    )
    .unwrap();
    let output = dir.path().join("out.age");
    exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "50"]),
        0,
    );
    let wanted: HashSet<String> = ds
        .licences
        .iter()
        .filter(|l| ds.client_of_service(l.service).reference == first)
        .chain([across])
        .map(|l| l.key.clone())
        .collect();
    let truth = sim.resets();
    let reset: HashSet<String> = truth.iter().map(|t| t.key.clone()).collect();
    assert_eq!(reset, wanted);
    assert_eq!(truth.len(), wanted.len(), "each phone once");
    // Each phone's row holds that phone's password, told apart by its SDA.
    let rows = decrypt(&identity, &output);
    assert_eq!(rows.len(), wanted.len());
    for t in &truth {
        let row = rows
            .iter()
            .find(|r| {
                r["licence"] == t.licence
                    && r["client_ref"] == t.client_ref
                    && sip_rotate::phone::same_number(&r["sda"], &t.sda)
            })
            .unwrap_or_else(|| panic!("no row for {} {}", t.licence, t.sda));
        assert_eq!(row["password"], t.password, "{}", t.key);
    }

    // With its SDA, the explicit row picks one of the twins.
    let input = dir.path().join("picked.csv");
    let picked = twins[1];
    std::fs::write(
        &input,
        format!("client_ref,licence,sda\n{first},{twin},{}\n", picked.sda),
    )
    .unwrap();
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("picked.age"), &public)
            .args(["--yes", "--rate", "50"]),
        0,
    );
    let last = sim.resets().pop().unwrap();
    assert_eq!(last.key, picked.key);
}

/// A portal that words a step otherwise: the failure's typed cause (a label
/// not found) brings the summary's hint to give a labels file.
#[test]
fn a_label_the_portal_words_otherwise_brings_the_labels_hint() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--label", "confirm_button=Valider"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let out = run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
        .args(["--yes", "--rate", "100"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("confirm_button"), "{stderr}");
    assert!(
        stderr.contains("hint: give the portal's words in a labels file"),
        "{stderr}"
    );
    assert!(sim.resets().is_empty());
}
