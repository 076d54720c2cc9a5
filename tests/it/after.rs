//! After the reset: each client gets its own passwords, in a file only it
//! (and the reseller) can read; and `status` follows the phones back online.

use crate::common::*;
use sip_rotate::sim::dataset::{Dataset, DatasetSpec};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn dataset() -> Dataset {
    Dataset::generate(&DatasetSpec {
        seed: 1,
        clients: 12,
        licences_per_client: 8,
    })
}

/// An identity in its own folder; returns (identity file, public key).
fn identity_in(dir: &Path, name: &str) -> (PathBuf, String) {
    let folder = dir.join(name);
    std::fs::create_dir(&folder).unwrap();
    identity(&folder)
}

#[test]
fn each_client_gets_its_own_file_that_only_it_and_the_reseller_read() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--latency-ms", "10"]);
    let (reseller, reseller_public) = identity_in(dir.path(), "reseller");
    let (a, a_public) = identity_in(dir.path(), "a");
    let (b, b_public) = identity_in(dir.path(), "b");
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let recipients = dir.path().join("clients.csv");
    std::fs::write(
        &recipients,
        format!("client_ref,recipient\n4054,{a_public}\n4082,{b_public}\n"),
    )
    .unwrap();
    let template = dir.path().join("rotation-{client}.csv.age");

    // A client without its own recipient: refused before any request.
    std::fs::write(
        dir.path().join("partial.csv"),
        format!("client_ref,recipient\n4054,{a_public}\n"),
    )
    .unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &template, &reseller_public)
            .arg("--yes")
            .arg("--client-recipients")
            .arg(dir.path().join("partial.csv")),
        2,
    );
    assert!(stderr.contains("no recipient for client 4082"), "{stderr}");
    assert!(sim.pages_served().is_empty(), "no request");

    exits_with(
        run_cmd(&sim, &input, &template, &reseller_public)
            .args(["--yes", "--rate", "100", "--client-recipients"])
            .arg(&recipients),
        0,
    );
    let truth = last_passwords(&sim.resets());
    let ds = dataset();
    for (client, own, other) in [("4054", &a, &b), ("4082", &b, &a)] {
        let file = dir.path().join(format!("rotation-{client}.csv.age"));
        let rows = try_decrypt(own, &file).expect("the client reads its file");
        let licences: HashSet<String> = rows.iter().map(|r| r["licence"].clone()).collect();
        let wanted: HashSet<String> = ds
            .licences
            .iter()
            .filter(|l| ds.client_of_service(l.service).reference == client)
            .map(|l| l.reference.clone())
            .collect();
        assert_eq!(licences, wanted, "only its own licences");
        for row in &rows {
            assert_eq!(row["password"], truth[&row["licence"]]);
        }
        assert!(try_decrypt(other, &file).is_err(), "another client cannot");
        assert_eq!(
            try_decrypt(&reseller, &file).unwrap().len(),
            8,
            "the reseller can"
        );
    }
    assert!(!dir.path().join("rotation-clients.csv.age.journal").exists());
}

#[test]
fn after_a_kill_the_one_journal_recovers_every_client_s_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--latency-ms", "20"]);
    let (reseller, reseller_public) = identity_in(dir.path(), "reseller");
    let (_, a_public) = identity_in(dir.path(), "a");
    let (_, b_public) = identity_in(dir.path(), "b");
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let recipients = dir.path().join("clients.csv");
    std::fs::write(&recipients, format!("4054,{a_public}\n4082,{b_public}\n")).unwrap();
    let template = dir.path().join("rotation-{client}.csv.age");
    let mut child = run_cmd(&sim, &input, &template, &reseller_public)
        .args(["--yes", "--rate", "40", "--client-recipients"])
        .arg(&recipients)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_resets(&sim, 6);
    signal(&child, "-KILL");
    child.wait().unwrap();
    let journal = dir.path().join("rotation-clients.csv.age.journal");
    let rows = decrypt(&reseller, &journal);
    assert!(!rows.is_empty());
    let truth = last_passwords(&sim.resets());
    for row in &rows {
        assert_eq!(row["password"], truth[&row["licence"]]);
    }
    // And --resume finishes the rotation into each client's file, saying
    // which client's passwords only the journal holds.
    let stderr = exits_with(
        run_cmd(&sim, &input, &template, &reseller_public)
            .args(["--yes", "--rate", "100", "--resume", "--client-recipients"])
            .arg(&recipients),
        0,
    );
    let mut earlier: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        *earlier.entry(row["client_ref"].as_str()).or_default() += 1;
    }
    let mut each: Vec<String> = earlier
        .iter()
        .map(|(c, n)| format!("client {c}: {n}"))
        .collect();
    each.sort();
    assert!(
        stderr.contains(&format!(
            "not in the clients' files, only in that journal: {}",
            each.join(", ")
        )),
        "{stderr}"
    );
    let truth = last_passwords(&sim.resets());
    let mut recovered: HashMap<String, String> = decrypt(&reseller, &journal)
        .into_iter()
        .map(|r| (r["licence"].clone(), r["password"].clone()))
        .collect();
    for client in ["4054", "4082"] {
        let file = dir.path().join(format!("rotation-{client}.csv.age"));
        if file.exists() {
            for row in decrypt(&reseller, &file) {
                recovered.insert(row["licence"].clone(), row["password"].clone());
            }
        }
    }
    for (licence, password) in truth {
        assert_eq!(recovered.get(&licence), Some(&password), "{licence}");
    }
}

fn status_cmd(sim: &Sim, input: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("status")
        .arg("--input")
        .arg(input)
        .args(["--portal", &sim.url, "--login", LOGIN, "--rate", "100"])
        .env("MYOPENIP_PASSWORD", PASSWORD);
    c
}

#[test]
fn status_follows_the_phones_back_online() {
    let ds = dataset();
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--reconnect-after", "2"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let of_clients: Vec<usize> = (0..ds.licences.len())
        .filter(|&i| {
            ["4054", "4082"].contains(
                &ds.client_of_service(ds.licences[i].service)
                    .reference
                    .as_str(),
            )
        })
        .collect();
    // Before: plan says how many phones in use a run would cut off.
    let out = Command::new(bin())
        .arg("plan")
        .arg("--input")
        .arg(&input)
        .args(["--portal", &sim.url, "--login", LOGIN, "--rate", "100"])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let in_use = of_clients
        .iter()
        .filter(|&&i| ds.initially_connected(i))
        .count();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "run would reset 16 licences: {in_use} phones in use"
        )),
        "{stderr}"
    );
    let report = dir.path().join("report.csv");
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--rate", "100", "--report"])
            .arg(&report),
        0,
    );
    // The report has each phone's État before its reset.
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    let connected_before = rows.iter().filter(|r| r["state"] == "Connecté").count();
    assert_eq!(connected_before, in_use);

    // Right after: every reset phone is cut off.
    let out = status_cmd(&sim, &report).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("client 4054: 8 of 8 phones still down"),
        "{stdout}"
    );
    // What its help says 1 means, as a cron wrapper reads it: status's
    // own codes, not run's.
    let help = Command::new(bin())
        .args(["status", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("1 some phones are not registered again") && !help.contains("reset done"),
        "{help}"
    );

    // Followed: those that can come back do; the others are listed at --until.
    let never: HashSet<String> = of_clients
        .iter()
        .filter(|&&i| ds.never_reconnects(i))
        .map(|&i| ds.licences[i].reference.clone())
        .collect();
    assert!(!never.is_empty());
    let status_report = dir.path().join("status.csv");
    let out = status_cmd(&sim, &report)
        .args(["--watch", "1", "--until", "5", "--report"])
        .arg(&status_report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let down: HashSet<String> = parse_csv(&std::fs::read(&status_report).unwrap())
        .into_iter()
        .filter(|r| r["state"] != "Connecté")
        .map(|r| r["licence"].clone())
        .collect();
    assert_eq!(down, never, "exactly those that never come back");
    for licence in &never {
        assert!(
            stdout.contains(licence.as_str()),
            "{licence} listed: {stdout}"
        );
    }

    // A watch over phones that all come back ends as soon as they have.
    let back_only = dir.path().join("back.csv");
    let mut text = String::from("client_ref,licence\n");
    for &i in &of_clients {
        if !ds.never_reconnects(i) {
            text += &format!(
                "{},{}\n",
                ds.client_of_service(ds.licences[i].service).reference,
                ds.licences[i].reference
            );
        }
    }
    std::fs::write(&back_only, text).unwrap();
    let out = status_cmd(&sim, &back_only)
        .args(["--watch", "1", "--until", "30"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_portal_that_stops_answering_ends_the_watch_as_unknown_not_as_back() {
    let Setup { dir, sim, .. } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    // Every phone reset would be down; here none was reset, and those down
    // from the start (i % 5 == 4) keep the watch going until the portal goes.
    let child = status_cmd(&sim, &input)
        .args(["--watch", "1", "--until", "120", "--timeout", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first round is read, the portal goes away.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !sim.pages_served().iter().any(|p| p.starts_with("users")) {
        assert!(std::time::Instant::now() < deadline, "no users table read");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sim.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("could not be read"), "{stderr}");
}

#[test]
fn a_report_without_a_reset_row_is_nothing_to_follow() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC999999\n").unwrap();
    let report = dir.path().join("report.csv");
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--rate", "100", "--report"])
            .arg(&report),
        2,
    );
    let before = sim.pages_served().len();
    let stderr = exits_with(&mut status_cmd(&sim, &report), 2);
    assert!(stderr.contains("names no phone to follow"), "{stderr}");
    assert_eq!(sim.pages_served().len(), before, "the portal was not asked");
}

#[test]
fn a_portal_whose_état_says_otherwise_is_counted_as_unknown_never_as_down() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    // No État column: plan cannot count the phones in use, status cannot tell.
    let sim = Sim::start(dir.path(), &["--label", "column_state=Statut"]);
    let stderr =
        String::from_utf8_lossy(&plan_cmd(&sim, &input).output().unwrap().stderr).into_owned();
    assert!(
        stderr.contains("run would reset 8 licences: 0 phones in use and 8 of unknown État"),
        "{stderr}"
    );
    let stderr = exits_with(&mut status_cmd(&sim, &input), 2);
    assert!(stderr.contains("show no 'État' column"), "{stderr}");
    // The fix apart from the fact (the library describes, the binary advises).
    assert!(
        stderr.contains("hint: sip-rotate check says what the users table has"),
        "{stderr}"
    );
    let out = Command::new(bin())
        .args(["check", "--input"])
        .arg(&input)
        .args(["--portal", &sim.url, "--login", LOGIN, "--rate", "100"])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("column_state") && l.contains("MISSING") && l.contains("Statut")),
        "{stdout}"
    );
    drop(sim);

    // Another word for a registered phone: unknown, and check says which word.
    let sim = Sim::start(dir.path(), &["--label", "state_connected=Enregistré"]);
    let stderr =
        String::from_utf8_lossy(&plan_cmd(&sim, &input).output().unwrap().stderr).into_owned();
    let ds = dataset();
    let down = (0..ds.licences.len())
        .filter(|&i| ds.client_of_service(ds.licences[i].service).reference == "4054")
        .filter(|&i| !ds.initially_connected(i))
        .count();
    assert!(
        stderr.contains(&format!("0 phones in use and {} of unknown État", 8 - down)),
        "{stderr}"
    );
    let labels = dir.path().join("labels.toml");
    std::fs::write(&labels, "state_connected = \"Enregistré\"\n").unwrap();
    let stderr = String::from_utf8_lossy(
        &plan_cmd(&sim, &input)
            .arg("--labels")
            .arg(&labels)
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(
        stderr.contains(&format!("{} phones in use would be cut off", 8 - down)),
        "with the portal's word, counted: {stderr}"
    );
}

#[test]
fn status_follows_what_a_run_may_have_cut_off_and_lists_what_it_cannot_find() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--drop-rate", "1"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let report = dir.path().join("report.csv");
    // Every Confirmer is committed and its answer lost: the canary fails,
    // its phone cut off all the same.
    exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--rate", "100", "--max-resets", "1", "--report"])
            .arg(&report),
        3,
    );
    let cut_off: Vec<String> = sim.resets().iter().map(|t| t.licence.clone()).collect();
    assert!(!cut_off.is_empty());
    let out = status_cmd(&sim, &report).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for licence in &cut_off {
        assert!(stdout.contains(licence.as_str()), "{licence}: {stdout}");
    }

    // A row that is not found is listed where cron's mail shows it.
    let mixed = dir.path().join("mixed.csv");
    std::fs::write(
        &mixed,
        format!("client_ref,licence\n4054,{}\n4054,FPC999999\n", cut_off[0]),
    )
    .unwrap();
    let out = status_cmd(&sim, &mixed).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("client 4054: not found: line 3: FPC999999"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 of 1 phone back, 1 not found"));

    // plan tells the truth about a run that would reset nothing.
    let stderr =
        String::from_utf8_lossy(&plan_cmd(&sim, &mixed).output().unwrap().stderr).into_owned();
    assert!(
        stderr.contains("run would reset nothing: 1 row did not resolve; with --skip-unresolved, run would reset 1 licence:"),
        "{stderr}"
    );
}

#[test]
fn status_refuses_before_any_request_what_it_could_not_finish() {
    let Setup { dir, sim, .. } = Setup::new(&["--page-latency", "users=4000"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    // A report that is not a status report, to be replaced: refused at once.
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "client_ref,licence\n4054,*\n").unwrap();
    let stderr = exits_with(
        status_cmd(&sim, &input)
            .args(["--watch", "60", "--overwrite-report", "--report"])
            .arg(&other),
        2,
    );
    assert!(stderr.contains("not a status report"), "{stderr}");
    for args in [&["--watch", "0"][..], &["--until", "10"][..]] {
        exits_with(status_cmd(&sim, &input).args(args), 2);
    }
    assert!(sim.pages_served().is_empty(), "no request");

    // Interrupted before a round was read: nobody can tell, no report.
    let report = dir.path().join("status.csv");
    let child = status_cmd(&sim, &input)
        .args(["--watch", "5", "--report"])
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !sim.pages_served().iter().any(|p| p == "service") {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing is reset"), "{stderr}");
    assert!(!report.exists());
}

#[test]
fn client_recipients_without_a_file_per_client_are_refused() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let recipients = dir.path().join("clients.csv");
    std::fs::write(&recipients, format!("4054,{public}\n")).unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("one.age"), &public)
            .args(["--yes", "--client-recipients"])
            .arg(&recipients),
        2,
    );
    assert!(
        stderr.contains("no {client} in the output's name"),
        "{stderr}"
    );
    assert!(sim.pages_served().is_empty());
}

/// A rotation with one file per client stopped twice: the second stop says
/// where each client's earlier passwords are (the part files the first
/// stop wrote, and the journal), not that only the journal holds them.
#[test]
fn a_second_stop_says_the_clients_part_files_hold_the_earlier_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--latency-ms", "20"]);
    let (reseller, reseller_public) = identity_in(dir.path(), "reseller");
    let (_, a_public) = identity_in(dir.path(), "a");
    let (_, b_public) = identity_in(dir.path(), "b");
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let recipients = dir.path().join("clients.csv");
    std::fs::write(&recipients, format!("4054,{a_public}\n4082,{b_public}\n")).unwrap();
    let template = dir.path().join("rotation-{client}.csv.age");
    // Stopped by Ctrl-C once `resets` are done in all; resumed with the
    // reseller's identity.
    let stopped_at = |resume: bool, resets: usize| {
        let mut run = run_cmd(&sim, &input, &template, &reseller_public);
        run.args(["--yes", "--rate", "8", "--client-recipients"])
            .arg(&recipients)
            .stderr(Stdio::piped());
        if resume {
            run.arg("--resume").arg("-i").arg(&reseller);
        }
        let child = run.spawn().unwrap();
        wait_for_resets(&sim, resets);
        signal(&child, "-INT");
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = stopped_at(false, 2);
    assert_eq!(code, Some(3), "{stderr}");
    let (code, stderr) = stopped_at(true, 5);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("not yet in the clients' result files"),
        "{stderr}"
    );
    assert!(!stderr.contains("only in that journal"), "{stderr}");
    // It was given the identity: the advice is to run it again as it is.
    assert!(stderr.contains("(--resume -i IDENTITY) again"), "{stderr}");
    assert!(!stderr.contains("add -i IDENTITY"), "{stderr}");
}

/// A page that shows a new password nobody asked for (here in a user's
/// name) means a phone may be cut off: `status`, `plan` and `check`, which
/// keep no password, exit 3 as the help says, never 2 ("no phone cut off").
#[test]
fn a_password_shown_unasked_exits_3_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(
        dir.path(),
        &[
            "--hostile-user-name",
            "Votre nouveau mot de passe : Zz9xQ2pLm",
        ],
    );
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    for command in [
        &mut status_cmd(&sim, &input),
        &mut plan_cmd(&sim, &input),
        &mut check_cmd(&sim, &input),
    ] {
        let said = exits_with(command, 3);
        assert!(said.contains("a phone may have been cut off"), "{said}");
        assert!(!said.contains("Zz9xQ2pLm"), "{said}");
    }
}
