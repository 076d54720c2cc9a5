//! `sip-rotate check`: the whole path of the operator's guide for one
//! licence, login to the confirmation page, every label the run needs
//! looked for on the page where the run needs it, and a stop before
//! `Confirmer`, which is never sent. Réinitialiser only shows the
//! confirmation page; nothing changes on the portal.

use super::gate::{Press, Step};

use super::html::{self, Form, Kind, Missing, Want};
use super::transport::{Fetched, Purpose, Req, Retry};
use super::{Browser, Portal, PortalError, Priority, ToConfirmation};
use crate::phone;
use scraper::Html;
use std::sync::Arc;
use url::Url;

/// The licence to walk to: the first of an input row, or the one named.
#[derive(Debug, Clone)]
pub struct Target {
    pub client_ref: String,
    pub service_ref: Option<String>,
    /// `None`: the first licence of the client's first service.
    pub licence: Option<String>,
    pub sda: Option<String>,
}

/// What one label came to.
#[derive(Debug, Clone)]
pub enum Found {
    /// On the page; what it shows, when that says something.
    Yes(String),
    Missing(Missing),
    /// The page it is on was not reached (an earlier step failed).
    NotReached,
    /// Not looked for, and why.
    NotChecked(&'static str),
    /// On the page, but it does not show what the run expects.
    Wrong(String),
    /// On the page, but pressing it runs a script: the HTTP engine cannot.
    NeedsScript(String),
    /// The client or the licence asked for is in no row of the tables:
    /// the input is wrong, not a label.
    NotListed(String),
}

/// One label of one step.
#[derive(Debug, Clone)]
pub struct Check {
    pub step: &'static str,
    pub key: &'static str,
    pub words: String,
    pub kind: Kind,
    pub found: Found,
}

impl Check {
    /// Whether a run could use it (found, or not needed).
    pub fn ok(&self) -> bool {
        matches!(self.found, Found::Yes(_) | Found::NotChecked(_))
    }
}

/// Every label, with the step where the run looks for it and its kind, in
/// the order of the guide (the profile: the one chosen at login).
pub fn places(l: &super::labels::Labels) -> Vec<(&'static str, Want<'_>)> {
    let mut all: Vec<(&'static str, Want)> = plan(l, super::LoginProfile::Reseller)
        .into_iter()
        .flat_map(|(step, wants)| wants.into_iter().map(move |w| (step, w)))
        .collect();
    all.insert(3, ("login", want!(l, profile_operator, Choice)));
    all
}

/// The labels of each step, in the order of the guide.
fn plan(
    l: &super::labels::Labels,
    profile: super::LoginProfile,
) -> Vec<(&'static str, Vec<Want<'_>>)> {
    let profile = match profile {
        super::LoginProfile::Reseller => want!(l, profile_reseller, Choice),
        super::LoginProfile::Operator => want!(l, profile_operator, Choice),
    };
    vec![
        (
            "login",
            vec![
                want!(l, password_field, Field),
                want!(l, login_field, Field),
                profile,
                want!(l, login_button, Button),
            ],
        ),
        ("home", vec![want!(l, my_services, Link)]),
        ("Mes Services", vec![want!(l, settings, Link)]),
        (
            "search",
            vec![
                want!(l, search_client_ref, Field),
                want!(l, search_service_type, Field),
                want!(l, metacentrex, Choice),
                want!(l, search_button, Button),
            ],
        ),
        (
            "search results",
            vec![
                want!(l, column_service_ref, Column),
                want!(l, column_client_ref, Column),
                want!(l, column_service_type, Column),
                want!(l, column_action, Column),
                want!(l, configure, Link),
                want!(l, next, Link),
            ],
        ),
        ("service", vec![want!(l, users_tab, Link)]),
        (
            "users",
            vec![
                want!(l, column_licence, Column),
                want!(l, column_sda, Column),
                want!(l, column_name, Column),
                want!(l, column_action, Column),
                want!(l, detail, Link),
                // Not needed to reset; `plan` and `status` read it.
                want!(l, column_state, Column),
                want!(l, state_connected, Value),
                want!(l, state_disconnected, Value),
            ],
        ),
        (
            "detail",
            vec![
                want!(l, field_licence, LabelValue),
                want!(l, field_sda, LabelValue),
                want!(l, field_accountcode, LabelValue),
                want!(l, reset_button, Button),
            ],
        ),
        (
            "confirmation",
            vec![
                want!(l, associated_number, Text),
                want!(l, confirm_button, Button),
            ],
        ),
        ("result", vec![want!(l, new_password, Text)]),
    ]
}

/// The checks, filled step by step; what is not filled was not reached.
struct Checks {
    all: Vec<Check>,
    /// The step being walked: a key may be looked for on two pages.
    step: &'static str,
    /// The page of the step went elsewhere by itself (`Fetched::went_on`).
    went_on: Option<String>,
}

impl Checks {
    fn at(&mut self, step: &'static str) {
        self.step = step;
    }

    fn set(&mut self, key: &str, found: Found) {
        let step = self.step;
        if let Some(c) = self.all.iter_mut().find(|c| c.key == key && c.step == step) {
            c.found = found;
        }
    }

    fn get(&self, key: &str) -> Option<&Found> {
        self.all
            .iter()
            .find(|c| c.key == key && c.step == self.step)
            .map(|c| &c.found)
    }

    fn found(&mut self, want: Want, note: impl Into<String>) {
        self.set(want.key, Found::Yes(note.into()));
    }

    fn missing(&mut self, mut m: Missing) {
        m.went_on = self.went_on.clone();
        let key = m.key;
        self.set(key, Found::Missing(m));
    }
}

impl Portal {
    /// Walks to the confirmation page of `target`'s licence and looks for
    /// every label on the way; never sends `Confirmer`. An error is a
    /// refused login or a portal that cannot be reached.
    pub async fn inspect(self: &Arc<Self>, target: &Target) -> Result<Vec<Check>, PortalError> {
        let shared = self.shared.clone();
        let l = &shared.labels;
        let steps = plan(l, shared.credentials.profile);
        let fresh = || {
            let mut checks = Checks {
                all: steps
                    .iter()
                    .flat_map(|(step, wants)| {
                        wants.iter().map(|w| Check {
                            step,
                            key: w.key,
                            words: w.words.to_string(),
                            kind: w.kind,
                            found: Found::NotReached,
                        })
                    })
                    .collect(),
                step: "result",
                went_on: None,
            };
            checks.set(
                "new_password",
                Found::NotChecked("shown only after Confirmer, which check never sends"),
            );
            checks
        };
        let mut checks = fresh();
        let mut browser = self.lease(Priority::Resolve).await?;
        walk(&mut browser, target, &steps, &mut checks).await?;
        // A step needs a script: with `--engine auto`, the walk is made
        // again with the browser, as a run would make it.
        let needs_script = checks.all.iter().find_map(|c| match &c.found {
            Found::NeedsScript(why) => Some(PortalError::NeedsScript {
                page: c.step,
                control: why.clone(),
            }),
            _ => None,
        });
        if let Some(e) = needs_script
            && browser.move_to_the_browser(&e, super::Handover::LogInAgain)
        {
            checks = fresh();
            walk(&mut browser, target, &steps, &mut checks).await?;
        }
        Ok(checks.all)
    }
}

fn want_of<'a>(steps: &'a [(&'static str, Vec<Want<'a>>)], key: &str) -> Want<'a> {
    steps
        .iter()
        .flat_map(|(_, w)| w.iter())
        .find(|w| w.key == key)
        .copied()
        .expect("a key of the plan")
}

/// Fetches a page for the inspection, captured like any other.
/// Where it went by itself, if it did, is kept for the labels missing on it.
async fn get(
    b: &Browser,
    checks: &mut Checks,
    phase: Purpose,
    req: Req,
    kind: &'static str,
) -> Result<Fetched, PortalError> {
    get_with(b, checks, phase, req, kind, Retry::Yes).await
}

/// As `get`, sent again as `retry` says.
async fn get_with(
    b: &Browser,
    checks: &mut Checks,
    phase: Purpose,
    req: Req,
    kind: &'static str,
    retry: Retry,
) -> Result<Fetched, PortalError> {
    let fetched = b.transport.fetch(phase, req, retry).await?;
    checks.went_on = fetched.went_on();
    let doc = Html::parse_document(&fetched.body);
    b.arrived(&fetched, kind, &doc)?;
    // The login page where another page was expected: the session ended
    // (the login's own pages are judged by the walk).
    if !matches!(kind, "login" | "home")
        && html::is_login_page(&doc, &b.shared.labels.password_field)
    {
        return Err(PortalError::SessionEnded);
    }
    Ok(fetched)
}

/// The users table's `État`: its column, and the word the licence's row
/// shows, which must be one of the two words `plan` and `status` know.
fn check_state<'a>(
    doc: &Html,
    cell: Option<&str>,
    licence: &str,
    w: &impl Fn(&str) -> Want<'a>,
    checks: &mut Checks,
) {
    let (column, connected, disconnected) = (
        w("column_state"),
        w("state_connected"),
        w("state_disconnected"),
    );
    let Some(text) = cell else {
        checks.missing(html::missing(doc, column));
        let why = "no État column: plan cannot count the phones in use, status cannot tell which are back";
        checks.set(connected.key, Found::NotChecked(why));
        checks.set(disconnected.key, Found::NotChecked(why));
        return;
    };
    checks.found(column, "");
    let shown = html::label_text(text);
    let note = format!("licence {licence}: {shown}");
    if html::is_label(&shown, connected.words) {
        checks.found(connected, note);
        checks.set(
            disconnected.key,
            Found::NotChecked("the licence's phone is connected"),
        );
    } else if html::is_label(&shown, disconnected.words) {
        checks.found(disconnected, note);
        checks.set(
            connected.key,
            Found::NotChecked("the licence's phone is not connected"),
        );
    } else {
        let wrong = format!(
            "licence {licence} shows État '{shown}', neither state_connected nor state_disconnected: \
             word them as the portal does, or plan and status count it as unknown"
        );
        checks.set(connected.key, Found::Wrong(wrong.clone()));
        checks.set(disconnected.key, Found::Wrong(wrong));
    }
}

/// Follows the link `want` on `doc`, or notes it missing.
fn link(doc: &Html, url: &Url, want: Want, checks: &mut Checks) -> Option<Url> {
    match html::need_link(doc, url, want) {
        Ok(u) => {
            checks.found(want, "");
            Some(u)
        }
        Err(m) => {
            checks.missing(m);
            None
        }
    }
}

/// Looks for every control of `wants` in `form`; whether all are there.
fn controls(form: &Form, wants: &[Want], checks: &mut Checks) -> bool {
    let mut all = true;
    for w in wants {
        if form.has(*w) {
            checks.found(*w, "");
        } else {
            checks.missing(form.missing(*w));
            all = false;
        }
    }
    all
}

async fn walk(
    b: &mut Browser,
    target: &Target,
    steps: &[(&'static str, Vec<Want<'_>>)],
    checks: &mut Checks,
) -> Result<(), PortalError> {
    let w = |key: &str| want_of(steps, key);
    // Login.
    checks.at("login");
    let start = b.shared.start.clone();
    let page = get(b, checks, Purpose::Login, Req::Get(start), "login").await?;
    let req = {
        let doc = Html::parse_document(&page.body);
        if !html::is_login_page(&doc, w("password_field").words) {
            checks.missing(html::missing(&doc, w("password_field")));
            return Ok(());
        }
        let form = Form::with_field(&doc, &page.url, w("password_field").words)
            .expect("a login page has the field");
        let login_wants = [
            "password_field",
            "login_field",
            profile_key(b),
            "login_button",
        ]
        .map(w);
        if !controls(&form, &login_wants, checks) {
            return Ok(());
        }
        b.login_request(&doc, form)?
    };
    // Credentials sent once unless the portal answered (see
    // `Retry::Credentials`): check proves them as a run's first login does.
    let home = get_with(b, checks, Purpose::Login, req, "home", Retry::Credentials)
        .await
        .map_err(|e| match e {
            PortalError::Transport(e) => super::walk::login_unanswered(e),
            e => e,
        })?;
    // Home, then Mes Services.
    checks.at("home");
    let my_services = {
        let doc = Html::parse_document(&home.body);
        if html::is_login_page(&doc, w("password_field").words) {
            return Err(PortalError::LoginRefused);
        }
        b.shared
            .throttle
            .stats
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        link(&doc, &home.url, w("my_services"), checks)
    };
    let Some(my_services) = my_services else {
        return Ok(());
    };
    checks.at("Mes Services");
    let page = get(
        b,
        checks,
        Purpose::Resolve,
        Req::Get(my_services),
        "Mes Services",
    )
    .await?;
    let Some(search) = link(
        &Html::parse_document(&page.body),
        &page.url,
        w("settings"),
        checks,
    ) else {
        return Ok(());
    };
    // The search form, filled for the client.
    checks.at("search");
    let page = get(b, checks, Purpose::Resolve, Req::Get(search), "search").await?;
    let form = {
        let doc = Html::parse_document(&page.body);
        match html::need_form_with_button(&doc, &page.url, w("search_button")) {
            Ok(form) => form,
            Err(m) => {
                checks.missing(m);
                return Ok(());
            }
        }
    };
    let search_wants = [
        "search_client_ref",
        "search_service_type",
        "metacentrex",
        "search_button",
    ]
    .map(w);
    if !controls(&form, &search_wants, checks) {
        return Ok(());
    }
    let mut form = form;
    let _ = form.fill(w("search_client_ref").words, &target.client_ref);
    let _ = form.select(w("search_service_type").words, w("metacentrex").words);
    let mut req = Press::of(
        None,
        &form,
        w("search_button"),
        Step::Search,
        &b.shared.labels,
    )?
    .harmless_request()?;
    // The results, over their pages, to the client's MetaCentrex service.
    checks.at("search results");
    let service_page = loop {
        let page = get(b, checks, Purpose::Resolve, req, "search results").await?;
        let doc = Html::parse_document(&page.body);
        let wants = [
            "column_service_ref",
            "column_client_ref",
            "column_service_type",
            "column_action",
        ]
        .map(w);
        let table = match html::need_table(&doc, &page.url, &wants) {
            Ok(t) => t,
            Err(m) => {
                for c in wants {
                    if html::has_column(&doc, c) {
                        checks.found(c, "");
                    }
                }
                if !html::has_column_among(&doc, &wants) {
                    checks.set(
                        m.key,
                        Found::NotListed(format!(
                            "no search result for client {}",
                            target.client_ref
                        )),
                    );
                } else {
                    checks.missing(m);
                }
                return Ok(());
            }
        };
        for c in wants {
            checks.found(c, "");
        }
        let row = table.rows.iter().find(|r| {
            r[1].text == target.client_ref
                && html::is_label(&r[2].text, w("metacentrex").words)
                && target.service_ref.as_ref().is_none_or(|s| *s == r[0].text)
        });
        let more = html::find_link(&doc, &page.url, w("next").words);
        match (row, more.clone()) {
            (Some(r), _) => {
                if more.is_some() {
                    checks.found(w("next"), "");
                } else if matches!(checks.get("next"), Some(Found::NotReached)) {
                    checks.set(
                        "next",
                        Found::NotChecked(
                            "no further page here: needed only when a table has more",
                        ),
                    );
                }
                match r[3]
                    .links
                    .iter()
                    .find(|a| html::is_label(&a.text, w("configure").words))
                {
                    Some(a) => {
                        checks.found(w("configure"), format!("service {}", r[0].text));
                        break a.url.clone();
                    }
                    None => {
                        checks.missing(html::missing(&doc, w("configure")));
                        return Ok(());
                    }
                }
            }
            (None, Some(next)) => {
                checks.found(w("next"), "");
                req = Req::Get(next);
            }
            (None, None) => {
                checks.set(
                    "configure",
                    Found::NotListed(format!(
                        "no MetaCentrex service of client {} in the search results",
                        target.client_ref
                    )),
                );
                return Ok(());
            }
        }
    };
    // The service, its users tab and table, to the licence.
    checks.at("service");
    let page = get(
        b,
        checks,
        Purpose::Resolve,
        Req::Get(service_page),
        "service",
    )
    .await?;
    let Some(users) = link(
        &Html::parse_document(&page.body),
        &page.url,
        w("users_tab"),
        checks,
    ) else {
        return Ok(());
    };
    checks.at("users");
    let mut req = Req::Get(users);
    let (licence, sda, detail) = loop {
        let page = get(b, checks, Purpose::Resolve, req, "users").await?;
        let doc = Html::parse_document(&page.body);
        let wants = [
            "column_licence",
            "column_sda",
            "column_name",
            "column_action",
        ]
        .map(w);
        let words = wants.map(|w| w.words);
        let state = w("column_state");
        let with_state = html::find_table_with(&doc, &page.url, &words, &[state.words]);
        let table = match with_state.map_or_else(|| html::need_table(&doc, &page.url, &wants), Ok) {
            Ok(t) => t,
            Err(m) => {
                for c in wants {
                    if html::has_column(&doc, c) {
                        checks.found(c, "");
                    }
                }
                checks.missing(m);
                return Ok(());
            }
        };
        for c in wants {
            checks.found(c, "");
        }
        let row = table.rows.iter().find(|r| {
            let first = r[0].text.split(' ').next().unwrap_or("");
            target.licence.as_ref().is_none_or(|l| l == first)
                && target
                    .sda
                    .as_ref()
                    .is_none_or(|s| phone::same_number(s, &r[1].text))
        });
        match (row, html::find_link(&doc, &page.url, w("next").words)) {
            (Some(r), _) => {
                let licence = r[0].text.split(' ').next().unwrap_or("").to_string();
                match r[3]
                    .links
                    .iter()
                    .find(|a| html::is_label(&a.text, w("detail").words))
                {
                    Some(a) => {
                        checks.found(w("detail"), format!("licence {licence}"));
                        // The State cell, where the table has the column.
                        let has_state = table.optional.first() == Some(&true);
                        let cell = has_state.then(|| r[4].text.as_str());
                        check_state(&doc, cell, &licence, &w, checks);
                        break (licence, r[1].text.clone(), a.url.clone());
                    }
                    None => {
                        checks.missing(html::missing(&doc, w("detail")));
                        return Ok(());
                    }
                }
            }
            (None, Some(next)) => req = Req::Get(next),
            (None, None) => {
                checks.set(
                    "detail",
                    Found::NotListed(format!(
                        "licence {} is not in the users tables of that service",
                        target.licence.as_deref().unwrap_or("?")
                    )),
                );
                return Ok(());
            }
        }
    };
    // The detail page: the licence, its number, the reset button.
    checks.at("detail");
    b.walking = Some(licence.clone());
    b.transport.hold(Some(&licence));
    let page = get(b, checks, Purpose::Reset, Req::Get(detail), "detail").await?;
    let to_confirm = {
        let doc = Html::parse_document(&page.body);
        match html::field_value(&doc, w("field_licence").words) {
            Some(shown) if shown.split(' ').next() == Some(licence.as_str()) => {
                checks.found(w("field_licence"), format!("shows {licence}"));
            }
            Some(shown) => checks.set(
                "field_licence",
                Found::Wrong(format!("shows '{shown}', not {licence}")),
            ),
            None => checks.missing(html::missing(&doc, w("field_licence"))),
        }
        match html::field_value(&doc, w("field_sda").words) {
            Some(shown) if phone::same_number(&shown, &sda) => {
                checks.found(w("field_sda"), format!("shows '{shown}'"))
            }
            Some(shown) => checks.set(
                "field_sda",
                Found::Wrong(format!("shows '{shown}', the users table '{sda}'")),
            ),
            None => checks.set(
                "field_sda",
                Found::NotChecked(
                    "not on the page: the run then checks the number on the confirmation page only",
                ),
            ),
        }
        match html::field_value(&doc, w("field_accountcode").words) {
            Some(code) if !code.is_empty() => checks.found(w("field_accountcode"), ""),
            _ => checks.set(
                "field_accountcode",
                Found::NotChecked(
                    "not on the page: needed only to tell apart phones that look the same",
                ),
            ),
        }
        match super::to_confirmation(
            &doc,
            &page.url,
            &b.shared.labels,
            b.transport.runs_scripts(),
        ) {
            Ok(to) => {
                let note = match &to {
                    ToConfirmation::Shown(_) => "opens a dialog of the page",
                    ToConfirmation::Click(_) => "runs a script of the page (browser engine)",
                    ToConfirmation::Request(Req::Get(_)) => "loads a dialog from the portal",
                    ToConfirmation::Request(_) => "",
                };
                checks.found(w("reset_button"), note);
                (to, page.url.clone())
            }
            Err(PortalError::Missing { missing, .. }) => {
                checks.missing(*missing);
                return Ok(());
            }
            Err(PortalError::NeedsScript { control, .. }) => {
                checks.set(
                    "reset_button",
                    Found::NeedsScript(format!(
                        "'{control}' runs a script of the page: the step needs the browser engine"
                    )),
                );
                return Ok(());
            }
            // A press that could commit a reset: refused by the gate, and
            // check never commits.
            Err(e) => return Err(e),
        }
    };
    checks.at("confirmation");
    let page = match to_confirm {
        // Réinitialiser: only the confirmation comes back.
        (ToConfirmation::Request(req), _) => {
            get(b, checks, Purpose::Reset, req, "confirmation").await?
        }
        // A script of the page shows it: pressed in the browser (the gate
        // found the press harmless).
        (ToConfirmation::Click(path), _) => {
            let shown = super::reset_walk::confirmation_shown(&b.shared.labels);
            let settled = b
                .transport
                .click(Purpose::Reset, &path, false, &shown)
                .await?;
            let doc = Html::parse_document(&settled.page.body);
            b.arrived(&settled.page, "confirmation", &doc)?;
            settled.page
        }
        // A dialog of the detail page: read there, nothing fetched.
        (ToConfirmation::Shown(dialog), url) => Fetched {
            address: url.clone(),
            first_redirect: None,
            asked: None,
            screenshot: None,
            url,
            body: zeroize::Zeroizing::new(dialog),
            method: "GET",
            path: String::new(),
            status: 200,
            hops: 0,
        },
    };
    let doc = Html::parse_document(&page.body);
    match html::text_after(&doc, w("associated_number").words) {
        Some(after) => {
            let shown = phone::leading_number(&after);
            if phone::same_number(&shown, &sda) {
                checks.found(w("associated_number"), format!("shows '{shown}'"));
            } else {
                checks.set(
                    "associated_number",
                    Found::Wrong(format!("shows '{shown}', the users table '{sda}'")),
                );
            }
        }
        None => checks.missing(html::missing(&doc, w("associated_number"))),
    }
    // The button is looked for, never pressed.
    match html::need_control(&doc, &page.url, w("confirm_button")) {
        Ok(html::Opens::Form(_)) => checks.found(w("confirm_button"), "not pressed"),
        Ok(html::Opens::Script { .. }) if b.transport.runs_scripts() => checks.found(
            w("confirm_button"),
            "runs a script of the page (browser engine); not pressed",
        ),
        Ok(html::Opens::Script { label, .. }) => checks.set(
            "confirm_button",
            Found::NeedsScript(format!(
                "'{label}' runs a script of the page: the step needs the browser engine"
            )),
        ),
        Ok(_) => checks.missing(html::missing(&doc, w("confirm_button"))),
        Err(m) => checks.missing(m),
    }
    Ok(())
}

fn profile_key(b: &Browser) -> &'static str {
    match b.shared.credentials.profile {
        super::LoginProfile::Reseller => "profile_reseller",
        super::LoginProfile::Operator => "profile_operator",
    }
}
