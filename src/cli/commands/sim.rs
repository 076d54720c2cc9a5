//! `sip-rotate sim`: the simulated portal, for tests, the demo and benchmarks.

use crate::cli::Exit;
use crate::cli::args::SimArgs;
use crate::sim::dataset::DatasetSpec;
use crate::sim::routes::Variant;
use crate::sim::{SimConfig, Simulator};
use anyhow::{Context, Result, bail};
use std::io::Write;

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
        slow_refusal: std::time::Duration::from_millis(args.slow_refusal_ms),
        hostile: crate::sim::Hostile {
            login_action: args.hostile_login_action.clone(),
            confirm_redirect: args.hostile_confirm_redirect.clone(),
            home_page_mib: args.hostile_home_page_mib,
            first_user_name: args.hostile_user_name.clone(),
            page_script: args.hostile_page_script.clone(),
        },
        shapes: args.shape.clone(),
        scripts_from: args.scripts_from.clone(),
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
