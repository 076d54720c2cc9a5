//! Never lose a new password: the real binary against the simulator with its
//! faults on, killed, interrupted and resumed; journals cut at any byte;
//! runs stopped early by the canary and `--max-failures`.

use crate::common::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn input(dir: &Path, clients: &[&str]) -> PathBuf {
    let path = dir.join("in.csv");
    let mut text = String::from("client_ref,licence\n");
    for c in clients {
        text += &format!("{c},*\n");
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Clients of the default dataset, the prefix pair among them.
const CLIENTS: [&str; 4] = ["4054", "40542", "4082", "4094"];

/// Starts `run` in the background, its stdout and stderr going to files.
fn spawn_run(sim: &Sim, dir: &Path, output: &Path, recipient: &str, extra: &[&str]) -> Child {
    let input = input(dir, &CLIENTS);
    run_cmd(sim, &input, output, recipient)
        .args(["--yes"])
        .args(extra)
        .stdout(std::fs::File::create(dir.join("run.stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("run.stderr")).unwrap())
        .spawn()
        .unwrap()
}

/// A run of `CLIENTS` stopped by SIGTERM after three resets (exit 3: its
/// passwords in a part file and the journal).
fn interrupted(sim: &Sim, dir: &Path, output: &Path, recipient: &str, extra: &[&str]) {
    let mut run = spawn_run(
        sim,
        dir,
        output,
        recipient,
        &[&["--rate", "40"], extra].concat(),
    );
    wait_for_resets(sim, 3);
    signal(&run, "-TERM");
    assert_eq!(run.wait().unwrap().code(), Some(3));
    // What finishes it, the identity included: without one the stopped
    // run's passwords stay in its own files.
    let said = std::fs::read_to_string(dir.join("run.stderr")).unwrap();
    assert!(
        said.contains("--resume to finish (add -i IDENTITY"),
        "{said}"
    );
}

/// `--resume` of that run, killed (-9) after three more resets: their
/// passwords in the journal only.
fn resumed_then_killed(sim: &Sim, dir: &Path, output: &Path, recipient: &str) {
    let resets = sim.resets().len();
    let mut run = spawn_run(sim, dir, output, recipient, &["--rate", "40", "--resume"]);
    wait_for_resets(sim, resets + 3);
    signal(&run, "-KILL");
    run.wait().unwrap();
}

/// The part file a run stopped once writes.
fn part_of(output: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part1", output.display()))
}

fn journal_of(output: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", output.display()))
}

/// The licences a journal names in clear (complete entries or not).
fn journal_licences(journal: &Path) -> HashSet<String> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("sip-rotate-journal "))
        .map(|json| {
            serde_json::from_str::<serde_json::Value>(json).unwrap()["licence"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Entries of a journal whose armored block is complete.
fn complete_entries(journal: &Path) -> usize {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim_end() == "-----END AGE ENCRYPTED FILE-----")
        .count()
}

fn all_licences() -> HashSet<String> {
    let ds = sip_rotate::sim::dataset::Dataset::generate(&sip_rotate::sim::dataset::DatasetSpec {
        seed: 1,
        clients: 12,
        licences_per_client: 8,
    });
    ds.licences
        .iter()
        .filter(|l| CLIENTS.contains(&ds.client_of_service(l.service).reference.as_str()))
        .map(|l| l.reference.clone())
        .collect()
}

fn recovered(identity: &Path, files: &[&Path]) -> HashMap<String, Vec<String>> {
    let mut all: HashMap<String, Vec<String>> = HashMap::new();
    for f in files.iter().filter(|f| f.exists()) {
        for row in decrypt(identity, f) {
            all.entry(row["licence"].clone())
                .or_default()
                .push(row["password"].clone());
        }
    }
    all
}

/// Every licence the portal reset has its last password in one of `files`.
fn assert_last_passwords_in(sim: &Sim, identity: &Path, files: &[&Path]) {
    let found = recovered(identity, files);
    for (licence, password) in last_passwords(&sim.resets()) {
        assert!(
            found.get(&licence).is_some_and(|p| p.contains(&password)),
            "{licence}: its last password is recoverable"
        );
    }
}

fn assert_nothing_in_clear(dir: &Path, sim: &Sim) {
    assert_no_clear_password(&sim.resets(), &files_under(dir), &sim.truth);
}

#[test]
fn under_portal_faults_every_licence_ends_with_the_truths_last_password() {
    for variant in ["0", "1"] {
        let Setup {
            dir,
            sim,
            identity: id,
            public,
        } = Setup::new(&[
            "--variant",
            variant,
            "--page-size",
            "3",
            "--fail-rate",
            "0.05",
            "--drop-rate",
            "0.1",
            "--expire-after",
            "25",
            "--rate-limit",
            "40",
        ]);
        let output = dir.path().join("out.age");
        let report = dir.path().join("report.csv");
        let mut child = spawn_run(
            &sim,
            dir.path(),
            &output,
            &public,
            &[
                "--rate",
                "30",
                "--max-resets",
                "12",
                "--report",
                report.to_str().unwrap(),
            ],
        );
        let status = child.wait().unwrap();
        let stderr = std::fs::read_to_string(dir.path().join("run.stderr")).unwrap();
        assert_eq!(status.code(), Some(0), "variant {variant}: {stderr}");

        let truth = sim.resets();
        let last = last_passwords(&truth);
        let rows = decrypt(&id, &output);
        let wanted = all_licences();
        assert_eq!(
            rows.iter()
                .map(|r| r["licence"].clone())
                .collect::<HashSet<_>>(),
            wanted
        );
        assert_eq!(
            last.keys().cloned().collect::<HashSet<_>>(),
            wanted,
            "no other licence touched"
        );
        for row in &rows {
            assert_eq!(
                row["password"], last[&row["licence"]],
                "variant {variant}: {}",
                row["licence"]
            );
        }
        // A licence reset more than once had an unknown outcome, and the report counts its confirmations.
        let report = parse_csv(&std::fs::read(&report).unwrap());
        let confirmations: HashMap<&str, u32> = report
            .iter()
            .map(|r| (r["licence"].as_str(), r["confirmations"].parse().unwrap()))
            .collect();
        for licence in &wanted {
            let resets = truth.iter().filter(|t| &t.licence == licence).count() as u32;
            assert!(
                resets >= 1 && resets <= confirmations[licence.as_str()],
                "{licence}: {resets} resets, {} confirmations",
                confirmations[licence.as_str()]
            );
        }
        assert_nothing_in_clear(dir.path(), &sim);
        let counters = sim.stop();
        assert_eq!(
            counters["too_many_requests"], 0,
            "variant {variant}: --rate under the portal's limit provokes no 429"
        );
        assert!(
            counters["expired_sessions"] > 0 && counters["injected_failures"] > 0,
            "the faults happened: {counters:?}"
        );
    }
}

#[test]
fn killed_midway_then_resumed_nothing_is_lost_or_reset_twice() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    let mut child = spawn_run(&sim, dir.path(), &output, &public, &["--rate", "40"]);
    wait_for_resets(&sim, 8);
    signal(&child, "-KILL");
    child.wait().unwrap();
    let journal = journal_of(&output);
    assert!(journal.exists());
    assert!(!output.exists(), "nothing under the output's name");
    let journaled_before = journal_licences(&journal);
    let reset_before: HashSet<String> = sim.resets().iter().map(|t| t.licence.clone()).collect();

    // A new run refuses while the journal exists.
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public).arg("--yes"),
        2,
    );
    assert!(stderr.contains("--resume"), "{stderr}");

    // Resumed with an input that leaves a client out (edited since): the
    // rotation would end, exit 0, with that client's phones never reset.
    // Refused before the portal is asked anything.
    let served = sim.pages_served().len();
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS[..3]), &output, &public)
            .args(["--yes", "--resume", "--rate", "40"]),
        2,
    );
    assert!(
        stderr.contains("leaves out: '4094,,*'")
            && stderr.contains("the input the stopped run had"),
        "{stderr}"
    );
    assert_eq!(sim.pages_served().len(), served, "{stderr}");

    let resumed_stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
            .args(["--yes", "--resume", "--rate", "40"]),
        0,
    );
    assert!(
        resumed_stderr.contains(&journal.display().to_string()),
        "the summary says which file holds the earlier passwords: {resumed_stderr}"
    );

    let truth = sim.resets();
    let last = last_passwords(&truth);
    assert_eq!(last.keys().cloned().collect::<HashSet<_>>(), all_licences());
    assert_last_passwords_in(&sim, &id, &[&output, &journal]);
    // Reset twice only if its outcome was unknown: reset before the kill but not journaled.
    let mut count: HashMap<&str, usize> = HashMap::new();
    for t in &truth {
        *count.entry(&t.licence).or_default() += 1;
    }
    for (licence, n) in count {
        if n > 1 {
            assert!(
                reset_before.contains(licence) && !journaled_before.contains(licence),
                "{licence} reset {n} times"
            );
        }
    }
    // Only resets in flight at the kill can be missing from the journal: at most --concurrency (4).
    let unjournaled = reset_before
        .iter()
        .filter(|l| !journaled_before.contains(*l))
        .count();
    assert!(
        unjournaled <= 4,
        "{unjournaled} committed resets missing from the journal"
    );
    let mut files = files_under(dir.path());
    files.push(("resumed stderr".into(), resumed_stderr.into_bytes()));
    assert_no_clear_password(&truth, &files, &sim.truth);
    assert!(
        !files
            .iter()
            .any(|(p, _)| p.to_string_lossy().ends_with(".tmp")),
        "the killed run's temporary output is gone"
    );
}

#[test]
fn sigterm_finishes_the_resets_in_flight_journals_them_and_exits_3() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--latency-ms", "30"]);
    let output = dir.path().join("out.age");
    let mut child = spawn_run(
        &sim,
        dir.path(),
        &output,
        &public,
        &["--rate", "40", "--concurrency", "3"],
    );
    wait_for_resets(&sim, 5);
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "{}",
        std::fs::read_to_string(dir.path().join("run.stderr")).unwrap()
    );
    let journal = journal_of(&output);
    assert!(!output.exists());
    let truth = sim.resets();
    assert!(truth.len() < all_licences().len(), "stopped before the end");
    // Every reset the portal committed, in flight ones included, is in the
    // journal, and in a complete output under another name than the output's.
    let part = PathBuf::from(format!("{}.part1", output.display()));
    let last = last_passwords(&truth);
    for file in [&journal, &part] {
        let rows = decrypt(&id, file);
        assert_eq!(rows.len(), last.len(), "{}", file.display());
        for row in &rows {
            assert_eq!(row["password"], last[&row["licence"]]);
        }
    }
    assert_nothing_in_clear(dir.path(), &sim);

    let resumed = run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
        .args(["--yes", "--resume", "--rate", "40"])
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        stderr.contains(&part.display().to_string()),
        "the summary names the part file: {stderr}"
    );
    let truth = sim.resets();
    assert_eq!(
        truth.len(),
        all_licences().len(),
        "each licence reset exactly once over both runs"
    );
    let found = recovered(&id, &[&output, &part]);
    for t in &truth {
        assert!(
            found[&t.licence].contains(&t.password),
            "{}: in the output or the part",
            t.licence
        );
    }
}

/// The disk fills up mid-run (the run may write files of at most `bytes`;
/// a write beyond fails as on a full disk instead of killing the process).
fn with_file_size_limit(command: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls are made:
    // signal(2) and setrlimit(2).
    unsafe {
        command.pre_exec(move || {
            // SIGXFSZ as the system leaves it: sip-rotate itself must keep
            // it from killing the run.
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_journal_that_cannot_be_written_stops_the_run_and_loses_no_password() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&[]);
    let output = dir.path().join("out.age");
    let input = input(dir.path(), &CLIENTS);
    // About three journal entries fit; the output, smaller per row, still fits.
    let mut run = run_cmd(&sim, &input, &output, &public);
    run.args(["--yes", "--rate", "100"]);
    with_file_size_limit(&mut run, 2000);
    let stopped = run.output().unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot write the new passwords"),
        "{stderr}"
    );
    let journal = journal_of(&output);
    let part = PathBuf::from(format!("{}.part1", output.display()));
    assert!(!output.exists(), "nothing under the output's name");
    // Each password the portal gave is in the part file, journaled or not.
    let truth = sim.resets();
    assert!(truth.len() < all_licences().len(), "stopped before the end");
    let in_part: HashMap<String, String> = decrypt(&id, &part)
        .into_iter()
        .map(|r| (r["licence"].clone(), r["password"].clone()))
        .collect();
    assert_eq!(in_part, last_passwords(&truth));
    let journaled = complete_entries(&journal);
    assert!(
        journaled > 0 && journaled < truth.len(),
        "the journal was cut: {journaled} of {} {stderr}",
        truth.len()
    );
    // The write that failed was taken back: the journal ends with a whole
    // line, and what is appended to it (the rescued entries) reads apart.
    assert!(
        std::fs::read(&journal).unwrap().ends_with(b"\n"),
        "a cut line left at the journal's end"
    );
    assert!(
        stderr.contains(&format!(
            "holds only {} of them",
            complete_entries(&journal)
        )),
        "the summary says the part file is the one copy: {stderr}"
    );

    // With room again, --resume finishes; every licence's last password is in
    // one of the files left.
    exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--resume", "--rate", "100"]),
        0,
    );
    let last = last_passwords(&sim.resets());
    assert_eq!(last.keys().cloned().collect::<HashSet<_>>(), all_licences());
    assert_last_passwords_in(&sim, &id, &[&output, &part, &journal]);
    assert_nothing_in_clear(dir.path(), &sim);
}

#[test]
fn a_journal_cut_at_any_byte_gives_back_its_complete_entries() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--latency-ms", "30"]);
    let output = dir.path().join("out.age");
    let mut child = spawn_run(&sim, dir.path(), &output, &public, &["--rate", "40"]);
    wait_for_resets(&sim, 6);
    signal(&child, "-TERM");
    child.wait().unwrap();
    let journal = std::fs::read(journal_of(&output)).unwrap();
    let complete_entries = journal_licences(&journal_of(&output)).len();
    assert!(complete_entries >= 6);
    let cut = dir.path().join("cut.journal");
    let mut previous = 0;
    for at in (0..=journal.len()).step_by(journal.len() / 23) {
        std::fs::write(&cut, &journal[..at]).unwrap();
        let out = Command::new(bin())
            .args(["decrypt", "-i"])
            .arg(&id)
            .arg(&cut)
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        if at < "sip-rotate-journal ".len() {
            continue; // Too short to be told from an output.
        }
        assert!(
            out.status.success(),
            "cut at {at}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = parse_csv(&out.stdout);
        assert!(
            rows.len() >= previous && rows.len() <= complete_entries,
            "cut at {at}"
        );
        previous = rows.len();
    }
    std::fs::write(&cut, &journal).unwrap();
    assert_eq!(decrypt(&id, &cut).len(), complete_entries);
}

/// A labels file that makes the portal's pages not match what the client expects.
fn broken_labels(dir: &Path, key: &str) -> PathBuf {
    let path = dir.join(format!("{key}.toml"));
    std::fs::write(&path, format!("{key} = \"Valider la demande\"\n")).unwrap();
    path
}

#[test]
fn the_canary_stops_a_run_on_pages_that_do_not_match() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    // No `Confirmer` button where the client looks for one: nothing is confirmed.
    let labels = broken_labels(dir.path(), "confirm_button");
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public).args([
            "--yes",
            "--rate",
            "100",
            "--labels",
            labels.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]),
        // No Confirmer was sent: no phone was cut off.
        2,
    );
    assert!(stderr.contains("canary"), "{stderr}");
    assert!(sim.resets().is_empty());
    // The canary failed; the workers after it, walking ahead to their
    // Confirmer meanwhile (four), may have failed there too.
    let report_rows = parse_csv(&std::fs::read(&report).unwrap());
    let failed = report_rows
        .iter()
        .filter(|r| r["status"] == "failed")
        .count();
    assert!((1..=5).contains(&failed), "{report_rows:?}");
    // With two canaries, the second is not tried once the first failed.
    // The workers after the canaries walk their licences up to Confirmer
    // meanwhile (the default concurrency: four), and may fail there the
    // same way before the canary's failure stops them; none confirms.
    std::fs::remove_file(&report).unwrap();
    exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public).args([
            "--yes",
            "--rate",
            "100",
            "--canary",
            "2",
            "--labels",
            labels.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]),
        2,
    );
    let report = parse_csv(&std::fs::read(&report).unwrap());
    let failed = report.iter().filter(|r| r["status"] == "failed").count();
    assert!((1..=5).contains(&failed), "{report:?}");
    assert_eq!(
        report.iter().filter(|r| r["status"] == "skipped").count(),
        all_licences().len() - failed
    );
    assert!(sim.resets().is_empty());

    // The password is not where the client looks for it: the canary licence is
    // reset once, reported as unknown, and nothing else is touched.
    let labels = broken_labels(dir.path(), "new_password");
    std::fs::remove_file(journal_of(&output)).ok();
    let out = run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
        .args([
            "--yes",
            "--rate",
            "100",
            "--labels",
            labels.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("may have changed"), "{stderr}");
    assert_eq!(sim.resets().len(), 1, "only the canary licence, once");
    assert_nothing_in_clear(dir.path(), &sim);
}

#[test]
fn max_failures_stops_the_run() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let labels = broken_labels(dir.path(), "reset_button");
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
            .args([
                "--yes",
                "--rate",
                "100",
                "--canary",
                "0",
                "--max-failures",
                "3",
                "--concurrency",
                "2",
            ])
            .args([
                "--labels",
                labels.to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
            ]),
        // Every failure came before its Confirmer: no phone was cut off.
        2,
    );
    assert!(stderr.contains("--max-failures 3"), "{stderr}");
    let report = parse_csv(&std::fs::read(&report).unwrap());
    let failed = report.iter().filter(|r| r["status"] == "failed").count();
    assert!(
        (3..=4).contains(&failed),
        "3 failures, and at most one more in flight: {failed}"
    );
    assert_eq!(
        failed + report.iter().filter(|r| r["status"] == "skipped").count(),
        all_licences().len()
    );
    assert!(sim.resets().is_empty());
}

#[test]
fn resume_tells_apart_two_phones_that_show_one_reference() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--twins", "--latency-ms", "20"]);
    let mut ds =
        sip_rotate::sim::dataset::Dataset::generate(&sip_rotate::sim::dataset::DatasetSpec {
            seed: 1,
            clients: 12,
            licences_per_client: 8,
        });
    ds.plant_twins();
    let first = ds.clients[0].reference.clone();
    let (a, b, other) = (&ds.licences[0], &ds.licences[1], &ds.licences[3]);
    assert_eq!(a.reference, b.reference);
    // The second twin first (picked by its number), then another licence;
    // interrupted once the second twin, the canary, is reset.
    let input = dir.path().join("second-twin.csv");
    std::fs::write(
        &input,
        format!(
            "client_ref,licence,sda\n{first},{},{}\n{first},{},\n",
            b.reference, b.sda, other.reference
        ),
    )
    .unwrap();
    let output = dir.path().join("out.age");
    let mut child = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--rate", "40"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_resets(&sim, 1);
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    assert_eq!(sim.resets()[0].key, b.key);
    // Resumed with every licence of the client: the first twin comes first
    // in the table, and must not pass for the second.
    let input = dir.path().join("all.csv");
    std::fs::write(&input, format!("client_ref,licence\n{first},*\n")).unwrap();
    exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--resume", "--rate", "40"]),
        0,
    );
    // Every phone of the client reset exactly once, both twins included.
    let truth = sim.resets();
    let mut keys: Vec<&str> = truth.iter().map(|t| t.key.as_str()).collect();
    keys.sort();
    let mut wanted: Vec<&str> = ds
        .licences
        .iter()
        .filter(|l| ds.client_of_service(l.service).reference == first)
        .map(|l| l.key.as_str())
        .collect();
    wanted.sort();
    assert_eq!(keys, wanted);
    // And both twins' passwords are recoverable, each beside its own number.
    // (The journal is gone: the stopped run's part file holds its passwords.)
    assert!(!journal_of(&output).exists());
    let mut rows = decrypt(&id, &part_of(&output));
    rows.extend(decrypt(&id, &output));
    for t in truth.iter().filter(|t| t.licence == a.reference) {
        assert!(
            rows.iter().any(|r| r["password"] == t.password
                && sip_rotate::phone::same_number(&r["sda"], &t.sda)),
            "twin {} lost",
            t.key
        );
    }
}

#[test]
fn a_rotation_stopped_twice_then_resumed_auto_with_its_identity_finishes_as_one() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("rotation-%H%M%S.csv.age");
    // Dated, as the timer's sample config has it: each run names its own.
    let report = dir.path().join("report-%H%M%S.csv");
    let reports = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("report-")
            })
            .collect()
    };
    // Interrupted (a part file), then resumed and killed (the journal only).
    interrupted(
        &sim,
        dir.path(),
        &output,
        &public,
        &["--report", report.to_str().unwrap()],
    );
    assert_eq!(reports().len(), 1, "the stopped run's report");
    resumed_then_killed(&sim, dir.path(), &output, &public);
    // A line put in the journal names a file that is no part of this
    // output: it is left alone.
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let journal = rotation_files(dir.path())
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".journal"))
        .expect("a journal");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str(&format!(
        "sip-rotate-part {{\"file\":\"{}\",\"passwords\":1}}\n",
        victim.display()
    ));
    // Nor does a report line naming it, its digest right: not a report.
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(b"precious\n")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    text.push_str(&format!(
        "sip-rotate-report {{\"file\":\"{}\",\"sha256\":\"{digest}\"}}\n",
        victim.display()
    ));
    std::fs::write(&journal, text).unwrap();
    // Resumed with the identity: one result, every password of the rotation.
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
            .args(["--yes", "--resume=auto", "-i"])
            .arg(&id)
            .args(["--rate", "100", "--report"])
            .arg(&report),
        0,
    );
    let files = rotation_files(dir.path());
    assert_eq!(files.len(), 1, "one result, no journal, no part: {files:?}");
    let result = &files[0];
    assert!(result.to_string_lossy().ends_with(".csv.age"), "{files:?}");
    let rows = decrypt(&id, result);
    let truth = sim.resets();
    let last = last_passwords(&truth);
    assert_eq!(rows.len(), all_licences().len(), "{stderr}");
    // (A kill may fall between a Confirmer and its journal entry: that
    // licence is reset again by the resume, and its last password counts.)
    assert_eq!(rows.len(), last.len(), "one row per licence");
    for row in &rows {
        assert_eq!(Some(&row["password"]), last.get(&row["licence"]), "{row:?}");
    }
    assert!(
        stderr.contains(&format!("({} licences)", rows.len())),
        "{stderr}"
    );
    assert!(!stderr.contains("earlier runs"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    // One report, every licence in it, in the place of the stopped run's;
    // the earlier runs' rows name the result.
    let left = reports();
    assert_eq!(left.len(), 1, "one report: {left:?}\n{stderr}");
    assert!(stderr.contains("the stopped run's"), "{stderr}");
    let reported = parse_csv(&std::fs::read(&left[0]).unwrap());
    assert_eq!(reported.len(), rows.len());
    let earlier: Vec<_> = reported
        .iter()
        .filter(|r| r["detail"].starts_with("reset by an earlier run"))
        .collect();
    assert!(!earlier.is_empty());
    for row in earlier {
        assert!(
            row["detail"].contains(&result.display().to_string()),
            "{row:?}"
        );
        // Its État before the reset is not what this run saw after it
        // (helper-17: "Déconnecté" for a phone in use).
        assert_eq!(row["state"], "", "{row:?}");
    }
    // The next scheduled run starts normally (in another second: its
    // result gets a name of its own).
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        == started
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Nothing left to resume: said of the pattern, not of a journal named
    // after this second, which nobody made.
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &["4054"]), &output, &public).args(["--yes", "--resume"]),
        2,
    );
    assert!(
        stderr.contains(&format!(
            "there is no journal of an unfinished run of {} to resume from",
            output.display()
        )),
        "{stderr}"
    );
    // (--resume=auto, as a timer's config has it: nothing to resume, a new run.)
    exits_with(
        run_cmd(&sim, &input(dir.path(), &["4054"]), &output, &public).args([
            "--yes",
            "--rate",
            "100",
            "--resume=auto",
        ]),
        0,
    );
    assert_eq!(rotation_files(dir.path()).len(), 2, "a new result");
}

#[test]
fn a_second_run_while_the_first_goes_is_told_it_is_in_use() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("rotation-%H%M%S.csv.age");
    let mut first = spawn_run(&sim, dir.path(), &output, &public, &["--rate", "5"]);
    wait_for_resets(&sim, 1);
    // Not "did not finish": it is still going.
    for resume in [None, Some("--resume=auto")] {
        let stderr = exits_with(
            run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
                .args(["--yes"])
                .args(resume),
            2,
        );
        // The lock's message, with who holds it (the journal's said only
        // "in use by another run").
        assert!(
            stderr.contains("another sip-rotate run holds the lock") && stderr.contains("pid "),
            "{resume:?}: {stderr}"
        );
        assert!(!stderr.contains("did not finish"), "{resume:?}: {stderr}");
    }
    // Another state folder (another user's, say), another output: the same
    // portal account all the same (found by a helper: both runs reset the
    // same phones, both exit 0, each output with dead passwords).
    let elsewhere = dir.path().join("other-state");
    let stderr = exits_with(
        run_cmd(
            &sim,
            &input(dir.path(), &CLIENTS),
            &dir.path().join("other.age"),
            &public,
        )
        .env("XDG_STATE_HOME", &elsewhere)
        .args(["--yes"]),
        2,
    );
    assert!(
        stderr.contains("another sip-rotate run on this machine is rotating this portal account"),
        "{stderr}"
    );
    assert!(!dir.path().join("other.age").exists());
    signal(&first, "-TERM");
    assert_eq!(first.wait().unwrap().code(), Some(3));
}

#[test]
fn after_an_interrupt_a_kill_and_two_resumes_the_summary_counts_what_the_files_hold() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    let journal = journal_of(&output);
    // Interrupted: this run's passwords go to out.age.part1.
    interrupted(&sim, dir.path(), &output, &public, &[]);
    let part = PathBuf::from(format!("{}.part1", output.display()));
    let in_part = decrypt(&id, &part).len();
    assert!(in_part >= 3);
    // Resumed, then killed: no part file, the journal grows.
    resumed_then_killed(&sim, dir.path(), &output, &public);
    let earlier = complete_entries(&journal);
    // Resumed again, to the end.
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
            .args(["--yes", "--resume", "--rate", "100"]),
        0,
    );
    let now = decrypt(&id, &output).len();
    assert!(
        stderr.contains(&format!(
            "new passwords: {} ({now} licences)",
            output.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "the {earlier} passwords of earlier runs are in {}; {} holds {in_part} of them; that journal holds all {} passwords",
            journal.display(),
            part.display(),
            complete_entries(&journal)
        )),
        "{stderr}"
    );
    assert_eq!(complete_entries(&journal), earlier + now);
}

#[test]
fn resume_never_takes_one_look_alike_phone_for_another() {
    // Two phones alike in every column of the users table; the second is
    // reset first (the first's page is slow), then the run is interrupted.
    let mut ds =
        sip_rotate::sim::dataset::Dataset::generate(&sip_rotate::sim::dataset::DatasetSpec {
            seed: 1,
            clients: 12,
            licences_per_client: 8,
        });
    ds.plant_twins();
    ds.make_twins_identical();
    let (a, b) = (&ds.licences[0], &ds.licences[1]);
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&[
        "--identical-twins",
        "--page-latency",
        &format!("detail:{}=3000", a.key),
    ]);
    let first = ds.clients[0].reference.clone();
    let input = dir.path().join("all.csv");
    std::fs::write(&input, format!("client_ref,licence\n{first},*\n")).unwrap();
    let output = dir.path().join("out.age");
    let mut child = run_cmd(&sim, &input, &output, &public)
        .args([
            "--yes",
            "--rate",
            "40",
            "--canary",
            "0",
            "--concurrency",
            "2",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_resets(&sim, 1);
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let before: Vec<String> = sim.resets().iter().map(|t| t.key.clone()).collect();
    assert!(
        before.contains(&b.key) && !before.contains(&a.key),
        "{before:?}"
    );
    exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--resume", "--rate", "40"]),
        0,
    );
    let truth = sim.resets();
    let mut keys: Vec<&str> = truth.iter().map(|t| t.key.as_str()).collect();
    keys.sort();
    let mut wanted: Vec<&str> = ds
        .licences
        .iter()
        .filter(|l| ds.client_of_service(l.service).reference == first)
        .map(|l| l.key.as_str())
        .collect();
    wanted.sort();
    assert_eq!(keys, wanted, "each phone reset once, the slow twin too");
    // Both twins' current passwords are recoverable.
    assert!(!journal_of(&output).exists());
    let mut rows = decrypt(&id, &part_of(&output));
    rows.extend(decrypt(&id, &output));
    for t in truth.iter().filter(|t| t.licence == a.reference) {
        assert!(
            rows.iter().any(|r| r["password"] == t.password),
            "{} lost",
            t.key
        );
    }
}

#[test]
fn a_password_no_file_can_take_is_shown_encrypted_and_reads_back() {
    // The first user's name is long: its journal entry and the part file
    // are both over the file size limit; only the summary can take it.
    let long_name = "N".repeat(3000);
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--hostile-user-name", &long_name]);
    let output = dir.path().join("out.age");
    let mut run = run_cmd(&sim, &input(dir.path(), &["4054"]), &output, &public);
    run.args(["--yes", "--rate", "100"]);
    with_file_size_limit(&mut run, 2000);
    let out = run.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let truth = sim.resets();
    assert_eq!(truth.len(), 1, "the canary only: {stderr}");
    assert!(
        stderr.contains("1 new password could be written to no file"),
        "{stderr}"
    );
    // What follows that line, saved to a file, decrypts as a journal.
    let rescued: String = stderr
        .lines()
        .skip_while(|l| !l.contains("could be written to no file"))
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    let file = dir.path().join("rescued.journal");
    std::fs::write(&file, rescued).unwrap();
    let rows = decrypt(&id, &file);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["password"], truth[0].password);
    assert_eq!(rows[0]["name"], long_name);
    assert_nothing_in_clear(dir.path(), &sim);
}

/// The rotation's files in `dir`: results, parts, journals.
fn rotation_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".csv.age"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_stopped_run_resumed_without_an_identity_leaves_no_journal_and_the_next_run_starts() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    // Each run its own name, as a timer's config has it (%f: no waiting
    // for the clock's second to change).
    let output = dir.path().join("rot-%H%M%S%f.csv.age");
    interrupted(&sim, dir.path(), &output, &public, &[]);
    let stopped = rotation_files(dir.path());
    assert_eq!(stopped.len(), 2, "a part and the journal: {stopped:?}");
    let part = stopped
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".part1"))
        .expect("a part file")
        .clone();
    let in_part = decrypt(&id, &part).len();
    let report = dir.path().join("resumed.report");
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
            .args(["--yes", "--resume", "--rate", "100", "--quiet", "--report"])
            .arg(&report),
        0,
    );
    // Quiet, yet it says where the earlier passwords are (the result does
    // not hold them): checked below.
    // The report names the part for the earlier run's rows, not the
    // journal that is gone.
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    let earlier: Vec<_> = rows
        .iter()
        .filter(|r| r["detail"].starts_with("reset by an earlier run"))
        .collect();
    assert_eq!(earlier.len(), in_part, "{rows:?}");
    assert!(
        earlier
            .iter()
            .all(|r| r["detail"].contains(&part.display().to_string())),
        "{rows:?}"
    );
    // The journal is gone: every password it held is in a complete file.
    let files = rotation_files(dir.path());
    assert_eq!(files.len(), 2, "the part and the result: {files:?}");
    assert!(files.contains(&part), "{files:?}");
    let result = files.iter().find(|p| **p != part).unwrap();
    assert!(result.to_string_lossy().ends_with(".csv.age"), "{files:?}");
    // Between them, each licence once, with the portal's last password.
    let all = recovered(&id, &[&part, result]);
    let last = last_passwords(&sim.resets());
    assert_eq!(
        all.keys().cloned().collect::<HashSet<_>>(),
        all_licences(),
        "{stderr}"
    );
    for (licence, passwords) in &all {
        assert_eq!(passwords.len(), 1, "{licence} in one file only");
        assert_eq!(Some(&passwords[0]), last.get(licence), "{licence}");
    }
    // The summary says where the earlier passwords are, and how to gather.
    assert!(
        stderr.contains(&format!(
            "the {in_part} passwords of earlier runs are in the part files they were written to: {} holds {in_part} of them",
            part.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("an identity given to --resume"), "{stderr}");
    // Counted apart: what this run reset, what the stopped one did.
    assert!(
        stderr.contains(&format!(
            "licences: {} reset ({} by this run, {in_part} by an earlier one)",
            all_licences().len(),
            all_licences().len() - in_part
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(".journal"), "{stderr}");
    // The next scheduled run starts normally.
    exits_with(
        run_cmd(&sim, &input(dir.path(), &["4054"]), &output, &public)
            .args(["--yes", "--rate", "100"]),
        0,
    );
    assert_eq!(rotation_files(dir.path()).len(), 3, "a new result");
    assert_nothing_in_clear(dir.path(), &sim);
}

#[test]
fn identities_in_the_config_gather_a_stopped_rotation_into_one_result() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("rotation.csv.age");
    interrupted(&sim, dir.path(), &output, &public, &[]);
    // As the unit hands it over: LoadCredential=sip-rotate-identity:FILE.
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::copy(&id, credentials.join("sip-rotate-identity")).unwrap();
    let config = dir.path().join("rotation.toml");
    std::fs::write(
        &config,
        "resume = \"auto\"\nidentities = [\"$CREDENTIALS_DIRECTORY/sip-rotate-identity\"]\n",
    )
    .unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
            .args(["--yes", "--rate", "100", "--config"])
            .arg(&config)
            .env("CREDENTIALS_DIRECTORY", &credentials),
        0,
    );
    assert_eq!(rotation_files(dir.path()), vec![output.clone()], "{stderr}");
    let rows = decrypt(&id, &output);
    let last = last_passwords(&sim.resets());
    assert_eq!(rows.len(), all_licences().len(), "{stderr}");
    for row in &rows {
        assert_eq!(Some(&row["password"]), last.get(&row["licence"]), "{row:?}");
    }
    // With no run to finish, the identity is not looked for: a run by
    // hand, outside the unit, starts afresh.
    exits_with(
        run_cmd(
            &sim,
            &input(dir.path(), &["4054"]),
            &dir.path().join("second.csv.age"),
            &public,
        )
        .args(["--yes", "--rate", "100", "--config"])
        .arg(&config)
        .env_remove("CREDENTIALS_DIRECTORY"),
        0,
    );
}

#[test]
fn a_part_file_that_is_no_longer_the_one_written_keeps_the_journal() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    interrupted(&sim, dir.path(), &output, &public, &[]);
    // Replaced by something else (another run's part, a damaged copy).
    std::fs::write(part_of(&output), "not the part file\n").unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
            .args(["--yes", "--resume", "--rate", "100"]),
        0,
    );
    let journal = journal_of(&output);
    assert!(journal.exists(), "the journal alone holds those passwords");
    // The summary no longer sends anyone to the part for them.
    assert!(
        stderr.contains(&format!(
            "{} held {} of them but is gone or changed since",
            part_of(&output).display(),
            complete_entries(&journal) - decrypt(&id, &output).len()
        )),
        "{stderr}"
    );
    assert_last_passwords_in(&sim, &id, &[&journal, &output]);
}

/// Under a fixed name, the kept journal of a finished rotation is in the
/// next run's way: said as such, never as a run to resume.
#[test]
fn a_finished_rotation_s_journal_under_a_fixed_name_is_not_called_unfinished() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    let mut run = spawn_run(&sim, dir.path(), &output, &public, &["--rate", "40"]);
    wait_for_resets(&sim, 3);
    signal(&run, "-KILL");
    run.wait().unwrap();
    exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
            .args(["--yes", "--resume", "--rate", "100"]),
        0,
    );
    assert!(journal_of(&output).exists());
    // The result handed over and moved away; the journal stays.
    std::fs::rename(&output, dir.path().join("handed-over.age")).unwrap();
    let resets = sim.resets().len();
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &["4054"]), &output, &public)
            .args(["--yes", "--rate", "100"]),
        2,
    );
    assert!(
        stderr.contains("holds passwords of a finished rotation"),
        "{stderr}"
    );
    assert!(!stderr.contains("--resume"), "{stderr}");
    assert_eq!(sim.resets().len(), resets, "nothing reset");
}

#[test]
fn a_rotation_finished_with_its_journal_kept_lets_the_next_run_start() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("rot-%H%M%S%f.csv.age");
    // Killed: its passwords in the journal only, no part file.
    let mut run = spawn_run(&sim, dir.path(), &output, &public, &["--rate", "40"]);
    wait_for_resets(&sim, 3);
    signal(&run, "-KILL");
    run.wait().unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public)
            .args(["--yes", "--resume", "--rate", "100"]),
        0,
    );
    assert!(stderr.contains("the rotation is finished"), "{stderr}");
    let journals: Vec<PathBuf> = rotation_files(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".journal"))
        .collect();
    assert_eq!(journals.len(), 1, "kept: only it holds the killed run's");
    // The next scheduled run starts beside it, resume = "auto" or not.
    for resume in [None, Some("--resume=auto")] {
        exits_with(
            run_cmd(&sim, &input(dir.path(), &["4054"]), &output, &public)
                .args(["--yes", "--rate", "100"])
                .args(resume),
            0,
        );
    }
    assert!(journals[0].exists());
}

/// A `Confirmer` the portal answered (a redirect to the page that shows
/// the password) was taken, whatever becomes of that page: a portal that
/// goes away before the page is read leaves the phone's outcome unknown,
/// counted as a confirmation (exit 3), never "not reset" with exit 2 (the
/// refused connections to the page after it were read as a press never
/// sent: found by a helper).
#[test]
fn a_portal_that_goes_away_after_answering_confirmer_leaves_the_outcome_unknown() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--page-latency", "detail:FPC172910=1500"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172910\n").unwrap();
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let child = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--rate", "100", "--report"])
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The page the Confirmer's answer led to is being read (it takes
    // 1.5 s): the portal goes away, at once (SIGKILL).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sim
        .pages_served()
        .iter()
        .skip_while(|kind| kind.as_str() != "confirm")
        .any(|kind| kind == "detail")
    {
        assert!(std::time::Instant::now() < deadline, "no Confirmer");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let truth = sim.truth.clone();
    drop(sim);
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(read_truth(&truth).len(), 1, "{said}");
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(!said.contains("NOTHING RESET"), "{said}");
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    assert_eq!(rows.len(), 1, "{said}");
    assert_ne!(rows[0]["status"], "reset", "{rows:?}");
    assert!(
        rows[0]["confirmations"].parse::<u32>().unwrap() >= 1,
        "{rows:?}"
    );
}

/// A resume stopped while it resolves still says which phones the earlier
/// run reset, in its summary and in the report that takes the place of
/// that run's (found by a helper: every row read "skipped", and the report
/// that named the three phones reset was gone).
#[test]
fn a_resume_stopped_while_resolving_reports_what_the_earlier_run_reset() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let report_arg = report.to_str().unwrap();
    interrupted(
        &sim,
        dir.path(),
        &output,
        &public,
        &["--report", report_arg],
    );
    let earlier = sim.resets();
    let served = sim.pages_served().len();
    let resume = spawn_run(
        &sim,
        dir.path(),
        &output,
        &public,
        &["--rate", "1", "--resume", "--report", report_arg],
    );
    // Logged in, resolving (a request a second from now on).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sim.pages_served()[served..]
        .iter()
        .any(|k| k == "mes-services")
    {
        assert!(std::time::Instant::now() < deadline, "no resolution");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    signal(&resume, "-TERM");
    let out = resume.wait_with_output().unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("run.stderr")).unwrap();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(sim.resets().len(), earlier.len(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} by an earlier one", earlier.len())),
        "{stderr}"
    );
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    for t in &earlier {
        assert!(
            rows.iter()
                .any(|r| r["licence"] == t.licence && r["status"] == "reset"),
            "{} not reported reset: {rows:?}",
            t.licence
        );
    }
}

/// The advice to finish a stopped rotation names only what the command
/// lacks: one that resumes already (`--resume=auto`, a timer's) is told to
/// run again, adding `-i` only if it has none (found by a helper: it was
/// told to add `--resume`, which it had, and clap refused the command).
#[test]
fn the_advice_to_finish_adds_nothing_the_command_has() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    let id = identity.to_str().unwrap();
    for (extra, told) in [
        (
            vec!["--resume=auto"],
            "run the same command again to finish (add -i IDENTITY",
        ),
        (
            vec!["--resume=auto", "-i", id],
            "run the same command (--resume -i IDENTITY) again to finish",
        ),
    ] {
        let done = sim.resets().len();
        let run = spawn_run(
            &sim,
            dir.path(),
            &output,
            &public,
            &[&["--rate", "40"], extra.as_slice()].concat(),
        );
        wait_for_resets(&sim, done + 2);
        signal(&run, "-TERM");
        let out = run.wait_with_output().unwrap();
        let stderr = std::fs::read_to_string(dir.path().join("run.stderr")).unwrap();
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(told), "{extra:?}: {stderr}");
        assert!(!stderr.contains("with --resume"), "{extra:?}: {stderr}");
    }
    // Done as said: the same command, once more.
    exits_with(
        run_cmd(&sim, &input(dir.path(), &CLIENTS), &output, &public).args([
            "--yes",
            "--rate",
            "100",
            "--resume=auto",
            "-i",
            id,
        ]),
        0,
    );
}
