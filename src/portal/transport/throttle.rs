//! The one throttle every request goes through, whichever the engine:
//! concurrency permits, `Retry-After` pauses, the rate limiter, and the
//! demand that tells when a session more would use the rate.

use super::*;

/// Which part of the run a request belongs to, for the request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Login = 0,
    Resolve = 1,
    Reset = 2,
}

impl Purpose {
    pub fn from_index(i: u8) -> Purpose {
        match i {
            0 => Purpose::Login,
            1 => Purpose::Resolve,
            _ => Purpose::Reset,
        }
    }
}

/// What the portal was asked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Requests {
    pub login: u64,
    pub resolve: u64,
    pub reset: u64,
    pub too_many: u64,
    pub retries: u64,
    pub sessions: u64,
    /// Requests per second from the first sent to the last (`None` under two).
    pub achieved_rate: Option<f64>,
    /// The time from the first request sent to the last.
    pub sending: Duration,
    /// Which engine performed the steps.
    pub engine: crate::portal::EngineRan,
}

impl Requests {
    pub fn of(stats: &Stats) -> Requests {
        Requests {
            login: stats.requests(Purpose::Login),
            resolve: stats.requests(Purpose::Resolve),
            reset: stats.requests(Purpose::Reset),
            too_many: stats.too_many_requests.load(Ordering::Relaxed),
            retries: stats.retries.load(Ordering::Relaxed),
            sessions: stats.sessions.load(Ordering::Relaxed),
            achieved_rate: stats.achieved_rate(),
            sending: stats.sending(),
            engine: stats.engine(),
        }
    }

    pub fn total(&self) -> u64 {
        self.login + self.resolve + self.reset
    }
}

/// Requests made, by phase, and how often the portal asked to slow down.
#[derive(Debug, Default)]
pub struct Stats {
    pub(super) by_phase: [AtomicU64; 3],
    pub too_many_requests: AtomicU64,
    pub retries: AtomicU64,
    /// Sessions opened (successful logins).
    pub sessions: AtomicU64,
    /// Whether a session ran in the browser.
    pub browser: std::sync::atomic::AtomicBool,
    /// When the first and the last request were sent: n requests at the
    /// full rate take n - 1 periods, which the rate shown is measured over.
    pub(super) sent_between: Mutex<Option<(Instant, Instant)>>,
}

impl Stats {
    pub fn requests(&self, phase: Purpose) -> u64 {
        self.by_phase[phase as usize].load(Ordering::Relaxed)
    }
    /// The engine that ran: the browser once one of its sessions started.
    pub fn engine(&self) -> crate::portal::EngineRan {
        if self.browser.load(Ordering::Relaxed) {
            crate::portal::EngineRan::Browser
        } else {
            crate::portal::EngineRan::Http
        }
    }

    pub fn total(&self) -> u64 {
        self.by_phase
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests per second from the first request sent to the last: what
    /// the rate limit bounds (`None` under two requests).
    pub fn achieved_rate(&self) -> Option<f64> {
        let (first, last) = (*self.sent_between.lock().unwrap())?;
        let span = last.duration_since(first).as_secs_f64();
        let n = self.total();
        (n >= 2 && span > 0.0).then(|| (n - 1) as f64 / span)
    }

    /// The time from the first request sent to the last.
    pub fn sending(&self) -> Duration {
        (*self.sent_between.lock().unwrap())
            .map_or(Duration::ZERO, |(first, last)| last.duration_since(first))
    }

    pub(super) fn sent_now(&self) {
        let now = Instant::now();
        let mut between = self.sent_between.lock().unwrap();
        let first = between.map_or(now, |(first, _)| first);
        *between = Some((first, now));
    }
}

/// Whether a request may be sent again after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Yes,
    /// A `Confirmer`: sending it again could reset twice; its redirects are still retried.
    FirstHopOnce,
    /// A login's form with credentials the portal has not accepted yet:
    /// sent again only when the portal answered it (a 5xx) or nothing
    /// reached it (no connection made). A portal that answers a wrong
    /// password later than --timeout would otherwise get it again at each
    /// try, each one a failed login against the account (found by a
    /// helper: three in a row); its redirects are still retried.
    Credentials,
}

/// What every session of a run shares: the concurrency gate, the rate
/// limiter, the `Retry-After` pause and the counters.
pub struct Throttle {
    pub(super) limiter: DefaultDirectRateLimiter,
    pub(super) in_flight: Semaphore,
    pub(super) paused_until: Mutex<Option<Instant>>,
    pub stats: Stats,
    /// The time between two requests at the full rate.
    pub(super) period: Duration,
    /// What tells the pool whether another session would be of use.
    pub(super) demand: Demand,
    /// The run is over: a session still opening sends nothing more. What
    /// is on its way is answered first, so that every request counted is
    /// one the portal got.
    pub(super) closed: CancellationToken,
}

/// Whether the rate has room the open sessions leave unused: requests held
/// back by the limiter (or a `Retry-After` pause) now or lately, the portal
/// failing requests, and how long a session takes from one request to its
/// next.
pub(super) struct Demand {
    /// When this throttle was made: the origin of the times below.
    pub(super) since: Instant,
    /// Requests held back right now.
    pub(super) held: AtomicUsize,
    /// Of those, the requests of sessions at work (see `Standing`).
    pub(super) working_held: AtomicUsize,
    /// When a request was last let go after being held back, or last failed
    /// for a reason worth a retry, in µs since `since`.
    pub(super) last_held_us: AtomicU64,
    /// A session's cycle, from sending a request to being ready to send its
    /// next (the answer, reading and parsing it, the work in between): a
    /// moving average in µs (0: none yet).
    pub(super) cycle_us: AtomicU64,
    /// Answers received so far.
    pub(super) answers: AtomicU64,
    /// When the portal last asked to slow down (429), in µs since `since`
    /// (0: never).
    last_429_us: AtomicU64,
    /// When each request now waiting for its answer was sent, by a number
    /// of its own: a page that takes long shows here before it is answered.
    pub(super) asked: Mutex<Vec<(u64, Instant)>>,
    pub(super) next_ask: AtomicU64,
}

impl Demand {
    pub(super) fn now_us(&self) -> u64 {
        self.since.elapsed().as_micros() as u64
    }

    /// Adds a sample to a moving average over about the last eight.
    pub(super) fn average_in(average: &AtomicU64, sample: Duration) {
        let sample = (sample.as_micros() as u64).max(1);
        // Two sessions racing here lose one sample, which an average can afford.
        let old = average.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        average.store(new.max(1), Ordering::Relaxed);
    }
}

/// A request waiting for the portal's answer, for as long as it waits.
pub(super) struct Asked<'a>(&'a Demand, u64);

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        let mut asked = self.0.asked.lock().unwrap();
        if let Some(i) = asked.iter().position(|(n, _)| *n == self.1) {
            asked.swap_remove(i);
        }
    }
}

/// A request of a session at work held back: counted while it waits.
struct WorkHeld<'a>(&'a Demand);

impl Drop for WorkHeld<'_> {
    fn drop(&mut self) {
        self.0.working_held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one session sent, by phase, and whether it is at work: shared by
/// the engines it runs in (HTTP, then the browser it moved to).
#[derive(Debug, Default)]
pub struct Tally {
    pub(crate) sent: [AtomicU64; 3],
    at_work: std::sync::atomic::AtomicBool,
}

impl Tally {
    /// The session logged in: its requests are work from now on.
    pub fn at_work(&self) {
        self.at_work.store(true, Ordering::Relaxed);
    }

    pub fn standing(&self) -> Standing {
        if self.at_work.load(Ordering::Relaxed) {
            Standing::Working
        } else {
            Standing::Opening
        }
    }
}

/// Whose request goes first at the limiter. A session still opening (its
/// first login) waits while a session at work has a request waiting: the
/// logins of sessions opened because the rate had room never hold up the
/// work that was waiting (on a portal answering in 200 ms, the first
/// session's resolution waited 185 ms behind the ramp's logins, on the path
/// every Confirmer waits for). A session opened when the rate is all used
/// is not needed: its login waits for a moment the work leaves free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Working,
    Opening,
}

/// A request held back by the limiter: counted while it waits, and its
/// release noted, also when the wait is cut short.
pub(super) struct Held<'a>(&'a Demand);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let d = self.0;
        d.last_held_us.fetch_max(d.now_us(), Ordering::Relaxed);
        d.held.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) const MAX_PAUSES: usize = 20;
pub(super) const LONGEST_PAUSE: Duration = Duration::from_secs(600);

impl Throttle {
    pub fn new(rate: f64, concurrency: usize) -> Throttle {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        // A burst of 10 ms worth of requests (1 below 100/s): a waiter woken a
        // little late by the timer would otherwise lose its slot for good,
        // and at high rates the run would fall well short of --rate.
        let burst = NonZeroU32::new((rate / 100.0).ceil().max(1.0) as u32).expect("at least 1");
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(burst);
        Throttle {
            limiter: RateLimiter::direct(quota),
            in_flight: Semaphore::new(concurrency.max(1)),
            paused_until: Mutex::new(None),
            stats: Stats::default(),
            period,
            demand: Demand {
                since: Instant::now(),
                held: AtomicUsize::new(0),
                working_held: AtomicUsize::new(0),
                last_held_us: AtomicU64::new(0),
                cycle_us: AtomicU64::new(0),
                answers: AtomicU64::new(0),
                last_429_us: AtomicU64::new(0),
                asked: Mutex::new(Vec::new()),
                next_ask: AtomicU64::new(0),
            },
            closed: CancellationToken::new(),
        }
    }

    /// No request takes its turn any more (see `closed`).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// The time between two requests at the full rate.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Whether the limiter held a request back, or the portal failed one,
    /// now or within `window`: the rate is in use (another session would
    /// only wait its turn), or the portal is struggling (another session
    /// would only add to its load).
    pub fn saturated(&self, window: Duration) -> bool {
        let d = &self.demand;
        if d.held.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let last = d.last_held_us.load(Ordering::Relaxed);
        last > 0 && d.now_us() <= last + window.as_micros() as u64
    }

    /// How long the limiter has held nothing back (nor the portal failed a
    /// request worth a retry): since this throttle was made if never.
    pub fn room_for(&self) -> Duration {
        let d = &self.demand;
        if d.held.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = d.last_held_us.load(Ordering::Relaxed);
        Duration::from_micros(d.now_us().saturating_sub(last))
    }

    /// How long a session takes from one request to its next: on average
    /// lately, or longer while a request has been waiting over twice that
    /// for its answer (a page stuck; the usual spread of answer times is in
    /// the average already); zero until a request was sent.
    pub fn cycle(&self) -> Duration {
        let average = Duration::from_micros(self.demand.cycle_us.load(Ordering::Relaxed));
        let longest = self
            .demand
            .asked
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| at.elapsed())
            .max()
            .unwrap_or_default();
        if longest > 2 * average {
            longest
        } else {
            average
        }
    }

    /// Answers received so far: the pool opens no session while the last
    /// one opened has seen none (a portal that hangs gets no more logins).
    pub fn answers(&self) -> u64 {
        self.demand.answers.load(Ordering::Relaxed)
    }

    /// Whether the portal asked to slow down (429) within `window`: its own
    /// limit is below `--rate`, and more sessions would only meet it sooner.
    pub fn slowed_down_within(&self, window: Duration) -> bool {
        let d = &self.demand;
        let last = d.last_429_us.load(Ordering::Relaxed);
        last > 0 && d.now_us() <= last + window.as_micros() as u64
    }

    /// Notes a request sent, until the guard is dropped.
    pub(super) fn ask(&self) -> Asked<'_> {
        let d = &self.demand;
        let n = d.next_ask.fetch_add(1, Ordering::Relaxed);
        d.asked.lock().unwrap().push((n, Instant::now()));
        Asked(d, n)
    }

    /// A request failed in a way worth a retry: the portal is struggling.
    pub(super) fn troubled(&self) {
        let d = &self.demand;
        d.last_held_us.fetch_max(d.now_us(), Ordering::Relaxed);
    }

    /// A request of the browser engine: its turn at the limiter (counted
    /// by `sent` once the browser sends it). `waiting` drops it before.
    pub async fn admit(
        &self,
        standing: Standing,
        waiting: &CancellationToken,
    ) -> Result<(), TransportError> {
        tokio::select! {
            _ = waiting.cancelled() => Err(TransportError::Interrupted),
            _ = self.closed.cancelled() => Err(TransportError::Interrupted),
            _ = self.turn(standing) => Ok(()),
        }
    }

    /// A request of the browser engine that the browser was let send,
    /// counted like any other.
    pub fn sent(&self, phase: Purpose) {
        self.stats.by_phase[phase as usize].fetch_add(1, Ordering::Relaxed);
        self.stats.sent_now();
    }

    /// Waits for this request's turn: any `Retry-After` pause, then the
    /// limiter, after the work waiting there (`Standing`).
    pub(super) async fn turn(&self, standing: Standing) {
        let d = &self.demand;
        let paused = self
            .paused_until
            .lock()
            .unwrap()
            .is_some_and(|t| t > Instant::now());
        let work_waits = || d.working_held.load(Ordering::Relaxed) > 0;
        let behind = standing == Standing::Opening && work_waits();
        if !paused && !behind && self.limiter.check().is_ok() {
            return;
        }
        d.held.fetch_add(1, Ordering::Relaxed);
        let _held = Held(d);
        self.wait_for_pause().await;
        match standing {
            Standing::Working => {
                d.working_held.fetch_add(1, Ordering::Relaxed);
                let _work = WorkHeld(d);
                self.limiter.until_ready().await;
            }
            // Looked at a few times a period, never while work waits.
            Standing::Opening => loop {
                if !work_waits() && self.limiter.check().is_ok() {
                    return;
                }
                tokio::time::sleep(self.period / 4).await;
            },
        }
    }

    pub(super) async fn wait_for_pause(&self) {
        loop {
            let until = *self.paused_until.lock().unwrap();
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    /// The portal answered 429 (to either engine): every request pauses
    /// `wait` seconds, and no session opens for a while.
    pub(super) fn slowed_down(&self, wait: u64) {
        self.stats.too_many_requests.fetch_add(1, Ordering::Relaxed);
        let d = &self.demand;
        d.last_429_us
            .fetch_max(d.now_us().max(1), Ordering::Relaxed);
        tracing::warn!(
            pause_seconds = wait,
            "the portal asked to slow down (429): every request pauses"
        );
        self.pause(Duration::from_secs(wait));
    }

    pub(super) fn pause(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after.min(LONGEST_PAUSE);
        let mut p = self.paused_until.lock().unwrap();
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }
}
