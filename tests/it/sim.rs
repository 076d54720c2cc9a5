//! The simulator, driven with plain HTTP requests (not with the client):
//! login, tokens, single-use confirmation, pagination, Post/Redirect/Get,
//! and each fault, for both variants.

use crate::common::{LOGIN, PASSWORD, Sim};
use reqwest::StatusCode;
use scraper::{Html, Selector};
use sip_rotate::sim::dataset::{Dataset, DatasetSpec};
use sip_rotate::sim::routes::{Route, Variant};
use std::time::{Duration, Instant};

const VARIANTS: [(Variant, &str); 2] = [(Variant::Classic, "0"), (Variant::Modern, "1")];

struct Browser {
    http: reqwest::Client,
    base: String,
    v: Variant,
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    retry_after: Option<String>,
    body: String,
}

impl Browser {
    fn new(sim: &Sim, v: Variant) -> Browser {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            http,
            base: sim.url.trim_end_matches('/').to_string(),
            v,
        }
    }

    async fn answer(r: reqwest::Response) -> Answer {
        let header = |n| {
            r.headers()
                .get(n)
                .map(|h: &reqwest::header::HeaderValue| h.to_str().unwrap().to_string())
        };
        let (status, location, retry_after) =
            (r.status(), header("location"), header("retry-after"));
        let bytes = r.bytes().await.unwrap();
        // Variant 1 is Windows-1252; variant 0 UTF-8.
        let body = match std::str::from_utf8(&bytes) {
            Ok(s) => s.to_string(),
            Err(_) => encoding_rs::WINDOWS_1252.decode(&bytes).0.into_owned(),
        };
        Answer {
            status,
            location,
            retry_after,
            body,
        }
    }

    async fn get(&self, route: &Route) -> Answer {
        self.get_url(&self.v.url(route)).await
    }

    async fn get_url(&self, path: &str) -> Answer {
        Self::answer(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn post(&self, route: &Route, pairs: &[(&str, &str)]) -> Answer {
        let url = format!("{}{}", self.base, self.v.url(route));
        Self::answer(self.http.post(url).form(pairs).send().await.unwrap()).await
    }

    async fn login_as(&self, profile: usize, password: &str) -> Answer {
        let n = self.v.names();
        let page = self.get(&Route::Login).await;
        let token = input_value(&page.body, n.token);
        self.post(
            &Route::Login,
            &[
                (n.token, &token),
                (n.login, LOGIN),
                (n.password, password),
                (n.profile, n.profile_values[profile]),
            ],
        )
        .await
    }

    async fn login(&self) {
        let a = self.login_as(0, PASSWORD).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "login refused");
    }

    /// Détail, then Réinitialiser: returns the confirmation token.
    async fn open_confirmation(&self, licence: &str) -> String {
        let n = self.v.names();
        let detail = self.get(&Route::Detail(licence.into())).await;
        assert_eq!(detail.status, StatusCode::OK);
        let token = input_value(&detail.body, n.token);
        let confirm = self
            .post(
                &Route::Reset(licence.into()),
                &[(n.token, &token), (n.licence, licence)],
            )
            .await;
        assert_eq!(confirm.status, StatusCode::OK);
        assert!(confirm.body.contains("Numéro associé"));
        input_value(&confirm.body, n.token)
    }

    async fn confirm(&self, licence: &str, token: &str) -> Answer {
        let n = self.v.names();
        self.post(
            &Route::Confirm(licence.into()),
            &[(n.token, token), (n.licence, licence)],
        )
        .await
    }
}

fn input_value(body: &str, name: &str) -> String {
    let doc = Html::parse_document(body);
    let sel = Selector::parse(&format!("input[name=\"{name}\"]")).unwrap();
    doc.select(&sel)
        .next()
        .and_then(|e| e.value().attr("value"))
        .unwrap_or_else(|| panic!("no input {name}"))
        .to_string()
}

fn dataset() -> Dataset {
    Dataset::generate(&DatasetSpec {
        seed: 1,
        clients: 12,
        licences_per_client: 8,
    })
}

fn sim(dir: &tempfile::TempDir, variant: &str, extra: &[&str]) -> Sim {
    let mut args = vec!["--variant", variant];
    args.extend_from_slice(extra);
    Sim::start(dir.path(), &args)
}

#[tokio::test]
async fn login_is_refused_with_the_wrong_profile_or_password() {
    for (v, flag) in VARIANTS {
        let dir = tempfile::tempdir().unwrap();
        let sim = sim(&dir, flag, &[]);
        let b = Browser::new(&sim, v);
        let wrong_profile = b.login_as(1, PASSWORD).await;
        assert_eq!(wrong_profile.status, StatusCode::OK);
        assert!(
            wrong_profile.body.contains("incorrect"),
            "{v:?}: the login page shows a message"
        );
        let wrong_password = b.login_as(0, "nope").await;
        assert_eq!(wrong_password.status, StatusCode::OK);
        // Still logged out: a page of the portal leads back to the login page.
        let home = b.get(&Route::Home).await;
        assert!(
            home.status == StatusCode::FOUND || home.body.contains("Mot de passe"),
            "{v:?}"
        );
        b.login().await;
        assert_eq!(b.get(&Route::Home).await.status, StatusCode::OK);
        let counters = sim.stop();
        assert_eq!(counters["refused_logins"], 2);
        assert_eq!(counters["logins"], 1);
    }
}

#[tokio::test]
async fn a_token_of_an_earlier_session_is_refused_and_confirmation_is_single_use() {
    let ds = dataset();
    for (v, flag) in VARIANTS {
        let dir = tempfile::tempdir().unwrap();
        let sim = sim(&dir, flag, &[]);
        let b = Browser::new(&sim, v);
        b.login().await;
        let licence = ds.licences[3].reference.clone();
        let n = v.names();
        let detail = b.get(&Route::Detail(licence.clone())).await;
        let stale = input_value(&detail.body, n.token);
        b.login().await; // a new session
        let refused = b
            .post(
                &Route::Reset(licence.clone()),
                &[(n.token, &stale), (n.licence, &licence)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{v:?}: stale token");

        let token = b.open_confirmation(&licence).await;
        let first = b.confirm(&licence, &token).await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{v:?}");
        let again = b.confirm(&licence, &token).await;
        assert_eq!(
            again.status,
            StatusCode::FORBIDDEN,
            "{v:?}: a confirmation token is single-use"
        );
        assert_eq!(sim.resets().len(), 1);
        let counters = sim.stop();
        assert_eq!(counters["refused_tokens"], 2);
        assert_eq!(counters["resets"], 1);
    }
}

#[tokio::test]
async fn the_new_password_is_shown_once_after_the_redirect() {
    let ds = dataset();
    for (v, flag) in VARIANTS {
        let dir = tempfile::tempdir().unwrap();
        let sim = sim(&dir, flag, &[]);
        let b = Browser::new(&sim, v);
        b.login().await;
        let licence = ds.licences[10].reference.clone();
        let token = b.open_confirmation(&licence).await;
        let confirmed = b.confirm(&licence, &token).await;
        assert_eq!(confirmed.status, StatusCode::SEE_OTHER);
        assert!(!confirmed.body.contains("Votre nouveau mot de passe"));
        let location = confirmed.location.unwrap();
        let result = b.get_url(&location).await;
        let truth = sim.resets();
        assert_eq!(truth.len(), 1);
        assert_eq!(truth[0].licence, licence);
        assert!(result.body.contains("Votre nouveau mot de passe"), "{v:?}");
        assert!(
            result.body.contains(&truth[0].password),
            "{v:?}: the notification holds the truth's password"
        );
        let again = b.get_url(&location).await;
        assert!(
            !again.body.contains("Votre nouveau mot de passe"),
            "{v:?}: shown once"
        );
        assert!(!again.body.contains(&truth[0].password));
    }
}

#[tokio::test]
async fn search_filters_match_loosely_and_tables_are_paginated() {
    let ds = dataset();
    // A client whose reference is a prefix of another's.
    let short = ds
        .clients
        .iter()
        .find(|c| {
            ds.clients
                .iter()
                .any(|o| o.reference != c.reference && o.reference.starts_with(&c.reference))
        })
        .unwrap()
        .reference
        .clone();
    for (v, flag) in VARIANTS {
        let dir = tempfile::tempdir().unwrap();
        let sim = sim(&dir, flag, &["--page-size", "2"]);
        let b = Browser::new(&sim, v);
        b.login().await;
        let n = v.names();
        let search = b.get(&Route::Search).await;
        let token = input_value(&search.body, n.token);
        let query = format!(
            "{}?{}={token}&{}={short}",
            v.url(&Route::Results),
            n.token,
            n.search[2]
        );
        let mut page = b.get_url(&query).await;
        let mut listed = Vec::new();
        let mut pages = 1;
        loop {
            let doc = Html::parse_document(&page.body);
            let rows = Selector::parse("table tr").unwrap();
            for row in doc.select(&rows).skip(1) {
                listed.push(row.text().collect::<Vec<_>>().join(" "));
            }
            let next = doc
                .select(&Selector::parse("a").unwrap())
                .find(|a| a.text().collect::<String>().starts_with("Suivant"))
                .map(|a| a.value().attr("href").unwrap().replace("&amp;", "&"));
            match next {
                Some(href) => {
                    page = b.get_url(&href).await;
                    pages += 1;
                }
                None => break,
            }
        }
        let expected = ds
            .services
            .iter()
            .filter(|s| ds.clients[s.client].reference.starts_with(&short))
            .count();
        assert_eq!(
            listed.len(),
            expected,
            "{v:?}: every service of both clients, over the pages"
        );
        assert!(pages >= 2, "{v:?}: more than one page at page size 2");
        assert!(
            listed
                .iter()
                .any(|r| r.split_whitespace().any(|w| w == short))
        );

        // Users table of one service: every licence over the pages.
        let service = &ds.services[ds.licences[0].service];
        let mut seen = 0;
        let mut url = v.url(&Route::Users(service.reference.clone()));
        loop {
            let page = b.get_url(&url).await;
            seen += page.body.matches("Détail &gt;").count();
            let doc = Html::parse_document(&page.body);
            match doc
                .select(&Selector::parse("a").unwrap())
                .find(|a| a.text().collect::<String>().starts_with("Suivant"))
            {
                Some(a) => url = a.value().attr("href").unwrap().to_string(),
                None => break,
            }
        }
        assert_eq!(seen, ds.licences_of(ds.licences[0].service).len(), "{v:?}");
    }
}

#[tokio::test]
async fn faults_fail_rate_rate_limit_expiry_drop_and_latency() {
    let ds = dataset();
    for (v, flag) in VARIANTS {
        // Every request fails before any work.
        let dir = tempfile::tempdir().unwrap();
        let failing = sim(&dir, flag, &["--fail-rate", "1"]);
        let b = Browser::new(&failing, v);
        let a = b.get(&Route::Login).await;
        assert!(a.status.is_server_error(), "{v:?}: {}", a.status);
        assert_eq!(failing.stop()["injected_failures"], 1);

        // More than N requests in a second: 429 with Retry-After.
        let limited = sim(&dir, flag, &["--rate-limit", "2"]);
        let b = Browser::new(&limited, v);
        let mut too_many = 0;
        for _ in 0..10 {
            let a = b.get(&Route::Login).await;
            if a.status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(a.retry_after.as_deref(), Some("1"));
                too_many += 1;
            }
        }
        assert!(
            too_many >= 6,
            "{v:?}: 10 quick requests, at most 2 a second, span at most 2 seconds"
        );
        assert_eq!(limited.stop()["too_many_requests"], too_many);

        // A session ends after N requests.
        let expiring = sim(&dir, flag, &["--expire-after", "3"]);
        let b = Browser::new(&expiring, v);
        b.login().await;
        for _ in 0..3 {
            assert_eq!(b.get(&Route::Home).await.status, StatusCode::OK);
        }
        let ended = b.get(&Route::Home).await;
        assert!(
            ended.status == StatusCode::FOUND || ended.body.contains("Mot de passe"),
            "{v:?}: login page after the session ended"
        );
        assert_eq!(expiring.stop()["expired_sessions"], 1);

        // A dropped confirmation: committed, then the connection closes unanswered.
        let dropping = sim(&dir, flag, &["--drop-rate", "1"]);
        let b = Browser::new(&dropping, v);
        b.login().await;
        let licence = ds.licences[5].reference.clone();
        let token = b.open_confirmation(&licence).await;
        let n = v.names();
        let url = format!("{}{}", b.base, v.url(&Route::Confirm(licence.clone())));
        let sent = b
            .http
            .post(url)
            .form(&[(n.token, token.as_str()), (n.licence, licence.as_str())])
            .send()
            .await;
        assert!(sent.is_err(), "{v:?}: no answer");
        assert_eq!(
            dropping.resets().len(),
            1,
            "{v:?}: but the reset was committed"
        );
        assert_eq!(dropping.stop()["dropped_confirmations"], 1);

        // Latency: a request cannot be answered sooner than half of it (jitter is 0.5 to 1.5).
        let slow = sim(&dir, flag, &["--latency-ms", "300"]);
        let b = Browser::new(&slow, v);
        let started = Instant::now();
        b.get(&Route::Login).await;
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}

#[test]
fn dataset_out_and_help_document_the_interface() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds.csv");
    let sim = Sim::start(
        dir.path(),
        &[
            "--dataset-out",
            out.to_str().unwrap(),
            "--clients",
            "5",
            "--licences-per-client",
            "3",
        ],
    );
    sim.stop();
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("client_ref,service_ref,licence,licence_type,sda,name")
    );
    assert_eq!(lines.count(), 15);

    let help = std::process::Command::new(crate::common::bin())
        .args(["sim", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--listen",
        "--login",
        "--password",
        "--profile",
        "--seed",
        "--clients",
        "--licences-per-client",
        "--page-size",
        "--variant",
        "--latency-ms",
        "--fail-rate",
        "--drop-rate",
        "--expire-after",
        "--rate-limit",
        "--truth",
        "--dataset-out",
        "SIM_LOGIN",
        "SIM_PASSWORD",
    ] {
        assert!(help.contains(flag), "sim --help lacks {flag}");
    }
}
