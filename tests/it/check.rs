//! First contact with a real portal: `check` walks one licence's way to its
//! confirmation page and never confirms; a label worded differently is
//! named with what the page shows instead, fixed with `--labels`; and
//! `--capture` keeps every page without a secret.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("in.csv");
    std::fs::write(&path, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    path
}

fn run_output(command: &mut Command) -> (Option<i32>, String) {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_walks_to_the_confirmation_page_and_never_confirms() {
    for variant in ["0", "1"] {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::start(dir.path(), &["--variant", variant]);
        let (code, text) = run_output(&mut check_cmd(&sim, &input(dir.path())));
        assert_eq!(code, Some(0), "variant {variant}: {text}");
        assert!(
            text.contains("every label run, plan and status look for is there"),
            "{text}"
        );
        for key in [
            "confirm_button",
            "associated_number",
            "reset_button",
            "column_licence",
        ] {
            assert!(
                text.lines().any(|l| l.contains(key) && l.contains(" ok")),
                "{key}: {text}"
            );
        }
        assert!(sim.resets().is_empty(), "nothing reset");
        let pages = sim.pages_served();
        assert!(
            pages.iter().any(|p| p == "reset"),
            "it went to the confirmation page"
        );
        assert!(
            !pages.iter().any(|p| p == "confirm"),
            "Confirmer never sent"
        );
    }
}

#[test]
fn a_label_worded_differently_is_named_and_fixed_with_a_labels_file() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--label", "confirm_button=Valider"]);
    let input = input(dir.path());
    let (code, text) = run_output(&mut check_cmd(&sim, &input));
    assert_eq!(code, Some(2), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("confirm_button") && l.contains("MISSING"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("no button 'Confirmer'"), "{line}");
    assert!(line.contains("buttons there: 'Valider'"), "{line}");
    assert!(line.contains("set confirm_button"), "{line}");
    assert!(sim.resets().is_empty());

    // The labels file `sip-rotate labels` prints, with that one word changed.
    let out = Command::new(bin()).arg("labels").output().unwrap();
    assert!(out.status.success());
    let labels = String::from_utf8(out.stdout)
        .unwrap()
        .replace("\"Confirmer\"", "\"Valider\"");
    let file = dir.path().join("labels.toml");
    std::fs::write(&file, labels).unwrap();
    let (code, text) = run_output(check_cmd(&sim, &input).arg("--labels").arg(&file));
    assert_eq!(code, Some(0), "{text}");
    assert!(sim.resets().is_empty());
    // And the run resets, each password the portal's.
    let output = dir.path().join("out.age");
    exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--labels"])
            .arg(&file),
        0,
    );
    let truth = last_passwords(&sim.resets());
    let rows = decrypt(&identity, &output);
    assert_eq!(rows.len(), 16);
    for row in rows {
        assert_eq!(row["password"], truth[&row["licence"]]);
    }
}

#[test]
fn a_licence_or_a_client_that_is_not_there_is_not_called_a_label_problem() {
    let Setup { dir, sim, .. } = Setup::new(&[]);
    let input = input(dir.path());
    let (code, text) = run_output(check_cmd(&sim, &input).args(["--licence", "FPC000000"]));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("NOT LISTED"), "{text}");
    assert!(text.contains("check the client and the licence"), "{text}");
    assert!(!text.contains("labels file"), "{text}");
    // A client the portal does not know (helper-17: "set configure in a
    // labels file").
    let no_client = dir.path().join("no-client.csv");
    std::fs::write(&no_client, "client_ref,licence\n99999,*\n").unwrap();
    let (code, text) = run_output(&mut check_cmd(&sim, &no_client));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("NOT LISTED: no MetaCentrex service of client 99999"),
        "{text}"
    );
    assert!(!text.contains("labels file"), "{text}");
    assert!(sim.resets().is_empty());
}

/// `--licence` that the input does not name, and no `*` row: said before
/// any request, with what to give; given, check walks to it.
#[test]
fn a_licence_the_input_does_not_name_is_refused_with_what_to_give() {
    let Setup { dir, sim, .. } = Setup::new(&[]);
    let input = dir.path().join("one.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172910\n").unwrap();
    let said = exits_with(check_cmd(&sim, &input).args(["--licence", "FPC172911"]), 2);
    assert!(
        said.contains("the input names no licence FPC172911"),
        "{said}"
    );
    assert!(
        said.contains("hint: give --licence one of the input's licences"),
        "{said}"
    );
    assert!(sim.pages_served().is_empty(), "{:?}", sim.pages_served());
    exits_with(check_cmd(&sim, &input).args(["--licence", "FPC172910"]), 0);
    assert!(sim.resets().is_empty());
}

/// Every secret the simulator handed out.
fn handed_out(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, v)| v.to_string()))
        .collect()
}

#[test]
fn a_capture_holds_every_page_and_no_secret() {
    for variant in ["0", "1"] {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("handed-out.txt");
        let sim = Sim::start(
            dir.path(),
            &[
                "--variant",
                variant,
                "--handed-out",
                secrets.to_str().unwrap(),
                "--expire-after",
                "12",
            ],
        );
        let (_, public) = identity(dir.path());
        let input = input(dir.path());
        let checked = dir.path().join("check-capture");
        let (code, text) = run_output(check_cmd(&sim, &input).arg("--capture").arg(&checked));
        assert_eq!(code, Some(0), "{text}");
        let ran = dir.path().join("run-capture");
        exits_with(
            run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
                .args(["--yes", "--rate", "100", "--capture"])
                .arg(&ran),
            0,
        );
        assert!(sim.resets().len() >= 16);
        let secrets = handed_out(&secrets);
        assert!(
            secrets
                .iter()
                .any(|s| sim.resets().iter().any(|t| &t.password == s))
        );
        for capture in [&checked, &ran] {
            let mode = std::fs::metadata(capture).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
            let files = files_under(capture);
            let index = std::fs::read_to_string(capture.join("index.txt")).unwrap();
            assert!(index.lines().count() >= 10, "{index}");
            assert!(files.len() >= 10, "one file a page");
            for (path, bytes) in &files {
                let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
                let text = String::from_utf8_lossy(bytes);
                for secret in secrets.iter().chain([&PASSWORD.to_string()]) {
                    assert!(
                        !text.contains(secret.as_str()),
                        "variant {variant}: a secret in {}",
                        path.display()
                    );
                }
            }
            // The pages are still worth reading.
            let all: String = files
                .iter()
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
                .collect();
            assert!(all.contains("Réinitialiser mot de passe SIP"));
            assert!(all.contains("Compte client"));
        }
        // The run's result pages are there, their passwords removed.
        let all: String = files_under(&ran)
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(all.contains("[NEW PASSWORD REMOVED]"), "variant {variant}");
    }
}
