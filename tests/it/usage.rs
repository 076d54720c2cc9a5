//! The README's command reference is the output of `--help`: this test
//! fails when they drift apart. `UPDATE_README=1 cargo test --test it usage::`
//! rewrites the README's copies.

use std::process::Command;

const COMMANDS: [&str; 10] = [
    "", "run", "plan", "status", "check", "labels", "decrypt", "keygen", "sim", "demo",
];

fn help(command: &str) -> String {
    let mut c = Command::new(crate::common::bin());
    if !command.is_empty() {
        c.arg(command);
    }
    let out = c
        .arg("--help")
        .env_remove("MYOPENIP_LOGIN")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// The README with each `<!-- help: CMD -->` block replaced by the current help.
fn with_current_help(readme: &str) -> String {
    let mut out = String::new();
    let mut rest = readme;
    while let Some(at) = rest.find("<!-- help: ") {
        let (before, marker) = rest.split_at(at);
        out.push_str(before);
        let end_marker = marker.find(" -->").expect("closed marker");
        let command = &marker["<!-- help: ".len()..end_marker];
        let fence_start = marker
            .find("```text\n")
            .expect("a text block after the marker");
        let body = fence_start + 8;
        // The closing fence: at the start of the block (empty) or of a later line.
        let closing = if marker[body..].starts_with("```") {
            body
        } else {
            body + 1 + marker[body..].find("\n```").expect("closed block")
        };
        out.push_str(&marker[..body]);
        out.push_str(&help(if command == "sip-rotate" { "" } else { command }));
        out.push('\n');
        rest = &marker[closing..];
    }
    out.push_str(rest);
    out
}

#[test]
fn readme_usage_matches_help() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    for command in COMMANDS {
        let name = if command.is_empty() {
            "sip-rotate"
        } else {
            command
        };
        assert!(
            readme.contains(&format!("<!-- help: {name} -->")),
            "the README has no help block for {name}"
        );
    }
    let expected = with_current_help(&readme);
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(path, &expected).unwrap();
        return;
    }
    assert!(
        readme == expected,
        "README.md's usage differs from --help; run UPDATE_README=1 cargo test --test it usage:: and review the diff"
    );
}

#[test]
fn readme_names_the_two_setup_commands() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- demo"));
    assert!(readme.contains("\ncargo test\n"));
}
