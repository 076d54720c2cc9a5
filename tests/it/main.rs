//! The integration tests: the real `sip-rotate` binary against the real
//! simulator (`sip-rotate sim`) over loopback, results checked against the
//! simulator's truth. One crate, linked once; a module per subject.
//!
//! `cargo test --test it MODULE::` runs one subject, e.g. `run::`.

mod common;

// `sip-rotate run` end to end, and the request budget.
mod budget;
mod run;

// When resets may start, under the rate, and with a portal that fails.
mod network;
mod phases;
mod retry;

// Never lose a password, never leak one, never touch a file not ours.
mod faults;
mod files;
mod hostile;
mod safety;
mod secrets;
mod signals;

// What the operator gives and gets: input, keys, output, terminal.
mod input;
mod keys;
mod output;
mod terminal;

// Scheduled runs, and what comes after the resets.
mod after;
mod config;
mod metrics;

// Portals other than the guide's, and the first contact with one.
mod check;
mod portals;

// The simulator itself, the package, and the docs against `--help`.
mod package;
mod sim;
mod usage;
