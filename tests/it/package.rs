//! What the package ships, made from the binary itself: man pages that
//! render cleanly, completions a shell uses, systemd units systemd accepts,
//! an example config the binary reads, and a version that names its commit.

use crate::common::*;
use std::path::Path;
use std::process::Command;

fn generate(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("generate")
        .args(args)
        .output()
        .unwrap()
}

fn man_pages(dir: &Path) -> Vec<std::path::PathBuf> {
    let out = generate(&["man", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pages: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    pages
}

#[test]
fn one_man_page_per_command_each_rendering_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let pages = man_pages(&dir.path().join("man1"));
    let names: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for command in [
        "",
        "-run",
        "-plan",
        "-status",
        "-check",
        "-decrypt",
        "-keygen",
        "-generate-man",
    ] {
        assert!(
            names.contains(&format!("sip-rotate{command}.1")),
            "{names:?}"
        );
    }
    let run = std::fs::read_to_string(dir.path().join("man1/sip-rotate-run.1")).unwrap();
    assert!(
        run.contains("metrics\\-file"),
        "the run page has the run's flags"
    );
    // What a sysadmin looks for beyond the flags, on each command's page.
    for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES"] {
        assert!(run.contains(&format!(".SH \"{section}\"")), "{section}");
    }
    assert!(
        run.contains("\\fBMYOPENIP_LOGIN\\fR environment variable"),
        "env notes"
    );
    assert!(
        run.contains("[\\fB\\-\\-input\\fR \\fIFILE\\fR]"),
        "the synopsis names the values"
    );
    assert!(
        run.contains("[\\fB\\-\\-resume\\fR[=\\fIWHEN\\fR]]"),
        "a value that may be left out is written with '=' (--resume auto is refused)"
    );
    // The config file's page, in man5 beside man1.
    let config = std::fs::read_to_string(dir.path().join("man5/sip-rotate.toml.5")).unwrap();
    assert!(config.contains(".TH sip-rotate.toml 5"));
    assert!(config.contains("recipients_file"), "the sample's keys");
    // The same command refreshes the pages (after an upgrade)...
    let man1 = dir.path().join("man1");
    std::fs::write(
        man1.join("sip-rotate-plan.1"),
        format!("{run}.\\\" a stale page\n"),
    )
    .unwrap();
    let again = generate(&["man", man1.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0));
    assert!(
        !std::fs::read_to_string(man1.join("sip-rotate-plan.1"))
            .unwrap()
            .contains("a stale page"),
        "an earlier page is replaced"
    );
    // ...but never another file, nor through a link: then nothing is written.
    let other = dir.path().join("other.1");
    std::fs::write(&other, "not a page\n").unwrap();
    std::fs::remove_file(man1.join("sip-rotate-status.1")).unwrap();
    std::fs::remove_file(man1.join("sip-rotate-run.1")).unwrap();
    std::os::unix::fs::symlink(&other, man1.join("sip-rotate-run.1")).unwrap();
    let refused = generate(&["man", man1.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("symbolic link"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "not a page\n");
    assert!(
        !man1.join("sip-rotate-status.1").exists(),
        "no page written when one is refused"
    );
    std::fs::remove_file(man1.join("sip-rotate-run.1")).unwrap();
    std::fs::write(man1.join("sip-rotate-run.1"), "my notes\n").unwrap();
    assert_eq!(
        generate(&["man", man1.to_str().unwrap()]).status.code(),
        Some(2)
    );
    assert_eq!(
        std::fs::read_to_string(man1.join("sip-rotate-run.1")).unwrap(),
        "my notes\n"
    );
    std::fs::remove_file(man1.join("sip-rotate-run.1")).unwrap();
    assert!(generate(&["man", man1.to_str().unwrap()]).status.success());
    // Nor through a folder made a link (man5, beside man1).
    let other_dir = tempfile::tempdir().unwrap();
    let elsewhere = other_dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::create_dir(other_dir.path().join("man1")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, other_dir.path().join("man5")).unwrap();
    let through = generate(&["man", other_dir.path().join("man1").to_str().unwrap()]);
    assert_eq!(through.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(other_dir.path().join("man1"))
            .unwrap()
            .count(),
        0
    );
    if !have("man") {
        return;
    }
    for page in pages
        .iter()
        .chain([&dir.path().join("man5/sip-rotate.toml.5")])
    {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", page.display());
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty());
        // Read at 80 columns, every line fits: the examples and the
        // sample config too, which man cannot fill.
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{}: {} columns: {line}",
                page.display(),
                line.chars().count()
            );
        }
    }
}

#[test]
fn bash_completes_a_command_from_its_first_letters() {
    if !have("bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sip-rotate.bash");
    let out = generate(&["completions", "bash"]);
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).unwrap();
    // As bash does on Tab: the function `complete` names, with the words.
    let complete = |line: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(
                r#"source "$1"
                read -ra COMP_WORDS <<< "$2"
                [[ "$2" == *" " ]] && COMP_WORDS+=("")
                COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
                COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}
                fn=$(complete -p sip-rotate | sed -E 's/.* -F ([^ ]+) .*/\1/')
                "$fn" sip-rotate "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                printf '%s\n' "${COMPREPLY[@]}""#,
            )
            .arg("bash")
            .arg(&script)
            .arg(line)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(complete("sip-rotate r").trim(), "run");
    assert!(complete("sip-rotate run --metr").contains("--metrics-file"));
    let zsh = generate(&["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef sip-rotate"));
    let fish = generate(&["completions", "fish"]);
    assert!(String::from_utf8_lossy(&fish.stdout).contains("complete -c sip-rotate"));
}

#[test]
fn systemd_accepts_the_units() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/systemd");
    // The units name /usr/bin/sip-rotate, where the package puts it; here
    // the binary under test takes its place. Their man page is checked too.
    for unit in ["sip-rotate.service", "sip-rotate.timer"] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        let text = text.replace("/usr/bin/sip-rotate", bin().to_str().unwrap());
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let service = std::fs::read_to_string(units.join("sip-rotate.service")).unwrap();
    for directive in [
        "StateDirectory=sip-rotate",
        "LoadCredential=myopenip-password:",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "UMask=0077",
        "SystemCallFilter=@system-service",
    ] {
        assert!(service.contains(directive), "{directive}");
    }
    man_pages(&dir.path().join("man/man1"));
    let out = Command::new("systemd-analyze")
        .args(["verify", "sip-rotate.service", "sip-rotate.timer"])
        .current_dir(dir.path())
        .env("MANPATH", dir.path().join("man"))
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_docs_link_the_example_config_and_the_binary_reads_every_key_of_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = std::fs::read_to_string(root.join("samples/rotation.toml")).unwrap();
    let operating = std::fs::read_to_string(root.join("docs/operating.md")).unwrap();
    assert!(
        operating.contains("](../samples/rotation.toml)"),
        "docs/operating.md links samples/rotation.toml"
    );
    // Every key uncommented, as an operator would: the binary knows them all.
    let dir = tempfile::tempdir().unwrap();
    let uncommented: String = sample
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.starts_with("output") => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let config = dir.path().join("rotation.toml");
    std::fs::write(&config, uncommented).unwrap();
    let out = Command::new(bin())
        .args(["run", "--yes", "--config"])
        .arg(&config)
        .env_remove("MYOPENIP_PASSWORD")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.contains("unknown field"),
        "every key is known: {stderr}"
    );
    assert!(
        !stderr.contains("config file"),
        "the file is read: {stderr}"
    );
}

#[test]
fn the_version_names_the_commit_when_built_from_git() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    let version = String::from_utf8(out.stdout).unwrap();
    assert!(version.starts_with(&format!("sip-rotate {}", env!("CARGO_PKG_VERSION"))));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Ok(head) = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root)
        .output()
        && head.status.success()
    {
        let head = String::from_utf8(head.stdout).unwrap();
        assert!(
            version.contains(&format!("(commit {})", head.trim())),
            "{version}"
        );
    }
}

#[test]
fn the_licences_cargo_names_are_there() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("license = \"MIT OR Apache-2.0\""));
    let mit = std::fs::read_to_string(root.join("LICENSE-MIT")).unwrap();
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let apache = std::fs::read_to_string(root.join("LICENSE-APACHE")).unwrap();
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
}
