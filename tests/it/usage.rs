//! The documents and the binary agree. The README and `docs/*.md` hold no
//! copy of `--help`: the flag reference is `--help` and the man pages, both
//! made from the flags themselves. What the documents name is checked
//! against the binary instead:
//!
//! - every `sip-rotate COMMAND ...` line they show, in a code block or in
//!   inline code (also inline code that starts with a command and a flag,
//!   `run --resume -i IDENTITY`), names commands the binary has and flags
//!   that this command's own `--help` lists;
//! - every flag named alone in inline code (`--max-failures N`) is a flag
//!   of some command;
//! - every relative link of a document leads to a file that exists, and the
//!   README links every document of `docs/`.
//!
//! A flag renamed or removed fails here until the documents follow.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags the documents name that belong to other programs.
const NOT_OURS: [&str; 1] = ["--remote-debugging-pipe"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `docs/*.md`, with their text.
fn documents() -> Vec<(PathBuf, String)> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("a docs folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root().join("README.md"));
    docs.into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// `sip-rotate COMMAND... --help`, as the binary prints it, asked once.
#[derive(Default)]
struct Helps(HashMap<Vec<String>, String>);

impl Helps {
    fn of(&mut self, path: &[String]) -> &str {
        self.0.entry(path.to_vec()).or_insert_with(|| {
            let out = Command::new(crate::common::bin())
                .args(path)
                .arg("--help")
                .env_remove("MYOPENIP_LOGIN")
                .output()
                .unwrap();
            assert!(out.status.success(), "sip-rotate {path:?} --help");
            String::from_utf8(out.stdout).unwrap()
        })
    }

    /// The commands listed under `Commands:` (`help` left out).
    fn commands(&mut self, path: &[String]) -> Vec<String> {
        self.of(path)
            .lines()
            .skip_while(|l| *l != "Commands:")
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .map(str::to_string)
            .collect()
    }

    /// The flags an option line starts with: `-o`, `--output`.
    fn flags(&mut self, path: &[String]) -> BTreeSet<String> {
        let mut flags = BTreeSet::new();
        for line in self.of(path).lines() {
            let spec = line.trim_start();
            // Option lines are indented 2 to 6 spaces; descriptions more.
            if !(2..=6).contains(&(line.len() - spec.len())) || !spec.starts_with('-') {
                continue;
            }
            // The flag's part ends where its description begins.
            let spec = spec.split("  ").next().unwrap();
            for word in spec.split([' ', ',', '[', '=']) {
                if word.len() > 1 && word.starts_with('-') {
                    flags.insert(word.to_string());
                }
            }
        }
        flags
    }

    /// Every flag of every command.
    fn all_flags(&mut self) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        let mut paths = vec![Vec::new()];
        while let Some(path) = paths.pop() {
            all.extend(self.flags(&path));
            for command in self.commands(&path) {
                let mut deeper = path.clone();
                deeper.push(command);
                paths.push(deeper);
            }
        }
        all
    }
}

/// The code of a Markdown text: each line of its fenced blocks (a line
/// that ends with `\` joined to the next), and each inline code span.
fn code_of(text: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut prose = String::new();
    let mut fenced = false;
    let mut continued = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            prose.push_str("\n\n");
        } else if fenced {
            match line.strip_suffix('\\') {
                Some(start) => continued.push_str(start),
                None => {
                    continued.push_str(line);
                    lines.push(std::mem::take(&mut continued));
                }
            }
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    // A span never crosses a paragraph.
    let spans = prose
        .split("\n\n")
        .flat_map(|paragraph| {
            paragraph
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|span| span.replace('\n', " "))
                .collect::<Vec<_>>()
        })
        .collect();
    (lines, spans)
}

/// A word that ends a shell command: a pipe, a redirection, a comment.
fn ends_command(word: &str) -> bool {
    word.starts_with(['|', '>', '<', '#', ';', '&']) || word == "2>"
}

/// The words after each `sip-rotate` of a piece of code, to the end of its
/// shell command.
fn sip_rotate_commands(code: &str) -> Vec<Vec<String>> {
    let words: Vec<&str> = code.split_whitespace().collect();
    words
        .iter()
        .enumerate()
        .filter(|(_, w)| **w == "sip-rotate")
        .map(|(i, _)| {
            words[i + 1..]
                .iter()
                .take_while(|w| !ends_command(w))
                .map(|w| w.to_string())
                .collect()
        })
        .collect()
}

/// The flag a word is (`--name`, `--name=value`, `-x`), if it is one: not
/// `-` (standard input) or a value.
fn flag_of(word: &str) -> Option<&str> {
    if word.len() > 2 && word.starts_with("--") {
        word.split('=').next()
    } else if word.starts_with('-') && word[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some(&word[..2])
    } else {
        None
    }
}

/// What is wrong with one command line of a document: a command the binary
/// does not have, or a flag its command does not list.
fn check_command(helps: &mut Helps, args: &[String]) -> Vec<String> {
    let line = format!("sip-rotate {}", args.join(" "));
    let mut path: Vec<String> = Vec::new();
    let mut rest = args;
    // The commands, as deep as the binary has them (`generate man`).
    while let Some(word) = rest.first() {
        let commands = helps.commands(&path);
        if word.starts_with('-') || commands.is_empty() {
            break;
        }
        if !commands.contains(word) {
            return vec![format!("`{line}`: sip-rotate has no command {word:?}")];
        }
        path.push(word.clone());
        rest = &rest[1..];
    }
    let flags = helps.flags(&path);
    rest.iter()
        .filter_map(|w| flag_of(w))
        .filter(|f| !flags.contains(*f))
        .map(|f| {
            format!(
                "`{line}`: `sip-rotate {} --help` lists no {f}",
                path.join(" ")
            )
        })
        .collect()
}

#[test]
fn the_documents_name_only_commands_and_flags_the_binary_has() {
    let mut helps = Helps::default();
    let top = helps.commands(&[]);
    let all_flags = helps.all_flags();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, text) in documents() {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        let (lines, spans) = code_of(&text);
        let mut commands: Vec<Vec<String>> = lines
            .iter()
            .chain(&spans)
            .flat_map(|code| sip_rotate_commands(code))
            .filter(|args| !args.is_empty())
            .collect();
        for span in &spans {
            let words: Vec<String> = span.split_whitespace().map(str::to_string).collect();
            match words.as_slice() {
                // `run --resume -i IDENTITY`: a command line without its name.
                [command, second, ..] if top.contains(command) && second.starts_with('-') => {
                    commands.push(
                        words
                            .iter()
                            .take_while(|w| !ends_command(w))
                            .cloned()
                            .collect(),
                    )
                }
                // `--max-failures N`, `-o -`: a flag alone.
                [first, ..] => {
                    if let Some(flag) = flag_of(first)
                        && !all_flags.contains(flag)
                        && !NOT_OURS.contains(&flag)
                    {
                        problems.push(format!("{name}: `{span}`: no command has {flag}"));
                    }
                }
                [] => {}
            }
        }
        for args in commands {
            checked += 1;
            for problem in check_command(&mut helps, &args) {
                problems.push(format!("{name}: {problem}"));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} command lines found: is the parsing right?"
    );
    assert!(
        problems.is_empty(),
        "the documents and --help disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_itself_catches_a_flag_that_does_not_exist() {
    let mut helps = Helps::default();
    let (lines, spans) = code_of(
        "Run `sip-rotate run --max-failure 3`.\n\n```sh\nsip-rotate status --input r.csv \\\n    --watch 30 --until-done\n```\n",
    );
    let problems: Vec<String> = lines
        .iter()
        .chain(&spans)
        .flat_map(|code| sip_rotate_commands(code))
        .flat_map(|args| check_command(&mut helps, &args))
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("--until-done"), "{problems:?}");
    assert!(problems[1].contains("--max-failure"), "{problems:?}");
    let unknown = check_command(&mut helps, &["rotate".to_string()]);
    assert!(unknown[0].contains("no command \"rotate\""), "{unknown:?}");
    let nested = ["generate", "man", "/tmp/man1"].map(String::from);
    assert!(check_command(&mut helps, &nested).is_empty());
}

#[test]
fn links_between_the_documents_lead_to_files() {
    let documents = documents();
    for (path, text) in &documents {
        for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            assert!(
                path.parent().unwrap().join(file).exists(),
                "{}: the link to {target} leads to no file",
                path.display()
            );
        }
    }
    let readme = &documents[0].1;
    for (path, _) in &documents[1..] {
        let link = format!("](docs/{})", path.file_name().unwrap().to_str().unwrap());
        assert!(readme.contains(&link), "the README does not link {link}");
    }
}

#[test]
fn readme_names_the_two_setup_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- demo"));
    assert!(readme.contains("\ncargo test\n"));
}

/// An environment variable's note in --help names it, never a value (an
/// unset one read `[env: SIP_ROTATE_BROWSER=]`).
#[test]
fn help_names_environment_variables_without_values() {
    for command in ["run", "plan", "check", "status"] {
        let out = Command::new(crate::common::bin())
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("[env: "), "{command}: {help}");
        assert!(!help.contains("=]"), "{command}: {help}");
    }
}

/// `--resume auto`, as the man page's `--resume=auto` is easily typed:
/// said with the form that works (clap said only "unexpected argument").
#[test]
fn resume_with_a_space_is_told_its_equals_sign() {
    let out = Command::new(crate::common::bin())
        .args(["run", "--resume", "auto", "--input", "in.csv"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("write --resume=auto"), "{stderr}");
}
