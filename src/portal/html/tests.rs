use super::*;

#[test]
fn a_button_in_a_dialog_whatever_its_markup_is_a_dialog_s() {
    let modal = Html::parse_document(
        r##"<button type="button" data-bs-toggle="modal" data-bs-target="#m">Réinitialiser mot de passe SIP</button>
           <div class="modal fade" id="m" tabindex="-1"><form method="post" action="/x"><button>Réinitialiser</button></form></div>"##,
    );
    assert!(button_in_dialog(&modal, "Réinitialiser"));
    for wrapper in [
        r#"<div aria-hidden="true">"#,
        r#"<div style="display:&#10; none">"#,
        r#"<div style="visibility: hidden">"#,
        "<details>",
        "<template>",
    ] {
        let doc = Html::parse_document(&format!(
            "{wrapper}<form method=post action=/x><button>Valider</button></form>"
        ));
        assert!(button_in_dialog(&doc, "Valider"), "{wrapper}");
    }
    let plain = Html::parse_document(
        r##"<a href="#main">Aller au contenu</a><main id="main"><form method=post action=/x><button>Réinitialiser</button></form></main>"##,
    );
    assert!(!button_in_dialog(&plain, "Réinitialiser"));
}

#[test]
fn a_label_that_goes_on_to_its_own_colon_is_not_the_one_wanted() {
    let doc = Html::parse_document("<p>Votre nouveau mot de passe est : <b>Xy7pQ2mN9a</b></p>");
    assert!(texts_after(&doc, "Votre nouveau mot de passe").is_empty());
    assert!(texts_after(&doc, "Votre nouveau mot de passe :").is_empty());
    let doc = Html::parse_document("<p>Votre nouveau mot de passe : <b>Xy7pQ2mN9a</b></p>");
    assert_eq!(
        texts_after(&doc, "Votre nouveau mot de passe"),
        ["Xy7pQ2mN9a"]
    );
}

fn base() -> Url {
    Url::parse("https://portal.example/a/b").unwrap()
}

#[test]
fn labels_ignore_decorations_and_case_but_not_accents() {
    assert!(is_label("Détail >", "Détail"));
    assert!(is_label("✓ Valider", "valider"));
    assert!(is_label("Suivant ›", "Suivant"));
    assert!(is_label(
        "» Paramétrage / Monitoring",
        "Paramétrage / Monitoring"
    ));
    assert!(is_label("Réf. accountcode :", "Réf. accountcode"));
    assert!(is_label("Admin.", "Admin."));
    assert!(!is_label("Detail", "Détail"));
    assert!(!is_label("Détails", "Détail"));
}

#[test]
fn control_characters_never_come_out_of_a_page() {
    let doc = Html::parse_fragment("<td>Jean\u{1b}]0;pwned\u{7}\u{1b}[2J Dupont</td>");
    let text = text_of(doc.root_element());
    assert!(!text.contains(|c: char| c.is_control()), "{text:?}");
    assert_eq!(text, "Jean ]0;pwned [2J Dupont");
}

#[test]
fn a_missing_label_names_the_page_and_the_closest_candidates() {
    let doc = Html::parse_document(
        "<title>MyOpenIP</title><h1>Réinitialiser mot de passe SIP</h1>\
         <form method=post action=/ok><button>Valider</button><button name=x>Annuler</button></form>\
         <a href='#'>Mes Services</a> <a href='javascript:go()'>Suivant</a>",
    );
    let want = Want {
        key: "confirm_button",
        words: "Confirmer",
        kind: Kind::Button,
    };
    let m = missing(&doc, want);
    assert_eq!(m.page, "Réinitialiser mot de passe SIP");
    assert_eq!(
        m.candidates.as_deref(),
        Some(&["Valider".to_string(), "Annuler".to_string()][..])
    );
    assert!(!m.javascript);
    assert_eq!(
        m.to_string(),
        "no button 'Confirmer' on 'Réinitialiser mot de passe SIP'; buttons there: 'Valider', 'Annuler'; set confirm_button in the labels file"
    );
    // A link the page drives with JavaScript says so.
    for words in ["Mes Services", "Suivant"] {
        let want = Want {
            key: "next",
            words,
            kind: Kind::Link,
        };
        let m = need_link(&doc, &base(), want).unwrap_err();
        assert!(m.javascript, "{words}");
        assert!(m.to_string().contains("JavaScript"), "{m}");
    }
    // A form sent by a script.
    let doc = Html::parse_document(
        "<form action='javascript:send()'><input type=submit value=Confirmer></form>",
    );
    let want = Want {
        key: "confirm_button",
        words: "Confirmer",
        kind: Kind::Button,
    };
    let m = need_form_with_button(&doc, &base(), want).unwrap_err();
    assert!(m.javascript);
}

#[test]
fn text_reads_like_a_browser() {
    let doc = Html::parse_fragment("<td><a href=x>FPC172947</a><br>Licence&nbsp;simple</td>");
    assert_eq!(text_of(doc.root_element()), "FPC172947 Licence simple");
    let doc = Html::parse_fragment("<p><b>Ré</b>f. du <i>client</i></p>");
    assert_eq!(text_of(doc.root_element()), "Réf. du client");
}

#[test]
fn forms_are_filled_by_labels_with_hidden_fields_kept() {
    let doc = Html::parse_document(
        r#"<form method="post" action="../go"><input type=hidden name=t value=abc>
        <label for=x>Login</label><input id=x name=zz>
        <label>Mot de passe <input type=password name=yy></label>
        <label><input type=radio name=r value=1 checked> Revendeur</label>
        <label><input type=radio name=r value=2> MB / Opérateur</label>
        <label for=s>Type</label><select id=s name=ty><option value="">Tous</option><option value=7>MetaCentrex</option></select>
        <button name=b value=v>✓ Valider</button></form>"#,
    );
    let mut f = Form::with_button(&doc, &base(), "Valider").unwrap();
    assert!(f.method_post);
    assert_eq!(f.action.as_str(), "https://portal.example/go");
    f.fill("Login", "me").unwrap();
    f.fill("Mot de passe", "pw").unwrap();
    assert!(
        !format!("{f:?}").contains("\"pw\"") && format!("{f:?}").contains("yy"),
        "{f:?}"
    );
    f.choose("MB / Opérateur").unwrap();
    f.select("Type", "MetaCentrex").unwrap();
    let pairs = f.submission("Valider").unwrap();
    let expected: Vec<(String, String)> = [
        ("t", "abc"),
        ("zz", "me"),
        ("yy", "pw"),
        ("r", "2"),
        ("ty", "7"),
        ("b", "v"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(pairs, expected);
    assert_eq!(f.fill("Nope", "x"), Err(FormError::NoField("Nope".into())));
    assert!(is_login_page(&doc, "Mot de passe"));
}

#[test]
fn tables_are_found_by_headers_in_any_order() {
    let doc = Html::parse_document(
        "<table><tr><td><b>Nom</b></td><td>Licence</td><td>SDA</td><td>Action</td></tr>\
         <tr><td>Jean</td><td><a href=/d/1>FPC1</a><br>Licence simple</td><td>01.84.00.00.01</td><td><a href='#'>🔄</a> <a href=/d/1>Détail ›</a></td></tr></table>",
    );
    let t = find_table(&doc, &base(), &["Licence", "SDA", "Action"]).unwrap();
    assert_eq!(t.rows.len(), 1);
    assert_eq!(t.rows[0][0].text, "FPC1 Licence simple");
    assert_eq!(t.rows[0][1].text, "01.84.00.00.01");
    let detail = t.rows[0][2]
        .links
        .iter()
        .find(|l| is_label(&l.text, "Détail"))
        .unwrap();
    assert_eq!(detail.url.as_str(), "https://portal.example/d/1");
    assert!(find_table(&doc, &base(), &["Licence", "Compte client"]).is_none());
}

#[test]
fn label_value_fields_and_markers() {
    let doc = Html::parse_document(
        "<table><tr><th>SDA</th><td></td></tr><tr><th>Licence</th><td>FPC1 Licence SVI</td></tr></table>\
         <dl><dt>Nom :</dt><dd><span>Jean</span></dd></dl>\
         <div role=alert><p>Votre nouveau mot de passe :<span><code>Ab3xYz</code></span></p><p>Attention</p></div>",
    );
    assert_eq!(field_value(&doc, "SDA").as_deref(), Some(""));
    assert_eq!(
        field_value(&doc, "Licence").as_deref(),
        Some("FPC1 Licence SVI")
    );
    assert_eq!(field_value(&doc, "Nom").as_deref(), Some("Jean"));
    let after = text_after(&doc, "Votre nouveau mot de passe :").unwrap();
    assert_eq!(after.split_whitespace().next(), Some("Ab3xYz"));
}

#[test]
fn charset_from_header_then_meta() {
    let bytes = encoding_rs::WINDOWS_1252
        .encode("<meta charset=\"windows-1252\"><p>Réf.</p>")
        .0
        .into_owned();
    assert!(decode(&bytes, Some("text/html")).contains("Réf."));
    assert!(decode("é".as_bytes(), Some("text/html; charset=utf-8")).contains('é'));
}
