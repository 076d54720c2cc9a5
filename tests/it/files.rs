//! The files of a run: none overwritten that the run did not create, none
//! written through a link, all checked before the first portal request; the
//! journal removed only when every password it holds is in a complete
//! result file; and what a late failure leaves still said truthfully.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn input(dir: &Path, clients: &[&str]) -> PathBuf {
    let path = dir.join("in.csv");
    let mut text = String::from("client_ref,licence\n");
    for c in clients {
        text += &format!("{c},*\n");
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn journal_of(output: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", output.display()))
}

/// Entries of a journal whose armored block is complete.
fn complete_entries(journal: &Path) -> usize {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim_end() == "-----END AGE ENCRYPTED FILE-----")
        .count()
}

/// Runs `command` to its end, expecting a refusal before any portal request.
fn refused_before_any_request(sim: &Sim, command: &mut Command) -> String {
    let before = sim.pages_served().len();
    let stderr = exits_with(command, 2);
    assert_eq!(
        sim.pages_served().len(),
        before,
        "no portal request: {stderr}"
    );
    stderr
}

/// Kills a run (`kill -9`) once it has reset `n` licences; returns the
/// journal's complete entries.
fn killed_after(sim: &Sim, command: &mut Command, output: &Path, n: usize) -> usize {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_resets(sim, n);
    signal(&child, "-KILL");
    child.wait().unwrap();
    let entries = complete_entries(&journal_of(output));
    assert!(entries > 0, "the killed run journaled nothing");
    entries
}

#[test]
fn a_resumed_run_interrupted_while_resolving_keeps_the_journal() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    let input = input(dir.path(), &["4054", "40542", "4082", "4094"]);
    let journaled = killed_after(
        &sim,
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "40"]),
        &output,
        4,
    );
    let journal = journal_of(&output);
    let before = std::fs::read(&journal).unwrap();

    // Resumed with the phases overlapped, then stopped right after its login,
    // long before a client is resolved.
    let served = sim.pages_served().len();
    let resumed = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--resume", "--skip-unresolved", "--rate", "5"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while sim.pages_served().len() < served + 4 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    signal(&resumed, "-TERM");
    let out = resumed.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(journal.exists(), "the journal is kept: {stderr}");
    // The phones it reset are said, though the resume never resolved them.
    assert!(stderr.contains("by an earlier one"), "{stderr}");
    assert!(
        std::fs::read(&journal).unwrap().starts_with(&before),
        "and whole"
    );
    assert_eq!(complete_entries(&journal), journaled);
    // Said once, as the earlier run's, with the way to finish.
    assert!(
        stderr.contains(&format!(
            "of earlier runs {} in {}; that journal holds all {journaled} passwords of the rotation",
            if journaled == 1 { "is" } else { "are" },
            journal.display()
        )) && stderr.contains("run the same command again to finish (add -i IDENTITY"),
        "{stderr}"
    );
    assert!(!stderr.contains("new password"), "not this run's: {stderr}");
    // Its passwords are the portal's.
    let last = last_passwords(&sim.resets());
    for row in decrypt(&identity, &journal) {
        assert_eq!(row["password"], last[&row["licence"]]);
    }
}

/// A stopped rotation resumed with an input that no longer lists its rows
/// (edited since): finished, it would say all was done with those
/// licences never reset. Refused before the portal is asked anything; the
/// journal stays as it was, and the stopped run's input finishes it.
#[test]
fn resuming_with_an_input_that_leaves_out_the_stopped_run_s_rows_is_refused() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    let first = input(dir.path(), &["4054", "40542"]);
    let journaled = killed_after(
        &sim,
        run_cmd(&sim, &first, &output, &public).args(["--yes", "--rate", "40"]),
        &output,
        2,
    );
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "client_ref,licence\n4082,*\n").unwrap();
    let served = sim.pages_served().len();
    let stderr = exits_with(
        run_cmd(&sim, &other, &output, &public).args(["--yes", "--resume", "--rate", "100"]),
        2,
    );
    assert!(stderr.contains("'4054,,*', '40542,,*'"), "{stderr}");
    assert_eq!(sim.pages_served().len(), served, "{stderr}");
    let journal = journal_of(&output);
    assert_eq!(complete_entries(&journal), journaled, "{stderr}");
    // More rows than the stopped run's: resumed.
    let wider = input(dir.path(), &["4054", "40542", "4082"]);
    exits_with(
        run_cmd(&sim, &wider, &output, &public)
            .args(["--yes", "--resume", "--rate", "100", "-i"])
            .arg(&identity),
        0,
    );
    assert_eq!(decrypt(&identity, &output).len(), 24);
}

#[test]
fn no_file_the_run_writes_may_be_one_it_reads_or_keeps() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&[]);
    let output = dir.path().join("res.age");
    let input = input(dir.path(), &["4054"]);
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "keep").unwrap();
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let journal = journal_of(&output);
    let collisions: [(&Path, &str); 6] = [
        (&output, "the output and the report are one file"),
        (&journal, "the journal and the report are one file"),
        (&input, "exists already"),
        (&identity, "exists already"),
        (&link, "is a symbolic link"),
        (
            &dir.path().join("res.age.part1"),
            "has the name of a part file",
        ),
    ];
    for (report, says) in collisions {
        for extra in [&[][..], &["--overwrite-report"][..]] {
            let stderr = refused_before_any_request(
                &sim,
                run_cmd(&sim, &input, &output, &public)
                    .args(["--yes", "--report"])
                    .arg(report)
                    .args(extra),
            );
            if extra.is_empty() {
                assert!(stderr.contains(says), "{}: {stderr}", report.display());
            }
        }
    }
    // With --overwrite-report, only an earlier report is replaced.
    for not_a_report in [&input, &identity] {
        let stderr = refused_before_any_request(
            &sim,
            run_cmd(&sim, &input, &output, &public)
                .args(["--yes", "--overwrite-report", "--report"])
                .arg(not_a_report),
        );
        assert!(stderr.contains("is not a sip-rotate report"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
    assert!(std::fs::read_to_string(&input).unwrap().contains("4054,*"));
    assert!(
        std::fs::read_to_string(&identity)
            .unwrap()
            .contains("AGE-SECRET-KEY")
    );
    assert!(sim.resets().is_empty());
    assert!(!output.exists() && !journal.exists());

    // A report in a missing folder, a dangling link at the output: refused
    // before the first request too.
    let stderr = refused_before_any_request(
        &sim,
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--report"])
            .arg(dir.path().join("no/such/folder/report.csv")),
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("mkdir -p"), "{stderr}");
    let dangling = dir.path().join("dangling.age");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    let stderr =
        refused_before_any_request(&sim, run_cmd(&sim, &input, &dangling, &public).arg("--yes"));
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn planted_links_at_the_lock_or_the_journal_clobber_nothing() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = input(dir.path(), &["4054"]);
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "keep").unwrap();
    // The lock: its name is known from the portal and the login.
    let lock = sim
        .state
        .join("sip-rotate")
        .join(sip_rotate::rotation::lock_name(
            &sim.url.parse().unwrap(),
            LOGIN,
        ));
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&precious, &lock).unwrap();
    let stderr = refused_before_any_request(
        &sim,
        run_cmd(&sim, &input, &dir.path().join("a.age"), &public).arg("--yes"),
    );
    assert!(stderr.contains("lock"), "{stderr}");
    std::fs::remove_file(&lock).unwrap();
    // The journal of a run to resume.
    let output = dir.path().join("b.age");
    std::os::unix::fs::symlink(&precious, journal_of(&output)).unwrap();
    let stderr = refused_before_any_request(
        &sim,
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--resume"]),
    );
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
    assert!(sim.resets().is_empty());
}

#[test]
fn a_run_removes_no_file_of_another_even_one_named_like_its_own() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let output = dir.path().join("out.age");
    let others = [
        ".out.age.notes.tmp",
        ".out.age.tmp",
        ".out.age.ABCDEFG.tmp",
        // Named as a temporary of this output is, but not one of its files.
        ".out.age.AAAAAA.tmp",
    ];
    for name in others {
        std::fs::write(dir.path().join(name), "not yours").unwrap();
    }
    exits_with(
        run_cmd(&sim, &input(dir.path(), &["4054"]), &output, &public)
            .args(["--yes", "--rate", "100"]),
        0,
    );
    for name in others {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(name)).unwrap(),
            "not yours",
            "{name}"
        );
    }
}

#[test]
fn the_report_is_private_even_under_umask_000() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = input(dir.path(), &["4054"]);
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let mut command = run_cmd(&sim, &input, &output, &public);
    command
        .args(["--yes", "--rate", "100", "--report"])
        .arg(&report);
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    exits_with(&mut command, 0);
    for file in [&report, &output] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    for lock in locks(&sim) {
        let mode = std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", lock.display());
    }
}

#[test]
fn a_report_that_cannot_be_written_after_the_resets_hides_nothing() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let input = input(dir.path(), &["4054"]);
    let output = dir.path().join("out.age");
    let folder = dir.path().join("reports");
    std::fs::create_dir(&folder).unwrap();
    let run = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--rate", "40", "--report"])
        .arg(folder.join("report.csv"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The folder goes away once the resets began.
    wait_for_resets(&sim, 1);
    std::fs::remove_dir_all(&folder).unwrap();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "resets happened: {stderr}");
    assert!(stderr.contains("licences: 8 reset"), "{stderr}");
    assert!(
        stderr.contains(&format!("new passwords: {} (8 licences)", output.display())),
        "{stderr}"
    );
    assert!(stderr.contains("cannot write the report"), "{stderr}");
    assert_eq!(decrypt(&identity, &output).len(), 8);
    assert!(!journal_of(&output).exists());
}

#[test]
fn a_resumed_run_encrypts_to_the_journal_s_recipients_only() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    let input = input(dir.path(), &["4054", "40542"]);
    killed_after(
        &sim,
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "40"]),
        &output,
        2,
    );
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, other_public) = identity(&other);
    let stderr = refused_before_any_request(
        &sim,
        run_cmd(&sim, &input, &output, &other_public).args(["--yes", "--resume"]),
    );
    assert!(
        stderr.contains("this run's recipients are another set"),
        "{stderr}"
    );
    assert!(stderr.contains(&public), "names the journal's: {stderr}");
}

#[test]
fn decrypt_reads_every_entry_it_can_and_names_the_others() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, other_public) = crate::common::identity(&other);
    // Two journals, each to its own recipient, made into one: entries that
    // one identity cannot open among those it can.
    let mut mixed = Vec::new();
    for (name, recipient, clients) in [
        ("a.age", &public, ["4054"]),
        ("b.age", &other_public, ["4082"]),
    ] {
        let output = dir.path().join(name);
        let input = input(dir.path(), &clients);
        killed_after(
            &sim,
            run_cmd(&sim, &input, &output, recipient).args(["--yes", "--rate", "40"]),
            &output,
            sim.resets().len() + 2,
        );
        mixed.extend(std::fs::read(journal_of(&output)).unwrap());
    }
    let journal = dir.path().join("mixed.age.journal");
    std::fs::write(&journal, mixed).unwrap();
    let decrypted = dir.path().join("mixed.csv");
    let out = Command::new(bin())
        .args(["decrypt", "-i"])
        .arg(&identity)
        .arg("-o")
        .arg(&decrypted)
        .arg(&journal)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let rows = parse_csv(&std::fs::read(&decrypted).unwrap());
    assert_eq!(
        rows.len(),
        complete_entries(&journal_of(&dir.path().join("a.age")))
    );
    assert!(rows.iter().all(|r| r["client_ref"] == "4054"));
    let b = complete_entries(&journal_of(&dir.path().join("b.age")));
    assert!(
        stderr.contains(&format!(
            "{b} {} could not be decrypted",
            if b == 1 {
                "journal entry"
            } else {
                "journal entries"
            }
        )),
        "{stderr}"
    );
}

/// A journal cut in the middle of its last entry (a run killed while
/// writing it): decrypt reads the others (exit 0: the cut one is no error
/// of decrypt's), and names the cut one instead of passing it over.
#[test]
fn decrypt_names_a_journal_entry_cut_off_before_its_end() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--latency-ms", "20"]);
    let output = dir.path().join("out.age");
    let entries = killed_after(
        &sim,
        run_cmd(&sim, &input(dir.path(), &["4054"]), &output, &public)
            .args(["--yes", "--rate", "40"]),
        &output,
        3,
    );
    let journal = journal_of(&output);
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&journal, &bytes).unwrap();
    let out = Command::new(bin())
        .args(["decrypt", "-i"])
        .arg(&identity)
        .arg("-o")
        .arg(dir.path().join("j.csv"))
        .arg(&journal)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} decrypted",
            if entries == 2 {
                "1 row".to_string()
            } else {
                format!("{} rows", entries - 1)
            }
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 journal entry was cut off before its end"),
        "{stderr}"
    );
}
