//! What goes wrong on the portal, typed: what the walk reports, and the
//! remedy a person can apply.

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("the portal refused the login: check the login, the password and the profile")]
    LoginRefused,
    /// The login's form got no answer: its credentials are not sent again
    /// (`Retry::Credentials`).
    #[error(
        "the portal did not answer the login ({why}): the credentials were not sent again, since a wrong password sent again counts against the account, and a portal may answer a wrong one late: check the login, the password and the profile, or give the portal more time (--timeout)"
    )]
    LoginUnanswered { why: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A page that does not show what the contract says.
    #[error("{page} page: {what}")]
    Contract { page: &'static str, what: String },
    /// A label not found, with what the page has instead.
    #[error("{page} page: {missing}")]
    Missing {
        page: &'static str,
        missing: Box<Missing>,
    },
    #[error("the portal session kept ending ({0} logins in a row without progress)")]
    SessionLoop(usize),
    /// The first page at `--portal` shows neither a login form nor the
    /// home page's `Mes Services`: another site, most likely.
    #[error(
        "the page at {address} shows no login form ('{password_field}') and no '{my_services}' link: is --portal the MyOpenIP portal's address? (if it is, and its words differ, set password_field and my_services in a labels file)"
    )]
    NotThePortal {
        address: String,
        password_field: String,
        my_services: String,
    },
    /// The address at `--portal` has no page (404) before any login page
    /// was seen: a wrong address or path, not a portal that failed.
    #[error(
        "{address} answered 404 Not Found: is --portal the MyOpenIP portal's address (its start or login page)?"
    )]
    NoPageAtTheAddress { address: String },
    /// The portal showed its login page or refused a form token: log in again.
    #[error("the portal session ended")]
    SessionEnded,
    /// The login that sent the credentials first ended without an answer
    /// that tells whether the portal took them: no other sends them (a
    /// wrong password would be sent again by each session waiting).
    #[error("the first login ended without telling whether the portal took the credentials")]
    CredentialsUnsettled,
    /// A press that may commit a reset, where the walk expects none (or in
    /// a command that never commits): refused by the gate, nothing sent.
    #[error(
        "pressing '{button}' on the {step} page may commit a reset (the button reads like confirm_button, or the page shows the confirmation): not pressed"
    )]
    WouldCommit { step: &'static str, button: String },
    /// A step the run needs is a control that runs a script of the page
    /// and leads nowhere in HTML: only a browser can press it.
    #[error(
        "the button '{control}' on the {page} page runs a script of the page (no form, no address, no dialog in the page): the HTTP engine does not run scripts (--engine auto, the default, moves to the browser there: see 'The two engines' in docs/operating.md)"
    )]
    NeedsScript { page: &'static str, control: String },
    /// A page of this session showed the password of the `Confirmer` whose
    /// answer was lost, on the way to reset the same licence again: that
    /// reset is done, and the walk stops before pressing anything.
    #[error("the portal showed the new password of the last Confirmer on a later page")]
    EarlierPasswordShown,
    /// A page showed a new password where none was expected: the portal
    /// committed a reset earlier than the walk thought, or shows an earlier
    /// one again. The password is kept (`Portal::take_stray`).
    #[error(
        "the portal showed a new password on the {page} page{}, where none was expected: a phone may have been cut off",
        licence.as_deref().map(|l| format!(" while walking to licence {l}")).unwrap_or_default()
    )]
    PasswordShown {
        page: &'static str,
        licence: Option<String>,
    },
}

/// What fixes a failure, told by its typed cause: the summary's hint is
/// chosen from it, never from the message's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// The portal's words differ from the labels looked for: a labels file
    /// (`--labels`), tried with `check` first.
    Labels,
    /// The portal failed for a while (no answer, a 5xx, 429s): the same
    /// command, later.
    RunAgain,
}

impl PortalError {
    /// What would fix it, when its cause says.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            // A page that went elsewhere by itself: no label fixes that.
            PortalError::Missing { missing, .. } if missing.went_on.is_none() => {
                Some(Remedy::Labels)
            }
            PortalError::Transport(e) if e.is_transient() => Some(Remedy::RunAgain),
            PortalError::Transport(TransportError::RateLimited(_))
            | PortalError::Transport(TransportError::PageHung { .. }) => Some(Remedy::RunAgain),
            _ => None,
        }
    }

    /// Errors after which no further request makes sense.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            PortalError::LoginRefused
                | PortalError::LoginUnanswered { .. }
                | PortalError::NotThePortal { .. }
                | PortalError::NoPageAtTheAddress { .. }
                | PortalError::SessionLoop(_)
                | PortalError::WouldCommit { .. }
                | PortalError::PasswordShown { .. }
                | PortalError::NeedsScript { .. }
                | PortalError::Transport(TransportError::ForeignOrigin { .. })
                | PortalError::Transport(TransportError::ForeignResource { .. })
                | PortalError::Transport(TransportError::Engine(_))
                | PortalError::Transport(TransportError::Tampered(_))
        ) || matches!(self, PortalError::Transport(e) if e.is_permanent())
    }
}

/// Why a reset did not give a password.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Nothing was confirmed: the password did not change.
    #[error("{0}")]
    NotDone(PortalError),
    /// `Confirmer` was sent but no password came back: it may have changed.
    #[error("outcome unknown after Confirmer: {reason}")]
    Unknown { reason: String, next: AfterUnknown },
    /// The detail page shows a phone that an earlier run reset: nothing done.
    #[error("reset by an earlier run (account code {accountcode})")]
    AlreadyReset { accountcode: String },
}

/// What to do after a `Confirmer` whose password is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterUnknown {
    /// A cut connection, a 5xx, an ended session: a new reset can be
    /// expected to show the password.
    ResetAgain,
    /// The portal answered with a page that does not hold the password (a
    /// changed portal): resetting again would cut the phone off for nothing.
    GiveUp,
    /// The portal led outside its origin: no further request makes sense.
    StopRun,
    /// The operator abandoned the press in flight (a second signal).
    Abandoned,
}

/// Why a page could not be read as the contract says.
pub enum Problem {
    /// A label is not on it.
    Missing(Missing),
    /// It shows something else than expected (another licence, number...).
    Mismatch(String),
}

impl From<Missing> for Problem {
    fn from(m: Missing) -> Problem {
        Problem::Missing(m)
    }
}

impl From<String> for Problem {
    fn from(s: String) -> Problem {
        Problem::Mismatch(s)
    }
}

pub(crate) fn problem(page: &'static str, p: Problem) -> PortalError {
    match p {
        Problem::Missing(m) => PortalError::Missing {
            page,
            missing: Box::new(m),
        },
        Problem::Mismatch(what) => PortalError::Contract { page, what },
    }
}
