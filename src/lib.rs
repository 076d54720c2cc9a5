//! sip-rotate: bulk rotation of MetaCentrex SIP passwords through the
//! MyOpenIP reseller portal, with the new passwords handed back in an
//! age-encrypted file.
//!
//! The pieces, in the order a run uses them: `input` reads the CSV,
//! `portal` drives the portal like a browser, `runner` resolves then resets
//! under a rate limit, `vault` journals and encrypts the passwords, `report`
//! writes what happened. `sim` is the simulated portal for tests and demos.

pub mod cli;
pub mod files;
pub mod input;
pub mod phone;
pub mod portal;
pub mod report;
pub mod runner;
pub mod sim;
pub mod vault;
