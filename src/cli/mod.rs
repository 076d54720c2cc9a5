//! The command line: flags (`args`), their checks (`config`), and the
//! commands. Errors end here, printed once, with the exit code they mean.

pub mod args;
pub mod config;
pub mod demo;
pub mod logging;
pub mod run;
pub mod tools;

use clap::Parser;

/// A core dump of this process would hold the new passwords and the portal
/// password in clear: none is ever written. On Linux the process is also not
/// dumpable, which keeps other processes of the same user from reading its
/// memory through `/proc` or a debugger.
fn forbid_core_dumps() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls with valid arguments, before any thread starts.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}
use std::process::ExitCode;

pub fn main() -> ExitCode {
    forbid_core_dumps();
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
