//! `sip-rotate keygen`: an age identity, written so that only its owner reads it.

use crate::cli::Exit;
use crate::cli::args::KeygenArgs;
use crate::{files, vault};
use anyhow::{Context, Result};
use secrecy::ExposeSecret;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::DirBuilderExt;

pub fn keygen(args: KeygenArgs) -> Result<Exit> {
    let (secret, public) = vault::generate_identity();
    let text = zeroize::Zeroizing::new(format!(
        "# created: {}\n# public key: {public}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        secret.expose_secret()
    ));
    match &args.output {
        Some(path) => {
            let folder = files::folder_of(path);
            if !folder.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(folder)
                    .with_context(|| format!("cannot create the folder {}", folder.display()))?;
            }
            let mut f = files::create_private(path).with_context(|| {
                format!(
                    "cannot create {} (it must not exist already)",
                    path.display()
                )
            })?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            println!("{public}");
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(crate::cli::Advised::error(
                    "refusing to print a secret key on a terminal",
                    "give -o FILE, or pipe the output",
                ));
            }
            eprintln!("Public key: {public}");
            std::io::stdout().write_all(text.as_bytes())?;
        }
    }
    Ok(Exit::AllDone)
}
