//! `sip-rotate demo`: the main job end to end on an embedded simulated
//! portal. It makes a throw-away age identity, runs the `samples/` CSV
//! through the same rotation and rendering as `run`, then shows where the
//! result is, how to decrypt it, and a few rows with the passwords masked.

use crate::cli::args::{DemoArgs, LogFormat};
use crate::cli::settings::View;
use crate::cli::{Exit, logging};
use crate::events::Interruption;
use crate::portal::labels::Labels;
use crate::portal::{Credentials, LoginProfile, PortalSettings};
use crate::rotation::{self, Limits, ReportFile};
use crate::sim::{SimConfig, Simulator};
use crate::vault::{self, Recipients};
use anyhow::{Context, Result};
use secrecy::{ExposeSecret, SecretString};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// The sample CSV, which matches the simulator's default dataset.
const SAMPLE: &str = include_str!("../../../samples/licences.csv");

pub async fn demo(args: DemoArgs) -> Result<Exit> {
    crate::cli::logging::init(LogFormat::Text, false);
    let dir = tempfile::Builder::new()
        .prefix("sip-rotate-demo-")
        .tempdir()?
        .keep();
    // A throw-away password for the throw-away portal.
    let portal_password = format!("{:032x}", rand::random::<u128>());
    let mut sim_config = SimConfig::new("demo-revendeur", &portal_password);
    sim_config.latency_ms = args.latency_ms;
    sim_config.truth = None;
    let sim = Simulator::bind(sim_config, "127.0.0.1:0".parse()?).await?;
    let addr = sim.local_addr()?;
    let (stop_sim, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sim.serve(async {
        let _ = stopped.await;
    }));

    let identity_path = dir.join("identity.txt");
    let (secret, public) = vault::generate_identity();
    let mut f = crate::files::create_private(&identity_path)?;
    writeln!(f, "# public key: {public}\n{}", secret.expose_secret())?;
    drop(f);
    let input = dir.join("licences.csv");
    std::fs::write(&input, SAMPLE)?;
    let output = dir.join("rotation.csv.age");
    let report = dir.join("report.csv");

    // Each line through `say`: wrapped to the terminal at spaces.
    let say = logging::say;
    say(&format!(
        "sip-rotate demo: a simulated portal listens on http://{addr}"
    ));
    say(&format!(
        "  input:     {} ({} rows)",
        input.display(),
        SAMPLE.lines().count() - 1
    ));
    say(&format!("  recipient: {public}"));
    say(&format!(
        "  (a throw-away identity, in {})",
        identity_path.display()
    ));
    say("");

    let settings = crate::cli::settings::RunSettings {
        rotation: rotation::Settings {
            input: input.clone(),
            output: output.clone(),
            client_recipients: None,
            report: Some(ReportFile {
                path: report.clone(),
                replace: false,
                dialect: crate::dialect::Dialect::Rfc4180,
            }),
            lock: dir.join("demo.lock"),
            on_rerun: Default::default(),
            account: rotation::account_key(&format!("http://{addr}/").parse()?, "demo-revendeur"),
            recipients: Recipients::parse(std::slice::from_ref(&public), &[])?,
            read_files: Vec::new(),
            limits: Limits {
                canary: 1,
                max_failures: 10,
                max_resets: 5,
            },
            workers: 4,
            skip_unresolved: false,
            resume: false,
            resume_identities: Vec::new(),
            confirm: false,
            metrics: None,
        },
        metrics: None,
        portal: PortalSettings {
            start: format!("http://{addr}/").parse()?,
            credentials: Credentials {
                login: "demo-revendeur".into(),
                password: SecretString::from(portal_password),
                profile: LoginProfile::Reseller,
            },
            labels: Labels::default(),
            rate: args.rate,
            concurrency: 4,
            timeout: Duration::from_secs(30),
            capture: None,
            engine: crate::portal::EngineChoice::Http,
            browser: crate::portal::chromium::executable(None),
            allow_origins: Vec::new(),
            trust: Default::default(),
        },
        view: View {
            quiet: false,
            format: LogFormat::Text,
            progress: std::io::stderr().is_terminal(),
        },
    };
    let interruption = Interruption::default();
    let result = crate::cli::commands::run::rotate(settings, &interruption).await;
    let _ = stop_sim.send(());
    let _ = server.await;
    let (exit, _) = result?;

    say("");
    say(&format!("report (no secrets): {}", report.display()));
    if output.exists() {
        let path = &output;
        say(&format!("encrypted result:    {}", path.display()));
        say("");
        // The path of this very binary: after `cargo run` it is not on the PATH.
        let me = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "sip-rotate".into());
        // Commands a line a part, as a shell takes them, to copy whole.
        say("decrypt it with:");
        say(&format!("  {me} decrypt \\"));
        say(&format!("    -i {} \\", identity_path.display()));
        say(&format!("    -o passwords.csv {}", path.display()));
        say("or with the age CLI:");
        say(&format!("  age -d -i {} \\", identity_path.display()));
        say(&format!("    {}", path.display()));
        say("");
        let identities = vault::read_identities(std::slice::from_ref(&identity_path))?;
        let mut plain = zeroize::Zeroizing::new(Vec::<u8>::new());
        let mut file = std::fs::File::open(path)?;
        vault::decrypt(
            &mut file,
            path,
            &identities,
            &mut *plain,
            crate::dialect::Dialect::Rfc4180,
        )
        .context("decrypting the demo result")?;
        say("first rows, passwords masked:");
        let mut reader = csv::Reader::from_reader(plain.as_slice());
        for record in reader.records().take(5) {
            let record = record?;
            let masked = "•".repeat(record.get(7).map_or(0, |p| p.chars().count()));
            let name: String = record.get(5).unwrap_or("").chars().take(24).collect();
            say(&format!(
                "  {:<10} SDA {:<15} {name:<24} {masked}",
                record.get(2).unwrap_or(""),
                record.get(4).filter(|s| !s.is_empty()).unwrap_or("-"),
            ));
        }
    }
    Ok(exit)
}
