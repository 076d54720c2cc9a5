//! Where a run's result goes: one file, or one per client when the output's
//! name holds `{client}` (each client's file encrypted to the run's
//! recipients and to that client's own, so that a client's IT reads its
//! passwords and nobody else's). The journal stays one file, to the run's
//! recipients only.

use super::HeldIn;
use crate::vault::{Output, Recipients, ResetRecord, VaultError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What stands for the client in an output's name.
pub const CLIENT_FIELD: &str = "{client}";

/// Whether the output's name makes one file per client.
pub fn per_client(template: &Path) -> bool {
    template.to_string_lossy().contains(CLIENT_FIELD)
}

/// A client's file: its reference in place of `{client}` (a `/`, which a
/// file name cannot hold, as `_`).
pub fn output_for(template: &Path, client: &str) -> PathBuf {
    PathBuf::from(
        template
            .to_string_lossy()
            .replace(CLIENT_FIELD, &client.replace('/', "_")),
    )
}

/// The name the run's shared files (the journal) take: `clients` in place
/// of `{client}`.
pub fn shared_name(template: &Path) -> PathBuf {
    output_for(template, "clients")
}

/// Whether `path` is a part file of this output (`OUTPUT.partN`, or a
/// client's `OUTPUT.partN` with `{client}`), in the output's own folder:
/// what a resumed run may remove, whatever its journal names.
pub fn is_part_of(template: &Path, path: &Path) -> bool {
    let (Some(name), Some(template_name)) = (
        path.file_name().and_then(|n| n.to_str()),
        template.file_name().and_then(|n| n.to_str()),
    ) else {
        return false;
    };
    if crate::files::folder_of(path) != crate::files::folder_of(template) {
        return false;
    }
    let Some((output, number)) = name.rsplit_once(".part") else {
        return false;
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match template_name.split_once(CLIENT_FIELD) {
        None => output == template_name,
        Some((before, after)) => {
            output.len() > before.len() + after.len()
                && output.starts_with(before)
                && output.ends_with(after)
        }
    }
}

/// The result files being written.
pub(super) struct Outputs<'a> {
    template: &'a Path,
    recipients: &'a Recipients,
    /// Each client's own recipients (public keys), for per-client files.
    client_recipients: &'a HashMap<String, Vec<String>>,
    /// Open files, by client (one, under "", when not per client).
    open: BTreeMap<String, Output>,
}

impl<'a> Outputs<'a> {
    /// One file is opened at once (a run that resets nothing still leaves
    /// a complete, empty result); per-client files when their first
    /// password comes.
    pub fn open(
        template: &'a Path,
        recipients: &'a Recipients,
        client_recipients: &'a HashMap<String, Vec<String>>,
    ) -> Result<Outputs<'a>, VaultError> {
        let mut outputs = Outputs {
            template,
            recipients,
            client_recipients,
            open: BTreeMap::new(),
        };
        if !per_client(template) {
            outputs
                .open
                .insert(String::new(), Output::create(template, recipients)?);
        }
        Ok(outputs)
    }

    fn file_of(&mut self, client: &str) -> Result<&mut Output, VaultError> {
        let key = if per_client(self.template) {
            client.to_string()
        } else {
            String::new()
        };
        if !self.open.contains_key(&key) {
            let mut texts = self.recipients.texts().to_vec();
            texts.extend(
                self.client_recipients
                    .get(client)
                    .cloned()
                    .unwrap_or_default(),
            );
            let recipients = Recipients::parse(&texts, &[])?;
            let output = Output::create(&output_for(self.template, client), &recipients)?;
            self.open.insert(key.clone(), output);
        }
        Ok(self.open.get_mut(&key).expect("just opened"))
    }

    /// Adds a record to its client's file.
    pub fn add(&mut self, record: &ResetRecord) -> Result<(), VaultError> {
        self.file_of(&record.client_ref)?.add(record)
    }

    /// Adds an earlier run's row to its client's file.
    pub fn add_earlier(&mut self, row: &crate::vault::EarlierRow) -> Result<(), VaultError> {
        self.file_of(&row.client_ref)?.add_row(&row.line)
    }

    /// Passwords written, in every file.
    pub fn rows(&self) -> usize {
        self.open.values().map(Output::rows).sum()
    }

    /// Every file complete under its name, checked on disk; the files
    /// written, and the first failure after trying them all.
    pub fn finish(self) -> (Vec<HeldIn>, Option<VaultError>) {
        let mut held = Vec::new();
        let mut failed = None;
        for output in self.open.into_values() {
            let passwords = output.rows();
            match output.finish_verified() {
                Ok(path) => held.push(HeldIn { path, passwords }),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        (held, failed)
    }

    /// A stopped run's files, each as its `.partN` (those holding passwords).
    pub fn finish_parts(self) -> (Vec<HeldIn>, Vec<VaultError>) {
        let mut held = Vec::new();
        let mut failures = Vec::new();
        for output in self.open.into_values() {
            let passwords = output.rows();
            if passwords == 0 {
                continue;
            }
            match output.finish_part() {
                Ok(path) => held.push(HeldIn { path, passwords }),
                Err(e) => failures.push(e),
            }
        }
        (held, failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_output_s_parts_are_its_parts() {
        let t = Path::new("/r/rot-1.csv.age");
        assert!(is_part_of(t, Path::new("/r/rot-1.csv.age.part1")));
        assert!(is_part_of(t, Path::new("/r/rot-1.csv.age.part12")));
        assert!(!is_part_of(t, Path::new("/r/rot-1.csv.age.part")));
        assert!(!is_part_of(t, Path::new("/r/rot-1.csv.age.partx")));
        assert!(!is_part_of(t, Path::new("/r/../victim.txt")));
        assert!(!is_part_of(t, Path::new("/etc/rot-1.csv.age.part1")));
        assert!(!is_part_of(t, Path::new("/r/other.csv.age.part1")));
        let c = Path::new("/r/rot-{client}.csv.age");
        assert!(is_part_of(c, Path::new("/r/rot-4054.csv.age.part1")));
        assert!(!is_part_of(c, Path::new("/r/rot-.csv.age.part1")));
        assert!(!is_part_of(c, Path::new("/r/x-4054.csv.age.part1")));
    }
}
