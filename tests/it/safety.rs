//! Safe by construction: what an attacker or an unlucky operator did to
//! the promises, done again. One gate for the press that may commit a reset
//! (whatever the labels say), one scrubber for whatever is written (pages
//! that show a password again, tokens in links and `<meta>`), one rule for
//! what is sent again after `Confirmer`, every file name tried before the
//! first request, and no secret echoed by an error.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn input(dir: &Path, rows: &str) -> PathBuf {
    let path = dir.join("in.csv");
    std::fs::write(&path, format!("client_ref,licence\n{rows}")).unwrap();
    path
}

fn labels(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("labels.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The lines of the simulator's `--handed-out` file: every session id,
/// form token and new password it gave.
fn handed_out(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, v)| v.to_string()))
        .collect()
}

fn assert_none_in(secrets: &[String], files: &[(PathBuf, Vec<u8>)]) {
    for (path, bytes) in files {
        let text = String::from_utf8_lossy(bytes);
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{secret} in {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_reset_button_worded_like_confirmer_is_refused_before_any_request() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--shape", "dialog"]);
    let labels = labels(dir.path(), "reset_button = \"Confirmer\"\n");
    let input = input(dir.path(), "4054,*\n");
    let stderr = exits_with(check_cmd(&sim, &input).arg("--labels").arg(&labels), 2);
    assert!(
        stderr.contains("reset_button and confirm_button"),
        "{stderr}"
    );
    let output = dir.path().join("out.age");
    let stderr = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--labels"])
            .arg(&labels),
        2,
    );
    assert!(
        stderr.contains("reset_button and confirm_button"),
        "{stderr}"
    );
    assert!(sim.pages_served().is_empty(), "{:?}", sim.pages_served());
    assert!(sim.resets().is_empty());
    assert!(!output.exists());
}

#[test]
fn no_command_presses_a_button_on_a_page_that_shows_the_confirmation() {
    // The portal words its confirm button "Valider", shown in a dialog of
    // the detail page; the operator took it for the reset button. The
    // labels do not clash, but the press is on a page that shows the
    // confirmation: the gate refuses it in check and in run alike.
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--shape", "dialog", "--label", "confirm_button=Valider"]);
    let labels = labels(dir.path(), "reset_button = \"Valider\"\n");
    let input = input(dir.path(), "4054,*\n");
    let stderr = exits_with(check_cmd(&sim, &input).arg("--labels").arg(&labels), 2);
    assert!(stderr.contains("may commit a reset"), "{stderr}");
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let stderr = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--labels"])
            .arg(&labels)
            .arg("--report")
            .arg(&report),
        2,
    );
    assert!(stderr.contains("may commit a reset"), "{stderr}");
    assert!(sim.resets().is_empty(), "{:?}", sim.resets());
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    assert!(rows.iter().all(|r| r["confirmations"] == "0"), "{rows:?}");
}

#[test]
fn a_password_shown_again_on_a_later_page_never_reaches_the_capture() {
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "flash-again", "--shape", "link-tokens"]);
    let input = input(dir.path(), "4054,*\n4082,*\n");
    let output = dir.path().join("out.age");
    let capture = dir.path().join("capture");
    exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--capture"])
            .arg(&capture),
        0,
    );
    let truth = sim.resets();
    assert!(truth.len() >= 10, "{}", truth.len());
    // The passwords are right...
    let rows = decrypt(&identity, &output);
    let last = last_passwords(&truth);
    assert_eq!(rows.len(), last.len());
    for row in &rows {
        assert_eq!(Some(&row["password"]), last.get(&row["licence"]), "{row:?}");
    }
    // ...and none is in the capture, though later pages showed them again.
    let pages = files_under(&capture);
    assert!(pages.len() > 20, "{}", pages.len());
    let shown_again = pages.iter().any(|(p, b)| {
        !p.to_string_lossy().contains("result")
            && String::from_utf8_lossy(b).contains("[NEW PASSWORD REMOVED]")
    });
    assert!(shown_again, "no later page showed a password again");
    assert_no_clear_password(&truth, &pages, &sim.truth);
}

#[test]
fn tokens_in_links_and_meta_never_reach_a_capture_of_check_or_plan() {
    let dir = tempfile::tempdir().unwrap();
    let handed = dir.path().join("handed-out.txt");
    let sim = Sim::start(
        dir.path(),
        &[
            "--shape",
            "link-tokens",
            "--page-size",
            "2",
            "--handed-out",
            handed.to_str().unwrap(),
        ],
    );
    let input = input(dir.path(), "4054,*\n4082,*\n");
    let check_capture = dir.path().join("check-capture");
    exits_with(
        check_cmd(&sim, &input).arg("--capture").arg(&check_capture),
        0,
    );
    let plan_capture = dir.path().join("plan-capture");
    exits_with(
        plan_cmd(&sim, &input).arg("--capture").arg(&plan_capture),
        0,
    );
    let secrets = handed_out(&handed);
    assert!(secrets.len() > 10, "{secrets:?}");
    let mut pages = files_under(&check_capture);
    pages.extend(files_under(&plan_capture));
    // The pages are there, with their Suivant links and meta elements.
    let all: String = pages
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(all.contains("_jt=[removed]"), "no Suivant link kept");
    assert!(all.contains("csrf-token"), "no meta element kept");
    assert_none_in(&secrets, &pages);
    assert_none_in(&[PASSWORD.to_string()], &pages);
}

#[test]
fn a_confirmer_answered_by_a_redirect_to_a_missing_page_is_sent_once_per_licence() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--hostile-confirm-redirect", "/gone"]);
    let input = input(dir.path(), "4054,*\n");
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let out = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--canary", "0", "--max-failures", "100"])
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let truth = sim.resets();
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    let tried: Vec<_> = rows.iter().filter(|r| r["confirmations"] != "0").collect();
    assert!(tried.len() >= 5, "{stderr}\n{rows:?}");
    // One Confirmer per licence, and the report says so.
    assert_eq!(truth.len(), tried.len(), "{stderr}");
    let mut licences: Vec<&str> = truth.iter().map(|t| t.licence.as_str()).collect();
    licences.sort();
    licences.dedup();
    assert_eq!(licences.len(), truth.len(), "a licence reset twice");
    for r in &tried {
        assert_eq!(r["confirmations"], "1", "{r:?}");
        assert_eq!(r["status"], "failed", "{r:?}");
        assert!(r["detail"].contains("unknown"), "{r:?}");
    }
}

#[test]
fn a_name_whose_temporary_cannot_be_created_is_refused_before_any_request() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = input(dir.path(), "4054,*\n4082,*\n");
    // The final names fit in 255 bytes; their temporaries (12 bytes more) do not.
    let output = dir
        .path()
        .join(format!("{}{{client}}.age", "x".repeat(236)));
    let stderr = exits_with(run_cmd(&sim, &input, &output, &public).arg("--yes"), 2);
    assert!(stderr.contains("temporary name"), "{stderr}");
    let report = dir.path().join(format!("{}.csv", "r".repeat(246)));
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .arg("--yes")
            .arg("--report")
            .arg(&report),
        2,
    );
    assert!(stderr.contains("temporary name"), "{stderr}");
    assert!(sim.pages_served().is_empty(), "{:?}", sim.pages_served());
    assert!(sim.resets().is_empty());
    // Nothing left behind by the tries.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn secrets_in_a_config_file_or_an_address_are_never_echoed() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = input(dir.path(), "4054,*\n");
    let config = dir.path().join("rotation.toml");
    let output = dir.path().join("out.age");
    let cases = [
        // A natural mistake: the password itself in the file.
        "password = \"TOPSECRET-1\"\n".to_string(),
        // A syntax error on the password_command line.
        "password_command = \"echo TOPSECRET-2\n".to_string(),
        // A password_command that fails.
        "password_command = \"echo TOPSECRET-3 >/dev/null; exit 3\"\n".to_string(),
    ];
    for (i, case) in cases.iter().enumerate() {
        std::fs::write(&config, case).unwrap();
        for format in ["text", "json"] {
            let mut cmd = run_cmd(&sim, &input, &output, &public);
            cmd.env_remove("MYOPENIP_PASSWORD")
                .args(["--yes", "--log-format", format, "--config"])
                .arg(&config);
            let stderr = exits_with(&mut cmd, 2);
            let secret = format!("TOPSECRET-{}", i + 1);
            assert!(!stderr.contains(&secret), "{format}: {stderr}");
            assert!(stderr.contains("config file"), "{format}: {stderr}");
        }
    }
    // A user and password in --portal.
    let with_userinfo = sim.url.replace("http://", "http://acme:TOPSECRET-9@");
    let out = Command::new(bin())
        .args(["check", "--input"])
        .arg(&input)
        .args(["--portal", &with_userinfo, "--login", LOGIN])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(!text.contains("TOPSECRET-9"), "{text}");
    assert!(sim.pages_served().is_empty());
}

#[test]
fn a_control_character_in_an_input_line_is_escaped_in_the_error() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = input(dir.path(), "40\u{0}54\u{1b}[2J,*\n");
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public).arg("--yes"),
        2,
    );
    assert!(!stderr.contains('\u{0}'), "{stderr:?}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(sim.pages_served().is_empty());
}

#[test]
fn check_says_the_session_ended_when_the_portal_answers_with_its_login_page() {
    // Variant 1 answers an expired session with its login page (200).
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--variant", "1", "--expire-after", "3"]);
    let input = input(dir.path(), "4054,*\n");
    let out = check_cmd(&sim, &input).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("session ended"), "{text}");
    assert!(!text.contains("MISSING"), "{text}");
}

/// A counter's value in a metrics file, by its name and labels as written.
fn metric(path: &Path, sample: &str) -> f64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in {}", path.display()))
}

#[test]
fn after_a_kill_and_a_resume_the_metrics_count_every_reset_and_no_temporary_is_left() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--latency-ms", "20"]);
    let input = input(dir.path(), "4054,*\n4082,*\n");
    let template = dir.path().join("rotation-{client}.csv.age");
    let metrics = dir.path().join("sip-rotate.prom");
    let mut child = run_cmd(&sim, &input, &template, &public)
        .args(["--yes", "--rate", "40", "--metrics-file"])
        .arg(&metrics)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_resets(&sim, 6);
    signal(&child, "-KILL");
    child.wait().unwrap();
    assert!(!metrics.exists(), "a killed run writes no metrics");
    let report = dir.path().join("report.csv");
    exits_with(
        run_cmd(&sim, &input, &template, &public)
            .args(["--yes", "--rate", "100", "--resume", "--metrics-file"])
            .arg(&metrics)
            .arg("--report")
            .arg(&report),
        0,
    );
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    assert_eq!(rows.len(), 16);
    assert!(rows.iter().all(|r| r["status"] == "reset"), "{rows:?}");
    // Every licence reset once counted: the killed run's resets with the
    // run that finished them.
    assert_eq!(
        metric(&metrics, "sip_rotate_licences_total{status=\"reset\"}"),
        16.0
    );
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_new_password_label_worded_otherwise_never_records_a_word_as_the_password() {
    // The portal says "Votre nouveau mot de passe SIP :"; the labels say
    // "Votre nouveau mot de passe :". "SIP" is not a password.
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--label", "new_password=Votre nouveau mot de passe SIP :"]);
    let input = input(dir.path(), "4054,*\n");
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let stderr = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--report"])
            .arg(&report),
        3,
    );
    assert_eq!(sim.resets().len(), 1, "the canary alone: {stderr}");
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    assert!(rows.iter().all(|r| r["status"] != "reset"), "{rows:?}");
    for file in [output.clone(), dir.path().join("out.age.part1")] {
        if file.exists() {
            assert!(decrypt(&identity, &file).is_empty(), "{}", file.display());
        }
    }
}

#[test]
fn a_session_that_ends_after_confirmer_is_counted_and_never_loses_the_last_password() {
    for expire in ["4", "5", "8", "9"] {
        let Setup {
            dir,
            sim,
            public,
            identity,
        } = Setup::new(&["--expire-after", expire]);
        let input = input(dir.path(), "4054,*\n");
        let output = dir.path().join("out.age");
        let report = dir.path().join("report.csv");
        let out = run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "200", "--report"])
            .arg(&report)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let truth = sim.resets();
        let rows = parse_csv(&std::fs::read(&report).unwrap());
        let mut commits: std::collections::HashMap<&str, usize> = Default::default();
        for t in &truth {
            *commits.entry(t.licence.as_str()).or_default() += 1;
        }
        for r in &rows {
            let n = commits.get(r["licence"].as_str()).copied().unwrap_or(0);
            assert_eq!(
                r["confirmations"],
                n.to_string(),
                "{expire}: {r:?}\n{stderr}"
            );
        }
        // Exit 2 only when no Confirmer went out.
        if !truth.is_empty() {
            assert_ne!(out.status.code(), Some(2), "{expire}: {stderr}");
        }
        if out.status.code() == Some(0) {
            let last = last_passwords(&truth);
            for row in decrypt(&identity, &output) {
                assert_eq!(Some(&row["password"]), last.get(&row["licence"]));
            }
        }
    }
}

#[test]
fn check_never_presses_a_button_of_a_dialog_whatever_the_labels_say() {
    // The portal words its confirmation otherwise; check's hint named the
    // dialog's button, and the operator took it for the reset button.
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(
        dir.path(),
        &[
            "--shape",
            "dialog",
            "--label",
            "associated_number=Ligne concernée :",
            "--label",
            "confirm_button=Valider",
            "--label",
            "reset_button=Réinitialiser",
        ],
    );
    let labels = labels(dir.path(), "reset_button = \"Valider\"\n");
    let input = input(dir.path(), "4054,*\n");
    let stderr = exits_with(check_cmd(&sim, &input).arg("--labels").arg(&labels), 2);
    assert!(stderr.contains("may commit a reset"), "{stderr}");
    assert!(sim.resets().is_empty(), "{:?}", sim.resets());
}

#[test]
fn a_capture_after_a_confirmer_whose_password_was_not_found_shows_no_password() {
    // The portal words the notification otherwise and shows it again on
    // the next page: the client finds no password, and writes none.
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[
        "--label",
        "new_password=Mot de passe SIP attribué :",
        "--shape",
        "flash-again",
    ]);
    let input = input(dir.path(), "4054,FPC172910\n4054,FPC172911\n");
    let capture = dir.path().join("capture");
    let _ = run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
        .args(["--yes", "--canary", "0", "--concurrency", "1", "--capture"])
        .arg(&capture)
        .output()
        .unwrap();
    let truth = sim.resets();
    assert!(!truth.is_empty());
    assert_no_clear_password(&truth, &files_under(&capture), &sim.truth);
}

#[test]
fn a_password_in_an_address_or_a_misspelt_key_is_never_echoed() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = input(dir.path(), "4054,*\n");
    let out = Command::new(bin())
        .args(["plan", "--input"])
        .arg(&input)
        .args([
            "--portal",
            "https://ops:TOPSECRET-5@portal.example:99999/",
            "--login",
            LOGIN,
        ])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(!text.contains("TOPSECRET-5"), "{text}");
    let config = dir.path().join("rotation.toml");
    let output = dir.path().join("out.age");
    for (i, case) in [
        "pasword = \"TOPSECRET-6\"\n",
        "portal = \"https://ops:TOPSECRET-7@portal.example/\n",
        "password_command = \"\"\"echo\nTOPSECRET-8\\q\"\"\"\n",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(&config, case).unwrap();
        let stderr = exits_with(
            run_cmd(&sim, &input, &output, &public)
                .args(["--yes", "--config"])
                .arg(&config),
            2,
        );
        assert!(
            !stderr.contains(&format!("TOPSECRET-{}", i + 6)),
            "{stderr}"
        );
    }
}

#[test]
fn a_label_without_its_colon_never_takes_the_next_word_for_the_password() {
    // The portal: "Votre nouveau mot de passe est : …"; the operator's
    // labels drop the colon. "est" is not a password.
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--label", "new_password=Votre nouveau mot de passe est :"]);
    let labels = labels(
        dir.path(),
        "new_password = \"Votre nouveau mot de passe\"\n",
    );
    let input = input(dir.path(), "4054,FPC172910\n4054,FPC172911\n");
    let capture = dir.path().join("capture");
    let report = dir.path().join("report.csv");
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--labels"])
            .arg(&labels)
            .arg("--capture")
            .arg(&capture)
            .arg("--report")
            .arg(&report),
        3,
    );
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    assert!(rows.iter().all(|r| r["status"] != "reset"), "{rows:?}");
    let truth = sim.resets();
    assert_eq!(truth.len(), 1, "the canary alone");
    assert_no_clear_password(&truth, &files_under(&capture), &sim.truth);
}

#[test]
fn a_refused_run_leaves_no_capture_folder() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = input(dir.path(), "4054,*\n");
    let output = dir.path().join("out.age");
    std::fs::write(&output, "already here").unwrap();
    let capture = dir.path().join("capture");
    exits_with(
        run_cmd(&sim, &input, &output, &public)
            .arg("--yes")
            .arg("--capture")
            .arg(&capture),
        2,
    );
    assert!(!capture.exists());
    assert!(sim.pages_served().is_empty());
}
