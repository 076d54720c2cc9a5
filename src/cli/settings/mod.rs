//! Flags and the `--config` file, merged once into checked settings that
//! own every default: a flag wins over the file, the file over the default.
//! Then the library is called with them; nothing else reads the flags.
//! Every refusal here happens before any portal request.

use super::args::{CsvDialect, LogFormat, PlanArgs, PortalArgs, Profile, RunArgs};
use crate::portal::labels::Labels;
use crate::portal::{Credentials, PortalSettings};
use crate::rotation::{self, Limits, ReportFile};
use crate::vault::Recipients;
use anyhow::{Context, Result, bail};
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

mod config;
#[cfg(test)]
mod tests;

pub use config::*;

/// Requests per second.
pub const DEFAULT_RATE: f64 = 2.0;
/// Sessions, and requests in flight.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Seconds to wait for one answer.
pub const DEFAULT_TIMEOUT: u64 = 30;
pub const DEFAULT_CANARY: usize = 1;
pub const DEFAULT_MAX_FAILURES: usize = 10;
pub const DEFAULT_MAX_RESETS: u32 = 5;

/// Whether `url`'s host is this machine: plain http cannot be read on the
/// way there.
pub(super) fn on_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `--portal` must be https, except on loopback (the simulator).
pub fn portal_url(text: &str) -> Result<Url> {
    let url = Url::parse(text).with_context(|| {
        format!(
            "--portal '{}' is not a URL; give it as https://host/path",
            crate::scrub::message(text)
        )
    })?;
    // A user or password in the address would be shown wherever the address
    // is, and sent with every request: the login goes in --login, the
    // password in a file or a credential.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(super::Advised::error(
            format!(
                "--portal {} carries a user or a password",
                crate::scrub::url(&url)
            ),
            "give the address alone, the login with --login and the password as MYOPENIP_PASSWORD, a password file or a credential",
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if on_loopback(&url) => Ok(url),
        "http" => Err(super::Advised::error(
            format!(
                "--portal {url} is plain http: the portal password and the new passwords would cross the network in clear"
            ),
            "use https",
        )),
        other => Err(super::Advised::error(
            format!("--portal: unsupported scheme '{other}'"),
            "use https",
        )),
    }
}

/// Replaces strftime fields (`%Y`, `%m`, `%d`, `%H`...) by the time of the run.
pub fn dated(pattern: &str, now: &chrono::DateTime<chrono::Local>) -> Result<PathBuf> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
        return Err(super::Advised::error(
            format!("'{pattern}': invalid date field"),
            "use %Y, %m, %d, %H, %M, %S; %% for a %",
        ));
    }
    Ok(PathBuf::from(now.format(pattern).to_string()))
}

/// The systemd credential that holds the portal password (`LoadCredential=`).
pub const CREDENTIAL: &str = "myopenip-password";

/// A `password_file` or an identity of the config: `$CREDENTIALS_DIRECTORY/...` is taken
/// from systemd's credentials folder, a relative path from the file's folder.
fn credential_or_path(cfg: &Loaded, key: &str, path: &Path) -> Result<PathBuf> {
    let text = path.to_string_lossy();
    for prefix in ["$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"] {
        if let Some(name) = text.strip_prefix(prefix) {
            let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())
            else {
                return Err(super::Advised::error(
                    format!("{key} {text}: CREDENTIALS_DIRECTORY is not set"),
                    "systemd sets it for a unit with LoadCredential=; run through the unit (systemctl start), or give the file's own path",
                ));
            };
            return Ok(PathBuf::from(dir).join(name));
        }
    }
    Ok(cfg.resolve(path))
}

/// Whether a file name could have been made from a strftime `pattern`:
/// each field stands for one or more letters, digits or `+-:`.
fn made_from(pattern: &str, name: &str) -> bool {
    use chrono::format::{Item, StrftimeItems};
    let mut parts: Vec<Option<String>> = Vec::new();
    for item in StrftimeItems::new(pattern) {
        match item {
            Item::Literal(l) => parts.push(Some(l.to_string())),
            Item::OwnedLiteral(l) => parts.push(Some(l.to_string())),
            Item::Space(s) => parts.push(Some(s.to_string())),
            Item::OwnedSpace(s) => parts.push(Some(s.to_string())),
            _ => parts.push(None),
        }
    }
    fn matches(parts: &[Option<String>], name: &str) -> bool {
        match parts.split_first() {
            None => name.is_empty(),
            Some((Some(lit), rest)) => name
                .strip_prefix(lit.as_str())
                .is_some_and(|tail| matches(rest, tail)),
            Some((None, rest)) => {
                let field = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | ':');
                let longest = name.find(|c| !field(c)).unwrap_or(name.len());
                (1..=longest).any(|n| matches(rest, &name[n..]))
            }
        }
    }
    matches(&parts, name)
}

/// The output of the unfinished run (the one with a journal) whose name was
/// made from `pattern` at another time; an error if several are.
fn unfinished_run_of(pattern: &Path) -> Result<Option<PathBuf>> {
    let folder = crate::files::folder_of(pattern);
    // With one file per client, the journal takes the shared name.
    let shared = rotation::outputs::shared_name(pattern);
    let per_client = rotation::outputs::per_client(pattern);
    let Some(name) = shared.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(None);
    };
    let journal_pattern = format!("{name}.journal");
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| made_from(&journal_pattern, n))
        // A rotation finished, its journal kept for the passwords only it
        // holds: nothing to finish, and no reason to stop a new run.
        .filter(|n| !crate::vault::read_journal(&folder.join(n)).is_ok_and(|c| c.finished))
        .map(|n| {
            let output = n.trim_end_matches(".journal").to_string();
            // Back to the template: `{client}` where the shared name says `clients`.
            let output = match output.rfind("clients") {
                Some(at) if per_client => format!(
                    "{}{}{}",
                    &output[..at],
                    rotation::outputs::CLIENT_FIELD,
                    &output[at + "clients".len()..]
                ),
                _ => output,
            };
            folder.join(output)
        })
        .collect();
    found.sort();
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(super::Advised::error(
            format!(
                "--resume: several unfinished runs match {}: {}",
                pattern.display(),
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "give the one to finish with -o",
        )),
    }
}

/// Where the portal password comes from: `--password-file` (which others
/// must not be able to read), else MYOPENIP_PASSWORD, else the systemd
/// credential `myopenip-password`, else the config's `password_file`, else
/// its `password_command`. Returns the file read, if any.
fn portal_password(
    flag_file: Option<&Path>,
    cfg: &Loaded,
) -> Result<(SecretString, Option<PathBuf>)> {
    let from_file = |path: &Path| -> Result<(SecretString, Option<PathBuf>)> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let who = match (mode & 0o070 != 0, mode & 0o007 != 0) {
                (true, true) => "its group and other users",
                (true, false) => "its group",
                _ => "other users",
            };
            let how = if mode & 0o044 != 0 { "read" } else { "changed" };
            return Err(super::Advised::error(
                format!(
                    "the password file {} can be {how} by {who} (mode {:o})",
                    path.display(),
                    mode & 0o777
                ),
                format!("run: chmod 600 {}", path.display()),
            ));
        }
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?,
        );
        let password = first_line(&text).ok_or_else(|| {
            super::Advised::error(
                format!("the password file {} is empty", path.display()),
                "put the portal password on its first line",
            )
        })?;
        Ok((password, Some(path.to_path_buf())))
    };
    if let Some(path) = flag_file {
        return from_file(path);
    }
    if let Ok(p) = std::env::var("MYOPENIP_PASSWORD")
        && !p.is_empty()
    {
        return Ok((SecretString::from(p), None));
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let credential = PathBuf::from(dir).join(CREDENTIAL);
        if credential.exists() {
            return from_file(&credential);
        }
    }
    if let Some(path) = &cfg.file.password_file {
        return from_file(&credential_or_path(cfg, "password_file", path)?);
    }
    if let Some(command) = &cfg.file.password_command {
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            // A group of its own, ended whole at the limit (the shell's
            // children too, which would hold our stderr open).
            .process_group(0)
            .spawn()
            .context("cannot run the config file's password_command")?;
        // Bounded: a command that waits for someone (a passphrase prompt)
        // would hold a scheduled run for as long as its unit allows.
        let pid = child.id() as i32;
        let (done, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(child.wait_with_output()));
        let limit = cfg
            .file
            .password_command_timeout
            .map_or(PASSWORD_COMMAND_LIMIT, std::time::Duration::from_secs);
        let out = match answer.recv_timeout(limit) {
            Ok(out) => out.context("cannot run the config file's password_command")?,
            Err(_) => {
                // SAFETY: a signal to the group of the shell this process started.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                return Err(super::Advised::error(
                    format!(
                        "the config file's password_command printed no password within {} s (password_command_timeout)",
                        limit.as_secs()
                    ),
                    "it must print the portal password without waiting for anyone (a passphrase prompt cannot be answered in a scheduled run): run it by hand as the user the run runs as",
                ));
            }
        };
        let stdout = zeroize::Zeroizing::new(out.stdout);
        let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&stdout).into_owned());
        if !out.status.success() {
            // Its text is not shown: it may carry the password itself.
            return Err(super::Advised::error(
                format!("the config file's password_command failed ({})", out.status),
                "run it by hand as the user the run runs as: it must print the portal password on its first line and exit 0",
            ));
        }
        let password = first_line(&text).ok_or_else(|| {
            super::Advised::error(
                "the config file's password_command printed nothing",
                "it must print the portal password on its first line",
            )
        })?;
        return Ok((password, None));
    }
    Err(super::Advised::error(
        "no portal password (it is never taken as a flag)",
        format!(
            "set MYOPENIP_PASSWORD, give --password-file FILE, put password_file or password_command in the --config file, or under systemd give LoadCredential={CREDENTIAL}:FILE"
        ),
    ))
}

/// How long `password_command` may take to print the password.
const PASSWORD_COMMAND_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

fn first_line(text: &str) -> Option<SecretString> {
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    (!line.is_empty()).then(|| SecretString::from(line.to_string()))
}

/// What is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Nothing when the run succeeds.
    pub quiet: bool,
    pub format: LogFormat,
    /// Progress bars: on a terminal, in text, not quiet.
    pub progress: bool,
}

impl View {
    fn new(quiet: bool, format: LogFormat) -> View {
        View {
            quiet,
            format,
            progress: !quiet && format == LogFormat::Text && std::io::stderr().is_terminal(),
        }
    }
}

/// The portal client's settings, and the files they were read from.
struct PortalPart {
    settings: PortalSettings,
    read_files: Vec<(String, PathBuf)>,
}

/// The portal client's settings from the flags and the file.
pub fn portal_settings(args: &PortalArgs, cfg: &Loaded) -> Result<PortalSettings> {
    Ok(portal(args, cfg)?.settings)
}

/// The input from the flag or the file.
pub fn input_of(flag: Option<&PathBuf>, cfg: &Loaded) -> Result<PathBuf> {
    input(flag, cfg)
}

/// The portal client's settings from the flags and the file, and the files read.
fn portal(args: &PortalArgs, cfg: &Loaded) -> Result<PortalPart> {
    let f = &cfg.file;
    let Some(address) = args.portal.clone().or_else(|| f.portal.clone()) else {
        return Err(super::Advised::error(
            "no portal address",
            "give --portal URL or put portal = \"https://...\" in the --config file",
        ));
    };
    let start = portal_url(&address)?;
    let Some(login) = args
        .login
        .clone()
        .or_else(|| f.login.clone())
        .filter(|l| !l.is_empty())
    else {
        return Err(super::Advised::error(
            "no portal login",
            "give --login L, set MYOPENIP_LOGIN, or put login in the --config file",
        ));
    };
    let (password, password_file) = portal_password(args.password_file.as_deref(), cfg)?;
    let rate = args.rate.or(f.rate).unwrap_or(DEFAULT_RATE);
    // Below one request in 100 s a run would seem to hang; above 10,000 a
    // second no portal is meant.
    if !(0.01..=10_000.0).contains(&rate) {
        return Err(super::Advised::error(
            format!("--rate {rate}: out of range"),
            "give between 0.01 and 10000 requests per second (what the portal allows; 2 is a careful start)",
        ));
    }
    let concurrency = args
        .concurrency
        .or(f.concurrency)
        .unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 {
        return Err(super::Advised::error(
            "--concurrency 0: no session could do the work",
            "give at least 1 (sessions in parallel; 4 to 8 suit most portals)",
        ));
    }
    let labels_file = cfg.path_or(args.labels.as_ref(), f.labels.as_ref());
    let labels = match &labels_file {
        Some(p) => Labels::from_file(p)?,
        None => Labels::default(),
    };
    let profile = args.profile.or(f.profile).unwrap_or(Profile::Revendeur);
    let timeout = args.timeout.or(f.timeout).unwrap_or(DEFAULT_TIMEOUT);
    if timeout == 0 {
        bail!("--timeout must be at least 1 second");
    }
    let capture = match &args.capture {
        Some(dir) => Some(std::sync::Arc::new(
            crate::portal::capture::Capture::create(dir)
                .with_context(|| format!("cannot make the capture folder {}", dir.display()))?,
        )),
        None => None,
    };
    let mut read_files = Vec::new();
    if let Some(p) = labels_file {
        read_files.push(("labels file".to_string(), p));
    }
    if let Some(p) = password_file {
        read_files.push(("password file".to_string(), p));
    }
    if let Some(p) = &cfg.path {
        read_files.push(("config file".to_string(), p.clone()));
    }
    Ok(PortalPart {
        settings: PortalSettings {
            start,
            credentials: Credentials {
                login,
                password,
                profile: profile.into(),
            },
            labels,
            rate,
            concurrency,
            timeout: Duration::from_secs(timeout),
            capture,
            engine: args.engine.or(f.engine).unwrap_or_default(),
            browser: crate::portal::chromium::executable(
                args.browser.as_deref().or(f.browser.as_deref()),
            ),
            allow_origins: allow_origins(&args.allow_origin, &f.allow_origins)?,
            trust: trust(cfg.path_or(args.ca_file.as_ref(), f.ca_file.as_ref()))?,
        },
        read_files,
    })
}

/// The authorities trusted beside the system's: `--ca-file`, read and
/// checked before the portal is asked anything. `SSL_CERT_FILE` takes the
/// place of the system's authorities: one that names no readable file of
/// certificates would leave none trusted, and every https portal would
/// read as untrusted, silently; said here instead.
fn trust(ca_file: Option<PathBuf>) -> Result<crate::portal::Trust> {
    if let Some(named) = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        let named = PathBuf::from(named);
        let refused = |what: String| {
            super::Advised::error(
                format!("SSL_CERT_FILE names {}, {what}", named.display()),
                "unset SSL_CERT_FILE to trust the system's authorities, or name a PEM file of them; a private authority of the portal goes in --ca-file",
            )
        };
        let bytes =
            std::fs::read(&named).map_err(|e| refused(format!("which cannot be read: {e}")))?;
        if crate::portal::Trust::from_pem(&bytes).is_err() {
            return Err(refused(
                "which holds no PEM certificate: no authority would be trusted".into(),
            ));
        }
    }
    let Some(path) = ca_file else {
        return Ok(crate::portal::Trust::default());
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        super::Advised::error(
            format!("cannot read --ca-file {}: {e}", path.display()),
            "give the PEM file of the authority that signed the portal's certificate",
        )
    })?;
    // A key beside the certificates is a server's bundle given by mistake
    // (its certificate is no authority, and its key is a secret this file
    // should not spread): said before anything is trusted.
    if bytes
        .windows(b"PRIVATE KEY-----".len())
        .any(|w| w == b"PRIVATE KEY-----")
    {
        return Err(super::Advised::error(
            format!("--ca-file {}: it holds a private key", path.display()),
            "give the certificate of the authority that signed the portal's certificate, alone (a file of trusted certificates holds no key; a server's certificate and key are not an authority)",
        ));
    }
    crate::portal::Trust::from_pem(&bytes).map_err(|why| {
        super::Advised::error(
            format!("--ca-file {}: {why}", path.display()),
            "give the authority's certificate as PEM (-----BEGIN CERTIFICATE-----); convert a DER one with openssl x509 -inform der -in FILE -out FILE.pem",
        )
    })
}

/// The input CSV, from the flag or the file.
fn input(flag: Option<&PathBuf>, cfg: &Loaded) -> Result<PathBuf> {
    cfg.path_or(flag, cfg.file.input.as_ref()).ok_or_else(|| {
        anyhow::anyhow!("no input: give --input FILE or put input in the --config file")
    })
}

/// The folder of the run locks: systemd's `StateDirectory=`, else
/// `$XDG_STATE_HOME/sip-rotate`, else `~/.local/state/sip-rotate`, created
/// (mode 0700) if missing; `None` when there is no home.
fn lock_folder() -> Option<PathBuf> {
    let folder = match std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        // systemd may list several, separated by ':'.
        Some(dirs) => PathBuf::from(dirs.to_string_lossy().split(':').next()?),
        None => match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            Some(state) => PathBuf::from(state).join("sip-rotate"),
            None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?)
                .join(".local/state/sip-rotate"),
        },
    };
    if !folder.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)
            .ok()?;
    }
    Some(folder)
}

/// Each client's own recipients, from a CSV `client_ref,recipient` (several
/// rows per client; age1... or SSH public keys; '#' starts a comment).
fn client_recipients(path: &Path) -> Result<HashMap<String, Vec<String>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the client recipients file {}", path.display()))?;
    let mut all: HashMap<String, Vec<String>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((client, recipient)) = line.split_once([',', ';', '\t']) else {
            bail!(
                "{}, line {}: expected client_ref,recipient",
                path.display(),
                i + 1
            );
        };
        let (client, recipient) = (client.trim(), recipient.trim());
        if i == 0 && client == "client_ref" {
            continue;
        }
        let parsed = Recipients::parse(&[recipient.to_string()], &[])
            .with_context(|| format!("{}, line {}, column 2", path.display(), i + 1))?;
        all.entry(client.to_string())
            .or_default()
            .extend(parsed.texts().iter().cloned());
    }
    Ok(all)
}

/// Everything `run` needs, checked.
pub struct RunSettings {
    pub rotation: rotation::Settings,
    /// Where the run's metrics go, whatever its outcome.
    pub metrics: Option<PathBuf>,
    pub portal: PortalSettings,
    pub view: View,
}

impl RunSettings {
    pub fn new(args: &RunArgs, cfg: &Loaded, interactive: bool) -> Result<RunSettings> {
        let f = &cfg.file;
        let now = chrono::Local::now();
        let quiet = args.quiet || f.quiet.unwrap_or(false);
        let format = args
            .diagnostics
            .log_format
            .or(f.log_format)
            .unwrap_or(LogFormat::Text);
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
        let (pattern, output) = match (&args.output, &f.output) {
            (Some(o), _) => (PathBuf::from(o), dated(o, &now)?),
            (None, Some(o)) => (cfg.resolve(Path::new(o)), cfg.resolve(&dated(o, &now)?)),
            (None, None) => {
                return Err(super::Advised::error(
                    "no output",
                    "give -o FILE or put output in the --config file",
                ));
            }
        };
        if output.as_os_str() == "-" {
            return Err(super::Advised::error(
                "-o -: the result must be a file (it is written under a temporary name, then renamed when complete)",
                "give a file name, e.g. -o 'rotation-%Y%m%d-%H%M%S.csv.age'",
            ));
        }
        if !args.identities.is_empty() && args.resume.or(f.resume).is_none() {
            return Err(super::Advised::error(
                "-i: an identity is read only to finish an interrupted run",
                "add --resume (or --resume=auto): a new run encrypts to its recipients and needs no identity",
            ));
        }
        // `auto`: resume only what is there to resume.
        // Looked for once: each candidate journal is read.
        let unfinished = unfinished_run_of(&pattern)?;
        let resume = match args.resume.or(f.resume) {
            None => false,
            Some(super::args::ResumeMode::Yes) => true,
            Some(super::args::ResumeMode::Auto) => {
                rotation::journal_of(&output).exists() || unfinished.is_some()
            }
        };
        // The journal of a run of this pattern still going: said with who
        // holds the run lock, once its name is known (below).
        let mut in_use = None;
        // Nothing to resume under a dated name: said of the pattern (the
        // name of this second would be a journal nobody made).
        if resume
            && pattern != output
            && unfinished.is_none()
            && !rotation::journal_of(&output).exists()
        {
            return Err(super::Advised::error(
                format!(
                    "there is no journal of an unfinished run of {} to resume from",
                    pattern.display()
                ),
                crate::cli::NOTHING_TO_RESUME,
            ));
        }
        // A dated name: the unfinished run of this pattern began at another time.
        let output = if resume && !rotation::journal_of(&output).exists() {
            unfinished.unwrap_or(output)
        } else if !resume && pattern != output {
            if let Some(unfinished) = unfinished {
                // Still running, not stopped: the other run's to finish.
                let journal = rotation::journal_of(&unfinished);
                if crate::vault::journal_in_use(&journal) {
                    in_use = Some(journal);
                } else {
                    return Err(super::Advised::error(
                        format!(
                            "{} exists: a run of this output pattern did not finish, and its new passwords are in that journal",
                            journal.display()
                        ),
                        crate::cli::unfinished_hint(&journal),
                    ));
                }
            }
            output
        } else {
            output
        };
        let report = match (&args.report, &f.report) {
            (Some(r), _) => Some(dated(r, &now)?),
            (None, Some(r)) => Some(cfg.resolve(&dated(r, &now)?)),
            (None, None) => None,
        }
        .map(|path| ReportFile {
            path,
            // A resumed run's report takes the place of the interrupted
            // run's (its rows say what that run did); never another file.
            replace: args.report_style.overwrite_report
                || f.overwrite_report.unwrap_or(false)
                || resume,
            dialect: args
                .report_style
                .csv_dialect
                .or(f.csv_dialect)
                .map(Into::into)
                .unwrap_or_default(),
        });
        if !args.yes && !interactive {
            return Err(super::Advised::error(
                "not on a terminal: nobody can confirm the resets",
                "add --yes to reset without asking",
            ));
        }
        let limits = Limits {
            canary: args.canary.or(f.canary).unwrap_or(DEFAULT_CANARY),
            max_failures: args
                .max_failures
                .or(f.max_failures)
                .unwrap_or(DEFAULT_MAX_FAILURES),
            max_resets: args
                .max_resets
                .or(f.max_resets)
                .unwrap_or(DEFAULT_MAX_RESETS),
        };
        if limits.max_failures == 0 || limits.max_resets == 0 {
            bail!("--max-failures and --max-resets must be at least 1");
        }
        let portal = portal(&args.portal, cfg)?;
        // One rotation per portal account: the lock is named after it.
        let lock = match &f.lock {
            Some(l) => cfg.resolve(l),
            None => {
                let name =
                    rotation::lock_name(&portal.settings.start, &portal.settings.credentials.login);
                lock_folder()
                    .unwrap_or_else(|| crate::files::folder_of(&output).to_path_buf())
                    .join(name)
            }
        };
        if let Some(journal) = in_use {
            return Err(match rotation::RunLock::holder(&lock) {
                Some(holder) => rotation::LockError::Held { path: lock, holder }.into(),
                None => crate::vault::VaultError::JournalInUse { path: journal }.into(),
            });
        }
        let client_recipients_file = cfg.path_or(
            args.client_recipients.as_ref(),
            f.client_recipients.as_ref(),
        );
        let client_recipients = match &client_recipients_file {
            // Without `{client}` there is one file, which no client could
            // read: the clients' keys would be taken and used for nothing.
            Some(path) if !rotation::outputs::per_client(&output) => {
                return Err(super::Advised::error(
                    format!(
                        "client recipients ({}) but no {{client}} in the output's name",
                        path.display()
                    ),
                    "each client gets its own file only with -o '...{client}...'",
                ));
            }
            Some(path) => Some(client_recipients(path)?),
            None => None,
        };
        let mut read_files = portal.read_files;
        if let Some(path) = client_recipients_file {
            read_files.push(("client recipients file".to_string(), path));
        }
        read_files.extend(
            recipients_files
                .into_iter()
                .map(|p| ("recipients file".to_string(), p)),
        );
        let metrics = cfg.path_or(args.metrics_file.as_ref(), f.metrics_file.as_ref());
        Ok(RunSettings {
            rotation: rotation::Settings {
                input: input(args.input.as_ref(), cfg)?,
                output,
                client_recipients,
                report,
                lock,
                account: rotation::account_key(
                    &portal.settings.start,
                    &portal.settings.credentials.login,
                ),
                on_rerun: match (
                    args.resume.or(f.resume).is_some(),
                    !args.identities.is_empty() || !f.identities.is_empty(),
                ) {
                    (false, _) => rotation::OnRerun::StartsAfresh,
                    (true, false) => rotation::OnRerun::Resumes,
                    (true, true) => rotation::OnRerun::ResumesWithIdentity,
                },
                recipients,
                read_files,
                limits,
                workers: portal.settings.concurrency,
                skip_unresolved: args.skip_unresolved || f.skip_unresolved.unwrap_or(false),
                resume,
                // The flag's identities, else the file's: looked for only
                // when there is a run to finish.
                resume_identities: match (args.identities.is_empty(), resume) {
                    (false, _) => args.identities.clone(),
                    (true, true) => f
                        .identities
                        .iter()
                        .map(|p| credential_or_path(cfg, "identities", p))
                        .collect::<Result<Vec<_>>>()?,
                    (true, false) => Vec::new(),
                },
                confirm: !args.yes,
                metrics: metrics.clone(),
            },
            metrics,
            portal: portal.settings,
            view: View::new(quiet, format),
        })
    }
}

/// Everything `plan` needs, checked.
pub struct PlanSettings {
    pub input: PathBuf,
    pub report: Option<ReportFile>,
    pub portal: PortalSettings,
    pub view: View,
}

impl PlanSettings {
    pub fn new(args: &PlanArgs, cfg: &Loaded) -> Result<PlanSettings> {
        let format = args
            .diagnostics
            .log_format
            .or(cfg.file.log_format)
            .unwrap_or(LogFormat::Text);
        Ok(PlanSettings {
            input: input(args.input.as_ref(), cfg)?,
            report: args.report.clone().map(|path| ReportFile {
                path,
                replace: args.report_style.overwrite_report,
                dialect: args
                    .report_style
                    .csv_dialect
                    .or(cfg.file.csv_dialect)
                    .map(Into::into)
                    .unwrap_or_default(),
            }),
            portal: portal(&args.portal, cfg)?.settings,
            view: View::new(false, format),
        })
    }
}
