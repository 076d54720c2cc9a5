//! `sip-rotate labels`: the labels file to edit, with the guide's words.

use crate::cli::Exit;
use crate::portal::inspect::{self};
use crate::portal::labels::Labels;
use anyhow::Result;
use std::io::Write;

/// `sip-rotate labels`: the labels file with the guide's words.
pub fn labels() -> Result<Exit> {
    let guide = Labels::default();
    let mut out = String::from(
        "# The words sip-rotate looks for on the portal's pages, as the operator's guide\n\
         # shows them. Change those the real portal words differently (sip-rotate check\n\
         # says which, and what the page shows instead), delete the others if you like,\n\
         # and give the file with --labels FILE (or labels = \"FILE\" in the config file).\n",
    );
    let mut step = "";
    let mut written = std::collections::HashSet::new();
    for (at, want) in inspect::places(&guide) {
        // A label looked for on two pages is one key.
        if !written.insert(want.key) {
            continue;
        }
        if at != step {
            out.push_str(&format!("\n# {at} page\n"));
            step = at;
        }
        let value = toml::Value::String(want.words.to_string()).to_string();
        out.push_str(&format!(
            "{:<20} = {value:<34} # {}\n",
            want.key,
            super::check::kind_name(want.kind)
        ));
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(Exit::AllDone)
}
