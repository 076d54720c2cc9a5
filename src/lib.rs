//! sip-rotate: bulk rotation of MetaCentrex SIP passwords through the
//! MyOpenIP reseller portal, with the new passwords handed back in an
//! age-encrypted file.
//!
//! The pieces, in the order a run uses them: `input` reads the CSV,
//! `portal` drives the portal like a browser, `rotation` is the run itself
//! (resolve exactly, then reset under a rate limit) returning a typed
//! outcome, `vault` journals and encrypts the passwords, `report` writes
//! what happened; `events` is what a run tells while it goes, and what
//! interrupts it. `cli` parses flags, calls the library and renders what it
//! returns. `sim` is the simulated portal for tests and demos: it uses the
//! client's types, and nothing but `cli`, the tests and the benchmarks use
//! it.

pub mod cli;
pub(crate) mod dialect;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod follow;
pub(crate) mod input;
pub(crate) mod metrics;
pub mod phone;
pub mod portal;
pub(crate) mod report;
pub mod rotation;
pub(crate) mod scrub;
pub mod sim;
pub(crate) mod vault;

/// The rules of the house, checked on the sources: the library's modules
/// import one another without a circle (each can be read knowing only
/// those below it), and the simulator is used by the command line alone.
#[cfg(test)]
mod architecture {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Each top module and the top modules its code (tests aside) names.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        fn walk(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    found.push(path);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files {
            let rel = file
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let names = graph.entry(top.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    names.insert(name);
                }
            }
        }
        graph
    }

    #[test]
    fn modules_import_one_another_without_a_circle() {
        let graph = imports();
        // Peeled from the bottom: a module whose imports are all peeled.
        let mut peeled: BTreeSet<String> = BTreeSet::new();
        while peeled.len() < graph.len() {
            let next: Vec<String> = graph
                .iter()
                .filter(|(m, deps)| {
                    !peeled.contains(*m)
                        && deps
                            .iter()
                            .all(|d| peeled.contains(d) || !graph.contains_key(d))
                })
                .map(|(m, _)| m.clone())
                .collect();
            assert!(
                !next.is_empty(),
                "a circle of imports among {:?}",
                graph
                    .iter()
                    .filter(|(m, _)| !peeled.contains(*m))
                    .collect::<Vec<_>>()
            );
            peeled.extend(next);
        }
    }

    /// What ARCHITECTURE.md promises: the pieces a run uses know nothing
    /// of the run, of the follow-up or of the command line.
    #[test]
    fn the_pieces_of_a_run_know_nothing_of_the_run() {
        let graph = imports();
        let pieces = [
            "portal", "vault", "report", "metrics", "input", "files", "scrub", "phone", "dialect",
            "events",
        ];
        for piece in pieces {
            for above in ["rotation", "follow", "cli"] {
                assert!(
                    !graph[piece].contains(above),
                    "{piece} imports {above}: {:?}",
                    graph[piece]
                );
            }
        }
    }

    #[test]
    fn only_the_command_line_uses_the_simulator() {
        for (module, deps) in imports() {
            assert!(
                module == "cli" || module == "sim" || !deps.contains("sim"),
                "{module} uses the simulator"
            );
        }
    }
}
