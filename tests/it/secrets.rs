//! No secret where it could leak: whatever `SIP_ROTATE_LOG` asks for, in
//! text or JSON, nothing the portal handed out (session cookie, form token,
//! new password) and not the portal password reaches stderr or stdout.

use crate::common::*;

/// Every secret value the simulator handed out (`--handed-out`).
fn handed_out(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, v)| v.to_string()))
        .collect()
}

#[test]
fn logs_at_trace_level_carry_no_secret_in_text_or_json() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("handed-out.txt");
        // Faults, so that retries, re-logins and unknown outcomes are logged too.
        let sim = Sim::start(
            dir.path(),
            &[
                "--handed-out",
                secrets.to_str().unwrap(),
                "--fail-rate",
                "0.05",
                "--drop-rate",
                "0.2",
                "--expire-after",
                "15",
            ],
        );
        let (_, public) = identity(dir.path());
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
        let output = dir.path().join("out.age");
        let out = run_cmd(&sim, &input, &output, &public)
            .args([
                "--yes",
                "--rate",
                "50",
                "--max-resets",
                "12",
                "--log-format",
                format,
            ])
            .env("SIP_ROTATE_LOG", "trace")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        // The log is there, and says something of the conversation...
        assert!(stderr.lines().count() > 50, "{stderr}");
        assert!(stderr.contains("POST"), "{stderr}");
        // ...but no secret.
        let shown = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
        let secrets = handed_out(&secrets);
        assert!(
            secrets.len() > 50,
            "the simulator handed out {} secrets",
            secrets.len()
        );
        assert!(sim.resets().len() >= 16);
        for secret in secrets.iter().chain([&PASSWORD.to_string()]) {
            assert!(
                !shown.contains(secret.as_str()),
                "{format}: a secret handed out by the portal is in the output"
            );
        }
    }
}

/// Runs `command` with core dumps allowed (as `ulimit -c unlimited` would).
fn with_core_dumps_allowed(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
            Ok(())
        });
    }
}

fn has_core(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().starts_with("core"))
}

#[test]
fn an_abort_leaves_no_core_dump_even_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--latency-ms", "300"]);
    let (_, public) = identity(dir.path());
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let mut command = run_cmd(&sim, &input, &dir.path().join("out.age"), &public);
    command
        .arg("--yes")
        .current_dir(&cwd)
        .stderr(std::process::Stdio::null());
    with_core_dumps_allowed(&mut command);
    let mut child = command.spawn().unwrap();
    // Well into the run: logged in and resolving.
    while sim.pages_served().len() < 3 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut checked = 0;
    // Readable by root only, once the process is not dumpable.
    if let Ok(limits) = std::fs::read_to_string(format!("/proc/{}/limits", child.id())) {
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert_eq!(
            core.split_whitespace().collect::<Vec<_>>()[4..6],
            ["0", "0"],
            "{core}"
        );
        checked += 1;
    }
    signal(&child, "-ABRT");
    child.wait().unwrap();

    // Where an aborted process that allows dumps leaves a core in its
    // folder (core_pattern `core`), sip-rotate's abort must leave none.
    let control = dir.path().join("control");
    std::fs::create_dir(&control).unwrap();
    let mut shell = std::process::Command::new("sh");
    shell.args(["-c", "kill -ABRT $$"]).current_dir(&control);
    with_core_dumps_allowed(&mut shell);
    shell.status().unwrap();
    if has_core(&control) {
        assert!(!has_core(&cwd), "sip-rotate left a core dump");
        checked += 1;
    }
    assert!(
        checked > 0,
        "neither /proc/PID/limits nor a core dump could be checked on this machine"
    );
}

#[test]
fn an_identity_given_as_a_recipient_is_refused_without_being_echoed() {
    let Setup {
        dir, sim, identity, ..
    } = Setup::new(&[]);
    let secret = std::fs::read_to_string(&identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    let as_flag = exits_with(run_cmd(&sim, &input, &output, &secret).arg("--yes"), 2);
    let file = dir.path().join("recipients.txt");
    std::fs::write(&file, format!("# the team\n{secret}\n")).unwrap();
    let public = std::fs::read_to_string(&identity)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let in_file = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .arg("-R")
            .arg(&file)
            .arg("--yes"),
        2,
    );
    for stderr in [&as_flag, &in_file] {
        assert!(
            !stderr.contains(&secret[15..]),
            "the secret key is echoed: {stderr}"
        );
        assert!(stderr.contains("age-keygen -y"), "{stderr}");
    }
    assert!(in_file.contains("line 2"), "{in_file}");
    assert!(sim.resets().is_empty());
}
