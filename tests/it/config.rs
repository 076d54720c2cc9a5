//! Scheduled runs: everything from one `--config` file (password from a
//! command, dated output name), flags overriding it, and a lock that keeps
//! two runs of one config apart.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write_config(dir: &Path, sim: &Sim, public: &str, extra: &str) -> PathBuf {
    std::fs::write(dir.join("licences.csv"), "client_ref,licence\n4054,*\n").unwrap();
    std::fs::write(
        dir.join("recipients.txt"),
        format!("# the phone team\n{public}\n"),
    )
    .unwrap();
    let config = dir.join("rotation.toml");
    std::fs::write(
        &config,
        format!(
            "portal = \"{}\"\nlogin = \"{LOGIN}\"\nprofile = \"revendeur\"\npassword_command = \"echo {PASSWORD}\"\n\
             recipients_file = \"recipients.txt\"\nrate = 100\nconcurrency = 2\ninput = \"licences.csv\"\n\
             output = \"rotation-%Y%m%d.csv.age\"\nreport = \"rotation-%Y%m%d.report.csv\"\n{extra}",
            sim.url
        ),
    )
    .unwrap();
    config
}

fn run_with_config(config: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(["run", "--yes", "--quiet", "--config"])
        .arg(config)
        .env_remove("MYOPENIP_PASSWORD")
        .env_remove("MYOPENIP_LOGIN")
        .env("XDG_STATE_HOME", config.parent().unwrap().join("state"))
        .stdin(Stdio::null());
    c
}

#[test]
fn a_cron_line_needs_only_the_config_file() {
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&[]);
    let config = write_config(dir.path(), &sim, &public, "");
    let out = run_with_config(&config).current_dir("/").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty() && out.stdout.is_empty(),
        "--quiet: nothing on success"
    );
    let today = chrono::Local::now().format("%Y%m%d").to_string();
    let output = dir.path().join(format!("rotation-{today}.csv.age"));
    assert!(
        dir.path()
            .join(format!("rotation-{today}.report.csv"))
            .exists()
    );
    let rows = decrypt(&id, &output);
    assert_eq!(rows.len(), 8);
    let last = last_passwords(&sim.resets());
    assert!(rows.iter().all(|r| last[&r["licence"]] == r["password"]));
}

#[test]
fn a_dated_name_finds_the_unfinished_run_and_a_new_run_waits_for_it() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--latency-ms", "20"]);
    let config = write_config(dir.path(), &sim, &public, "");
    // Every run's own name: a time field.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "rotation-%Y%m%d.csv.age",
            "rotation-%Y%m%d-%H%M%S%f.csv.age",
        )
        .replace("rate = 100", "rate = 40");
    std::fs::write(&config, text).unwrap();
    let mut first = Command::new(bin());
    first
        .args(["run", "--yes", "--config"])
        .arg(&config)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let first = first.spawn().unwrap();
    wait_for_resets(&sim, 2);
    signal(&first, "-TERM");
    let mut first = first;
    assert_eq!(first.wait().unwrap().code(), Some(3));
    let before = sim.resets().len();
    // A new name (the time to the nanosecond): it must not start beside
    // the unfinished run.
    let out = run_with_config(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("did not finish") && stderr.contains("--resume"),
        "{stderr}"
    );
    assert_eq!(sim.resets().len(), before, "nothing reset twice");
    // --resume finds it by the pattern, and finishes it.
    let out = run_with_config(&config).arg("--resume").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut keys: Vec<String> = sim.resets().into_iter().map(|t| t.key).collect();
    keys.sort();
    let total = keys.len();
    keys.dedup();
    assert_eq!((keys.len(), total), (8, 8), "each licence once");
}

#[test]
fn flags_override_the_config_file() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let config = write_config(dir.path(), &sim, &public, "");
    // The file's command gives a wrong password; the environment's (which wins) is right.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("echo {PASSWORD}"), "echo wrong");
    std::fs::write(&config, text).unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = dir.path().join("flag.age");
    let out = run_with_config(&config)
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .args(["-o"])
        .arg(&output)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(output.exists(), "-o wins over the file's output");

    // A password file readable by others is refused before any request.
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_with_config(&config)
        .arg("--password-file")
        .arg(&pw)
        .args(["-o"])
        .arg(dir.path().join("x.age"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    // Its group only: said so.
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run_with_config(&config)
        .arg("--password-file")
        .arg(&pw)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can be read by its group (mode 640)"),
        "{stderr}"
    );
}

#[test]
fn every_run_setting_can_live_in_the_config_file() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    // Labels that miss the Confirmer button: every reset fails before it.
    let labels = dir.path().join("labels.toml");
    std::fs::write(&labels, "confirm_button = \"Valider la demande\"\n").unwrap();
    let config = write_config(
        dir.path(),
        &sim,
        &public,
        "canary = 2\nmax_failures = 1\nmax_resets = 3\nskip_unresolved = true\ntimeout = 10\n\
         labels = \"labels.toml\"\nlog_format = \"json\"\nquiet = false\ncsv_dialect = \"excel\"\n",
    );
    let out = Command::new(bin())
        .args(["run", "--yes", "--config"])
        .arg(&config)
        .env_remove("MYOPENIP_PASSWORD")
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "no Confirmer sent: {stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("log_format: {l}")))
        .collect();
    let summary = lines.last().unwrap();
    // max_failures = 1 stopped the first of the two canaries.
    assert_eq!(
        summary["stopped"], "1 licence failed (--max-failures 1)",
        "{stderr}"
    );
    assert_eq!(summary["licences"]["failed"], 1, "{stderr}");
    assert!(sim.resets().is_empty());
    // The report in the file's dialect.
    let report = std::fs::read(summary["report"].as_str().unwrap()).unwrap();
    assert!(
        report.starts_with(b"\xEF\xBB\xBFline;client_ref;"),
        "csv_dialect"
    );
}

#[test]
fn the_portal_password_comes_from_a_systemd_credential() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let config = write_config(dir.path(), &sim, &public, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("password_command = \"echo {PASSWORD}\"\n"), "");
    std::fs::write(&config, text).unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let credential = credentials.join("myopenip-password");
    std::fs::write(&credential, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&credential, std::fs::Permissions::from_mode(0o400)).unwrap();
    let out = run_with_config(&config)
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sim.resets().len(), 8);
}

/// A password source that gives nothing says so and what to do; done as
/// said, the run goes: an empty password file, a password_command that
/// prints nothing, one that fails. Nothing is reset before.
#[test]
fn a_password_source_that_gives_nothing_says_what_to_do() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let config = write_config(dir.path(), &sim, &public, "");
    let with = |source: &str| {
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text
            .lines()
            .filter(|l| !l.starts_with("password_"))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        std::fs::write(&config, format!("{text}{source}\n")).unwrap();
    };
    let file = dir.path().join("portal-password");
    std::fs::write(&file, "").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (source, what, hint) in [
        (
            "password_file = \"portal-password\"",
            "is empty",
            "hint: put the portal password on its first line",
        ),
        (
            "password_command = \"true\"",
            "printed nothing",
            "hint: it must print the portal password on its first line",
        ),
        (
            "password_command = \"exit 3\"",
            "password_command failed",
            "hint: run it by hand",
        ),
        // One that waits for someone (a passphrase prompt): bounded.
        (
            "password_command = \"sleep 30\"\npassword_command_timeout = 1",
            "printed no password within 1 s",
            "without waiting for anyone",
        ),
    ] {
        with(source);
        let said = exits_with(&mut run_with_config(&config), 2);
        assert!(said.contains(what), "{said}");
        assert!(said.contains(hint), "{said}");
    }
    assert!(sim.resets().is_empty());
    // Done as the first hint says.
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    with("password_file = \"portal-password\"");
    exits_with(&mut run_with_config(&config), 0);
    assert_eq!(sim.resets().len(), 8);
}

#[test]
fn two_runs_on_one_portal_account_never_overlap_whatever_their_folders() {
    let dir = tempfile::tempdir().unwrap();
    // A slow portal, so that the first run is still going when the second starts.
    let sim = Sim::start(dir.path(), &["--latency-ms", "200"]);
    let (_, public) = identity(dir.path());
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    for folder in ["a", "b"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
    }
    let first = run_cmd(&sim, &input, &dir.path().join("a/out.age"), &public)
        .args(["--yes", "--rate", "10"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !locks(&sim).iter().any(|l| {
        std::fs::read_to_string(l)
            .unwrap_or_default()
            .contains("pid")
    }) {
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Another output folder, the same portal account.
    let pages_before = sim.pages_served().len();
    let second = run_cmd(&sim, &input, &dir.path().join("b/out.age"), &public)
        .arg("--yes")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another sip-rotate run holds the lock"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&first.id().to_string()) && stderr.contains("a/out.age"),
        "names the holder: {stderr}"
    );
    assert!(
        stderr.contains("one rotation per portal account"),
        "{stderr}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success());
    assert_eq!(sim.resets().len(), 8, "only the first run reset anything");
    assert!(!dir.path().join("b/out.age.journal").exists());
    // The second asked the portal nothing: every login was the first run's.
    let first_stderr = String::from_utf8_lossy(&first.stderr);
    let sessions: u64 = first_stderr
        .lines()
        .find(|l| l.starts_with("portal requests:"))
        .unwrap_or_default()
        .split(", ")
        .find_map(|part| {
            part.strip_suffix(" sessions opened over the run")
                .or(part.strip_suffix(" session"))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no session count in {first_stderr}"));
    assert!(sim.pages_served().len() > pages_before);
    assert_eq!(sim.stop()["logins"], sessions);
}
