//! `keygen`, `decrypt` and `sim`: the small commands around a run.

use super::Exit;
use super::args::{DecryptArgs, KeygenArgs, SimArgs};
use crate::sim::dataset::DatasetSpec;
use crate::sim::routes::Variant;
use crate::sim::{SimConfig, Simulator};
use crate::{files, vault};
use anyhow::{Context, Result, bail};
use secrecy::ExposeSecret;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

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
                return Err(super::Advised::error(
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
        return Err(super::Advised::error(
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
    super::logging::say(&format!(
        "{} decrypted from {}",
        super::render::count(done.rows, "row", "rows"),
        name.display()
    ));
    if !done.unreadable.is_empty() {
        super::logging::say(&format!(
            "{} could not be decrypted with these identities (licences {}): they were encrypted to other recipients; add their identities with -i",
            super::render::count(done.unreadable.len(), "journal entry", "journal entries"),
            done.unreadable.join(", ")
        ));
        return Ok(Exit::Partial);
    }
    Ok(Exit::AllDone)
}

pub fn sim_config(args: &SimArgs) -> Result<SimConfig> {
    for (name, f) in [
        ("--fail-rate", args.fail_rate),
        ("--drop-rate", args.drop_rate),
    ] {
        if !(0.0..=1.0).contains(&f) {
            bail!("{name} must be between 0 and 1");
        }
    }
    if args.page_size == 0 || args.clients == 0 || args.licences_per_client == 0 {
        bail!("--page-size, --clients and --licences-per-client must be at least 1");
    }
    let mut labels = crate::portal::labels::Labels::default();
    for setting in &args.labels {
        let Some((key, words)) = setting.split_once('=') else {
            bail!("--label {setting}: expected KEY=WORDS, e.g. confirm_button=Valider");
        };
        labels
            .set(key.trim(), words.trim())
            .map_err(|e| anyhow::anyhow!("--label {setting}: {e}"))?;
    }
    if args
        .reconnect_after
        .is_some_and(|s| !(s >= 0.0 && s.is_finite()))
    {
        bail!("--reconnect-after must be a number of seconds");
    }
    Ok(SimConfig {
        labels,
        reconnect_after: args.reconnect_after.map(std::time::Duration::from_secs_f64),
        login: args.login.clone(),
        password: args.password.clone(),
        profile: args.profile.into(),
        dataset: DatasetSpec {
            seed: args.seed,
            clients: args.clients,
            licences_per_client: args.licences_per_client,
        },
        page_size: args.page_size,
        variant: if args.variant == 1 {
            Variant::Modern
        } else {
            Variant::Classic
        },
        latency_ms: args.latency_ms,
        fail_rate: args.fail_rate,
        drop_rate: args.drop_rate,
        expire_after: args.expire_after,
        rate_limit: args.rate_limit,
        truth: args.truth.clone(),
        access_log: args.access_log.clone(),
        handed_out: args.handed_out.clone(),
        twins: args.twins,
        page_latency: args.page_latency.clone(),
        failing_pages: args.fail_page.clone(),
        identical_twins: args.identical_twins,
        hostile: crate::sim::Hostile {
            login_action: args.hostile_login_action.clone(),
            confirm_redirect: args.hostile_confirm_redirect.clone(),
            home_page_mib: args.hostile_home_page_mib,
            first_user_name: args.hostile_user_name.clone(),
        },
        shapes: args.shape.clone(),
    })
}

pub async fn sim(args: SimArgs) -> Result<Exit> {
    let config = sim_config(&args)?;
    let sim = Simulator::bind(config, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    if let Some(path) = &args.dataset_out {
        sim.dataset()
            .write_csv(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let addr = sim.local_addr()?;
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let counters = sim
        .serve(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await;
    eprintln!("{counters}");
    Ok(Exit::AllDone)
}
