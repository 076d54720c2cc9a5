//! `sip-rotate generate`: man pages and shell completions, made from the
//! very clap definitions that parse the flags, so that they never drift.

use crate::cli::Exit;
use crate::cli::args::{Cli, Generate, Shell};
use crate::files::NewFile;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::{Read, Write};
use std::path::Path;

pub fn generate(what: Generate) -> Result<Exit> {
    match what {
        Generate::Man { dir } => man_pages(&dir)?,
        Generate::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "sip-rotate", &mut script);
            let mut out = std::io::stdout().lock();
            out.write_all(&repaired(shell, script))?;
            out.flush()?;
        }
    }
    Ok(Exit::AllDone)
}

/// clap_complete's bash script spells the state of a subcommand of a binary
/// with a hyphen in its name in two ways (`sip__rotate__subcmd__run` where
/// it walks the words, `sip__subcmd__rotate__subcmd__run` in the case arms),
/// so no subcommand's options ever complete (clap-rs/clap#6421). The arms
/// are given the walk's spelling; a test completes `sip-rotate run --metr`.
fn repaired(shell: clap_complete::Shell, script: Vec<u8>) -> Vec<u8> {
    if shell != clap_complete::Shell::Bash {
        return script;
    }
    String::from_utf8_lossy(&script)
        .replace("sip__subcmd__rotate", "sip__rotate")
        .into_bytes()
}

/// The command and each subcommand, as clap builds them (a subcommand's
/// display name is `sip-rotate-run`, its page `sip-rotate-run.1`).
fn commands() -> Vec<clap::Command> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut all = Vec::new();
    let mut stack = vec![root];
    while let Some(cmd) = stack.pop() {
        stack.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        all.push(cmd);
    }
    all
}

/// The first line clap_mangen gives every page: with the page's `.TH
/// sip-rotate...` title, what tells an earlier page of ours from any other file.
const PAGE_START: &str = ".ie \\n(.g .ds Aq \\(aq";

/// Writes every page into `dir` (mode 0644), each whole under its name.
/// A page of an earlier version is replaced (the same command refreshes the
/// pages after an upgrade); any other file, or a link, at a page's name
/// stops it before anything is written, so that a folder of other pages,
/// or a link planted in it, is never written over.
fn man_pages(dir: &Path) -> Result<()> {
    if dir.as_os_str() == "-" {
        return Err(crate::cli::Advised::error(
            "generate man writes one file per page",
            "give it a folder, not '-'",
        ));
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let version = env!("SIP_ROTATE_VERSION");
    let mut pages = Vec::new();
    for cmd in commands() {
        // --help's last line is the exit codes in short: the page has them
        // in full (EXIT STATUS), not again at its end.
        let cmd = cmd.after_help(None::<&str>);
        let man = clap_mangen::Man::new(cmd.clone())
            .source(format!("sip-rotate {version}"))
            .manual("sip-rotate manual");
        let page = page_of(&man, &cmd)?;
        let path = dir.join(man.get_filename());
        if let Some(why) = not_ours(&path) {
            return Err(crate::cli::Advised::error(
                format!(
                    "{} {why}: not replaced, and no page written",
                    path.display()
                ),
                "move it away, or generate into another folder",
            ));
        }
        pages.push((path, page));
    }
    // The config file's page, in section 5 of the same folder's parent
    // (man1 -> man5) when the folder is a manN, else beside the others.
    let config_dir = match dir.file_name().and_then(|n| n.to_str()) {
        Some(name) if name.starts_with("man") && name.len() == 4 => dir.with_file_name("man5"),
        _ => dir.to_path_buf(),
    };
    // A folder made a link is not written through (the pages' own folder
    // is the one asked for).
    if std::fs::symlink_metadata(&config_dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(crate::cli::Advised::error(
            format!(
                "{} is a symbolic link: no page written through it",
                config_dir.display()
            ),
            "remove it, or generate into another folder",
        ));
    }
    let config_path = config_dir.join("sip-rotate.toml.5");
    if let Some(why) = not_ours(&config_path) {
        return Err(crate::cli::Advised::error(
            format!(
                "{} {why}: not replaced, and no page written",
                config_path.display()
            ),
            "move it away, or generate into another folder",
        ));
    }
    std::fs::create_dir_all(&config_dir)
        .with_context(|| format!("cannot create the folder {}", config_dir.display()))?;
    pages.push((
        config_path,
        crate::cli::manual::config_page(version).into_bytes(),
    ));
    for (path, page) in &pages {
        let write = || -> std::io::Result<()> {
            let mut file = NewFile::create(path)?;
            file.set_mode(0o644)?;
            file.write_all(page)?;
            file.commit_replacing()?;
            Ok(())
        };
        write().with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The pages written, for a script; a reader that went away (`| head`)
    // changes nothing, the pages are there.
    let mut out = std::io::stdout().lock();
    for (path, _) in &pages {
        if writeln!(out, "{}", path.display()).is_err() {
            break;
        }
    }
    Ok(())
}

/// A command's page: clap's sections (name, synopsis, description,
/// options, subcommands), then what the flags do not say (exit status,
/// environment, files, examples), then the notes after the help.
fn page_of(man: &clap_mangen::Man, cmd: &clap::Command) -> Result<Vec<u8>> {
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    page.extend_from_slice(crate::cli::manual::synopsis(cmd).as_bytes());
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    page.extend_from_slice(
        crate::cli::manual::roff(&crate::cli::manual::sections(
            cmd.get_display_name().unwrap_or(cmd.get_name()),
        ))
        .as_bytes(),
    );
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        man.render_extra_section(&mut page)?;
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

/// Why the file at `path` may not be replaced by a page; `None` when there
/// is none, or it is a page sip-rotate generated.
fn not_ours(path: &Path) -> Option<&'static str> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(_) => return Some("cannot be read"),
    };
    if meta.file_type().is_symlink() {
        return Some("is a symbolic link");
    }
    if !meta.is_file() {
        return Some("is not a regular file");
    }
    let mut head = String::new();
    let read = crate::files::open_read(path)
        .and_then(|f| std::io::Read::read_to_string(&mut f.take(512), &mut head));
    let ours = read.is_ok()
        && head.starts_with(PAGE_START)
        && head.lines().any(|l| l.starts_with(".TH sip-rotate"));
    (!ours).then_some("exists and is not a sip-rotate page")
}
