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

use super::html::{self, Form, Want};
use super::labels::Labels;
use super::transport::{Fetched, Req, TransportError};
use super::{PortalError, problem};
use scraper::Html;

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

/// A form pressed: the request it sends, and whether it may commit a reset.
pub struct Press {
    req: Req,
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
            req: Req::form(form.method_post, form.action.clone(), pairs),
            kind: press_kind(step, doc, want.words, labels),
            step,
            button: want.words.to_string(),
        })
    }

    pub fn kind(&self) -> PressKind {
        self.kind
    }

    /// The request of a press that commits nothing. A press that may
    /// commit is refused, and nothing is sent.
    pub(super) fn harmless(self) -> Result<Req, PortalError> {
        match self.kind {
            PressKind::Harmless => Ok(self.req),
            PressKind::MayCommit => Err(PortalError::WouldCommit {
                step: self.step.page(),
                button: self.button,
            }),
        }
    }

    /// The request of a press that may commit, for the holder of a permit.
    pub(super) fn commit(self, _permit: &CommitPermit) -> Req {
        self.req
    }
}

/// What sends a press that may commit a reset: only an open journal gives
/// one (`Journal::permit`), so a command without a journal cannot commit.
#[derive(Debug, Clone)]
pub struct CommitPermit {
    _only_from_a_journal: (),
}

impl CommitPermit {
    /// The permit of a run whose journal is open and takes entries.
    pub(crate) fn journaled(_journal: &crate::vault::Journal) -> CommitPermit {
        CommitPermit {
            _only_from_a_journal: (),
        }
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
        TransportError::Forbidden | TransportError::RateLimited(_) => Answer::NotTaken,
        TransportError::Transient(_) | TransportError::Interrupted => Answer::NotReadable,
        TransportError::ForeignOrigin { .. } => Answer::LeadsElsewhere,
        TransportError::Status(_)
        | TransportError::TooManyRedirects
        | TransportError::TooLarge(_)
        | TransportError::Connect(_) => Answer::ReadWithoutPassword,
    }
}

/// The class of a page that answered and shows no password. The login
/// page means the press was not taken only when it answers the press itself,
/// or when the press was sent straight to it (`login_path`: where this run
/// found the login page). Reached otherwise (the press redirected to its
/// result page, which then showed the login page), the press was taken and
/// its result lost with the session: not readable.
pub fn answer_of_page(
    doc: &Html,
    labels: &Labels,
    fetched: &Fetched,
    login_path: Option<&str>,
) -> Answer {
    if !html::is_login_page(doc, &labels.password_field) {
        return Answer::ReadWithoutPassword;
    }
    match fetched.hops {
        0 => Answer::NotTaken,
        1 if login_path == Some(fetched.path.as_str()) => Answer::NotTaken,
        _ => Answer::NotReadable,
    }
}
