//! The command line: flags (`args`), their checks (`config`), and the
//! commands. Errors end here, printed once, with the exit code they mean.

pub mod args;
pub mod config;
pub mod demo;
pub mod logging;
pub mod run;
pub mod tools;

use clap::Parser;
use std::process::ExitCode;

pub fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return run::Exit::NothingDone.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            args::Command::Run(a) => run::run(a).await,
            args::Command::Plan(a) => run::plan(a).await,
            args::Command::Decrypt(a) => tools::decrypt(a),
            args::Command::Keygen(a) => tools::keygen(a),
            args::Command::Sim(a) => tools::sim(a).await,
            args::Command::Demo(a) => demo::demo(a).await,
        }
    });
    // Leave tasks still waiting on the portal behind rather than waiting for them.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<run::Aborted>() {
                Some(_) => run::Exit::Aborted.into(),
                None => run::Exit::NothingDone.into(),
            }
        }
    }
}
