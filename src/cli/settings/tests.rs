use super::*;

#[test]
fn plain_http_only_on_loopback() {
    assert!(portal_url("https://myopenip.example/").is_ok());
    assert!(portal_url("http://127.0.0.1:8080/").is_ok());
    assert!(portal_url("http://[::1]:8080/").is_ok());
    assert!(portal_url("http://localhost/").is_ok());
    assert!(portal_url("http://myopenip.example/").is_err());
    assert!(portal_url("http://10.0.0.1/").is_err());
    assert!(portal_url("ftp://127.0.0.1/").is_err());
    let e = portal_url("http://acme:TOPSECRET-9@127.0.0.1:8080/").unwrap_err();
    assert!(!format!("{e:#}").contains("TOPSECRET-9"), "{e:#}");
}

#[test]
fn date_fields_are_replaced_and_bad_ones_refused() {
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Local, 2026, 11, 26, 3, 30, 0).unwrap();
    assert_eq!(
        dated("rotation-%Y%m%d.csv.age", &now).unwrap(),
        PathBuf::from("rotation-20261126.csv.age")
    );
    assert!(dated("rotation-%Q.csv.age", &now).is_err());
}

#[test]
fn a_name_made_from_a_date_pattern_is_recognised() {
    assert!(made_from(
        "rotation-%Y%m%d-%H%M%S.csv.age.journal",
        "rotation-20261127-031502.csv.age.journal"
    ));
    assert!(made_from(
        "rotation-%Y%m%d.csv.age.journal",
        "rotation-20261127.csv.age.journal"
    ));
    assert!(!made_from(
        "rotation-%Y%m%d.csv.age.journal",
        "rotation-20261127.csv.age"
    ));
    assert!(!made_from(
        "rotation-%Y%m%d.csv.age.journal",
        "other-20261127.csv.age.journal"
    ));
    assert!(made_from("plain.age.journal", "plain.age.journal"));
}

#[test]
fn unknown_config_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "portal = \"https://x/\"\nrecipient = \"age1\"\n").unwrap();
    let e = Loaded::read(Some(&p)).unwrap_err().to_string();
    assert!(e.contains("recipient"), "{e}");
}
