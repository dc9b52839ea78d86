//! Audit retention: delete audit rows older than a number of days, once or on a background thread.
//!
//! The audit trail grows by one row per decided push attempt (replays included), so a busy shop
//! wants it bounded. Pruning only ever deletes from `pos_transaction_audit`; stored sales, items and
//! payments are kept forever (they are the shop's books). [`RetentionThread`] prunes once when it
//! starts and then every [`RetentionPolicy::interval`] on a thread named `possync-audit-retention`;
//! [`RetentionThread::stop`] wakes it at once and joins it. A failed prune is logged and tried again
//! at the next interval: retention is housekeeping and never stops the server.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::store::{AdminStore, StoreError};

/// Name of the background thread.
pub const THREAD_NAME: &str = "possync-audit-retention";

/// How long audit rows are kept and how often the background thread prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Audit rows older than this many days are deleted (at least 1).
    pub keep_days: u32,
    /// Time between two prunes of the background thread.
    pub interval: Duration,
}

impl RetentionPolicy {
    /// Keeps `keep_days` days of audit rows, pruning hourly.
    pub fn hourly(keep_days: u32) -> Self {
        RetentionPolicy { keep_days, interval: Duration::from_secs(3_600) }
    }
}

/// Deletes audit rows older than `keep_days` days and logs how many; returns the count.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn prune_once(store: &dyn AdminStore, keep_days: u32) -> Result<u64, StoreError> {
    let deleted = store.prune_audit(keep_days)?;
    log::info!(keep_days = keep_days, deleted = deleted; "audit retention: pruned audit rows");
    Ok(deleted)
}

#[derive(Default)]
struct State {
    stop: bool,
    runs: u64,
    deleted: u64,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The background pruning thread; stops (and joins) on [`RetentionThread::stop`] or drop.
pub struct RetentionThread {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl RetentionThread {
    /// Starts the thread; its first prune runs at once.
    ///
    /// # Errors
    /// The I/O error of a thread that could not be spawned.
    pub fn start(store: Arc<dyn AdminStore>, policy: RetentionPolicy) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || run(&*store, policy, &thread_shared))?;
        Ok(RetentionThread { shared, handle: Some(handle) })
    }

    /// Waits until at least `runs` prunes have finished (successful or not) or `timeout` passed;
    /// returns the number of finished prunes and of rows deleted so far.
    pub fn wait_for_runs(&self, runs: u64, timeout: Duration) -> (u64, u64) {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        while state.runs < runs {
            if self.shared.wake.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        (state.runs, state.deleted)
    }

    /// Asks the thread to stop, wakes it and waits for it (a prune in progress finishes first).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                log::error!("the audit retention thread panicked");
            }
        }
    }
}

impl Drop for RetentionThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(store: &dyn AdminStore, policy: RetentionPolicy, shared: &Shared) {
    log::info!(keep_days = policy.keep_days, interval_secs = policy.interval.as_secs(); "audit retention started");
    loop {
        let deleted = match prune_once(store, policy.keep_days) {
            Ok(n) => n,
            Err(e) => {
                log::warn!(error:% = e; "audit retention: prune failed; trying again at the next interval");
                0
            }
        };
        let mut state = shared.state.lock();
        state.runs += 1;
        state.deleted += deleted;
        shared.wake.notify_all();
        let next = Instant::now() + policy.interval;
        while !state.stop && Instant::now() < next {
            let _ = shared.wake.wait_until(&mut state, next);
        }
        if state.stop {
            break;
        }
    }
    log::info!("audit retention stopped");
}
