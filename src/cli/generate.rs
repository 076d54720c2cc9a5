//! `sip-rotate generate`: man pages and shell completions, made from the
//! very clap definitions that parse the flags, so that they never drift.

use super::Exit;
use super::args::{Cli, Generate, Shell};
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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

/// Writes every page into `dir`, each a new file (mode 0644): a page that is
/// already there is an error, never replaced, so that a folder of other
/// pages, or a link planted in it, is never written over.
fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let version = env!("SIP_ROTATE_VERSION");
    for cmd in commands() {
        let man = clap_mangen::Man::new(cmd)
            .source(format!("sip-rotate {version}"))
            .manual("sip-rotate manual");
        let mut page = Vec::new();
        man.render(&mut page)?;
        let path = dir.join(man.get_filename());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot create {} (generate into an empty folder: pages are never replaced)",
                    path.display()
                )
            })?;
        file.write_all(&page)?;
        println!("{}", path.display());
    }
    Ok(())
}
