//! HTML of the simulated portal, in French, as the operator's guide shows it.
//!
//! Variant `Classic` uses tables, `<label for>` and plain labels; variant
//! `Modern` uses `<dl>` label/value fields, wrapping labels, decorated labels,
//! another column order with one more column, header rows of `<td>`, a nested
//! password element and Windows-1252. Both honour the portal contract.

use super::dataset::{Dataset, METACENTREX};
use super::routes::{Route, Variant};
use crate::portal::labels::Labels;

/// How pages look: the variant's markup, and the words of its labels (the
/// guide's by default; `--label KEY=VALUE` words one differently, as a real
/// portal might).
#[derive(Debug, Clone, Copy)]
pub struct Style<'a> {
    pub variant: Variant,
    pub labels: &'a Labels,
}

/// A label as `Modern` decorates it: `before` and `after` around the words.
fn decorated(v: Variant, before: &str, label: &str, after: &str) -> String {
    match v {
        Variant::Classic => label.to_string(),
        Variant::Modern => format!("{before}{label}{after}"),
    }
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Appends a query parameter to a URL that may already have a query.
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", q(value))
}

pub fn layout(v: Variant, title: &str, logged_in: bool, body: &str) -> String {
    let (charset, nav) = match v {
        Variant::Classic => ("utf-8", ""),
        Variant::Modern => ("windows-1252", " class=\"topbar\""),
    };
    let menu = if logged_in {
        format!(
            "<nav{nav}><a href=\"{}\">Accueil</a> | <a href=\"{}\">Mes Services</a></nav>",
            esc(&v.url(&Route::Home)),
            esc(&v.url(&Route::MyServices))
        )
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"fr\"><head><meta charset=\"{charset}\"><title>MyOpenIP - {}</title></head>\n<body><header><div class=\"logo\">open <b>IP</b> &nbsp;MyOpenIP</div>{menu}</header>\n<main>{body}</main>\n<footer>openIP by DESTINY &middot; 01 84 78 78 80</footer></body></html>\n",
        esc(title)
    )
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

fn button(v: Variant, label: &str, name: &str) -> String {
    match v {
        Variant::Classic => format!(
            "<button type=\"submit\" name=\"{name}\" value=\"1\">{}</button>",
            esc(label)
        ),
        Variant::Modern => format!(
            "<input type=\"submit\" class=\"btn\" value=\"{}\">",
            esc(label)
        ),
    }
}

/// A text field with its label, `for=` in Classic, wrapping in Modern.
fn text_field(v: Variant, label: &str, name: &str, kind: &str, value: &str) -> String {
    match v {
        Variant::Classic => format!(
            "<div class=\"row\"><label for=\"f_{name}\">{}</label> <input type=\"{kind}\" id=\"f_{name}\" name=\"{name}\" value=\"{}\"></div>",
            esc(label),
            esc(value)
        ),
        Variant::Modern => format!(
            "<p><label><span>{} :</span><br><input type=\"{kind}\" name=\"{name}\" value=\"{}\"></label></p>",
            esc(label),
            esc(value)
        ),
    }
}

fn select_field(v: Variant, label: &str, name: &str, options: &[&str], selected: &str) -> String {
    let opts: String = options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let value = if o.is_empty() {
                String::new()
            } else {
                format!("o{i}")
            };
            let sel = if !o.is_empty() && *o == selected {
                " selected"
            } else {
                ""
            };
            let text = if o.is_empty() { "-- Tous --" } else { o };
            format!("<option value=\"{value}\"{sel}>{}</option>", esc(text))
        })
        .collect();
    match v {
        Variant::Classic => format!(
            "<div class=\"row\"><label for=\"f_{name}\">{}</label> <select id=\"f_{name}\" name=\"{name}\">{opts}</select></div>",
            esc(label)
        ),
        Variant::Modern => format!(
            "<p><label>{} <select name=\"{name}\">{opts}</select></label></p>",
            esc(label)
        ),
    }
}

/// Option lists of the search form's selects; the submitted value is `o{index}`.
pub const SERVICE_TYPES: [&str; 5] = ["", METACENTREX, "Trunk SIP", "Accès Fibre", "Numéro SVA"];
pub const SERVICE_STATES: [&str; 3] = ["", "Actif", "Suspendu"];

pub fn option_text<'a>(options: &[&'a str], value: &str) -> Option<&'a str> {
    let i: usize = value.strip_prefix('o')?.parse().ok()?;
    options.get(i).copied().filter(|o| !o.is_empty())
}

/// The login page; its form goes to `action`, or to the portal's own login route.
pub fn login(s: Style, token: &str, message: Option<&str>, action: Option<&str>) -> String {
    let (v, l) = (s.variant, s.labels);
    let n = v.names();
    let msg = message
        .map(|m| format!("<div class=\"error\">{}</div>", esc(m)))
        .unwrap_or_default();
    let radios = match v {
        Variant::Classic => format!(
            "<div class=\"row\"><input type=\"radio\" id=\"p1\" name=\"{p}\" value=\"{a}\" checked><label for=\"p1\">{ra}</label> \
             <input type=\"radio\" id=\"p2\" name=\"{p}\" value=\"{b}\"><label for=\"p2\">{op}</label></div>",
            p = n.profile,
            a = n.profile_values[0],
            b = n.profile_values[1],
            ra = esc(&l.profile_reseller),
            op = esc(&l.profile_operator),
        ),
        Variant::Modern => format!(
            "<fieldset><label><input type=\"radio\" name=\"{p}\" value=\"{a}\"> {ra}</label> \
             <label><input type=\"radio\" name=\"{p}\" value=\"{b}\" checked> {op}</label></fieldset>",
            p = n.profile,
            a = n.profile_values[0],
            b = n.profile_values[1],
            ra = esc(&l.profile_reseller),
            op = esc(&l.profile_operator),
        ),
    };
    let body = format!(
        "<h1>Connexion</h1>{msg}<form method=\"post\" action=\"{}\">{}{}{}{radios}{}</form>",
        esc(action.unwrap_or(&v.url(&Route::Login))),
        hidden(n.token, token),
        text_field(v, &l.login_field, n.login, "text", ""),
        text_field(v, &l.password_field, n.password, "password", ""),
        button(v, &decorated(v, "✓ ", &l.login_button, ""), "valider"),
    );
    layout(v, "Connexion", false, &body)
}

pub fn home(s: Style) -> String {
    let v = s.variant;
    let label = decorated(v, "", &s.labels.my_services, " ›");
    let body = format!(
        "<h1>Bienvenue sur MyOpenIP</h1><ul><li><a href=\"#\">Mon compte</a></li><li><a href=\"{}\">{}</a></li><li><a href=\"#\">Factures</a></li></ul>",
        esc(&v.url(&Route::MyServices)),
        esc(&label)
    );
    layout(v, "Accueil", true, &body)
}

pub fn my_services(s: Style) -> String {
    let v = s.variant;
    let label = decorated(v, "» ", &s.labels.settings, "");
    let body = format!(
        "<h1>Mes Services</h1><div class=\"tiles\"><div><a href=\"#\">Commandes</a></div><div><a href=\"{}\">{}</a></div><div><a href=\"#\">Statistiques</a></div></div>",
        esc(&v.url(&Route::Search)),
        esc(&label)
    );
    layout(v, "Mes Services", true, &body)
}

/// The search form, filled with `values` (one per search field).
pub fn search_form(s: Style, token: &str, values: &[String; 9]) -> String {
    let (v, l) = (s.variant, s.labels);
    let n = v.names();
    let mut types = SERVICE_TYPES;
    types[1] = &l.metacentrex;
    let labels = [
        "Réf. du service",
        "Client",
        &l.search_client_ref,
        "Nom du client final",
        &l.search_service_type,
        "Réf. fiche produit contractée",
        "Réf. accountcode",
        "Adresse IP",
        "État du service",
    ];
    let mut fields = String::new();
    for i in 0..9 {
        fields += &match i {
            4 => select_field(
                v,
                labels[i],
                n.search[i],
                &types,
                option_text(&types, &values[i]).unwrap_or(""),
            ),
            8 => select_field(
                v,
                labels[i],
                n.search[i],
                &SERVICE_STATES,
                option_text(&SERVICE_STATES, &values[i]).unwrap_or(""),
            ),
            _ => text_field(v, labels[i], n.search[i], "text", &values[i]),
        };
    }
    let label = decorated(v, "🔍 ", &l.search_button, "");
    format!(
        "<form method=\"get\" action=\"{}\" class=\"filters\">{}{fields}{}</form>",
        esc(&v.url(&Route::Results)),
        hidden(n.token, token),
        button(v, &label, "rechercher")
    )
}

pub fn search(s: Style, token: &str) -> String {
    let body = format!(
        "<h1>Paramétrage / Monitoring</h1><p>Recherchez votre client ou le service à l'aide des filtres</p>{}",
        search_form(s, token, &Default::default())
    );
    layout(s.variant, "Paramétrage / Monitoring", true, &body)
}

/// Header row, in Classic as `<thead><th>`, in Modern as a first row of `<td>`.
fn table(v: Variant, headers: &[&str], rows: &[Vec<String>]) -> String {
    let head: String = match v {
        Variant::Classic => format!(
            "<thead><tr>{}</tr></thead>",
            headers
                .iter()
                .map(|h| format!("<th>{}</th>", esc(h)))
                .collect::<String>()
        ),
        Variant::Modern => format!(
            "<tr class=\"head\">{}</tr>",
            headers
                .iter()
                .map(|h| format!("<td><b>{}</b></td>", esc(h)))
                .collect::<String>()
        ),
    };
    let body: String = rows
        .iter()
        .map(|r| {
            format!(
                "<tr>{}</tr>",
                r.iter()
                    .map(|c| format!("<td>{c}</td>"))
                    .collect::<String>()
            )
        })
        .collect();
    format!("<table class=\"grid\">{head}<tbody>{body}</tbody></table>")
}

fn next_link(s: Style, url: Option<String>) -> String {
    match url {
        Some(u) => format!(
            "<div class=\"pager\"><a href=\"{}\">{}</a></div>",
            esc(&u),
            esc(&decorated(s.variant, "", &s.labels.next, " ›"))
        ),
        None => String::new(),
    }
}

pub fn results(
    style: Style,
    token: &str,
    values: &[String; 9],
    ds: &Dataset,
    services: &[usize],
    next: Option<String>,
) -> String {
    let (v, l) = (style.variant, style.labels);
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|&s| {
            let svc = &ds.services[s];
            let client = ds.client_of_service(s);
            let link = format!(
                "<a href=\"{}\">{}</a>",
                esc(&v.url(&Route::Service(svc.reference.clone()))),
                esc(&decorated(v, "", &l.configure, " »"))
            );
            let service_type = if svc.service_type == METACENTREX {
                l.metacentrex.as_str()
            } else {
                svc.service_type
            };
            let cells = [
                esc(&svc.reference),
                esc(&svc.name),
                esc(&client.name),
                esc(&client.reference),
                esc(&client.site),
                esc(service_type),
                esc(svc.state),
                link,
            ];
            match v {
                Variant::Classic => cells.to_vec(),
                Variant::Modern => vec![
                    cells[3].clone(),
                    cells[2].clone(),
                    cells[0].clone(),
                    cells[1].clone(),
                    esc(&svc.ip),
                    cells[5].clone(),
                    cells[4].clone(),
                    cells[6].clone(),
                    cells[7].clone(),
                ],
            }
        })
        .collect();
    let headers: Vec<&str> = match v {
        Variant::Classic => vec![
            &l.column_service_ref,
            "Nom du service",
            "Client",
            &l.column_client_ref,
            "Site",
            &l.column_service_type,
            "État du service",
            &l.column_action,
        ],
        Variant::Modern => vec![
            &l.column_client_ref,
            "Client",
            &l.column_service_ref,
            "Nom du service",
            "Adresse IP",
            &l.column_service_type,
            "Site",
            "État du service",
            &l.column_action,
        ],
    };
    let body = format!(
        "<h1>Paramétrage / Monitoring</h1>{}<h2>Résultats</h2>{}{}",
        search_form(style, token, values),
        table(v, &headers, &rows),
        next_link(style, next)
    );
    layout(v, "Résultats", true, &body)
}

pub fn service(style: Style, ds: &Dataset, s: usize) -> String {
    let v = style.variant;
    let svc = &ds.services[s];
    let users = esc(&decorated(v, "👥 ", &style.labels.users_tab, ""));
    let body = format!(
        "<h1>{}</h1><div class=\"tabs\"><a href=\"#\">Général</a> <a href=\"{}\">{}</a> <a href=\"#\">Numéros</a></div><p>Client : {}</p>",
        esc(&svc.name),
        esc(&v.url(&Route::Users(svc.reference.clone()))),
        users,
        esc(&ds.client_of_service(s).name)
    );
    layout(v, &svc.name, true, &body)
}

/// Writes an SDA the way each variant shows it.
pub fn show_sda(v: Variant, sda: &str, dotted: bool) -> String {
    if sda.is_empty() || v == Variant::Classic {
        return sda.to_string();
    }
    let digits: String = sda.chars().filter(|c| c.is_ascii_digit()).collect();
    if dotted {
        digits
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(".")
    } else {
        format!("+33{}", &digits[1..])
    }
}

pub fn notification(style: Style, password: &str) -> String {
    let marker = esc(&style.labels.new_password);
    match style.variant {
        Variant::Classic => format!(
            "<div class=\"notification\">{marker} <strong>{}</strong><br>Attention : notez bien le mot de passe. Après la fermeture de la prochaine fenêtre, le mot de passe ne sera plus affiché et le seul moyen de le récupérer sera la réinitialisation.</div>",
            esc(password)
        ),
        Variant::Modern => format!(
            "<div role=\"alert\" class=\"toast\"><p>✓ {marker}<span class=\"pw\"><code>{}</code></span></p><p><i>Attention : notez bien le mot de passe. Il ne sera plus affiché.</i></p></div>",
            esc(password)
        ),
    }
}

/// A users table page: `licences` with the `État` each shows.
pub fn users(
    style: Style,
    ds: &Dataset,
    s: usize,
    licences: &[(usize, String)],
    next: Option<String>,
    notice: Option<String>,
) -> String {
    let (v, words) = (style.variant, style.labels);
    let detail_label = esc(&words.detail);
    let rows: Vec<Vec<String>> = licences
        .iter()
        .map(|(i, state)| {
            let l = &ds.licences[*i];
            let detail = esc(&v.url(&Route::Detail(l.key.clone())));
            let licence = format!(
                "<a href=\"{detail}\">{}</a><br>{}",
                esc(&l.reference),
                esc(l.licence_type)
            );
            let admin = "<a href=\"#\">✎</a> Non".to_string();
            let action =
                format!("<a href=\"#\">🔄</a> <a href=\"{detail}\">{detail_label} &gt;</a>");
            let sda = esc(&show_sda(v, &l.sda, true));
            match v {
                Variant::Classic => vec![
                    licence,
                    sda,
                    esc(&l.name),
                    admin,
                    String::new(),
                    esc(state),
                    action,
                ],
                Variant::Modern => vec![
                    esc(&l.name),
                    licence,
                    format!("<a href=\"#\">🔄</a> {}", esc(state)),
                    sda,
                    "jamais".into(),
                    admin,
                    String::new(),
                    action,
                ],
            }
        })
        .collect();
    let headers: Vec<&str> = match v {
        Variant::Classic => vec![
            &words.column_licence,
            &words.column_sda,
            &words.column_name,
            "Admin.",
            "Numéro d'urgence",
            &words.column_state,
            &words.column_action,
        ],
        Variant::Modern => vec![
            &words.column_name,
            &words.column_licence,
            &words.column_state,
            &words.column_sda,
            "Dernière connexion",
            "Admin.",
            "Numéro d'urgence",
            &words.column_action,
        ],
    };
    let body = format!(
        "{}<h1>{}</h1><div class=\"tabs\"><a href=\"{}\">Général</a> <b>Utilisateurs</b></div>{}{}",
        notice.unwrap_or_default(),
        esc(&ds.services[s].name),
        esc(&v.url(&Route::Service(ds.services[s].reference.clone()))),
        table(v, &headers, &rows),
        next_link(style, next)
    );
    layout(v, "Utilisateurs", true, &body)
}

/// The confirmation as a dialog of the detail page.
pub enum Dialog {
    /// Already in the page, hidden until the reset button opens it.
    InPage(String),
    /// Loaded from this address when the reset button is pressed.
    Remote(String),
    /// Built by the page's script from a JSON API: `info` gives the number
    /// and a confirmation token, `confirm` takes the reset (POST, the page
    /// token in an `X-CSRF-Token` header) and answers the new password.
    Scripted {
        info: String,
        confirm: String,
        page_token: String,
        /// The address of the portal's kit (`portal_kit`), when the page
        /// loads it from another origin rather than carrying it.
        kit: Option<String>,
        /// Which of the two buttons asks first in a `confirm()`.
        ask: Ask,
    },
}

/// Which buttons of a scripted reset ask "are you sure?" in a `confirm()`
/// before they do anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    pub on_reset: bool,
    pub on_confirm: bool,
}

/// How the reset script reads an answer of the API. A session that ended
/// answers with the login page, not JSON: the page is then reloaded, as
/// portals do.
const READ_ANSWER: &str = r#"async function (r) {
    var type = r.headers.get('content-type') || '';
    if (!r.ok || type.indexOf('application/json') < 0) { location.reload(); throw new Error('session'); }
    return r.json();
  }"#;

/// The script a portal's pages may load from a CDN (`sim --scripts-from`):
/// the reset script's way of reading an answer, without which its button
/// does nothing.
pub fn portal_kit() -> String {
    format!("window.portalKit = {{ json: {READ_ANSWER} }};\n")
}

/// The script of a scripted reset: it asks the API, fills the dialog, and
/// writes the password into the page; with `kit`, it reads the API's
/// answers with the kit the page loads from there.
fn reset_script(style: Style, info: &str, confirm: &str, kit: Option<&str>, ask: Ask) -> String {
    let asks = |yes: bool, question: &str| match yes {
        true => format!(
            "if (!window.confirm({})) {{ return; }}",
            serde_json::Value::String(question.to_string())
        ),
        false => String::new(),
    };
    let ask_on_reset = asks(
        ask.on_reset,
        "Voulez-vous vraiment réinitialiser le mot de passe SIP ?",
    );
    let ask_on_confirm = asks(ask.on_confirm, "Êtes-vous sûr ?");
    let words = style.labels;
    let js = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let (load, json) = match kit {
        Some(url) => (
            format!("<script src=\"{}\"></script>", esc(url)),
            "function (r) { return window.portalKit.json(r); }".to_string(),
        ),
        None => (String::new(), READ_ANSWER.to_string()),
    };
    format!(
        r#"{load}<script>
(function () {{
  var info = {info}, confirm = {confirm};
  var dialog = document.getElementById('confirm-reset');
  var json = {json};
  document.getElementById('reset-button').addEventListener('click', async function () {{
    {ask_on_reset}
    var data = await json(await fetch(info, {{ credentials: 'same-origin', headers: {{ 'Accept': 'application/json' }} }}));
    dialog.innerHTML = '<h2>' + {title} + '</h2><p><span>' + {associated} + '</span> <strong id="number"></strong></p>'
      + '<p class="warning">Si vous validez votre choix, votre service sera interrompu.</p>'
      + '<button type="button" id="confirm-button">✓ ' + {confirm_words} + '</button>';
    document.getElementById('number').textContent = data.sda;
    dialog.setAttribute('open', '');
    document.getElementById('confirm-button').addEventListener('click', async function () {{
      {ask_on_confirm}
      var token = document.querySelector('meta[name="csrf-token"]').getAttribute('content');
      var answer = await json(await fetch(confirm, {{
        method: 'POST', credentials: 'same-origin',
        headers: {{ 'X-CSRF-Token': token, 'Content-Type': 'application/x-www-form-urlencoded' }},
        body: 'token=' + encodeURIComponent(data.token)
      }}));
      dialog.removeAttribute('open');
      dialog.innerHTML = '';
      var notice = document.getElementById('notice');
      notice.innerHTML = '<div class="notification"><span>' + {new_password} + '</span> <strong id="password"></strong><br>Attention : notez bien le mot de passe.</div>';
      document.getElementById('password').textContent = answer.password;
    }});
  }});
}})();
</script>"#,
        info = js(info),
        confirm = js(confirm),
        title = js("Réinitialiser mot de passe SIP"),
        associated = js(&esc(&words.associated_number)),
        confirm_words = js(&esc(&words.confirm_button)),
        new_password = js(&esc(&words.new_password)),
    )
}

pub fn detail(
    style: Style,
    ds: &Dataset,
    i: usize,
    state: &str,
    token: &str,
    notice: Option<String>,
    dialog: Option<Dialog>,
) -> String {
    let (v, words) = (style.variant, style.labels);
    let l = &ds.licences[i];
    let svc = &ds.services[l.service];
    let site = &ds.client_of_service(l.service).site;
    let fields: [(&str, String); 8] = [
        (&words.field_accountcode, l.accountcode.clone()),
        (
            &words.field_licence,
            format!("{} {}", l.reference, l.licence_type),
        ),
        ("État", state.to_string()),
        (&words.field_sda, show_sda(v, &l.sda, false)),
        ("Admin.", "Non".into()),
        ("Nom", l.name.clone()),
        ("Numéro d'urgence", String::new()),
        ("Site", site.clone()),
    ];
    let infos = match v {
        Variant::Classic => format!(
            "<table class=\"infos\">{}</table>",
            fields
                .iter()
                .map(|(k, val)| format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(val)))
                .collect::<String>()
        ),
        Variant::Modern => format!(
            "<dl>{}</dl>",
            fields
                .iter()
                .map(|(k, val)| format!("<dt>{} :</dt><dd><span>{}</span></dd>", esc(k), esc(val)))
                .collect::<String>()
        ),
    };
    let n = v.names();
    let licence_field = if v == Variant::Modern {
        hidden(n.licence, &l.key)
    } else {
        String::new()
    };
    let reset_words = esc(&decorated(v, "🔄 ", &words.reset_button, ""));
    let reset = match &dialog {
        // The button opens the dialog below; it sends nothing.
        Some(Dialog::InPage(content)) => format!(
            "<button type=\"button\" data-target=\"#confirm-reset\" aria-controls=\"confirm-reset\">{reset_words}</button>\
             <dialog id=\"confirm-reset\">{content}</dialog>"
        ),
        // The button runs a script; nothing in the HTML leads anywhere.
        Some(Dialog::Scripted {
            info,
            confirm,
            page_token,
            kit,
            ask,
        }) => format!(
            "<meta name=\"csrf-token\" content=\"{}\"><div id=\"notice\"></div>\
             <button type=\"button\" id=\"reset-button\">{reset_words}</button>\
             <dialog id=\"confirm-reset\"></dialog>{}",
            esc(page_token),
            reset_script(style, info, confirm, kit.as_deref(), *ask)
        ),
        // The link loads the dialog's content from the portal.
        Some(Dialog::Remote(url)) => format!(
            "<a href=\"{}\" data-toggle=\"modal\" data-target=\"#confirm-reset\">{reset_words}</a>\
             <div class=\"modal\" id=\"confirm-reset\"></div>",
            esc(url)
        ),
        None => format!(
            "<form method=\"post\" action=\"{}\">{}{licence_field}{}</form>",
            esc(&v.url(&Route::Reset(l.key.clone()))),
            hidden(n.token, token),
            button(v, &decorated(v, "🔄 ", &words.reset_button, ""), "reset"),
        ),
    };
    let body = format!(
        "{}<h1>Détails de l'utilisateur</h1><h3>Informations</h3>{infos}<h3>Options</h3><p>Option standardiste Non</p>\
         {reset}<a href=\"{}\">Fermer</a>",
        notice.unwrap_or_default(),
        esc(&v.url(&Route::Users(svc.reference.clone())))
    );
    layout(v, "Détails de l'utilisateur", true, &body)
}

pub fn confirm(style: Style, ds: &Dataset, i: usize, token: &str) -> String {
    layout(
        style.variant,
        "Confirmation",
        true,
        &confirmation(style, ds, i, token),
    )
}

/// The confirmation: the licence's number, the warning, and `Confirmer`
/// with a token that confirms this licence (a page, or a dialog's content).
pub fn confirmation(style: Style, ds: &Dataset, i: usize, token: &str) -> String {
    let (v, words) = (style.variant, style.labels);
    let l = &ds.licences[i];
    let n = v.names();
    let associated = esc(&words.associated_number);
    let number = match v {
        Variant::Classic => format!("<p>{associated} <strong>{}</strong></p>", esc(&l.sda)),
        Variant::Modern => format!(
            "<div class=\"kv\"><div>{associated}</div><div><span>{}</span></div></div>",
            esc(&show_sda(v, &l.sda, false))
        ),
    };
    let licence_field = if v == Variant::Modern {
        hidden(n.licence, &l.key)
    } else {
        String::new()
    };
    format!(
        "<h1>Réinitialiser mot de passe SIP</h1>{number}<p class=\"warning\">Si vous validez votre choix, votre service sera interrompu. Vous devrez re-configurer votre poste avant de pouvoir le ré-utiliser.</p>\
         <form method=\"post\" action=\"{}\">{}{licence_field}{}</form><a href=\"{}\">Annuler</a>",
        esc(&v.url(&Route::Confirm(l.key.clone()))),
        hidden(n.token, token),
        button(
            v,
            &decorated(v, "✓ ", &words.confirm_button, ""),
            "confirmer"
        ),
        esc(&v.url(&Route::Detail(l.key.clone())))
    )
}

pub fn message(v: Variant, title: &str, text: &str) -> String {
    layout(
        v,
        title,
        false,
        &format!("<h1>{}</h1><p>{}</p>", esc(title), esc(text)),
    )
}
