//! The CSV as people have it, through the real binary: Excel's French CSV is
//! read, and every bad input is refused with file, line and column before
//! the portal sees a single request.

use crate::common::*;
use sip_rotate::sim::dataset::{Dataset, DatasetSpec};
use std::collections::HashSet;
use std::path::Path;

fn dataset() -> Dataset {
    Dataset::generate(&DatasetSpec {
        seed: 1,
        clients: 12,
        licences_per_client: 8,
    })
}

#[test]
fn excel_csv_with_bom_windows_1252_crlf_semicolons_and_french_headers_is_read() {
    let ds = dataset();
    let Setup {
        dir,
        sim,
        identity: id,
        public,
    } = Setup::new(&["--variant", "1"]);
    let a = &ds.licences[0];
    let b = ds
        .licences
        .iter()
        .find(|l| !l.sda.is_empty() && l.service != a.service)
        .unwrap();
    let client =
        |l: &sip_rotate::sim::dataset::Licence| ds.client_of_service(l.service).reference.clone();
    let service = |l: &sip_rotate::sim::dataset::Licence| ds.services[l.service].reference.clone();
    let text = format!(
        "R\u{e9}f. du client ; Licence ; R\u{e9}f. du service ; SDA\r\n {} ; {} ; {} ; \r\n{};{};;{}\r\n",
        client(a),
        a.reference,
        service(a),
        client(b),
        b.reference,
        b.sda.replace(' ', "")
    );
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(&encoding_rs::WINDOWS_1252.encode(&text).0);
    assert!(std::str::from_utf8(&bytes).is_err(), "really Windows-1252");
    let input = dir.path().join("export excel.csv");
    std::fs::write(&input, bytes).unwrap();
    let output = dir.path().join("out.age");
    exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "100"]),
        0,
    );
    let reset: HashSet<String> = sim.resets().into_iter().map(|t| t.licence).collect();
    assert_eq!(
        reset,
        HashSet::from([a.reference.clone(), b.reference.clone()])
    );
    assert_eq!(decrypt(&id, &output).len(), 2);
}

/// Runs with `csv` as input; returns stderr after checking exit 2 and an untouched portal.
fn refused(dir: &Path, sim: &Sim, name: &str, csv: &[u8]) -> String {
    let input = dir.join(name);
    std::fs::write(&input, csv).unwrap();
    let (_, public) = identity_once(dir);
    let out = run_cmd(sim, &input, &dir.join(format!("{name}.age")), &public)
        .arg("--yes")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
    assert!(
        stderr.contains(name),
        "{name}: the message names the file: {stderr}"
    );
    stderr
}

fn identity_once(dir: &Path) -> (std::path::PathBuf, String) {
    let path = dir.join("identity.txt");
    if !path.exists() {
        return identity(dir);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    (path, public)
}

#[test]
fn every_bad_input_is_refused_with_line_and_column_and_nothing_is_reset() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let cases: [(&str, &[u8], &[&str]); 8] = [
        ("empty.csv", b"", &["empty"]),
        ("blank.csv", b"\r\n\n  \n", &["only blank lines"]),
        (
            "missing.csv",
            b"client_ref;sda\r\n4054;\r\n",
            &["line 1", "missing column 'licence'"],
        ),
        (
            "unknown.csv",
            b"client_ref,licence,commentaire\n4054,FPC172910,x\n",
            &["line 1", "column 3", "unknown column 'commentaire'"],
        ),
        (
            "malformed.csv",
            b"client_ref,licence\n4054,FPC172910\n4054,FPC 17291\n",
            &[
                "line 3",
                "column 2",
                "malformed licence reference 'FPC 17291'",
            ],
        ),
        (
            "quote.csv",
            b"client_ref,licence\n4054,FPC172910\n\"4054,FPC172913\n40542,*\n",
            &["line 3", "never closed"],
        ),
        (
            "extra.csv",
            b"client_ref;licence\n4054;FPC172910;oops\n",
            &["line 2", "column 3", "3 values for 2 columns"],
        ),
        (
            "sda.csv",
            b"client_ref,licence,sda\n4054,FPC172910,not a number\n",
            &["line 2", "column 3", "not a phone number"],
        ),
    ];
    for (name, csv, expected) in cases {
        let stderr = refused(dir.path(), &sim, name, csv);
        for e in expected {
            assert!(stderr.contains(e), "{name}: expected '{e}' in: {stderr}");
        }
        assert!(
            stderr.contains("hint:"),
            "{name}: says what to do: {stderr}"
        );
    }
    assert!(sim.resets().is_empty());
    let counters = sim.stop();
    assert_eq!(
        counters.get("requests.total").copied().unwrap_or(0),
        0,
        "the portal saw no request"
    );
}
