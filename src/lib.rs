//! sip-rotate: bulk rotation of MetaCentrex SIP passwords through the
//! MyOpenIP reseller portal, with the new passwords handed back in an
//! age-encrypted file.
//!
//! The pieces, in the order a run uses them: `input` reads the CSV,
//! `portal` drives the portal like a browser, `rotation` is the run itself
//! (resolve exactly, then reset under a rate limit) returning a typed
//! outcome, `vault` journals and encrypts the passwords, `report` writes
//! what happened. `cli` parses flags, calls the library and renders what it
//! returns. `sim` is the simulated portal for tests and demos: it uses the
//! client's types, and nothing but `cli` and the tests use it.

pub mod cli;
pub(crate) mod dialect;
pub(crate) mod files;
pub(crate) mod input;
pub mod metrics;
pub mod phone;
pub mod portal;
pub(crate) mod report;
pub mod rotation;
pub mod scrub;
pub mod sim;
pub mod status;
pub(crate) mod vault;
