//! Sessions on demand: the portal's logged-in browsers, opened as the rate
//! needs them, lent one task at a time (`Portal::lease`), all under one
//! throttle.

use super::*;

pub(super) const MAX_SESSION_ATTEMPTS: usize = 4;
/// The shortest wait for a busy browser before asking whether to open one more.
pub(super) const MIN_PATIENCE: Duration = Duration::from_millis(10);
/// How long after a 429 no session is opened: the portal's own limit is
/// below `--rate`, and the sessions open already reach it.
pub(super) const SLOWED_DOWN_MEMORY: Duration = Duration::from_secs(60);
/// The most sessions the browser engine opens: two a core.
pub(super) fn browser_sessions_at_most() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many periods of the rate the limiter must have held nothing back
/// before one more session opens whatever a session's cycle says.
pub(super) const ROOM_PERIODS: u32 = 4;
pub(super) const MAX_PAGES: usize = 10_000;

/// Where a table walk starts: a link, or a search form filled in the live session.
pub(super) enum WalkStart<'a> {
    Link(Url),
    Search(&'a (dyn Fn(Form) -> Result<Req, PortalError> + Send + Sync)),
}

/// Where the portal stands with the run's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Standing {
    /// No login has been answered yet.
    #[default]
    Unproven,
    /// A login sent them and waits for its answer; the others wait too.
    Proving,
    Accepted,
    Refused,
    /// The login that sent them ended without an answer that tells (an
    /// error, an interruption): the run stops on it, and nobody sends
    /// them again meanwhile.
    Unsettled,
}

/// One login at a time sends the credentials until the portal accepted
/// them: a wrong password is sent once, not by every session the rate
/// wants at once (a portal may lock an account after a few failures). The
/// others get their login page meanwhile, and send theirs as soon as one
/// was accepted.
#[derive(Default)]
pub(super) struct Proof(tokio::sync::watch::Sender<Standing>);

impl Proof {
    pub(super) fn refused(&self) -> bool {
        *self.0.borrow() == Standing::Refused
    }

    /// Waits until this login may send the credentials: at once once they
    /// were accepted, or as the one that proves them when nobody has.
    pub(super) async fn turn(&self) -> Result<ProofTurn<'_>, PortalError> {
        let mut seen = self.0.subscribe();
        let mut proving = false;
        self.0.send_if_modified(|now| {
            proving = *now == Standing::Unproven;
            if proving {
                *now = Standing::Proving;
            }
            proving
        });
        if !proving {
            // The sender is `self`'s: it outlives this wait.
            let _ = seen.wait_for(|now| *now != Standing::Proving).await;
            match *seen.borrow() {
                Standing::Accepted => {}
                Standing::Refused => return Err(PortalError::LoginRefused),
                _ => return Err(PortalError::CredentialsUnsettled),
            }
        }
        Ok(ProofTurn {
            proof: self,
            proving,
        })
    }
}

/// A login's turn to send the credentials. The first one's, dropped
/// unsettled (an error that says nothing of the credentials), leaves them
/// unsettled for good: the run stops on that error.
pub(super) struct ProofTurn<'a> {
    proof: &'a Proof,
    proving: bool,
}

impl ProofTurn<'_> {
    /// Whether this login sends credentials the portal has not accepted
    /// yet: a wrong password, maybe.
    pub(super) fn proving(&self) -> bool {
        self.proving
    }

    /// What the portal answered: the login was `accepted` or refused.
    pub(super) fn settle(mut self, accepted: bool) {
        self.proving = false;
        self.proof.0.send_replace(if accepted {
            Standing::Accepted
        } else {
            Standing::Refused
        });
    }
}

impl ProofTurn<'_> {
    /// The answer told of the address, not of the credentials (a login
    /// page found earlier that no longer takes them): the next login, from
    /// the portal's own address, proves them.
    pub(super) fn release(mut self) {
        if std::mem::take(&mut self.proving) {
            self.proof.0.send_replace(Standing::Unproven);
        }
    }
}

impl Drop for ProofTurn<'_> {
    fn drop(&mut self) {
        if self.proving {
            self.proof.0.send_replace(Standing::Unsettled);
        }
    }
}

impl Shared {
    /// Where this run found the login page, if it did.
    pub(super) fn login_address(&self) -> Option<Url> {
        self.login_address.borrow().clone()
    }
}

impl Shared {
    /// A new session's transport: in the browser once the run uses it.
    pub(super) fn transport(&self) -> Result<Transport, TransportError> {
        if self.in_browser.load(Ordering::SeqCst) {
            Ok(self.browser_transport(None))
        } else {
            Transport::new(
                self.throttle.clone(),
                self.timeout,
                self.start.origin(),
                self.interruptions.clone(),
                &self.trust,
            )
        }
    }
}

impl Shared {
    /// A session in the browser; `handed`: the cookies of the HTTP session
    /// it carries on.
    pub(super) fn browser_transport(&self, handed: Option<transport::HandedCookies>) -> Transport {
        Transport::in_browser(
            self.engine.clone(),
            self.throttle.clone(),
            self.start.origin(),
            self.interruptions.clone(),
            handed,
        )
    }
}

/// Whether a login starts at the address where the run found the login page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shortcut {
    Taken,
    None,
}

/// What a session moving to the browser engine does with the portal's
/// session it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handover {
    /// Carried on in the browser: its cookies go with it.
    CarriedOn,
    /// Left: the browser logs in (`check` walks every step again).
    LogInAgain,
}

/// What every browser of a run shares.
pub(super) struct Shared {
    pub(super) labels: Labels,
    pub(super) start: Url,
    pub(super) credentials: Credentials,
    pub(super) timeout: Duration,
    pub(super) throttle: Arc<Throttle>,
    /// Whether the portal took the credentials: one login at a time sends
    /// them until one was accepted; once one was refused, none does.
    pub(super) proof: Proof,
    pub(super) interruptions: Interruptions,
    /// New passwords pages showed where none was expected, until the run
    /// takes them to its journal.
    pub(super) stray: Mutex<Vec<Stray>>,
    /// The address where the login page was found: a press sent straight
    /// there was not taken. Watched: the sessions the rate needs open as
    /// soon as the first finds it (see `Portal::connect`).
    pub(super) login_address: tokio::sync::watch::Sender<Option<Url>>,
    pub(super) engine_choice: EngineChoice,
    /// The browser engine, started at its first session.
    pub(super) engine: Arc<chromium::Engine>,
    /// New sessions open in the browser (`--engine browser`, or `auto`
    /// once a step needed a script).
    pub(super) in_browser: AtomicBool,
    /// A run that will reset, with `--engine auto`: the first licence
    /// resolved has its detail page read once, to start the browser ahead
    /// if its reset needs a script (see `Portal::look_ahead`).
    pub(super) look_ahead: AtomicBool,
    pub(super) capture: Option<Arc<capture::Capture>>,
    /// Authorities trusted beside the system's (`--ca-file`).
    pub(super) trust: transport::Trust,
}

/// Who asks for a browser. Resets go first: a licence already resolved is
/// reset while other services still resolve, and resolution takes the
/// sessions that resets leave idle, so the portal's rate is never left unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Reset = 0,
    Resolve = 1,
}

/// The browsers of a run: at most `concurrency` of them, idle or leased,
/// opened one by one as the rate needs them (each is a login the portal logs).
pub(super) struct Pool {
    /// Browsers that may still be created.
    pub(super) unborn: usize,
    pub(super) idle: Vec<Browser>,
    /// Who waits for a browser, by priority, first come first served.
    pub(super) waiting: [std::collections::VecDeque<oneshot::Sender<Lease>>; 2],
    /// Whether one of the waiters watches for room the rate leaves unused
    /// (the others only wait: thousands of them must not all poll).
    pub(super) watched: bool,
    /// The portal's answers counted when the last browser was opened.
    pub(super) answers_at_last_opening: u64,
    /// When the last browser was opened.
    pub(super) last_opening: Option<std::time::Instant>,
}

impl Pool {
    /// Takes the place of one more browser, about to be opened.
    pub(super) fn reserve(&mut self, answers: u64) {
        self.unborn -= 1;
        self.answers_at_last_opening = answers;
        self.last_opening = Some(std::time::Instant::now());
    }
}

/// How long the end of a run waits for the sessions still logging in.
const OPENINGS_ENDED_WITHIN: Duration = Duration::from_secs(3);

/// The portal as a run sees it: a source of browsers, logged in as needed.
pub struct Portal {
    pub(super) shared: Arc<Shared>,
    pub(super) concurrency: usize,
    pub(super) pool: Mutex<Pool>,
    /// Wakes a waiter to take over the watch when the watcher leaves.
    pub(super) watch_free: tokio::sync::Notify,
    /// Sessions logging in beside the work (`open_in_background`).
    pub(super) openings: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The watch over the pool, held by one waiter; given up when dropped.
pub(super) struct Watch<'a>(&'a Portal);

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.0.pool.lock().unwrap().watched = false;
        self.0.watch_free.notify_one();
    }
}

/// A browser borrowed from the portal; it goes to the next in line, or back
/// to the idle ones, when dropped.
pub struct Lease {
    pub(super) portal: Arc<Portal>,
    pub(super) browser: Option<Browser>,
}

impl std::ops::Deref for Lease {
    type Target = Browser;
    fn deref(&self) -> &Browser {
        self.browser.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Browser {
        self.browser.as_mut().expect("present until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(b) = self.browser.take() {
            self.portal.give_back(b);
        }
    }
}

impl Portal {
    /// At most `concurrency` browsers, all behind one limiter of `rate`
    /// requests per second, their requests cut short by `interruptions`.
    pub fn new(settings: PortalSettings, interruptions: Interruptions) -> Portal {
        let concurrency = settings.concurrency.max(1);
        // From here on nothing written shows them.
        let credentials = &settings.credentials;
        crate::scrub::remember(credentials.password.expose_secret(), Secret::Credential);
        crate::scrub::remember(&credentials.login, Secret::Credential);
        Portal {
            shared: Arc::new(Shared {
                labels: settings.labels,
                start: settings.start,
                credentials: settings.credentials,
                timeout: settings.timeout,
                throttle: Arc::new(Throttle::new(settings.rate, concurrency)),
                proof: Proof::default(),
                interruptions,
                stray: Mutex::new(Vec::new()),
                login_address: tokio::sync::watch::Sender::new(None),
                engine_choice: settings.engine,
                engine: Arc::new(chromium::Engine::new(
                    settings.browser,
                    settings.timeout,
                    settings.allow_origins,
                    settings.trust.clone(),
                    settings.capture.is_some(),
                )),
                trust: settings.trust,
                in_browser: AtomicBool::new(settings.engine == EngineChoice::Browser),
                look_ahead: AtomicBool::new(false),
                capture: settings.capture,
            }),
            concurrency,
            pool: Mutex::new(Pool {
                unborn: concurrency,
                idle: Vec::new(),
                waiting: Default::default(),
                watched: false,
                answers_at_last_opening: 0,
                last_opening: None,
            }),
            watch_free: tokio::sync::Notify::new(),
            openings: Mutex::new(Vec::new()),
        }
    }

    /// The run is about to resolve licences it will reset. With `--engine
    /// auto`, the first licence resolved has its detail page read (once,
    /// before any reset): if its reset needs a script, the browser starts
    /// in the background while resolution goes on, and is ready when the
    /// canary's walk moves to it (starting it takes about a second, which
    /// every reset would otherwise wait for). Nothing else changes: the
    /// move itself is the walk's, at the canary's detail page.
    pub fn look_ahead(&self) {
        if self.shared.engine_choice == EngineChoice::Auto {
            self.shared.look_ahead.store(true, Ordering::SeqCst);
        }
    }

    /// The new passwords pages showed where none was expected, taken once.
    pub fn take_stray(&self) -> Vec<Stray> {
        std::mem::take(&mut *self.shared.stray.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Which engine ran: `http`, or `browser` once a session used it.
    /// The words looked for on the portal's pages.
    pub fn labels(&self) -> &Labels {
        &self.shared.labels
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.throttle.stats
    }

    /// Waits for a free browser: an idle one (logged in, unless its session
    /// ended), the first one, the next one given back (resets first), or a
    /// new one when the rate has room that the open browsers leave unused.
    pub async fn lease(self: &Arc<Self>, priority: Priority) -> Result<Lease, PortalError> {
        let mut waiting = {
            let mut pool = self.pool.lock().unwrap();
            if let Some(b) = pool.idle.pop() {
                return Ok(self.lent(b));
            }
            if pool.unborn == self.concurrency {
                pool.unborn -= 1;
                drop(pool);
                return self.open().map(|b| self.lent(b));
            }
            let (tx, rx) = oneshot::channel();
            pool.waiting[priority as usize].push_back(tx);
            rx
        };
        // Every browser is busy. Waiting is right while the limiter holds
        // requests back (another session would only queue behind them); when
        // it has held none back for a while, the rate has room the open
        // sessions cannot fill, and one more is opened. One waiter watches
        // for that; the others only wait.
        let patience = self.shared.throttle.period().max(MIN_PATIENCE);
        let mut watch: Option<Watch> = None;
        loop {
            if watch.is_none() {
                watch = self.take_watch();
            }
            // The sender lives in the pool until a browser is handed over.
            let handed = "the pool outlives its waiters";
            if watch.is_none() || self.pool.lock().unwrap().unborn == 0 {
                tokio::select! {
                    lease = &mut waiting => return Ok(lease.expect(handed)),
                    _ = self.watch_free.notified(), if watch.is_none() => continue,
                }
            }
            tokio::select! {
                lease = &mut waiting => return Ok(lease.expect(handed)),
                _ = tokio::time::sleep(patience) => {}
            }
            if self.may_open_another(patience) {
                // It logs in on its own, then goes to the first in line:
                // this waiter takes whichever browser is ready first, this
                // one or one given back meanwhile.
                self.open_in_background(self.open()?);
            }
        }
    }

    /// The watch, if no other waiter holds it.
    pub(super) fn take_watch(&self) -> Option<Watch<'_>> {
        let mut pool = self.pool.lock().unwrap();
        if pool.watched {
            return None;
        }
        pool.watched = true;
        Some(Watch(self))
    }

    /// Whether one more browser is worth a login: fewer than `concurrency`
    /// exist, the portal answered since the last one was opened and did not
    /// ask to slow down (429) in the last minute, and the rate has room the
    /// open ones leave unused. That is so when a session's cycle says the
    /// rate needs more sessions than are open while the limiter holds
    /// nothing back (the ramp), or, whatever the cycle says, when the
    /// limiter has held nothing back for `ROOM_PERIODS` periods since the
    /// last one was opened (an estimate a little short, time a session
    /// spends between two licences, would otherwise leave the rate unused
    /// for the whole run). A waiter asks only when every open browser is
    /// busy. Reserves its place.
    pub(super) fn may_open_another(&self, patience: Duration) -> bool {
        let throttle = &self.shared.throttle;
        let mut pool = self.pool.lock().unwrap();
        if pool.unborn == 0
            || throttle.slowed_down_within(SLOWED_DOWN_MEMORY)
            || throttle.answers() <= pool.answers_at_last_opening
        {
            return false;
        }
        // A session still logging in counts as open, so that waiters do not
        // open more than the rate can use while it does.
        let open = self.concurrency - pool.unborn;
        if open >= self.sessions_at_most() {
            return false;
        }
        let ramp = open < self.sessions_needed() && !throttle.saturated(patience);
        let long_room = ROOM_PERIODS * throttle.period();
        let unused = throttle.room_for() >= long_room
            && pool.last_opening.is_none_or(|t| t.elapsed() >= long_room);
        if !(ramp || unused) {
            return false;
        }
        pool.reserve(throttle.answers());
        true
    }

    /// How many sessions may be open: `--concurrency`, and in the browser
    /// no more than two contexts a core (each costs a renderer, about 120
    /// MiB, and CPU: more only compete for the machine).
    pub(super) fn sessions_at_most(&self) -> usize {
        if self.shared.in_browser.load(Ordering::SeqCst) {
            self.in_the_browser_at_most()
        } else {
            self.concurrency
        }
    }

    fn in_the_browser_at_most(&self) -> usize {
        self.concurrency.min(browser_sessions_at_most())
    }

    /// The sessions the run can count on, whatever happens later: an
    /// `auto` run may move to the browser at any step, and there no more
    /// than its cap open. Workers parked at a gate hold theirs, so the
    /// rotation keeps their number below this, or resolution would wait
    /// for a session forever.
    pub fn sessions_assured(&self) -> usize {
        match self.shared.engine_choice {
            EngineChoice::Http => self.concurrency,
            EngineChoice::Auto | EngineChoice::Browser => self.in_the_browser_at_most(),
        }
    }

    /// Sessions the rate keeps busy: one cycle over the time between two
    /// requests (at least one).
    pub fn sessions_needed(&self) -> usize {
        let throttle = &self.shared.throttle;
        ((throttle.cycle().as_secs_f64() / throttle.period().as_secs_f64()).ceil() as usize).max(1)
    }

    /// Logs `browser` in, then gives it to the first in line (or idle). A
    /// login that fails here is tried again by its first lease.
    pub(super) fn open_in_background(self: &Arc<Self>, mut browser: Browser) {
        let portal = self.clone();
        let opening = tokio::spawn(async move {
            let _ = browser.session().await;
            portal.give_back(browser);
        });
        let mut openings = self.openings.lock().unwrap();
        openings.retain(|o| !o.is_finished());
        openings.push(opening);
    }

    /// The run is over: sessions still logging in send nothing more, and
    /// their requests on the way are answered before the counts are read
    /// (a run's last second opened one, whose login page the portal
    /// served, and the summary had counted a request more or less than the
    /// portal got).
    pub async fn end_openings(&self) {
        self.shared.throttle.close();
        let openings = std::mem::take(&mut *self.openings.lock().unwrap());
        // Bounded: a session stuck in its browser (a busy machine, a page
        // that does not answer) held the end of a finished run for minutes.
        let aborts: Vec<_> = openings.iter().map(|o| o.abort_handle()).collect();
        let all = futures::future::join_all(openings);
        if tokio::time::timeout(OPENINGS_ENDED_WITHIN, all)
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
    }

    /// A new browser, its place in the pool already reserved.
    pub(super) fn open(&self) -> Result<Browser, PortalError> {
        match self.shared.transport() {
            Ok(transport) => Ok(Browser {
                shared: self.shared.clone(),
                transport,
                my_services: None,
                search: None,
                login_number: 0,
                confirmed_in: AtomicU64::new(0),
                walking: None,
                unsettled: Mutex::new(None),
                recovered: Mutex::new(None),
                unread_confirmer: AtomicBool::new(false),
            }),
            Err(e) => {
                self.pool.lock().unwrap().unborn += 1;
                Err(e.into())
            }
        }
    }

    pub(super) fn lent(self: &Arc<Self>, browser: Browser) -> Lease {
        Lease {
            portal: self.clone(),
            browser: Some(browser),
        }
    }

    /// A browser comes back: to the first waiter still waiting, else idle.
    pub(super) fn give_back(self: &Arc<Self>, mut browser: Browser) {
        browser.transport.rest();
        let mut pool = self.pool.lock().unwrap();
        for priority in [Priority::Reset, Priority::Resolve] {
            while let Some(waiter) = pool.waiting[priority as usize].pop_front() {
                match waiter.send(self.lent(browser)) {
                    Ok(()) => return,
                    // That waiter gave up (its task ended): the next one.
                    Err(mut lease) => browser = lease.browser.take().expect("just lent"),
                }
            }
        }
        pool.idle.push(browser);
    }

    /// Logs one browser in, to fail fast when the login is refused.
    ///
    /// `work`: how many pieces of work will follow (the input's rows), at
    /// most as many sessions as that are worth opening.
    ///
    /// The sessions the rate needs start as soon as the first one found
    /// the login page: they get theirs while the first one logs in, and
    /// send their credentials once the portal accepted its (a slow
    /// portal's first second went by at one session's pace).
    pub async fn connect(self: &Arc<Self>, work: usize) -> Result<(), PortalError> {
        let mut first = self.lease(Priority::Resolve).await?;
        let early = {
            let portal = self.clone();
            let mut found = self.shared.login_address.subscribe();
            tokio::spawn(async move {
                if found.wait_for(Option::is_some).await.is_ok() {
                    portal.ramp_up(work);
                }
            })
        };
        let logged_in = first.session().await;
        early.abort();
        logged_in?;
        self.ramp_up(work);
        Ok(())
    }

    /// Once the first session found the login page, and again once it
    /// logged in: the sessions the rate will keep busy (one cycle of the
    /// first session over the period, at most `work`) log in at once,
    /// beside the first session's walk (their credentials wait for the
    /// first's to be accepted: see `Proof`). Opened one
    /// by one as waiters find the limiter idle, a slow portal's first
    /// seconds went by at one session's pace. A fast portal needs one
    /// session: nothing opens.
    pub(super) fn ramp_up(self: &Arc<Self>, work: usize) {
        let throttle = &self.shared.throttle;
        let needed = self
            .sessions_needed()
            .min(work.max(1))
            .min(self.sessions_at_most());
        if throttle.slowed_down_within(SLOWED_DOWN_MEMORY) {
            return;
        }
        loop {
            {
                let mut pool = self.pool.lock().unwrap();
                let open = self.concurrency - pool.unborn;
                if pool.unborn == 0 || open >= needed {
                    return;
                }
                pool.reserve(throttle.answers());
            }
            match self.open() {
                Ok(browser) => self.open_in_background(browser),
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The logins that wait while the first sends the credentials: they
    /// send theirs once it was accepted, never after a refusal, nor after
    /// a first login that ended without telling (a wrong password would be
    /// sent again by each of them, one after the other).
    #[tokio::test]
    async fn only_an_accepted_first_login_lets_the_others_send_the_credentials() {
        for (end, others_may) in [(Some(true), true), (Some(false), false), (None, false)] {
            let proof = Proof::default();
            let first = proof.turn().await.expect("nobody proves yet");
            let waiting = async {
                let others: Vec<bool> =
                    futures::future::join_all((0..3).map(|_| async { proof.turn().await.is_ok() }))
                        .await;
                others
            };
            let settle = async {
                tokio::task::yield_now().await;
                match end {
                    Some(accepted) => first.settle(accepted),
                    None => drop(first),
                }
            };
            let (others, ()) = tokio::join!(waiting, settle);
            assert_eq!(others, vec![others_may; 3], "{end:?}");
        }
    }

    /// A refusal at a login page found earlier tells of that address, not
    /// of the credentials: the next login proves them.
    #[tokio::test]
    async fn a_login_released_lets_the_next_one_prove() {
        let proof = Proof::default();
        proof.turn().await.unwrap().release();
        let next = proof.turn().await.unwrap();
        assert!(next.proving);
    }
}
