//! Command-line flags as clap parses them, before any check. `settings`
//! merges them with the config file into checked settings; nothing else
//! reads them.

use crate::portal::LoginProfile;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sip-rotate",
    // The version and, when known, the commit it was built from (build.rs).
    version = env!("SIP_ROTATE_VERSION"),
    // At most 100 columns (in a pipe too, where the README's copy is
    // checked against it); narrower on a narrower terminal.
    max_term_width = 100,
    about = "Reset MetaCentrex SIP passwords in bulk through the MyOpenIP portal; the new passwords go to an age-encrypted file.",
    after_help = super::manual::exit_codes_in_short("run")
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reset the SIP passwords of the licences of a CSV and encrypt the new ones to a file.
    #[command(after_help = super::manual::exit_codes_in_short("run"))]
    Run(RunArgs),
    /// Resolve the CSV against the portal and show what `run` would reset, resetting nothing.
    #[command(after_help = super::manual::exit_codes_in_short("plan"))]
    Plan(PlanArgs),
    /// Walk the portal to one licence's confirmation page and check every label a run needs; never confirms.
    #[command(after_help = super::manual::exit_codes_in_short("check"))]
    Check(CheckArgs),
    /// Print a labels file with the guide's wording, ready to edit for --labels.
    #[command(after_help = super::manual::exit_codes_in_short("labels"))]
    Labels,
    /// After a rotation: which phones are back (the users tables' État), once or until all are.
    #[command(after_help = super::manual::exit_codes_in_short("status"))]
    Status(StatusArgs),
    /// Decrypt a result file or a journal into CSV.
    #[command(after_help = super::manual::exit_codes_in_short("decrypt"))]
    Decrypt(DecryptArgs),
    /// Write a new age identity and print its public key.
    #[command(after_help = super::manual::exit_codes_in_short("keygen"))]
    Keygen(KeygenArgs),
    /// Serve a simulated MyOpenIP portal on loopback, for tests and trials.
    #[command(after_help = super::manual::exit_codes_in_short("sim"))]
    Sim(SimArgs),
    /// Reset the sample licences on an embedded simulated portal, end to end.
    #[command(after_help = super::manual::exit_codes_in_short("demo"))]
    Demo(DemoArgs),
    /// Write the man pages, or print a shell's completions, from these very flags.
    #[command(subcommand, after_help = super::manual::exit_codes_in_short("generate"))]
    Generate(Generate),
}

/// What `generate` makes.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Write one man page per command (sip-rotate.1, sip-rotate-run.1...) into a folder.
    #[command(after_help = super::manual::exit_codes_in_short("generate"))]
    Man {
        /// The folder (created if missing); an earlier page of sip-rotate is replaced, any other file at a page's name stops it.
        dir: PathBuf,
    },
    /// Print the completion script of a shell on standard output.
    #[command(after_help = super::manual::exit_codes_in_short("generate"))]
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The shells completions are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The profile chosen at login, as the portal words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Revendeur,
    Operateur,
}

impl From<Profile> for LoginProfile {
    fn from(p: Profile) -> LoginProfile {
        match p {
            Profile::Revendeur => LoginProfile::Reseller,
            Profile::Operateur => LoginProfile::Operator,
        }
    }
}

/// How to reach and log in to the portal. Each of these may also come from
/// `--config FILE`; a flag given on the command line wins.
#[derive(Debug, Args)]
pub struct PortalArgs {
    /// TOML file with the settings of a scheduled run (see man 5 sip-rotate.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Portal address (https; http only on loopback).
    #[arg(long, value_name = "URL")]
    pub portal: Option<String>,
    /// Portal login.
    #[arg(long, env = "MYOPENIP_LOGIN", value_name = "L", hide_env_values = true)]
    pub login: Option<String>,
    /// File holding the portal password (mode 0600); else env MYOPENIP_PASSWORD. Never a flag.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The profile chosen at login [default: revendeur].
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// Portal requests per second, for every request of the run [default: 2].
    #[arg(long, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,
    /// Portal sessions, and requests in flight, at most at once; sessions
    /// open only as the rate needs them [default: 4].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// TOML file overriding the labels looked for on the portal's pages.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Seconds to wait for one portal answer [default: 30].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Write every page fetched to this new folder, secrets removed, for whoever maintains the labels.
    #[arg(long, value_name = "DIR")]
    pub capture: Option<PathBuf>,
    /// What performs the steps: http, a headless browser, or auto (http, and the browser once a step needs a script) [default: auto].
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<crate::portal::EngineChoice>,
    /// The Chromium binary of the browser engine [default: chromium].
    #[arg(
        long,
        value_name = "PATH",
        env = "SIP_ROTATE_BROWSER",
        hide_env_values = true
    )]
    pub browser: Option<PathBuf>,
    /// Let the browser load scripts and styles from this other origin too (never a page, a form or an XHR); repeatable.
    #[arg(long, value_name = "URL")]
    pub allow_origin: Vec<String>,
    /// PEM file of the private certificate authority that signed the portal's certificate, trusted beside the system's (both engines).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// How a command that talks to the portal writes on stderr.
#[derive(Debug, Args)]
pub struct Diagnostics {
    /// Log format on stderr: one JSON object per line with json [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// How a report is written, for every command that writes one.
#[derive(Debug, Args)]
pub struct ReportStyle {
    /// Replace the report file if it is an earlier report of this command (never another file, never through a link).
    #[arg(long)]
    pub overwrite_report: bool,
    /// How the report is written: rfc4180 (comma) or excel (;, BOM, CRLF, for a spreadsheet) [default: rfc4180].
    #[arg(long, value_enum)]
    pub csv_dialect: Option<CsvDialect>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// CSV of licences to reset (client_ref,licence[,service_ref][,sda]).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub portal: PortalArgs,
    /// Encrypted result file to create (it must not exist); %Y, %m, %d... are replaced by the date, {client} makes one file per client.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<String>,
    /// Encrypt to this recipient (age1..., ssh-ed25519 ..., ssh-rsa ...); repeatable.
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// Encrypt to the recipients listed in this file; repeatable.
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
    /// CSV client_ref,recipient: with {client} in -o, each client's file is encrypted to its own too.
    #[arg(long, value_name = "FILE")]
    pub client_recipients: Option<PathBuf>,
    /// Write a CSV report without secrets, one row per licence; %Y, %m, %d... as for --output.
    #[arg(long, value_name = "FILE")]
    pub report: Option<String>,
    #[command(flatten)]
    pub report_style: ReportStyle,
    /// Replace this file at the end of every run with Prometheus metrics (node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Reset the rows that resolve even if others do not.
    #[arg(long)]
    pub skip_unresolved: bool,
    /// Do not ask before resetting (required without a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Nothing on stderr when the run succeeds; the summary when it does not.
    #[arg(short, long)]
    pub quiet: bool,
    /// Continue an interrupted run: skip the licences already in OUTPUT.journal; --resume=auto resumes one if there is one, else starts afresh.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "yes"
    )]
    pub resume: Option<ResumeMode>,
    /// With --resume: an identity of the run's recipients, to read OUTPUT.journal, so that the result holds the whole rotation's passwords and the parts and journal go; repeatable.
    #[arg(short = 'i', long = "identity", value_name = "IDENTITY_FILE")]
    pub identities: Vec<PathBuf>,
    /// Licences reset first, alone; the run goes on only if they all succeed (one that fails before its Confirmer gives its place to the next, twice at most) [default: 1].
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
    /// Stop the run after this many failed licences [default: 10].
    #[arg(long, value_name = "N")]
    pub max_failures: Option<usize>,
    /// Resets tried per licence while the answer to Confirmer is lost (timeout, cut connection, 5xx) [default: 5].
    #[arg(long, value_name = "N")]
    pub max_resets: Option<u32>,
    #[command(flatten)]
    pub diagnostics: Diagnostics,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// CSV of licences; the first row's licence is walked to (see --licence).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub portal: PortalArgs,
    /// Walk to this licence of the input instead of the first row's.
    #[arg(long, value_name = "REF")]
    pub licence: Option<String>,
    /// Print a labels file with the guide's wording, ready to edit, and stop (as `sip-rotate labels`).
    #[arg(long)]
    pub print_labels: bool,
    #[command(flatten)]
    pub diagnostics: Diagnostics,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// CSV of licences, or the report of a run (its reset rows are followed).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub portal: PortalArgs,
    /// Write each phone's last État to this CSV (client_ref,service_ref,licence,sda,name,state).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub report_style: ReportStyle,
    /// Read again every this many seconds (at least 1), until every phone is back.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
    /// Stop following this many seconds after the start (with --watch).
    #[arg(long, value_name = "SECONDS", requires = "watch")]
    pub until: Option<u64>,
    #[command(flatten)]
    pub diagnostics: Diagnostics,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// CSV of licences to resolve.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub portal: PortalArgs,
    /// Write the plan as a CSV report.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub report_style: ReportStyle,
    #[command(flatten)]
    pub diagnostics: Diagnostics,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Identity: an age identity file, a passphrase-protected one (age -p), or an SSH private key (ssh-ed25519, ssh-rsa); repeatable.
    #[arg(
        short = 'i',
        long = "identity",
        value_name = "IDENTITY_FILE",
        required = true
    )]
    pub identities: Vec<PathBuf>,
    /// Decrypted CSV to create (mode 0600); without it or with -, standard output, which must not be a terminal.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// How the CSV is written: rfc4180 (comma, byte-exact, for scripts) or excel (;, BOM, CRLF, for a spreadsheet) [default: rfc4180].
    #[arg(long, value_enum)]
    pub csv_dialect: Option<CsvDialect>,
    /// Result file or journal to decrypt; - for standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// When a run resumes an interrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResumeMode {
    /// Always: an unfinished run must be there.
    Yes,
    /// When an unfinished run of the output pattern is there; else a new run.
    Auto,
}

/// How a CSV file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CsvDialect {
    Rfc4180,
    Excel,
}

impl From<CsvDialect> for crate::dialect::Dialect {
    fn from(d: CsvDialect) -> crate::dialect::Dialect {
        match d {
            CsvDialect::Rfc4180 => crate::dialect::Dialect::Rfc4180,
            CsvDialect::Excel => crate::dialect::Dialect::Excel,
        }
    }
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the identity to this file (mode 0600, its missing folders made with mode 0700) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to serve on; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The login the portal accepts.
    #[arg(long, env = "SIM_LOGIN", value_name = "L", hide_env_values = true)]
    pub login: String,
    /// The password the portal accepts.
    #[arg(long, env = "SIM_PASSWORD", value_name = "P", hide_env_values = true)]
    pub password: String,
    /// The profile the account must choose at login.
    #[arg(long, value_enum, default_value = "revendeur")]
    pub profile: Profile,
    /// Seed of the generated dataset.
    #[arg(long, value_name = "N", default_value = "1")]
    pub seed: u64,
    /// Number of clients.
    #[arg(long, value_name = "N", default_value = "12")]
    pub clients: usize,
    /// Licences per client, spread over its MetaCentrex services.
    #[arg(long, value_name = "N", default_value = "8")]
    pub licences_per_client: usize,
    /// Rows per page of search results and users tables.
    #[arg(long, value_name = "N", default_value = "10")]
    pub page_size: usize,
    /// Markup and URLs: 0 classic, 1 another portal within the same contract.
    #[arg(long, value_name = "0|1", default_value = "0", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub variant: u8,
    /// Added latency per request, in milliseconds (with jitter).
    #[arg(long, value_name = "N", default_value = "0")]
    pub latency_ms: u64,
    /// Added latency for one kind of page, e.g. confirm=2000 (kinds as in --access-log), or one licence's, e.g. detail:FPC172908=2000; repeatable.
    #[arg(long, value_name = "KIND[:KEY]=MS", value_parser = page_latency)]
    pub page_latency: Vec<(String, u64)>,
    /// Pages of one kind (as in --access-log), or of one licence or service (KIND:KEY), answered 503 every time; repeatable.
    #[arg(long, value_name = "KIND[:KEY]")]
    pub fail_page: Vec<String>,
    /// Fraction of requests answered 500/502/503 before any work.
    #[arg(long, value_name = "F", default_value = "0")]
    pub fail_rate: f64,
    /// Fraction of Confirmer requests whose reset is committed and whose connection is then closed unanswered.
    #[arg(long, value_name = "F", default_value = "0")]
    pub drop_rate: f64,
    /// A session ends after this many requests.
    #[arg(long, value_name = "N")]
    pub expire_after: Option<u32>,
    /// More than N requests in one second are answered 429 with Retry-After.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Append one JSON line per committed reset to this file.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Append one line per request to this file: milliseconds since start, then the page kind.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// Append every secret handed out (session id, form token, new password) to this file, one per line.
    #[arg(long, value_name = "FILE")]
    pub handed_out: Option<PathBuf>,
    /// Show one licence reference for two phones: twice in one users table, and for two clients.
    #[arg(long)]
    pub twins: bool,
    /// Twins that also show the same number and name (only their pages differ).
    #[arg(long)]
    pub identical_twins: bool,
    /// A refused login is answered this many milliseconds late, as portals slow down password guessing.
    #[arg(long, value_name = "MS", default_value = "0")]
    pub slow_refusal_ms: u64,
    /// A reset phone registers again this many seconds after its last reset, but one in seven never does.
    #[arg(long, value_name = "SECS")]
    pub reconnect_after: Option<f64>,
    /// Word a label differently from the guide, e.g. confirm_button=Valider (keys of a labels file); repeatable.
    #[arg(long = "label", value_name = "KEY=WORDS")]
    pub labels: Vec<String>,
    /// Hostile portal: send the login form to this URL instead.
    #[arg(long, value_name = "URL")]
    pub hostile_login_action: Option<String>,
    /// Hostile portal: redirect to this URL after Confirmer instead of to the result page.
    #[arg(long, value_name = "URL")]
    pub hostile_confirm_redirect: Option<String>,
    /// Hostile portal: name the first licence's user this (e.g. =1+1).
    #[arg(long, value_name = "NAME")]
    pub hostile_user_name: Option<String>,
    /// Hostile portal: every page runs this script first.
    #[arg(long, value_name = "JS")]
    pub hostile_page_script: Option<String>,
    /// Hostile portal: pad the home page with this many MiB.
    #[arg(long, value_name = "MIB", default_value = "0")]
    pub hostile_home_page_mib: usize,
    /// Write the dataset as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub dataset_out: Option<PathBuf>,
    /// Build the portal this way too (any number): the confirmation as a
    /// dialog of the detail page, the notification shown again on the
    /// next page, tokens in <meta> and in the Suivant links.
    #[arg(long, value_enum, value_name = "SHAPE")]
    pub shape: Vec<crate::sim::Shape>,
    /// With --shape scripted: the pages load the script their reset needs from this other origin (another sim serves it), as from a CDN.
    #[arg(long, value_name = "ORIGIN")]
    pub scripts_from: Option<String>,
}

fn page_latency(s: &str) -> Result<(String, u64), String> {
    let (kind, ms) = s
        .split_once('=')
        .ok_or_else(|| "expected KIND=MS, e.g. confirm=2000".to_string())?;
    let ms = ms
        .parse()
        .map_err(|_| format!("'{ms}' is not milliseconds"))?;
    Ok((kind.to_string(), ms))
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Added latency per portal request, in milliseconds.
    #[arg(long, value_name = "N", default_value = "40")]
    pub latency_ms: u64,
    /// Portal requests per second.
    #[arg(long, value_name = "REQ_PER_S", default_value = "25")]
    pub rate: f64,
}
