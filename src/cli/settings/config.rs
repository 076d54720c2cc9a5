//! The config file (`--config`, sip-rotate.toml(5)): read once, each key a
//! flag's name, a flag on the command line winning.

use super::*;

/// The settings file of a scheduled run (`--config FILE`). Relative paths
/// are taken from the file's folder. Each key is a flag's name with `_`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub portal: Option<String>,
    pub login: Option<String>,
    pub profile: Option<Profile>,
    pub password_file: Option<PathBuf>,
    /// A shell command whose first line of output is the portal password.
    pub password_command: Option<String>,
    /// How long, in seconds, `password_command` may take (120).
    pub password_command_timeout: Option<u64>,
    #[serde(default)]
    pub recipients: Vec<String>,
    pub recipients_file: Option<PathBuf>,
    /// Identities that read the journal of a stopped run, so that `resume`
    /// gathers the rotation into one result (`-i`).
    #[serde(default)]
    pub identities: Vec<PathBuf>,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub timeout: Option<u64>,
    /// `auto`, `http` or `browser`.
    pub engine: Option<crate::portal::EngineChoice>,
    pub browser: Option<PathBuf>,
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// `--ca-file`: the private authority of the portal's certificate.
    pub ca_file: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub input: Option<PathBuf>,
    /// The result file, with strftime fields: `rotation-%Y%m%d.csv.age`.
    pub output: Option<String>,
    pub report: Option<String>,
    pub overwrite_report: Option<bool>,
    /// `resume = "auto"`: finish an unfinished run of the output pattern
    /// if there is one, else start afresh (a timer's run).
    pub resume: Option<crate::cli::args::ResumeMode>,
    /// The lock file that keeps two runs on one portal account apart.
    pub lock: Option<PathBuf>,
    pub skip_unresolved: Option<bool>,
    pub canary: Option<usize>,
    pub max_failures: Option<usize>,
    pub max_resets: Option<u32>,
    pub quiet: Option<bool>,
    pub log_format: Option<LogFormat>,
    pub csv_dialect: Option<CsvDialect>,
    /// CSV `client_ref,recipient`: each client's own recipients.
    pub client_recipients: Option<PathBuf>,
    /// Prometheus metrics, replaced at the end of every run.
    pub metrics_file: Option<PathBuf>,
}

/// The origins `--allow-origin` (and `allow_origins`) name.
pub(super) fn allow_origins(flags: &[String], file: &[String]) -> Result<Vec<url::Origin>> {
    flags
        .iter()
        .chain(file)
        .map(|text| {
            let url = Url::parse(text).with_context(|| {
                format!(
                    "--allow-origin '{}' is not an address; give it as https://host",
                    crate::scrub::message(text)
                )
            })?;
            // As for the portal: plain http only on loopback.
            if url.scheme() != "https" && !(url.scheme() == "http" && super::on_loopback(&url)) {
                bail!(
                    "--allow-origin {}: only https origins (http on loopback) may serve the portal's scripts",
                    crate::scrub::url(&url)
                );
            }
            Ok(url.origin())
        })
        .collect()
}

/// A config file's TOML error: where, and what, with the key of the line
/// it is on but never a value (a misspelt key, an unterminated string or a
/// multi-line one may hold the password itself); quoted text in the
/// parser's message is masked too.
pub(super) fn config_error(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let message = mask_quoted(e.message().trim());
    let Some(span) = e.span() else {
        return anyhow::anyhow!("config file {}: {message}", path.display());
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |n| n + 1);
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let shown = match line.split_once('=') {
        Some((key, _)) => format!("{} = (value not shown)", key.trim()),
        None if line.trim_start().starts_with('[') => line.trim().to_string(),
        None => "(not shown)".to_string(),
    };
    anyhow::anyhow!(
        "config file {}, line {line_no}, column {column}: {}\n  {line_no} | {}",
        path.display(),
        crate::scrub::message(&message),
        crate::scrub::message(&shown)
    )
}

/// `text` with what stands between quotes replaced by `…`.
pub(super) fn mask_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if quote.is_some() {
        out.push('…');
    }
    out
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
        let file: ConfigFile = toml::from_str(&text).map_err(|e| config_error(path, &text, &e))?;
        Ok(Loaded {
            file,
            path: Some(path.to_path_buf()),
        })
    }

    /// The log format a config file asks for, even when the file is not
    /// valid TOML: its error must be written in that format.
    pub fn log_format_of(path: Option<&Path>) -> Option<LogFormat> {
        let text = std::fs::read_to_string(path?).ok()?;
        text.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "log_format" && value.trim().trim_matches('"') == "json")
                .then_some(LogFormat::Json)
        })
    }

    /// A path of the file, taken from the file's folder when relative.
    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        match self.path.as_ref().and_then(|c| c.parent()) {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// The flag's path, else the file's.
    pub(super) fn path_or(
        &self,
        flag: Option<&PathBuf>,
        from_file: Option<&PathBuf>,
    ) -> Option<PathBuf> {
        flag.cloned().or_else(|| from_file.map(|p| self.resolve(p)))
    }
}
