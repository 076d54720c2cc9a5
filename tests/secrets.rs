//! No secret where it could leak: whatever `SIP_ROTATE_LOG` asks for, in
//! text or JSON, nothing the portal handed out (session cookie, form token,
//! new password) and not the portal password reaches stderr or stdout.

mod common;

use common::*;

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
