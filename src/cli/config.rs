//! Flags and the `--config` file, checked once and turned into what the
//! library needs: a portal client, recipients, paths, the run lock. A flag
//! wins over the file, the file over the built-in default. Every refusal here
//! happens before any portal request.

use super::args::{PortalArgs, RunArgs};
use crate::portal::labels::Labels;
use crate::portal::{Credentials, Portal};
use crate::sim::LoginProfile;
use crate::vault::Recipients;
use anyhow::{Context, Result, bail};
use secrecy::SecretString;
use serde::Deserialize;
use std::fs::File;
use std::io::Write;
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

/// The settings file of a scheduled run (`--config FILE`). Relative paths
/// are taken from the file's folder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub portal: Option<String>,
    pub login: Option<String>,
    pub profile: Option<LoginProfile>,
    pub password_file: Option<PathBuf>,
    /// A shell command whose first line of output is the portal password.
    pub password_command: Option<String>,
    #[serde(default)]
    pub recipients: Vec<String>,
    pub recipients_file: Option<PathBuf>,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub timeout: Option<u64>,
    pub labels: Option<PathBuf>,
    pub input: Option<PathBuf>,
    /// The result file, with strftime fields: `rotation-%Y%m%d.csv.age`.
    pub output: Option<String>,
    pub report: Option<String>,
    /// The lock file that keeps two runs apart [default: `.sip-rotate.lock` in the output's folder].
    pub lock: Option<PathBuf>,
}

/// A loaded `--config` file, or nothing.
#[derive(Debug, Default)]
pub struct Loaded {
    pub file: ConfigFile,
    pub path: Option<PathBuf>,
}

impl Loaded {
    pub fn read(path: Option<&Path>) -> Result<Loaded> {
        let Some(path) = path else {
            return Ok(Loaded::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("config file {}: {}", path.display(), e.to_string().trim())
        })?;
        Ok(Loaded {
            file,
            path: Some(path.to_path_buf()),
        })
    }

    /// A path of the file, taken from the file's folder when relative.
    fn resolve(&self, p: &Path) -> PathBuf {
        match self.path.as_ref().and_then(|c| c.parent()) {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// The flag's path, else the file's.
    pub fn path_or(&self, flag: Option<&PathBuf>, from_file: Option<&PathBuf>) -> Option<PathBuf> {
        flag.cloned().or_else(|| from_file.map(|p| self.resolve(p)))
    }
}

/// Replaces strftime fields (`%Y`, `%m`, `%d`, `%H`...) by the time of the run.
pub fn dated(pattern: &str, now: &chrono::DateTime<chrono::Local>) -> Result<PathBuf> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
        bail!("'{pattern}': invalid date field (use %Y, %m, %d, %H, %M, %S; %% for a %)");
    }
    Ok(PathBuf::from(now.format(pattern).to_string()))
}

/// The portal password: `--password-file` (which others must not be able to
/// read), else MYOPENIP_PASSWORD, else the config's `password_file`, else its
/// `password_command`.
fn portal_password(flag_file: Option<&Path>, cfg: &Loaded) -> Result<SecretString> {
    let from_file = |path: &Path| -> Result<SecretString> {
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
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?,
        );
        first_line(&text)
            .ok_or_else(|| anyhow::anyhow!("the password file {} is empty", path.display()))
    };
    if let Some(path) = flag_file {
        return from_file(path);
    }
    if let Ok(p) = std::env::var("MYOPENIP_PASSWORD")
        && !p.is_empty()
    {
        return Ok(SecretString::from(p));
    }
    if let Some(path) = &cfg.file.password_file {
        return from_file(&cfg.resolve(path));
    }
    if let Some(command) = &cfg.file.password_command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run the password_command '{command}'"))?;
        let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
        if !out.status.success() {
            bail!("the password_command '{command}' failed ({})", out.status);
        }
        return first_line(&text)
            .ok_or_else(|| anyhow::anyhow!("the password_command '{command}' printed nothing"));
    }
    bail!(
        "no portal password: set MYOPENIP_PASSWORD, give --password-file FILE, or put password_file or password_command in the --config file (it is never taken as a flag)"
    )
}

fn first_line(text: &str) -> Option<SecretString> {
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    (!line.is_empty()).then(|| SecretString::from(line.to_string()))
}

/// The portal's rate, from the flag, the file or the default.
pub fn rate(args: &PortalArgs, cfg: &Loaded) -> f64 {
    args.rate.or(cfg.file.rate).unwrap_or(2.0)
}

/// Portal requests in flight at once, from the flag, the file or the default.
pub fn concurrency(args: &PortalArgs, cfg: &Loaded) -> usize {
    args.concurrency.or(cfg.file.concurrency).unwrap_or(4)
}

/// A portal client from the flags and the file, not yet logged in.
pub fn portal(args: &PortalArgs, cfg: &Loaded) -> Result<Portal> {
    let f = &cfg.file;
    let Some(address) = args.portal.clone().or_else(|| f.portal.clone()) else {
        bail!(
            "no portal address: give --portal URL or put portal = \"https://...\" in the --config file"
        );
    };
    let url = portal_url(&address)?;
    let Some(login) = args
        .login
        .clone()
        .or_else(|| f.login.clone())
        .filter(|l| !l.is_empty())
    else {
        bail!(
            "no portal login: give --login L, set MYOPENIP_LOGIN, or put login in the --config file"
        );
    };
    let password = portal_password(args.password_file.as_deref(), cfg)?;
    let rate = rate(args, cfg);
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("--rate must be a positive number of requests per second");
    }
    let concurrency = concurrency(args, cfg);
    if concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let labels = match cfg.path_or(args.labels.as_ref(), f.labels.as_ref()) {
        Some(p) => Labels::from_file(&p)?,
        None => Labels::default(),
    };
    let profile = args
        .profile
        .or(f.profile)
        .unwrap_or(LoginProfile::Revendeur);
    let timeout = Duration::from_secs(args.timeout.or(f.timeout).unwrap_or(30).max(1));
    Ok(Portal::new(
        labels,
        url,
        Credentials {
            login,
            password,
            profile,
        },
        rate,
        concurrency,
        timeout,
    ))
}

/// The input CSV, from the flag or the file.
pub fn input(flag: Option<&PathBuf>, cfg: &Loaded) -> Result<PathBuf> {
    cfg.path_or(flag, cfg.file.input.as_ref()).ok_or_else(|| {
        anyhow::anyhow!("no input: give --input FILE or put input in the --config file")
    })
}

/// The default lock file, in the output's folder.
pub const LOCK_NAME: &str = ".sip-rotate.lock";

/// Held for the whole run: a second run with the same lock file refuses to start.
pub struct RunLock {
    _file: File,
}

/// Takes the run lock, or says who holds it.
pub fn lock(path: &Path) -> Result<RunLock> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            writeln!(
                file,
                "pid {} since {}",
                std::process::id(),
                chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )?;
            Ok(RunLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            bail!(
                "another sip-rotate run holds the lock {} ({}): it must finish first; nothing was done",
                path.display(),
                holder.trim()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// What `run` does, checked.
pub struct RunConfig {
    pub input: PathBuf,
    pub output: PathBuf,
    pub journal: PathBuf,
    pub lock: PathBuf,
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
    pub fn new(args: &RunArgs, cfg: &Loaded, interactive: bool) -> Result<RunConfig> {
        let f = &cfg.file;
        let now = chrono::Local::now();
        let recipients_files: Vec<PathBuf> = if args.recipients_files.is_empty() {
            f.recipients_file.iter().map(|p| cfg.resolve(p)).collect()
        } else {
            args.recipients_files.clone()
        };
        let recipient_strings = if args.recipients.is_empty() && args.recipients_files.is_empty() {
            &f.recipients
        } else {
            &args.recipients
        };
        let recipients = Recipients::parse(recipient_strings, &recipients_files)?;
        let output = match (&args.output, &f.output) {
            (Some(o), _) => dated(o, &now)?,
            (None, Some(o)) => cfg.resolve(&dated(o, &now)?),
            (None, None) => bail!("no output: give -o FILE or put output in the --config file"),
        };
        let report = match (&args.report, &f.report) {
            (Some(r), _) => Some(dated(r, &now)?),
            (None, Some(r)) => Some(cfg.resolve(&dated(r, &now)?)),
            (None, None) => None,
        };
        // One lock per output folder: runs that write there never overlap,
        // and a dated output name does not leave a new lock file every day.
        let lock = match &f.lock {
            Some(l) => cfg.resolve(l),
            None => crate::files::folder_of(&output).join(LOCK_NAME),
        };
        let journal = crate::vault::journal_path(&output);
        if !args.yes && !interactive {
            bail!(
                "not on a terminal: nobody can confirm the resets; add --yes to reset without asking"
            );
        }
        if args.max_failures == 0 || args.max_resets == 0 {
            bail!("--max-failures and --max-resets must be at least 1");
        }
        Ok(RunConfig {
            input: input(args.input.as_ref(), cfg)?,
            output,
            journal,
            lock,
            recipients,
            report,
            skip_unresolved: args.skip_unresolved,
            ask: !args.yes,
            progress: interactive && !args.quiet,
            quiet: args.quiet,
            resume: args.resume,
            canary: args.canary,
            max_failures: args.max_failures,
            max_resets: args.max_resets,
            workers: concurrency(&args.portal, cfg),
            rate: rate(&args.portal, cfg),
        })
    }

    /// Checks the files of the run, once the lock is held: no output to
    /// replace, and a journal only when resuming.
    pub fn check_files(&self) -> Result<()> {
        if self.output.exists() {
            bail!(
                "the output {} exists already: it may hold passwords; choose another --output",
                self.output.display()
            );
        }
        match (self.journal.exists(), self.resume) {
            (true, false) => bail!(
                "{} exists: an earlier run did not finish, and its new passwords are in that journal.\n  \
                 Run the same command with --resume to finish it (licences in the journal are not reset again),\n  \
                 or decrypt the journal (sip-rotate decrypt -i IDENTITY {}) and move it away to start afresh.",
                self.journal.display(),
                self.journal.display()
            ),
            (false, true) => bail!(
                "--resume: there is no journal {} to resume from",
                self.journal.display()
            ),
            _ => Ok(()),
        }
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

    #[test]
    fn date_fields_are_replaced_and_bad_ones_refused() {
        let now =
            chrono::TimeZone::with_ymd_and_hms(&chrono::Local, 2026, 11, 26, 3, 30, 0).unwrap();
        assert_eq!(
            dated("rotation-%Y%m%d.csv.age", &now).unwrap(),
            PathBuf::from("rotation-20261126.csv.age")
        );
        assert!(dated("rotation-%Q.csv.age", &now).is_err());
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "portal = \"https://x/\"\nrecipient = \"age1\"\n").unwrap();
        let e = Loaded::read(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("recipient"), "{e}");
    }
}
