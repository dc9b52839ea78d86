//! Time behind a trait, so leases, backoff and the engine's timers are tested without real waiting.
//!
//! A clock gives two readings: wall time in Unix milliseconds (stored with sales and leases) and a
//! monotonic reading for the engine's deadlines (a wall clock that a user or NTP sets back must not
//! park the interval timer for an hour). [`ManualClock`] moves both only when told to, and wakes the
//! engines that wait on it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Called when a clock jumps (see [`Clock::on_advance`]); returns `false` once whoever it wakes is
/// gone, and is then dropped.
pub type Waker = Box<dyn Fn() -> bool + Send + Sync>;

/// A source of time.
pub trait Clock: Send + Sync {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;

    /// Milliseconds on a clock that never goes back, from an arbitrary origin: the engine's deadlines.
    /// Defaults to [`Clock::now_ms`].
    fn monotonic_ms(&self) -> i64 {
        self.now_ms()
    }

    /// Registers `wake`, called each time this clock jumps ahead by itself (a test moving a
    /// [`ManualClock`]), so that a thread waiting for a deadline on it looks again. Clocks that follow
    /// real time never jump and ignore it (the default).
    fn on_advance(&self, wake: Waker) {
        drop(wake);
    }
}

/// The system clock: wall time from `SystemTime`, deadlines from `Instant`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }

    fn monotonic_ms(&self) -> i64 {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        i64::try_from(ORIGIN.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Default)]
pub struct ManualClock {
    now: AtomicI64,
    wakers: Mutex<Vec<Waker>>,
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now_ms()).finish()
    }
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: i64) -> Self {
        ManualClock { now: AtomicI64::new(start_ms), wakers: Mutex::new(Vec::new()) }
    }

    /// Moves the clock forward by `ms` and wakes whoever waits on it.
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
        self.wakers.lock().retain(|wake| wake());
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn on_advance(&self, wake: Waker) {
        self.wakers.lock().push(wake);
    }
}
