//! The one gate for the press that may commit a reset, and the one rule
//! for what its answer means. Every form a walk sends is pressed here,
//! whichever command walks.
//!
//! **The gate.** A press may commit a reset when it is made on the way to
//! a licence's reset (from its detail page on) with a control worded like
//! `confirm_button`, or when it is made on any page that shows the
//! confirmation (`associated_number`): a portal may word its buttons
//! otherwise, or show the confirmation as a dialog of the detail page. (The
//! login page's `Valider` may read like a portal's confirm button: a login
//! commits nothing, and its page shows no confirmation.) On the way to a
//! reset, a button that stands in a dialog, or in an element hidden until
//! shown, may commit too, whatever its words: when the labels are not the
//! portal's, nothing else tells a confirmation. Such
//! a press is sent only with a `CommitPermit`, which only an open journal
//! gives: `check`, `plan` and `status` hold none, so they stop before it
//! whatever the labels file says, and `run` sends it only once the journal
//! can take what comes back. Any other press goes through `harmless`.
//!
//! **The rule.** Every answer to a press that may have committed falls in
//! one of three classes, and only the first is sent again as it is:
//! - *not taken*: the login page as the press's own answer, or where the
//!   press was sent straight to (the session had ended), a `429` the pauses
//!   could not get past, or a form token refused (`403` to the press
//!   itself). Nothing was reset: log in again if needed, and press again.
//! - *not readable*: a `5xx`, a timeout, a cut connection, or the login page
//!   on the way to the result page (the session ended after the press was
//!   taken). The reset may have happened, and only a new reset makes its
//!   password known.
//! - *read, and showing no password*: any other `4xx`, a page without the
//!   password, a redirect to a missing page. The outcome is unknown: it is
//!   reported, never repeated (a new reset would cut the phone off again
//!   for nothing).
//!
//! In the browser, nothing is *not taken*: Chromium sends a request again
//! by itself when a connection it had used before closes before the
//! answer, and nothing of it shows in DevTools. The browser engine uses
//! each connection once (`Connection: close`, no HTTP/2), which took those
//! second sendings away on every portal tried; but a connection opened
//! ahead and left idle counts as used for that rule. The answer seen (a
//! refused token, the login page) may still be a second sending's, the
//! first taken. Such an answer is *not readable* (`in_the_browser`).

use super::html::{self, Form, Want};
use super::labels::Labels;
use super::transport::{Fetched, Req, TransportError};
use super::{PortalError, problem};
use scraper::Html;
use std::sync::Arc;

/// Whether a press may commit a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressKind {
    /// Reads, logs in, searches, or opens the confirmation.
    Harmless,
    /// Its control reads like `confirm_button`, or the page shows the
    /// confirmation.
    MayCommit,
}

/// Where a press is made. The steps before a licence's detail page cannot
/// commit a reset by their words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Login,
    Search,
    Detail,
    Confirmation,
}

impl Step {
    /// The page, as messages name it.
    pub fn page(self) -> &'static str {
        match self {
            Step::Login => "login",
            Step::Search => "search",
            Step::Detail => "detail",
            Step::Confirmation => "confirmation",
        }
    }

    fn on_the_way_to_a_reset(self) -> bool {
        matches!(self, Step::Detail | Step::Confirmation)
    }
}

/// What a press of the control worded `button` on `doc` may do (`None`: a
/// form kept from an earlier page). On the way to a reset, a button that
/// stands in a dialog (or an element hidden until shown) is a confirmation's
/// too, whatever its words: the labels may not be the portal's.
pub fn press_kind(step: Step, doc: Option<&Html>, button: &str, labels: &Labels) -> PressKind {
    let reset_step = step.on_the_way_to_a_reset();
    if (reset_step && html::is_label(button, &labels.confirm_button))
        || doc.is_some_and(|doc| {
            html::text_after(doc, &labels.associated_number).is_some()
                || (reset_step && html::button_in_dialog(doc, button))
        })
    {
        PressKind::MayCommit
    } else {
        PressKind::Harmless
    }
}

/// What a press does: send a form's request, or press a control of the
/// live page (the browser engine) that runs a script.
pub enum Action {
    Send(Req),
    Click(String),
}

/// A control pressed: what it does, and whether it may commit a reset.
pub struct Press {
    action: Action,
    kind: PressKind,
    step: Step,
    button: String,
}

impl Press {
    /// Presses the control `want` names in `form`, read from `doc` (the
    /// page of `step`).
    pub(super) fn of(
        doc: Option<&Html>,
        form: &Form,
        want: Want,
        step: Step,
        labels: &Labels,
    ) -> Result<Press, PortalError> {
        let pairs = form
            .submission(want.words)
            .map_err(|_| problem(step.page(), form.missing(want).into()))?;
        Ok(Press {
            action: Action::Send(Req::form(form.method_post, form.action.clone(), pairs)),
            kind: press_kind(step, doc, want.words, labels),
            step,
            button: want.words.to_string(),
        })
    }

    /// Presses the control at `path` of `doc` (the live page's snapshot),
    /// which runs a script of the page: only the browser engine can.
    pub(super) fn click(
        doc: &Html,
        path: String,
        want: Want,
        step: Step,
        labels: &Labels,
    ) -> Press {
        Press {
            action: Action::Click(path),
            kind: press_kind(step, Some(doc), want.words, labels),
            step,
            button: want.words.to_string(),
        }
    }

    pub fn kind(&self) -> PressKind {
        self.kind
    }

    /// What a press that commits nothing does. A press that may commit is
    /// refused, and nothing is sent.
    pub(super) fn harmless(self) -> Result<Action, PortalError> {
        match self.kind {
            PressKind::Harmless => Ok(self.action),
            PressKind::MayCommit => Err(PortalError::WouldCommit {
                step: self.step.page(),
                button: self.button,
            }),
        }
    }

    /// The request of a harmless press of a form's button.
    pub(super) fn harmless_request(self) -> Result<Req, PortalError> {
        match self.harmless()? {
            Action::Send(req) => Ok(req),
            Action::Click(_) => unreachable!("a form's press is a request"),
        }
    }

    /// What a press that may commit does, for the holder of a permit: at
    /// once, or, for a permit that waits for verdicts (the canary's, the
    /// whole resolution's), once every one of them is a go.
    /// `Interrupted` when one is a no-go or `cancel` came first: nothing
    /// was pressed.
    pub(super) async fn commit(
        self,
        permit: &CommitPermit,
        interruptions: &super::Interruptions,
    ) -> Result<Action, TransportError> {
        let cancel = &interruptions.reads;
        for verdict in &permit.after {
            let mut state = verdict.0.subscribe();
            let decided = tokio::select! {
                _ = cancel.cancelled() => return Err(TransportError::Interrupted),
                decided = state.wait_for(|s| *s != VerdictState::Pending) => decided,
            };
            if !decided.is_ok_and(|s| *s == VerdictState::Go) {
                return Err(TransportError::Interrupted);
            }
        }
        // Known before the press, and the press not made once stopped: an
        // interruption that finds nothing pressed has none to wait for.
        interruptions
            .pressed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if cancel.is_cancelled() {
            return Err(TransportError::Interrupted);
        }
        Ok(self.action)
    }
}

/// What sends a press that may commit a reset: only an open journal gives
/// one (`CommitPermit::journaled`), so a command without a journal cannot
/// commit.
#[derive(Debug, Clone)]
pub struct CommitPermit {
    /// The verdicts these presses wait for, if any.
    after: Vec<Arc<Verdict>>,
}

impl CommitPermit {
    /// The permit of a run whose journal is open and takes entries.
    pub(crate) fn journaled(_journal: &crate::vault::Journal) -> CommitPermit {
        CommitPermit { after: Vec::new() }
    }

    /// The same permit, whose presses also wait until `verdict` is a go:
    /// the resets walk up to their `Confirmer` meanwhile, and press it only
    /// then (the canary's resets, resets while resolution goes on).
    pub fn after(&self, verdict: &Arc<Verdict>) -> CommitPermit {
        let mut after = self.after.clone();
        after.push(verdict.clone());
        CommitPermit { after }
    }
}

/// A decision the presses held at the gate wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictState {
    Pending,
    Go,
    /// Failed, or the run stopped: the presses held are never made.
    NoGo,
}

/// What presses held at the gate wait for: the canary's success, or a
/// whole resolution with no row left unresolved.
#[derive(Debug)]
pub struct Verdict(tokio::sync::watch::Sender<VerdictState>);

impl Verdict {
    pub fn pending() -> Arc<Verdict> {
        Arc::new(Verdict(tokio::sync::watch::Sender::new(
            VerdictState::Pending,
        )))
    }

    /// Waits until it is settled: whether it is a go.
    pub async fn go(&self) -> bool {
        let mut state = self.0.subscribe();
        state
            .wait_for(|s| *s != VerdictState::Pending)
            .await
            .is_ok_and(|s| *s == VerdictState::Go)
    }

    /// Settles it, once: a later call changes nothing.
    pub fn settle(&self, state: VerdictState) {
        self.0.send_if_modified(|s| {
            let first = *s == VerdictState::Pending;
            if first {
                *s = state;
            }
            first
        });
    }
}

/// What the answer to a press that may have committed tells (see the
/// module's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    NotTaken,
    NotReadable,
    ReadWithoutPassword,
    /// It led outside the portal's origin: no further request makes sense.
    LeadsElsewhere,
}

/// The class of an answer that brought no page. A `403` or a `429` after
/// the press was taken (on the way to the result page) reaches here as a
/// status or as a failure: only the press's own answer can refuse it.
pub fn answer_of_error(e: &TransportError) -> Answer {
    match e {
        // A connection that could not be made: nothing was sent.
        TransportError::Forbidden
        | TransportError::RateLimited(_)
        | TransportError::Unreachable(_) => Answer::NotTaken,
        TransportError::Transient(_)
        | TransportError::ServerError(_)
        | TransportError::Silent
        | TransportError::Interrupted
        | TransportError::Engine(_)
        | TransportError::PageCrashed
        | TransportError::BrowserEnded => Answer::NotReadable,
        // The page that would show the password hangs: another reset would
        // cut the phone off again, for a page that hangs again.
        TransportError::PageHung { .. } => Answer::ReadWithoutPassword,
        // Nothing more is asked of a page that changed what a press sends.
        TransportError::ForeignOrigin { .. }
        | TransportError::ForeignResource { .. }
        | TransportError::Tampered(_) => Answer::LeadsElsewhere,
        TransportError::Status(..)
        | TransportError::TooManyRedirects
        | TransportError::TooLarge(_)
        | TransportError::Connect(_) => Answer::ReadWithoutPassword,
    }
}

/// The class of an answer to a press made in the browser: one that says
/// *not taken* may answer the browser's own second sending of a press whose
/// first was taken (seen with Chromium before each connection was used
/// once: a `Confirmer` posted by a script, its answer cut, posted again at
/// once and refused). Not readable, then: counted as a confirmation, and
/// the licence reset again.
pub fn in_the_browser(answer: Answer) -> Answer {
    match answer {
        Answer::NotTaken => Answer::NotReadable,
        other => other,
    }
}

/// The class of what the page's own requests were answered, when a press
/// ran a script: a `5xx` or no answer at all (status 0: the connection cut)
/// is not readable (the request may have been taken), a `403` or a `429`
/// not taken; `None` when they say nothing (the page then tells).
pub fn answer_of_scripts(answers: &[super::chromium::Answer]) -> Option<Answer> {
    use super::chromium::Answered;
    let status = answers
        .iter()
        .filter(|a| a.kind == Answered::Script)
        .map(|a| a.status)
        .find(|s| *s >= 400 || *s == super::chromium::NO_ANSWER)?;
    Some(match status {
        403 | 429 => Answer::NotTaken,
        super::chromium::NO_ANSWER | 500.. => Answer::NotReadable,
        _ => Answer::ReadWithoutPassword,
    })
}

/// The class of a page shown with an error status after a press (only the
/// browser shows one; the HTTP engine's are errors): a `429` or a `403` not
/// taken, a `5xx` not readable.
pub fn answer_of_document(status: u16) -> Option<Answer> {
    match status {
        403 | 429 => Some(Answer::NotTaken),
        500.. => Some(Answer::NotReadable),
        _ => None,
    }
}

/// The class of a page that answered and shows no password. The login
/// page means the press was not taken only when it answers the press itself,
/// or when the press's own answer redirected straight to it
/// (`login_address`: where this run found the login page, query included).
/// Reached otherwise (the press redirected to its result page, which then
/// showed the login page), the press was taken and its result lost with the
/// session: not readable.
pub fn answer_of_page(
    doc: &Html,
    labels: &Labels,
    fetched: &Fetched,
    login_address: Option<&url::Url>,
) -> Answer {
    if !html::is_login_page(doc, &labels.password_field) {
        return Answer::ReadWithoutPassword;
    }
    match fetched.hops {
        0 => Answer::NotTaken,
        1 if login_address.is_some() && fetched.first_redirect.as_ref() == login_address => {
            Answer::NotTaken
        }
        _ => Answer::NotReadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(hops: usize, first_redirect: Option<&str>) -> Fetched {
        let url = url::Url::parse("https://portal.example/index.php?page=result").unwrap();
        Fetched {
            url: url.clone(),
            address: url,
            body: zeroize::Zeroizing::new(String::new()),
            method: "GET",
            path: "/index.php".into(),
            status: 200,
            hops,
            first_redirect: first_redirect.map(|u| url::Url::parse(u).unwrap()),
            asked: None,
            screenshot: None,
        }
    }

    #[test]
    fn a_script_s_request_cut_is_not_readable() {
        use crate::portal::chromium::{Answer as Seen, Answered, NO_ANSWER};
        let seen = |status| Seen {
            kind: Answered::Script,
            status,
            retry_after: None,
        };
        assert_eq!(answer_of_scripts(&[seen(200)]), None);
        assert_eq!(
            answer_of_scripts(&[seen(200), seen(NO_ANSWER)]),
            Some(Answer::NotReadable)
        );
        assert_eq!(answer_of_scripts(&[seen(503)]), Some(Answer::NotReadable));
        assert_eq!(
            answer_of_scripts(&[seen(404)]),
            Some(Answer::ReadWithoutPassword)
        );
    }

    #[test]
    fn the_login_page_means_not_taken_only_as_the_press_s_own_answer() {
        let labels = Labels::default();
        let login = Html::parse_document(
            "<form><label for=p>Mot de passe</label><input id=p type=password></form>",
        );
        let address = url::Url::parse("https://portal.example/index.php?page=login").unwrap();
        let answer = |f: &Fetched| answer_of_page(&login, &labels, f, Some(&address));
        assert_eq!(answer(&fetched(0, None)), Answer::NotTaken);
        assert_eq!(
            answer(&fetched(
                1,
                Some("https://portal.example/index.php?page=login")
            )),
            Answer::NotTaken
        );
        // Same path, another query: the press went to its result page.
        assert_eq!(
            answer(&fetched(
                1,
                Some("https://portal.example/index.php?page=result")
            )),
            Answer::NotReadable
        );
        assert_eq!(
            answer(&fetched(
                2,
                Some("https://portal.example/index.php?page=login")
            )),
            Answer::NotReadable
        );
        let page = Html::parse_document("<p>Bonjour</p>");
        assert_eq!(
            answer_of_page(&page, &labels, &fetched(0, None), Some(&address)),
            Answer::ReadWithoutPassword
        );
    }
}
