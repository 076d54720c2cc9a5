//! Scheduled runs: everything from one `--config` file (password from a
//! command, dated output name), flags overriding it, and a lock that keeps
//! two runs of one config apart.

mod common;

use common::*;
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
}

#[test]
fn two_overlapping_runs_of_one_config_the_second_refuses() {
    let dir = tempfile::tempdir().unwrap();
    // A slow portal, so that the first run is still going when the second starts.
    let sim = Sim::start(dir.path(), &["--latency-ms", "200"]);
    let (_, public) = identity(dir.path());
    let config = write_config(dir.path(), &sim, &public, "");
    let mut first = run_with_config(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = dir.path().join(".sip-rotate.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains("pid")
    {
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = run_with_config(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another sip-rotate run holds the lock"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&first.id().to_string()),
        "names the holder: {stderr}"
    );
    assert!(first.wait().unwrap().success());
    assert_eq!(sim.resets().len(), 8, "only the first run reset anything");
}
