//! Every password readable with the keys the operator has: age identities,
//! passphrase-protected ones, SSH keys (encrypted ones too), the journal
//! with the reference `age` CLI alone; `-` for standard input and output;
//! `keygen` makes the folders it needs.

use crate::common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn input(dir: &Path) -> PathBuf {
    let path = dir.join("in.csv");
    std::fs::write(&path, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    path
}

fn journal_of(output: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", output.display()))
}

/// Runs to `n` resets, then `kill -9`: only the journal holds the passwords.
fn killed_run(sim: &Sim, dir: &Path, recipient_args: &[&str], n: usize) -> PathBuf {
    let output = dir.join("out.age");
    let mut command = Command::new(bin());
    command
        .arg("run")
        .arg("--input")
        .arg(input(dir))
        .args(["--portal", &sim.url, "--login", LOGIN, "-o"])
        .arg(&output)
        .args(recipient_args)
        .args(["--yes", "--rate", "40"])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .env("XDG_STATE_HOME", &sim.state)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    wait_for_resets(sim, n);
    signal(&child, "-KILL");
    child.wait().unwrap();
    assert!(!output.exists());
    journal_of(&output)
}

/// Each decrypted row's password is the portal's last for its licence.
fn assert_passwords_are_the_portal_s(rows: &[HashMap<String, String>], sim: &Sim) {
    let last = last_passwords(&sim.resets());
    assert!(!rows.is_empty());
    for row in rows {
        assert_eq!(row["password"], last[&row["licence"]], "{}", row["licence"]);
    }
}

fn ssh_key(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "ops@example",
            "-f",
        ])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(status.success());
    key
}

/// Whether `script(1)` is here; in CI (`SIP_ROTATE_REQUIRE_SCRIPT`) it must be.
fn have_script() -> bool {
    let here = Command::new("script").arg("--version").output().is_ok();
    if !here && std::env::var_os("SIP_ROTATE_REQUIRE_SCRIPT").is_some() {
        panic!("script(1) is required here (SIP_ROTATE_REQUIRE_SCRIPT)");
    }
    here
}

/// Runs `command` on a pseudo-terminal, typing `typed`; returns the exit code and the screen.
fn on_a_terminal(command: &str, typed: &str) -> (i32, String) {
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .env_remove("PINENTRY_PROGRAM")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    // Typed once the prompt shows (echo is off by then), as a person does.
    let mut stdout = child.stdout.take().unwrap();
    let typed = typed.to_string();
    let screen = std::thread::spawn(move || {
        let mut screen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut prompt = Some(stdin);
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => screen.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&screen).contains("Passphrase")
                && let Some(mut stdin) = prompt.take()
            {
                stdin.write_all(typed.as_bytes()).unwrap();
            }
        }
        String::from_utf8_lossy(&screen).into_owned()
    });
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, screen.join().unwrap())
}

#[test]
fn a_journal_to_an_ssh_key_is_read_with_that_key_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--latency-ms", "20"]);
    let key = ssh_key(dir.path(), "id_ed25519", "");
    let public = format!("{}.pub", key.display());
    let journal = killed_run(&sim, dir.path(), &["-R", &public], 4);
    let rows = decrypt(&key, &journal);
    assert_passwords_are_the_portal_s(&rows, &sim);
}

#[test]
fn passphrase_protected_identities_are_asked_once_on_a_terminal_and_refused_without_one() {
    if !have_script() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--latency-ms", "20"]);
    // An encrypted SSH key, and an age identity protected with a passphrase
    // (as `age -p` makes it), both recipients of the run.
    let ssh = ssh_key(dir.path(), "id_locked", "ssh-passphrase");
    let (identity, public) = identity(dir.path());
    let protected = dir.path().join("identity.age");
    let secret = std::fs::read(&identity).unwrap();
    let encryptor = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from(
        "age-passphrase".to_string(),
    ));
    let mut armored = Vec::new();
    let mut w = encryptor
        .wrap_output(
            age::armor::ArmoredWriter::wrap_output(&mut armored, age::armor::Format::AsciiArmor)
                .unwrap(),
        )
        .unwrap();
    w.write_all(&secret).unwrap();
    w.finish().unwrap().finish().unwrap();
    std::fs::write(&protected, armored).unwrap();
    std::fs::remove_file(&identity).unwrap();
    let journal = killed_run(
        &sim,
        dir.path(),
        &["-r", &public, "-R", &format!("{}.pub", ssh.display())],
        4,
    );
    for (key, passphrase) in [(&protected, "age-passphrase"), (&ssh, "ssh-passphrase")] {
        let plain = dir.path().join(format!(
            "{}.csv",
            key.file_name().unwrap().to_string_lossy()
        ));
        let command = format!(
            "{} decrypt -i {} -o {} {}",
            bin().display(),
            key.display(),
            plain.display(),
            journal.display()
        );
        let (code, screen) = on_a_terminal(&command, &format!("{passphrase}\n"));
        assert_eq!(code, 0, "{screen}");
        assert_eq!(
            screen.matches("Passphrase").count(),
            1,
            "asked once: {screen}"
        );
        let rows = parse_csv(&std::fs::read(&plain).unwrap());
        assert_passwords_are_the_portal_s(&rows, &sim);
        // Without a terminal: refused, and said why.
        let out = Command::new(bin())
            .args(["decrypt", "-i"])
            .arg(key)
            .arg(&journal)
            .stdin(Stdio::null())
            .env_remove("PINENTRY_PROGRAM")
            .setsid()
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("passphrase") && stderr.contains("no terminal"),
            "{stderr}"
        );
    }
}

trait Setsid {
    fn setsid(&mut self) -> &mut Self;
}

impl Setsid for Command {
    /// No controlling terminal, as under cron.
    fn setsid(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            self.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        }
    }
}

#[test]
fn the_age_cli_alone_recovers_a_journal_as_the_docs_say() {
    if Command::new("age").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("SIP_ROTATE_REQUIRE_AGE").is_none(),
            "the age CLI is required here"
        );
        eprintln!("no age CLI: the journal recovery is not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &["--latency-ms", "20"]);
    let (identity, public) = identity(dir.path());
    let journal = killed_run(&sim, dir.path(), &["-r", &public], 4);
    // The command of docs/formats.md, as it is written there.
    let formats =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/formats.md")).unwrap();
    let command = formats
        .lines()
        .find(|l| l.starts_with("awk ") && l.contains("age -d -i identity.txt"))
        .expect("docs/formats.md gives the command")
        .replace("identity.txt", &identity.display().to_string())
        .replace("rotation.csv.age.journal", &journal.display().to_string());
    let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut csv =
        b"client_ref,service_ref,licence,licence_type,sda,name,accountcode,password,reset_at\n"
            .to_vec();
    csv.extend(&out.stdout);
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), decrypt(&identity, &journal).len());
    assert_passwords_are_the_portal_s(&rows, &sim);
}

#[test]
fn a_dash_is_standard_input_or_output_and_an_unreadable_file_is_said_in_words() {
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&[]);
    // The input CSV on standard input.
    let output = dir.path().join("out.age");
    let mut run = run_cmd(&sim, Path::new("-"), &output, &public)
        .args(["--yes", "--rate", "100"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    run.stdin
        .take()
        .unwrap()
        .write_all(b"client_ref,licence\n4054,*\n")
        .unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The result on standard input, the CSV on standard output (a pipe).
    let out = Command::new(bin())
        .args(["decrypt", "-i"])
        .arg(&identity)
        .args(["-o", "-", "-"])
        .stdin(std::fs::File::open(&output).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("8 rows decrypted from standard input"),
        "{stderr}"
    );
    assert!(!dir.path().join("-").exists(), "no file named -");
    assert_passwords_are_the_portal_s(&parse_csv(&out.stdout), &sim);

    // Another identity, and a file that is no age file: each said in words,
    // with what to do.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let (other, _) = crate::common::identity(&elsewhere);
    let not_age = dir.path().join("not.age");
    std::fs::write(&not_age, "hello\n").unwrap();
    for (identity, file, says, hint) in [
        (
            &other,
            &output,
            "none of the identities given opens it",
            "hint: give the identity of one of its recipients with -i",
        ),
        (
            &identity,
            &not_age,
            "not an age file",
            "hint: give the .age file a run wrote",
        ),
    ] {
        let out = Command::new(bin())
            .args(["decrypt", "-i"])
            .arg(identity)
            .arg(file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says) && stderr.contains(hint), "{stderr}");
    }
}

#[test]
fn keygen_makes_the_missing_folders_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/identity.txt");
    let out = Command::new(bin())
        .args(["keygen", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("age1"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    for folder in ["a", "a/b", "a/b/c"] {
        assert_eq!(mode(&dir.path().join(folder)), 0o700, "{folder}");
    }
    // A second time: the identity is never replaced.
    let again = Command::new(bin())
        .args(["keygen", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
}
