//! One session's walk: login, the guide's pages to a client's services and
//! users, each page fetched and read by the labels a person sees.

use super::*;

/// One portal session, used by one task at a time.
pub struct Browser {
    pub(super) shared: Arc<Shared>,
    pub(super) transport: Transport,
    /// The home page's link to `Mes Services`; `None` until logged in.
    pub(super) my_services: Option<Url>,
    /// The search form of the current session, once opened.
    pub(super) search: Option<Form>,
    /// Which of the run's logins this browser's session is (1 for the
    /// first); 0 before it logged in.
    pub(super) login_number: u64,
    /// The login number of the session that sent this browser's last
    /// `Confirmer`; 0 before any.
    pub(super) confirmed_in: AtomicU64,
    /// The licence this browser is walking to, for a message naming the
    /// phone a stray password may belong to.
    pub(super) walking: Option<String>,
    /// A `Confirmer` this session sent whose answer could not be read: its
    /// licence and account code. The portal keeps one notification per
    /// session, so a new password a later page of this session shows is
    /// that reset's.
    pub(super) unsettled: Mutex<Option<(String, String)>>,
    /// That password, once a page showed it.
    pub(super) recovered: Mutex<Option<SecretString>>,
    /// A `Confirmer` of this session got an answer without a password: the
    /// pages after it are captured only where a known password was found.
    pub(super) unread_confirmer: AtomicBool,
}

impl Browser {
    /// Reset requests this browser sent so far (Détail, Réinitialiser,
    /// Confirmer, the result page, and their retries; not logins).
    pub fn reset_requests(&self) -> u64 {
        self.transport.sent_in(Purpose::Reset)
    }

    /// Which of the run's logins sent this browser's last `Confirmer` (1
    /// for the first): what ties a reset to the portal's security log.
    pub fn confirmed_in(&self) -> u64 {
        self.confirmed_in.load(Ordering::Relaxed)
    }

    /// Fetches a page and reads it with `parse`; a login page ends the session.
    pub(super) async fn page<T>(
        &self,
        phase: Purpose,
        req: Req,
        retry: Retry,
        name: &'static str,
        parse: impl FnOnce(&Html, &Url) -> Result<T, Problem>,
    ) -> Result<T, PortalError> {
        let fetched = self
            .transport
            .fetch(phase, req, retry)
            .await
            .map_err(|e| match e {
                TransportError::Forbidden => PortalError::SessionEnded,
                e => PortalError::Transport(e),
            })?;
        self.read(&fetched, name, parse)
    }

    pub(super) fn read<T>(
        &self,
        fetched: &Fetched,
        name: &'static str,
        parse: impl FnOnce(&Html, &Url) -> Result<T, Problem>,
    ) -> Result<T, PortalError> {
        let doc = Html::parse_document(&fetched.body);
        self.arrived(fetched, name, &doc)?;
        if html::is_login_page(&doc, &self.shared.labels.password_field) {
            return Err(PortalError::SessionEnded);
        }
        parse(&doc, &fetched.url).map_err(|p| match p {
            Problem::Missing(mut m) => {
                m.went_on = fetched.went_on();
                problem(name, Problem::Missing(m))
            }
            p => problem(name, p),
        })
    }

    /// What every page read goes through, in any command, before it is
    /// used: its tokens are learnt by the scrubber, it is captured (through
    /// the scrubber), and a new password on it that this process has not
    /// read yet is kept for the journal and stops the walk: a page that
    /// shows one where none was expected means a phone may be cut off. (The
    /// page that answers a `Confirmer` is read by `reset_once`.)
    pub(crate) fn arrived(
        &self,
        fetched: &Fetched,
        name: &'static str,
        doc: &Html,
    ) -> Result<(), PortalError> {
        html::learn_tokens(doc);
        let stray = new_passwords_on(doc, &self.shared.labels)
            .into_iter()
            .find(|p| !crate::scrub::is_known_password(p))
            .map(|p| SecretString::from(p.to_string()));
        if let Some(password) = &stray {
            crate::scrub::remember(password.expose_secret(), Secret::NewPassword);
        }
        self.capture(fetched, name, &[], false);
        let unsettled = self
            .unsettled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match stray {
            None => Ok(()),
            // The answer of this licence's last Confirmer, shown late.
            Some(password)
                if unsettled
                    .as_ref()
                    .is_some_and(|(licence, _)| Some(licence) == self.walking.as_ref()) =>
            {
                *self.recovered.lock().unwrap_or_else(|e| e.into_inner()) = Some(password);
                Err(PortalError::EarlierPasswordShown)
            }
            Some(password) => {
                self.shared
                    .stray
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Stray {
                        page: name,
                        licence: self.walking.clone(),
                        password,
                    });
                Err(PortalError::PasswordShown {
                    page: name,
                    licence: self.walking.clone(),
                })
            }
        }
    }

    /// Writes the page to the capture folder, if there is one.
    pub(crate) fn capture(
        &self,
        fetched: &Fetched,
        kind: &str,
        passwords: &[&str],
        after_confirm: bool,
    ) {
        if let Some(capture) = &self.shared.capture {
            // After a Confirmer whose password was not found, any later page
            // of the session may show it under words the client missed.
            let suspect = after_confirm || self.unread_confirmer.load(Ordering::Relaxed);
            capture.page(
                capture::Page {
                    method: fetched.method,
                    path: &fetched.path,
                    status: fetched.status,
                    kind,
                    body: &fetched.body,
                    screenshot: fetched.screenshot.as_deref(),
                    passwords,
                    after_confirm: suspect,
                },
                &self.shared.labels,
            );
        }
    }

    /// Logs in; returns the home page's link to `Mes Services`.
    pub(super) async fn login(&self) -> Result<Url, PortalError> {
        // Where an earlier session of the run found the login page: asked
        // first, a request (and a round trip) less than the portal's
        // address and its redirect. A portal that does not show it there,
        // or does not take the login made from there (an address good
        // once), is asked at its address, as the first session asked it.
        if let Some(address) = self.shared.login_address() {
            match self.login_from(address, Shortcut::Taken).await {
                Err(PortalError::LoginRefused | PortalError::SessionEnded) => {}
                other => return other,
            }
        }
        self.login_from(self.shared.start.clone(), Shortcut::None)
            .await
    }

    /// Logs in from the page at `address`: the login page, or (at the
    /// portal's address) home if the session is still open.
    pub(super) async fn login_from(
        &self,
        address: Url,
        shortcut: Shortcut,
    ) -> Result<Url, PortalError> {
        let l = &self.shared.labels;
        let never_found = self.shared.login_address().is_none();
        // Without query: it may hold a token.
        let shown = format!(
            "{}{}",
            address.origin().ascii_serialization(),
            address.path()
        );
        let fetched = match self
            .transport
            .fetch(Purpose::Login, Req::Get(address), Retry::Yes)
            .await
        {
            Err(TransportError::Status(status, _))
                if status == reqwest::StatusCode::NOT_FOUND && never_found =>
            {
                return Err(PortalError::NoPageAtTheAddress { address: shown });
            }
            other => other?,
        };
        let login_request = {
            let doc = Html::parse_document(&fetched.body);
            if html::is_login_page(&doc, &l.password_field) {
                self.arrived(&fetched, "login", &doc)?;
                self.shared
                    .login_address
                    .send_replace(Some(fetched.address.clone()));
                let want = want!(l, password_field, Field);
                let form = Form::with_field(&doc, &fetched.url, want.words)
                    .ok_or_else(|| problem("login", html::missing(&doc, want).into()))?;
                Some(self.login_request(&doc, form)?)
            } else if shortcut == Shortcut::Taken {
                // Not the login page there any more: the long way.
                return Err(PortalError::SessionEnded);
            } else {
                None
            }
        };
        let my_services = want!(l, my_services, Link);
        let home = match login_request {
            Some(req) => {
                let turn = self.shared.proof.turn().await?;
                // Credentials the portal took already are sent again as
                // any request; those it has not may be a wrong password.
                let proving = turn.proving();
                let retry = if proving {
                    Retry::Credentials
                } else {
                    Retry::Yes
                };
                let answer = self
                    .transport
                    .fetch(Purpose::Login, req, retry)
                    .await
                    .map_err(|e| {
                        if proving {
                            login_unanswered(e)
                        } else {
                            e.into()
                        }
                    })?;
                match self.read(&answer, "home", |doc, url| {
                    Ok(html::need_link(doc, url, my_services)?)
                }) {
                    // Refused at an address found earlier: maybe the
                    // address alone (the caller asks the portal's). Only
                    // a refusal from the portal's own address settles it.
                    Err(PortalError::SessionEnded) => {
                        match shortcut {
                            Shortcut::None => turn.settle(false),
                            Shortcut::Taken => turn.release(),
                        }
                        return Err(PortalError::LoginRefused);
                    }
                    Ok(home) => {
                        turn.settle(true);
                        home
                    }
                    Err(e) => return Err(e),
                }
            }
            // Still logged in (the session was fine after all): start from home.
            None => match self.read(&fetched, "home", |doc, url| {
                Ok(html::need_link(doc, url, my_services)?)
            }) {
                // No session of this run ever found a login page: the
                // address is more likely wrong than the labels.
                Err(PortalError::Missing { .. }) if self.shared.login_address().is_none() => {
                    return Err(PortalError::NotThePortal {
                        // Without query: it may hold a token.
                        address: format!(
                            "{}{}",
                            fetched.address.origin().ascii_serialization(),
                            fetched.address.path()
                        ),
                        password_field: l.password_field.clone(),
                        my_services: l.my_services.clone(),
                    });
                }
                other => other?,
            },
        };
        Ok(home)
    }

    /// The login form, filled in and pressed (through the gate).
    pub(crate) fn login_request(&self, doc: &Html, form: Form) -> Result<Req, PortalError> {
        let l = &self.shared.labels;
        let form = self
            .login_form(form)
            .map_err(|m| problem("login", m.into()))?;
        Press::of(
            Some(doc),
            &form,
            want!(l, login_button, Button),
            Step::Login,
            l,
        )?
        .harmless_request()
    }

    /// The login form, filled in.
    pub(super) fn login_form(&self, mut form: Form) -> Result<Form, Missing> {
        let l = &self.shared.labels;
        let credentials = &self.shared.credentials;
        let profile = match credentials.profile {
            LoginProfile::Reseller => want!(l, profile_reseller, Choice),
            LoginProfile::Operator => want!(l, profile_operator, Choice),
        };
        let (login, password, button) = (
            want!(l, login_field, Field),
            want!(l, password_field, Field),
            want!(l, login_button, Button),
        );
        form.fill(login.words, &credentials.login)
            .map_err(|_| form.missing(login))?;
        form.fill(password.words, credentials.password.expose_secret())
            .map_err(|_| form.missing(password))?;
        form.choose(profile.words)
            .map_err(|_| form.missing(profile))?;
        if !form.has(button) {
            return Err(form.missing(button));
        }
        Ok(form)
    }

    /// Walks from home to the search page of this session; returns its form.
    pub(super) async fn open_search(&self, my_services: Url) -> Result<Form, PortalError> {
        let l = &self.shared.labels;
        let search = self
            .page(
                Purpose::Resolve,
                Req::Get(my_services),
                Retry::Yes,
                "Mes Services",
                |doc, url| Ok(html::need_link(doc, url, want!(l, settings, Link))?),
            )
            .await?;
        self.page(
            Purpose::Resolve,
            Req::Get(search),
            Retry::Yes,
            "search",
            |doc, url| {
                Ok(html::need_form_with_button(
                    doc,
                    url,
                    want!(l, search_button, Button),
                )?)
            },
        )
        .await
    }

    /// Logs in if this browser has no live session; returns the link to `Mes Services`.
    pub(super) async fn session(&mut self) -> Result<Url, PortalError> {
        if let Some(home) = &self.my_services {
            return Ok(home.clone());
        }
        if self.shared.proof.refused() {
            return Err(PortalError::LoginRefused);
        }
        match self.login().await {
            Err(e) => Err(e),
            Ok(home) => {
                self.transport.at_work();
                self.login_number = self
                    .shared
                    .throttle
                    .stats
                    .sessions
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                self.my_services = Some(home.clone());
                Ok(home)
            }
        }
    }

    /// The search form of the live session; the search page is opened once
    /// per session, and only by browsers that search.
    pub(super) async fn search_form(&mut self) -> Result<Form, PortalError> {
        let my_services = self.session().await?;
        if self.search.is_none() {
            self.search = Some(self.open_search(my_services).await?);
        }
        Ok(self.search.clone().expect("just set"))
    }

    /// With `--engine auto`, a step that needs a script moves the run to the
    /// browser: this session goes on in it, and so do the sessions opened
    /// from now on. Whether it did.
    ///
    /// The browser session is handed this session's cookies, and carries
    /// the portal's session on where it stands: no new login on the way of
    /// the canary, which every other reset waits for. A portal that does
    /// not take them back shows its login page, and the walk logs in again
    /// as it does when a session ends.
    pub(super) fn move_to_the_browser(&mut self, e: &PortalError, session: Handover) -> bool {
        if !matches!(e, PortalError::NeedsScript { .. })
            || self.shared.engine_choice != EngineChoice::Auto
            || self.transport.runs_scripts()
        {
            return false;
        }
        tracing::info!("{e}: going on with the browser engine");
        self.shared.in_browser.store(true, Ordering::SeqCst);
        let at = self.my_services.as_ref().unwrap_or(&self.shared.start);
        let handed = match session {
            Handover::CarriedOn => self.transport.cookies_for(at),
            Handover::LogInAgain => None,
        };
        if handed.is_none() {
            // Nothing to carry on: the browser session logs in.
            self.my_services = None;
            self.search = None;
        }
        self.transport = self
            .shared
            .browser_transport(handed)
            .counting_with(&self.transport);
        true
    }

    /// The session ended: the next step logs in again, up to a bound.
    pub(super) fn session_ended(&mut self, attempt: usize) -> Result<(), PortalError> {
        tracing::info!("the portal session ended: logging in again");
        self.my_services = None;
        self.search = None;
        // The portal's notification belonged to the session that ended.
        *self.unsettled.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.unread_confirmer.store(false, Ordering::Relaxed);
        if attempt + 1 >= MAX_SESSION_ATTEMPTS {
            return Err(PortalError::SessionLoop(MAX_SESSION_ATTEMPTS));
        }
        Ok(())
    }

    /// Reads a table over its `Suivant` pages. The first page comes from
    /// `start` (a link, or the live session's search form filled in); the
    /// others from links. When the session ends it logs in again and goes on from the
    /// page it was fetching: rows already read are kept, and no form token
    /// of the ended session is sent again.
    pub(super) async fn walk<T>(
        &mut self,
        name: &'static str,
        start: WalkStart<'_>,
        parse: impl Fn(&Html, &Url) -> Result<Vec<T>, Problem>,
    ) -> Result<Vec<T>, PortalError> {
        let mut rows = Vec::new();
        let mut next: Option<Req> = None;
        let mut ends_in_a_row = 0;
        for _ in 0..MAX_PAGES {
            let req = match next.take() {
                Some(req) => {
                    self.session().await?;
                    req
                }
                None => match &start {
                    WalkStart::Link(url) => {
                        self.session().await?;
                        Req::Get(url.clone())
                    }
                    WalkStart::Search(fill) => fill(self.search_form().await?)?,
                },
            };
            let answer = self
                .page(
                    Purpose::Resolve,
                    req.clone(),
                    Retry::Yes,
                    name,
                    |doc, url| {
                        Ok((
                            parse(doc, url)?,
                            find_link(doc, url, &self.shared.labels.next),
                        ))
                    },
                )
                .await;
            match answer {
                Ok((page_rows, more)) => {
                    ends_in_a_row = 0;
                    rows.extend(page_rows);
                    match more {
                        Some(url) => next = Some(Req::Get(url)),
                        None => return Ok(rows),
                    }
                }
                Err(PortalError::SessionEnded) => {
                    self.session_ended(ends_in_a_row)?;
                    ends_in_a_row += 1;
                    // Go on from the link that was being fetched; if that fails again
                    // (a link tied to the old session), start over from the first page.
                    if ends_in_a_row == 1 && matches!(req, Req::Get(_)) && !rows.is_empty() {
                        next = Some(req);
                    } else {
                        rows.clear();
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(PortalError::Contract {
            page: name,
            what: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// The MetaCentrex services whose `Compte client` is exactly `client_ref`.
    pub async fn services_of(&mut self, client_ref: &str) -> Result<Vec<ServiceRow>, PortalError> {
        let shared = self.shared.clone();
        let l = &shared.labels;
        let fill = |mut form: Form| {
            let (client, service_type, metacentrex, button) = (
                want!(l, search_client_ref, Field),
                want!(l, search_service_type, Field),
                want!(l, metacentrex, Choice),
                want!(l, search_button, Button),
            );
            let missing = |m: Missing| problem("search", m.into());
            form.fill(client.words, client_ref)
                .map_err(|_| missing(form.missing(client)))?;
            form.select(service_type.words, metacentrex.words)
                .map_err(|e| match e {
                    html::FormError::NoChoice { .. } => missing(form.missing(metacentrex)),
                    _ => missing(form.missing(service_type)),
                })?;
            Press::of(None, &form, button, Step::Search, l)?.harmless_request()
        };

        let parse = |doc: &Html, url: &Url| {
            let wants = [
                want!(l, column_service_ref, Column),
                want!(l, column_client_ref, Column),
                want!(l, column_service_type, Column),
                want!(l, column_action, Column),
            ];
            let rows = match html::need_table(doc, url, &wants) {
                Ok(t) => t.rows,
                // No table at all: no result. A table with some of the
                // headers: the portal words one differently.
                Err(m) if html::has_column_among(doc, &wants) => return Err(m.into()),
                Err(_) => Vec::new(),
            };
            rows.into_iter()
                // Filters match loosely: keep exact references of MetaCentrex services only.
                .filter(|r| r[1].text == client_ref && is_label(&r[2].text, &l.metacentrex))
                .map(|r| {
                    let page = r[3]
                        .links
                        .iter()
                        .find(|a| is_label(&a.text, &l.configure))
                        .map(|a| a.url.clone())
                        .ok_or_else(|| html::missing(doc, want!(l, configure, Link)))?;
                    Ok(ServiceRow {
                        service_ref: r[0].text.clone(),
                        client_ref: r[1].text.clone(),
                        page,
                    })
                })
                .collect()
        };
        self.walk("search results", WalkStart::Search(&fill), parse)
            .await
    }

    /// Every licence of a service, from its users table and further pages.
    pub async fn licences_of(
        &mut self,
        service: &ServiceRow,
    ) -> Result<Vec<LicenceRow>, PortalError> {
        let shared = self.shared.clone();
        let l = &shared.labels;
        let mut users = None;
        for attempt in 0.. {
            self.session().await?;
            let found = self
                .page(
                    Purpose::Resolve,
                    Req::Get(service.page.clone()),
                    Retry::Yes,
                    "service",
                    |doc, url| Ok(html::need_link(doc, url, want!(l, users_tab, Link))?),
                )
                .await;
            match found {
                Err(PortalError::SessionEnded) => self.session_ended(attempt)?,
                other => {
                    users = Some(other?);
                    break;
                }
            }
        }
        let users = users.expect("the loop sets it or returns");
        let parse = |doc: &Html, url: &Url| {
            let wants = [
                want!(l, column_licence, Column),
                want!(l, column_sda, Column),
                want!(l, column_name, Column),
                want!(l, column_action, Column),
            ];
            let words: Vec<&str> = wants.iter().map(|w| w.words).collect();
            let table = match html::find_table_with(doc, url, &words, &[&l.column_state]) {
                Some(t) => t,
                None => html::need_table(doc, url, &wants)?,
            };
            table
                .rows
                .into_iter()
                .map(|r| {
                    let (licence, licence_type) =
                        r[0].text.split_once(' ').unwrap_or((&r[0].text, ""));
                    let detail = r[3]
                        .links
                        .iter()
                        .find(|a| is_label(&a.text, &l.detail))
                        .map(|a| a.url.clone())
                        .ok_or_else(|| html::missing(doc, want!(l, detail, Link)))?;
                    Ok(LicenceRow {
                        licence: licence.to_string(),
                        licence_type: licence_type.to_string(),
                        sda: r[1].text.clone(),
                        name: r[2].text.clone(),
                        detail,
                        state: r
                            .get(4)
                            .map(|c| html::label_text(&c.text))
                            .unwrap_or_default(),
                    })
                })
                .collect()
        };
        let rows = self.walk("users", WalkStart::Link(users), parse).await?;
        if let Some(first) = rows.first()
            && self.shared.look_ahead.swap(false, Ordering::SeqCst)
        {
            self.look_at(first).await;
        }
        Ok(rows)
    }

    /// Reads the detail page of `licence` (nothing pressed), and starts
    /// the browser in the background if its reset needs a script. What
    /// goes wrong here is the canary's to find and say: only logged.
    pub(super) async fn look_at(&mut self, licence: &LicenceRow) {
        if self.transport.runs_scripts() {
            return;
        }
        let shared = self.shared.clone();
        let looked = self
            .page(
                Purpose::Resolve,
                Req::Get(licence.detail.clone()),
                Retry::Yes,
                "detail",
                |doc, url| Ok(to_confirmation(doc, url, &shared.labels, false)),
            )
            .await;
        if let Ok(Err(e @ PortalError::NeedsScript { .. })) = looked {
            tracing::info!("{e}: starting the browser ahead");
            shared.engine.start_ahead(shared.start.origin());
        }
    }
}

/// A login that sent credentials the portal has not accepted yet, and got
/// no answer that says whether it took them: said as such (a wrong
/// password a portal refuses late looks like this), never as a portal
/// that failed, whose advice is to try again.
pub(crate) fn login_unanswered(e: TransportError) -> PortalError {
    match e {
        TransportError::Silent => PortalError::LoginUnanswered {
            why: "none within --timeout".to_string(),
        },
        TransportError::PageHung { .. } => PortalError::LoginUnanswered {
            why: "the browser's page did not answer within --timeout".to_string(),
        },
        TransportError::Transient(why) => PortalError::LoginUnanswered { why },
        e => e.into(),
    }
}
