//! `sip-rotate decrypt`: the result, a part or a journal, read with the identities age takes.

use crate::cli::Exit;
use crate::cli::args::DecryptArgs;
use crate::{files, vault};
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;

/// `-` as a file name: standard input or output.
fn is_dash(path: &Path) -> bool {
    path.as_os_str() == "-"
}

pub fn decrypt(args: DecryptArgs) -> Result<Exit> {
    let dialect = args.csv_dialect.map(Into::into).unwrap_or_default();
    let output = args.output.as_deref().filter(|p| !is_dash(p));
    if let Some(path) = output {
        files::check_creatable(path)
            .with_context(|| format!("cannot write the decrypted CSV to {}", path.display()))?;
    } else if std::io::stdout().is_terminal() {
        return Err(crate::cli::Advised::error(
            "refusing to print passwords on a terminal",
            "give -o FILE, or pipe the output",
        ));
    }
    let identities = vault::read_identities(&args.identities)?;
    let (name, mut input): (&Path, Box<dyn std::io::Read>) = if is_dash(&args.file) {
        (
            Path::new("standard input"),
            Box::new(std::io::stdin().lock()),
        )
    } else {
        let file = files::open_read(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        (&args.file, Box::new(file))
    };
    let done = match output {
        Some(path) => {
            // Complete or absent: a failure halfway leaves no partial plaintext.
            let mut f = files::NewFile::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let done = vault::decrypt(&mut input, name, &identities, &mut f, dialect)?;
            f.commit()
                .with_context(|| format!("cannot write {}", path.display()))?;
            done
        }
        None => vault::decrypt(
            &mut input,
            name,
            &identities,
            &mut std::io::stdout().lock(),
            dialect,
        )?,
    };
    crate::cli::logging::say(&format!(
        "{} decrypted from {}",
        crate::cli::render::count(done.rows, "row", "rows"),
        name.display()
    ));
    if !done.torn.is_empty() {
        crate::cli::logging::say(&format!(
            "{} cut off before its end, so not decrypted (a run stopped while writing it; its summary said where that password went): licence{} {}; --resume counts it as not reset",
            crate::cli::render::count(done.torn.len(), "journal entry was", "journal entries were"),
            if done.torn.len() == 1 { "" } else { "s" },
            done.torn.join(", ")
        ));
    }
    if !done.unreadable.is_empty() {
        crate::cli::logging::say(&format!(
            "{} could not be decrypted with these identities (licences {}): they were encrypted to other recipients; add their identities with -i",
            crate::cli::render::count(done.unreadable.len(), "journal entry", "journal entries"),
            done.unreadable.join(", ")
        ));
        return Ok(Exit::Partial);
    }
    Ok(Exit::AllDone)
}
