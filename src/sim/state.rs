//! The simulated portal's state: sessions, form tokens, each licence's
//! password, and the truth file that tests check a run against.

use super::*;

pub(super) struct Session {
    pub(super) requests: u32,
    pub(super) flash: Option<(usize, String)>,
    /// The notification shown last, to show again on the next page
    /// (`Shape::FlashAgain`).
    pub(super) again: Option<String>,
}

pub(super) struct Token {
    pub(super) session: Option<String>,
    pub(super) confirms: Option<usize>,
    pub(super) used: bool,
}

pub(super) struct PortalState {
    pub(super) rng: StdRng,
    pub(super) sessions: HashMap<String, Session>,
    pub(super) tokens: HashMap<String, Token>,
    pub(super) window: (u64, u32),
    /// When each reset licence was last reset: its phone is cut off since.
    pub(super) reset_at: HashMap<usize, Instant>,
}

pub(super) struct Shared {
    pub(super) cfg: SimConfig,
    pub(super) ds: Dataset,
    pub(super) started: Instant,
    pub(super) state: Mutex<PortalState>,
    pub(super) truth: Mutex<Option<File>>,
    pub(super) counters: Mutex<Counters>,
    pub(super) access_log: Option<File>,
    pub(super) handed_out: Option<Mutex<File>>,
}

/// Closes the request's connection without an answer when notified.
#[derive(Clone)]
pub(super) struct DropConnection(pub(super) Arc<Notify>);

impl Shared {
    pub(super) fn style(&self) -> pages::Style<'_> {
        pages::Style {
            variant: self.cfg.variant,
            labels: &self.cfg.labels,
        }
    }

    /// Whether a licence's phone is registered now: as the dataset says
    /// until it is reset, cut off by a reset, back `reconnect_after` later
    /// unless it never comes back.
    pub(super) fn connected(&self, licence: usize) -> bool {
        match self.state.lock().unwrap().reset_at.get(&licence) {
            None => self.ds.initially_connected(licence),
            Some(at) => self
                .cfg
                .reconnect_after
                .is_some_and(|after| at.elapsed() >= after && !self.ds.never_reconnects(licence)),
        }
    }

    /// The `État` the portal shows for a licence.
    pub(super) fn state_text(&self, licence: usize) -> &str {
        if self.connected(licence) {
            &self.cfg.labels.state_connected
        } else {
            &self.cfg.labels.state_disconnected
        }
    }

    /// Notes a secret the portal hands out (`--handed-out`).
    pub(super) fn hand_out(&self, kind: &str, value: &str) {
        if let Some(f) = &self.handed_out {
            let mut f = f.lock().unwrap();
            if let Err(e) = f.write_all(format!("{kind} {value}\n").as_bytes()) {
                eprintln!("sim: cannot write the handed-out file: {e}");
            }
        }
    }

    pub(super) fn new_token(&self, session: Option<&str>, confirms: Option<usize>) -> String {
        let mut st = self.state.lock().unwrap();
        let token = random_string(&mut st.rng, 24);
        self.hand_out("token", &token);
        st.tokens.insert(
            token.clone(),
            Token {
                session: session.map(str::to_string),
                confirms,
                used: false,
            },
        );
        token
    }

    /// Accepts a form token issued to this session (and, for a confirmation,
    /// to this licence, once).
    pub(super) fn check_token(
        &self,
        params: &HashMap<String, String>,
        session: Option<&str>,
        confirms: Option<usize>,
    ) -> bool {
        let name = self.cfg.variant.names().token;
        let mut st = self.state.lock().unwrap();
        let ok = match params.get(name).and_then(|t| st.tokens.get_mut(t)) {
            Some(t) if t.session.as_deref() == session && t.confirms == confirms && !t.used => {
                if confirms.is_some() {
                    t.used = true;
                }
                true
            }
            _ => false,
        };
        if !ok {
            self.counters.lock().unwrap().refused_tokens += 1;
        }
        ok
    }

    pub(super) fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.state.lock().unwrap().rng.random_bool(p.min(1.0))
    }

    /// Counts the request in the current one-second window; false when over the limit.
    pub(super) fn within_rate_limit(&self) -> bool {
        let Some(limit) = self.cfg.rate_limit else {
            return true;
        };
        let second = self.started.elapsed().as_secs();
        let mut st = self.state.lock().unwrap();
        if st.window.0 != second {
            st.window = (second, 0);
        }
        st.window.1 += 1;
        st.window.1 <= limit
    }

    pub(super) fn login_page(&self, status: StatusCode, message: Option<&str>) -> Response<Body> {
        let token = self.new_token(None, None);
        html(
            self.cfg.variant,
            status,
            pages::login(
                self.style(),
                &token,
                message,
                self.cfg.hostile.login_action.as_deref(),
            ),
        )
    }

    /// What a request of an ended or missing session is answered with.
    pub(super) fn logged_out(&self) -> Response<Body> {
        match self.cfg.variant {
            Variant::Classic => redirect(StatusCode::FOUND, &self.cfg.variant.url(&Route::Login)),
            Variant::Modern => self.login_page(StatusCode::OK, Some("Votre session a expiré.")),
        }
    }

    pub(super) fn refused(&self) -> Response<Body> {
        html(
            self.cfg.variant,
            StatusCode::FORBIDDEN,
            pages::message(
                self.cfg.variant,
                "Accès refusé",
                "Jeton de sécurité invalide ou expiré.",
            ),
        )
    }

    /// The truth file could not take a reset: the portal fails as a
    /// server would.
    pub(super) fn cannot_commit(&self, e: std::io::Error) -> Response<Body> {
        eprintln!("sim: cannot write the truth file: {e}");
        html(
            self.cfg.variant,
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::message(self.cfg.variant, "Erreur", "Erreur interne."),
        )
    }

    pub(super) fn not_found(&self) -> Response<Body> {
        html(
            self.cfg.variant,
            StatusCode::NOT_FOUND,
            pages::message(
                self.cfg.variant,
                "Page introuvable",
                "Cette page n'existe pas.",
            ),
        )
    }

    /// Commits a reset: new password, truth line flushed, notification queued.
    pub(super) fn commit_reset(&self, session: &str, licence: usize) -> std::io::Result<()> {
        let password = {
            let mut st = self.state.lock().unwrap();
            random_string(&mut st.rng, 12)
        };
        self.hand_out("password", &password);
        let l = &self.ds.licences[licence];
        let service = &self.ds.services[l.service];
        if let Some(f) = self.truth.lock().unwrap().as_mut() {
            let line = serde_json::json!({
                "licence": l.reference,
                "key": l.key,
                "sda": l.sda,
                "client_ref": self.ds.clients[service.client].reference,
                "service_ref": service.reference,
                "password": password,
                "at": chrono::Utc::now().to_rfc3339(),
            });
            // One write per line, so that a reader never sees half of one.
            f.write_all(format!("{line}\n").as_bytes())?;
            f.flush()?;
        }
        self.counters.lock().unwrap().resets += 1;
        self.state
            .lock()
            .unwrap()
            .reset_at
            .insert(licence, Instant::now());
        if let Some(s) = self.state.lock().unwrap().sessions.get_mut(session) {
            s.flash = Some((licence, password));
        }
        Ok(())
    }

    /// Takes the pending notification if it is for one of `licences`.
    pub(super) fn take_flash(
        &self,
        session: &str,
        shown_for: impl Fn(usize) -> bool,
    ) -> Option<String> {
        let mut st = self.state.lock().unwrap();
        let s = st.sessions.get_mut(session)?;
        let shown = match &s.flash {
            Some((l, _)) if shown_for(*l) => s
                .flash
                .take()
                .map(|(_, pw)| pages::notification(self.style(), &pw)),
            _ => None,
        };
        if self.has(Shape::FlashAgain) && shown.is_some() {
            s.again = shown.clone();
        }
        shown
    }

    /// A link as the portal writes it: with a token in its query under
    /// `Shape::LinkTokens` (never checked, but a secret all the same).
    pub(super) fn link_token(&self, session: &str, url: String) -> String {
        if self.has(Shape::LinkTokens) {
            pages::with_param(&url, "_jt", &self.new_token(Some(session), None))
        } else {
            url
        }
    }

    pub(super) fn has(&self, shape: Shape) -> bool {
        self.cfg.shapes.contains(&shape)
    }

    /// The notification to show again on this page, taken.
    pub(super) fn take_again(&self, session: Option<&str>) -> Option<String> {
        let mut st = self.state.lock().unwrap();
        st.sessions.get_mut(session?)?.again.take()
    }
}
