//! The run's vocabulary, below every phase: what a run tells while it goes
//! (`Event`, `ResolveProgress`), the question it asks before the first
//! reset, who listens (`Observer`), and what interrupts it. The library's
//! runs (`rotation`, `status`) speak it; the command line renders it.

use crate::report::ReportRow;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How resolution is going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolveProgress {
    pub clients: usize,
    pub clients_read: usize,
    /// MetaCentrex services found so far, and their users tables read.
    pub services: usize,
    pub services_read: usize,
    /// Pages read for resolution.
    pub pages: u64,
}

/// What a run tells while it goes.
#[derive(Debug)]
pub enum Event<'a> {
    LoggedIn,
    Resolving(ResolveProgress),
    /// Licences to reset so far (more may come while clients resolve).
    Planned(usize),
    /// A licence is done with: reset, failed, or skipped by a stop.
    Done(&'a ReportRow),
}

/// The question asked before the first reset.
#[derive(Debug, Clone)]
pub struct Question {
    pub resets: usize,
    /// Of those phones, the ones registered now (`État`: in use).
    pub in_use: usize,
    /// And those whose `État` says neither (not shown, or another word).
    pub state_unknown: usize,
}

/// Who listens to a run. Results flow to one collector; the observer only
/// listens, and answers the question.
pub trait Observer: Sync {
    fn event(&self, event: Event<'_>);
    /// Asks `question`; the answer comes on the channel (a dropped sender
    /// is a no). The run stops waiting if it is interrupted meanwhile.
    fn confirm(&self, question: &Question) -> oneshot::Receiver<bool>;
}

/// What stops a run: `stop` at the first signal (no new reset, pending
/// reads dropped, the `Confirmer` in flight finishes), `abort` at the
/// second (the `Confirmer` in flight is abandoned too). The portal client
/// must be made with the same tokens (`portal_interruptions`).
#[derive(Debug, Clone, Default)]
pub struct Interruption {
    pub stop: CancellationToken,
    pub abort: CancellationToken,
    /// Whether a press that may commit went (see `portal::Interruptions`).
    pub pressed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Interruption {
    pub fn portal_interruptions(&self) -> crate::portal::Interruptions {
        crate::portal::Interruptions {
            reads: self.stop.clone(),
            confirmations: self.abort.clone(),
            pressed: self.pressed.clone(),
        }
    }
}
