//! Cost of reading each kind of portal page, as the client reads it: parse,
//! check it is not the login page, then find the table, fields, links or
//! text it needs. Pages come from the simulator's renderer, both variants.
//!
//! cargo bench --bench parse

use criterion::{Criterion, criterion_group, criterion_main};
use scraper::Html;
use sip_rotate::portal::html::{self, Form};
use sip_rotate::portal::labels::Labels;
use sip_rotate::sim::dataset::{Dataset, DatasetSpec};
use sip_rotate::sim::pages::{self, Style};
use sip_rotate::sim::routes::Variant;
use std::hint::black_box;
use url::Url;

fn read(page: &str, base: &Url, what: impl Fn(&Html, &Url) -> usize) -> usize {
    let doc = Html::parse_document(page);
    assert!(!html::is_login_page(&doc, "Mot de passe"));
    what(&doc, base)
}

fn bench(c: &mut Criterion) {
    let ds = Dataset::generate(&DatasetSpec {
        seed: 1,
        clients: 40,
        licences_per_client: 25,
    });
    let base = Url::parse("http://127.0.0.1:8080/").unwrap();
    let services: Vec<usize> = (0..25).collect();
    let service = ds.licences[0].service;
    let licences: Vec<usize> = ds.licences_of(service).iter().copied().take(25).collect();
    let values: [String; 9] = Default::default();
    let labels = Labels::default();
    for (variant, name) in [
        (Variant::Classic, "variant 0"),
        (Variant::Modern, "variant 1"),
    ] {
        let v = Style {
            variant,
            labels: &labels,
        };
        let login = pages::login(v, "token", None, None);
        c.bench_function(&format!("login page, {name}"), |b| {
            b.iter(|| {
                let doc = Html::parse_document(black_box(&login));
                let mut form = Form::with_field(&doc, &base, "Mot de passe").unwrap();
                form.fill("Login", "me").unwrap();
                form.choose("Revendeur").unwrap();
                form.submission("Valider").unwrap().len()
            })
        });
        let results = pages::results(v, "token", &values, &ds, &services, Some("/next".into()));
        c.bench_function(&format!("search results (25 rows), {name}"), |b| {
            b.iter(|| {
                read(black_box(&results), &base, |doc, url| {
                    let t = html::find_table(
                        doc,
                        url,
                        &[
                            "Réf. du service",
                            "Compte client",
                            "Type de service",
                            "Action",
                        ],
                    )
                    .unwrap();
                    t.rows.len() + html::find_link(doc, url, "Suivant").iter().count()
                })
            })
        });
        let shown: Vec<(usize, String)> =
            licences.iter().map(|&l| (l, "Connecté".into())).collect();
        let users = pages::users(v, &ds, service, &shown, Some("/next".into()), None);
        c.bench_function(&format!("users table (25 rows), {name}"), |b| {
            b.iter(|| {
                read(black_box(&users), &base, |doc, url| {
                    html::find_table(doc, url, &["Licence", "SDA", "Nom", "Action"])
                        .unwrap()
                        .rows
                        .len()
                })
            })
        });
        let detail = pages::detail(v, &ds, licences[0], "Connecté", "token", None, None);
        c.bench_function(&format!("detail, {name}"), |b| {
            b.iter(|| {
                read(black_box(&detail), &base, |doc, url| {
                    html::field_value(doc, "Licence").unwrap().len()
                        + html::field_value(doc, "SDA").unwrap().len()
                        + html::field_value(doc, "Réf. accountcode").unwrap().len()
                        + Form::with_button(doc, url, "Réinitialiser mot de passe SIP")
                            .iter()
                            .count()
                })
            })
        });
        let confirm = pages::confirm(v, &ds, licences[0], "token");
        c.bench_function(&format!("confirmation, {name}"), |b| {
            b.iter(|| {
                read(black_box(&confirm), &base, |doc, url| {
                    html::text_after(doc, "Numéro associé :").unwrap().len()
                        + Form::with_button(doc, url, "Confirmer").iter().count()
                })
            })
        });
        let result = pages::detail(
            v,
            &ds,
            licences[0],
            "Déconnecté",
            "token",
            Some(pages::notification(v, "NaEmwB1jKv0Y")),
            None,
        );
        c.bench_function(&format!("result notification, {name}"), |b| {
            b.iter(|| {
                read(black_box(&result), &base, |doc, _| {
                    html::text_after(doc, "Votre nouveau mot de passe :")
                        .unwrap()
                        .len()
                })
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
