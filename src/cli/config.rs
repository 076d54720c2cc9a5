//! Flags checked once and turned into what the library needs: a portal
//! client, recipients, paths. Every refusal here happens before any request.

use super::args::{PortalArgs, RunArgs};
use crate::portal::labels::Labels;
use crate::portal::{Credentials, Portal};
use crate::vault::Recipients;
use anyhow::{Context, Result, bail};
use secrecy::SecretString;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// `--portal` must be https, except on loopback (the simulator).
pub fn portal_url(text: &str) -> Result<Url> {
    let url = Url::parse(text)
        .with_context(|| format!("--portal '{text}' is not a URL; give it as https://host/path"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => bail!(
            "--portal {url} is plain http: the portal password and the new passwords would cross the network in clear; use https"
        ),
        other => bail!("--portal: unsupported scheme '{other}'; use https"),
    }
}

/// The portal password: from `--password-file` (which others must not be able to read) or MYOPENIP_PASSWORD.
fn portal_password(file: Option<&Path>) -> Result<SecretString> {
    if let Some(path) = file {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "the password file {} can be read by other users (mode {:o}); run: chmod 600 {}",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        let password = text.lines().next().unwrap_or("").to_string();
        if password.is_empty() {
            bail!("the password file {} is empty", path.display());
        }
        return Ok(SecretString::from(password));
    }
    match std::env::var("MYOPENIP_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(SecretString::from(p)),
        _ => bail!(
            "no portal password: set MYOPENIP_PASSWORD or give --password-file FILE (it is never taken as a flag)"
        ),
    }
}

/// A portal client from the flags, not yet logged in.
pub fn portal(args: &PortalArgs) -> Result<Portal> {
    let url = portal_url(&args.portal)?;
    let Some(login) = args.login.clone().filter(|l| !l.is_empty()) else {
        bail!("no portal login: give --login L or set MYOPENIP_LOGIN");
    };
    let password = portal_password(args.password_file.as_deref())?;
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number of requests per second");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let labels = match &args.labels {
        Some(p) => Labels::from_file(p)?,
        None => Labels::default(),
    };
    Ok(Portal::new(
        labels,
        url,
        Credentials {
            login,
            password,
            profile: args.profile,
        },
        args.rate,
        args.concurrency,
        Duration::from_secs(args.timeout.max(1)),
    ))
}

/// What `run` does, checked.
pub struct RunConfig {
    pub input: PathBuf,
    pub output: PathBuf,
    pub journal: PathBuf,
    pub recipients: Recipients,
    pub report: Option<PathBuf>,
    pub skip_unresolved: bool,
    pub ask: bool,
    pub progress: bool,
    pub quiet: bool,
    pub resume: bool,
    pub canary: usize,
    pub max_failures: usize,
    pub max_resets: u32,
    pub workers: usize,
    pub rate: f64,
}

impl RunConfig {
    pub fn new(args: &RunArgs, interactive: bool) -> Result<RunConfig> {
        let recipients = Recipients::parse(&args.recipients, &args.recipients_files)?;
        let journal = crate::vault::journal_path(&args.output);
        if args.output.exists() {
            bail!(
                "the output {} exists already: it may hold passwords; choose another --output",
                args.output.display()
            );
        }
        match (journal.exists(), args.resume) {
            (true, false) => bail!(
                "{} exists: an earlier run did not finish, and its new passwords are in that journal.\n  \
                 Run the same command with --resume to finish it (licences in the journal are not reset again),\n  \
                 or decrypt the journal (sip-rotate decrypt -i IDENTITY {}) and move it away to start afresh.",
                journal.display(),
                journal.display()
            ),
            (false, true) => bail!(
                "--resume: there is no journal {} to resume from",
                journal.display()
            ),
            _ => {}
        }
        if !args.yes && !interactive {
            bail!(
                "not on a terminal: nobody can confirm the resets; add --yes to reset without asking"
            );
        }
        if args.max_failures == 0 || args.max_resets == 0 {
            bail!("--max-failures and --max-resets must be at least 1");
        }
        Ok(RunConfig {
            input: args.input.clone(),
            output: args.output.clone(),
            journal,
            recipients,
            report: args.report.clone(),
            skip_unresolved: args.skip_unresolved,
            ask: !args.yes,
            progress: interactive && !args.quiet,
            quiet: args.quiet,
            resume: args.resume,
            canary: args.canary,
            max_failures: args.max_failures,
            max_resets: args.max_resets,
            workers: args.portal.concurrency,
            rate: args.portal.rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(portal_url("https://myopenip.example/").is_ok());
        assert!(portal_url("http://127.0.0.1:8080/").is_ok());
        assert!(portal_url("http://[::1]:8080/").is_ok());
        assert!(portal_url("http://localhost/").is_ok());
        assert!(portal_url("http://myopenip.example/").is_err());
        assert!(portal_url("http://10.0.0.1/").is_err());
        assert!(portal_url("ftp://127.0.0.1/").is_err());
    }
}
