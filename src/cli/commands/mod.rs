//! One file per command, each ending in its exit code.

pub(super) mod check;
pub(super) mod decrypt;
pub(super) mod demo;
pub(super) mod generate;
pub(super) mod keygen;
pub(super) mod labels;
pub(super) mod plan;
pub(super) mod run;
pub(super) mod sim;
pub(super) mod status;
