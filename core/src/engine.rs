//! The drain scheduler: one engine per outbox, one worker thread, single flight.
//!
//! Triggers (`Startup`, `Interval`, `Online`, `Focus`, `Manual`, and `SaleRecorded`, which the outbox
//! fires itself for each new sale) only add a reason to a pending set and wake the worker. The worker
//! takes the whole set when it starts a run, so triggers that arrive during a run merge into exactly
//! one follow-up run: a burst of N triggers gives at most two runs, and two drains never overlap.
//! [`SyncEngine::sync_now`] is a `Manual` trigger that waits for the run that starts after it, so the
//! sales recorded before the call are covered.
//!
//! When a run ends with the link judged down (failed requests in a row, or a `Retry-After`) or for a
//! person (401/403, TLS), the engine backs off as a whole (capped exponential with full jitter; a
//! `Retry-After` replaces it with its own value plus jitter; any answered request resets it): the
//! interval timer pauses and `SaleRecorded`, `Focus` and `Interval` wait. `Online` goes through the
//! backoff but not through a `Retry-After`, and `Online` and the first run after start first wait a
//! random hold of up to [`EngineConfig::online_jitter_ms`], so that tills coming back together spread
//! out. `Manual` and [`SyncEngine::sync_now`] always go at once. `Online` and `Manual` runs skip the
//! per-sale backoff too (never the leases or the single flight). When sales are unsent but none is
//! due, the next run is when the earliest is due, not the interval.
//! [`crate::schedule::plan_after_run`] and [`crate::schedule::next_step`] make these decisions, on the
//! outbox's [`Clock`] (a [`crate::clock::ManualClock`] in tests).
//!
//! An engine that is its outbox's sole user ([`EngineConfig::sole_user`], the default) leases under a
//! stable owner id (the device id) and, at start, takes back the leases an earlier life of it left
//! behind (a crash or kill), so they are sent at once instead of after the lease.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Weak;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rand::RngExt;

use crate::backoff::BackoffPolicy;
use crate::clock::Clock;
use crate::config::SyncConfig;
use crate::drain::{DrainHooks, DrainReport, DrainStop, Drainer};
use crate::error::{ConfigError, Error, StorageError, SyncError};
use crate::outbox::{Counts, CurrencyAmount, Outbox};
use crate::reason::{DrainReason, DrainReasons};
use crate::schedule::{next_step, plan_after_run, NextRun, RunEnd, RunSummary, Step, Timers, WaitCause};
use crate::status::{Notifier, StatusListener, SyncStatus};
use crate::transport::Transport;

/// Settings of a [`SyncEngine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How to reach the server, leases, batches and per-sale backoff.
    pub sync: SyncConfig,
    /// Period of the `Interval` trigger, in ms (paused while the engine backs off).
    pub interval_ms: u64,
    /// Whole-engine backoff after a failed request; its cap never exceeds `interval_ms` (only a
    /// server's `Retry-After` makes a till wait longer), so a server that is back is found within
    /// about one interval.
    pub offline_backoff: BackoffPolicy,
    /// Least time between two automatic prunes of sent sales (see [`Outbox::prune_sent`]), in ms. The
    /// engine prunes at the end of a run that settled sales, at most this often (default 1 hour).
    pub prune_every_ms: u64,
    /// This engine is the only user of its outbox (default `true`, as on a phone or a till app with
    /// one process): it leases under the device id and at start takes back the leases an earlier life
    /// of it left (sent again at once). Set `false` when several processes drain one outbox file:
    /// each then leases under a fresh owner id and waits out the leases of the others.
    pub sole_user: bool,
    /// Upper bound of the random hold before the run an `Online` trigger asks for, and before the
    /// first run after start, in ms (default 5,000; 0: none; at most 1,000 before the first run when
    /// the engine took back sales an earlier life left in flight). Every trigger but `Manual` waits
    /// with it; [`SyncEngine::sync_now`] and `Manual` cancel it.
    pub online_jitter_ms: u64,
}

impl EngineConfig {
    /// Defaults around `sync`: a drain every minute, offline backoff from 2 s up to 5 min.
    pub fn new(sync: SyncConfig) -> Self {
        EngineConfig {
            sync,
            interval_ms: 60_000,
            offline_backoff: BackoffPolicy { base_ms: 2_000, cap_ms: 300_000 },
            prune_every_ms: 3_600_000,
            sole_user: true,
            online_jitter_ms: 5_000,
        }
    }
}

/// Everything a cashier's screen needs, in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSnapshot {
    /// The engine's state.
    pub status: SyncStatus,
    /// Sales by state.
    pub counts: Counts,
    /// Unsent sales per currency (count and amount).
    pub unsent_by_currency: Vec<CurrencyAmount>,
    /// Age of the oldest unsent sale, in ms.
    pub oldest_unsent_age_ms: Option<i64>,
    /// The last finished run.
    pub last_report: Option<DrainReport>,
}

/// Largest hold before the first run when the engine took back sales an earlier life of it left in
/// flight: those were on the wire when it died, and go out within a second (issue 14's target is 5 s).
const RECLAIMED_START_JITTER_MS: u64 = 1_000;

/// Reports of recent runs kept for `sync_now` callers.
const RECENT_RUNS: usize = 16;

/// What the engine is waiting for, while it waits (see [`SyncEngine::waiting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// The timer that ends the wait (unless a trigger comes first).
    pub cause: WaitCause,
    /// Time left, in ms.
    pub remaining_ms: i64,
}

struct State {
    /// Pending reasons and timers, on the clock's monotonic reading.
    timers: Timers,
    /// Set while the worker waits: until when, and why.
    waiting: Option<(i64, WaitCause)>,
    started_runs: u64,
    finished_runs: u64,
    recent: VecDeque<(u64, Result<DrainReport, String>)>,
    offline_failures: u32,
    status: SyncStatus,
    /// Bumped each time `status` is set (a reading of the outbox taken before a newer status was set
    /// is not written over it).
    status_version: u64,
    shutdown: bool,
    /// The worker has finished: statuses delivered, threads ended, WAL checkpointed.
    stopped: bool,
}

impl State {
    /// Sets the status shown to the cashier.
    fn set_status(&mut self, status: SyncStatus) {
        self.status = status;
        self.status_version += 1;
    }
}

struct Shared {
    outbox: Arc<Outbox>,
    clock: Arc<dyn Clock>,
    transport: Arc<dyn Transport>,
    config: EngineConfig,
    state: Mutex<State>,
    wake: Condvar,
    notifier: Notifier,
}

impl Shared {
    /// Adds a reason (an `Online` starts a hold unless one is pending) and wakes the worker.
    fn trigger(&self, reason: DrainReason) {
        let mut st = self.state.lock();
        if reason == DrainReason::Online {
            hold(&mut st.timers, self.clock.monotonic_ms(), self.config.online_jitter_ms);
        }
        st.timers.requested.insert(reason);
        self.wake.notify_all();
        // An idle banner shows what is unsent: a recorded sale changes that now, not at the next
        // run's end (which a hold or a backoff may put off).
        if reason == DrainReason::SaleRecorded {
            drop(st);
            self.recount_idle();
        }
    }

    /// While the engine is `Idle`, sets its status to the outbox's unsent sales now and notifies. The
    /// outbox is read without the engine's lock; a status set by someone else meanwhile means that
    /// reading may be older than theirs, so it is read again.
    fn recount_idle(&self) {
        let mut version = {
            let st = self.state.lock();
            if !matches!(st.status, SyncStatus::Idle { .. }) {
                return;
            }
            st.status_version
        };
        loop {
            let status = idle(&self.outbox);
            let mut st = self.state.lock();
            if !matches!(st.status, SyncStatus::Idle { .. }) {
                return;
            }
            if st.status_version != version {
                version = st.status_version;
                continue;
            }
            st.set_status(status.clone());
            drop(st);
            self.notifier.status(status);
            return;
        }
    }

    /// Wakes the worker to look at the clock again.
    fn poke(&self) {
        let _st = self.state.lock();
        self.wake.notify_all();
    }
}

/// Starts a random hold of 1..=`jitter_ms` unless one is pending.
fn hold(timers: &mut Timers, now_ms: i64, jitter_ms: u64) {
    if timers.held_until_ms.is_none() && jitter_ms > 0 {
        let ms = rand::rng().random_range(1..=jitter_ms);
        timers.held_until_ms = Some(now_ms.saturating_add(ms as i64));
    }
}

/// One outbox's sync engine. Dropping it shuts it down.
pub struct SyncEngine {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl SyncEngine {
    /// Starts the worker (named `possync-drain`) with a `Startup` run, and the status thread when a
    /// listener is given.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid config; [`Error::Sync`] ([`SyncError::Thread`]) when a thread
    /// cannot be started.
    pub fn start(
        outbox: Arc<Outbox>,
        transport: Arc<dyn Transport>,
        config: EngineConfig,
        listener: Option<Arc<dyn StatusListener>>,
    ) -> Result<SyncEngine, Error> {
        config.sync.validate()?;
        if config.interval_ms == 0 || config.offline_backoff.base_ms == 0 {
            return Err(ConfigError("interval_ms and offline_backoff.base_ms must be above 0".into()).into());
        }
        let reclaimed = config.sole_user && reclaim_own_leases(&outbox, &config.sync.device_id) > 0;
        let notifier = Notifier::start(listener).map_err(|e| SyncError::Thread(e.to_string()))?;
        let status = idle(&outbox);
        let clock = outbox.clock().clone();
        let now = clock.monotonic_ms();
        let mut timers = Timers {
            requested: DrainReason::Startup.into(),
            next_interval_ms: now.saturating_add(config.interval_ms as i64),
            ..Timers::default()
        };
        // After a crash, the sales it had on the wire go out within a second, not after a hold.
        let start_jitter_ms = if reclaimed {
            config.online_jitter_ms.min(RECLAIMED_START_JITTER_MS)
        } else {
            config.online_jitter_ms
        };
        hold(&mut timers, now, start_jitter_ms);
        let state = State {
            timers,
            waiting: None,
            started_runs: 0,
            finished_runs: 0,
            recent: VecDeque::new(),
            offline_failures: 0,
            status,
            status_version: 0,
            shutdown: false,
            stopped: false,
        };
        let shared = Arc::new(Shared {
            outbox,
            clock,
            transport,
            config,
            state: Mutex::new(state),
            wake: Condvar::new(),
            notifier,
        });
        let weak = Arc::downgrade(&shared);
        shared
            .outbox
            .on_recorded(Some(Box::new(move || with(&weak, |s| s.trigger(DrainReason::SaleRecorded)))));
        let weak = Arc::downgrade(&shared);
        shared.clock.on_advance(Box::new(move || with(&weak, Shared::poke)));
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name("possync-drain".into())
            .spawn(move || {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker(&s))).is_err() {
                    log::error!("the drain thread panicked; the engine stopped");
                }
                stop(&s);
            })
            .map_err(|e| SyncError::Thread(e.to_string()))?;
        Ok(SyncEngine { shared, worker: Mutex::new(Some(worker)) })
    }

    /// The outbox this engine drains (to enqueue sales and query them).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.shared.outbox
    }

    /// Asks for a drain. Returns at once; coalesces with every other pending trigger. See the module
    /// docs for which reasons wait for the engine's backoff and for the hold after `Online`.
    pub fn trigger(&self, reason: DrainReason) {
        self.shared.trigger(reason);
    }

    /// While the engine waits for its next run: for what, and how long at most (a trigger may end it
    /// sooner). `None` while a run is going or about to start.
    pub fn waiting(&self) -> Option<Waiting> {
        let st = self.shared.state.lock();
        let now = self.shared.clock.monotonic_ms();
        st.waiting.map(|(at, cause)| Waiting { cause, remaining_ms: (at - now).max(0) })
    }

    /// "Sync now": a `Manual` trigger that waits (up to `timeout`) for the run that starts after this
    /// call and returns its report, so every sale recorded before the call was covered by it.
    ///
    /// # Errors
    /// [`SyncError::Timeout`] when the run did not finish in time (it goes on); [`SyncError::ShutDown`];
    /// [`SyncError::DrainFailed`] when the run hit a storage error.
    pub fn sync_now(&self, timeout: Duration) -> Result<DrainReport, SyncError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock();
        if st.shutdown {
            return Err(SyncError::ShutDown);
        }
        st.timers.requested.insert(DrainReason::Manual);
        let target = st.started_runs + 1;
        self.shared.wake.notify_all();
        while st.finished_runs < target {
            if st.shutdown {
                return Err(SyncError::ShutDown);
            }
            if self.shared.wake.wait_until(&mut st, deadline).timed_out() && st.finished_runs < target {
                return Err(SyncError::Timeout { waited_ms: timeout.as_millis() as u64 });
            }
        }
        match st.recent.iter().find(|(seq, _)| *seq == target) {
            Some((_, Ok(report))) => Ok(report.clone()),
            Some((_, Err(reason))) => Err(SyncError::DrainFailed { reason: reason.clone() }),
            None => Err(SyncError::DrainFailed { reason: "the run's report is no longer kept".into() }),
        }
    }

    /// The status, counts, unsent amounts, oldest unsent age and last report, in one call.
    ///
    /// # Errors
    /// A storage error of the outbox.
    pub fn status(&self) -> Result<StatusSnapshot, StorageError> {
        let (status, last_report) = {
            let st = self.shared.state.lock();
            (st.status.clone(), st.recent.back().and_then(|(_, r)| r.as_ref().ok().cloned()))
        };
        let outbox = &self.shared.outbox;
        let counts = outbox.counts()?;
        let unsent_by_currency = outbox.unsent_by_currency()?;
        // Idle states what is unsent; say it as of now (another process may share the outbox).
        let status = match status {
            SyncStatus::Idle { .. } => {
                SyncStatus::Idle { unsent: counts.unsent(), unsent_by_currency: unsent_by_currency.clone() }
            }
            other => other,
        };
        Ok(StatusSnapshot {
            status,
            counts,
            unsent_by_currency,
            oldest_unsent_age_ms: outbox.oldest_unsent_age_ms()?,
            last_report,
        })
    }

    /// Deletes sent sales older than the outbox's retention now; returns how many (unsent sales and
    /// sales needing attention are never touched). The engine also does it by itself, see
    /// [`EngineConfig::prune_every_ms`].
    ///
    /// # Errors
    /// A storage error of the outbox.
    pub fn prune_sent(&self) -> Result<u64, StorageError> {
        self.shared.outbox.prune_sent()
    }

    /// Writes a diagnostics bundle for support into the folder `dir` (created if missing): `outbox.db`,
    /// a consistent copy of the outbox ([`Outbox::copy_to`]; `possync-server verify --outbox` reads
    /// it), and `engine.txt` with the build, the time, the settings (the device token redacted), the
    /// status snapshot and the reports of the last runs. Returns the paths written. The outbox and the
    /// engine are not changed.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the folder or a file cannot be written (or `outbox.db` exists in it
    /// already); a storage error when the outbox cannot be read.
    pub fn export_diagnostics(&self, dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
        let io = |path: &Path, e: std::io::Error| StorageError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let copy = dir.join("outbox.db");
        self.shared.outbox.copy_to(&copy)?;
        let runs: Vec<String> = {
            let st = self.shared.state.lock();
            st.recent
                .iter()
                .map(|(seq, r)| match r {
                    Ok(report) => format!("run {seq}: {report:#?}"),
                    Err(e) => format!("run {seq}: failed: {e}"),
                })
                .collect()
        };
        let snapshot = match self.status() {
            Ok(s) => format!("{s:#?}"),
            Err(e) => format!("cannot read the status: {e}"),
        };
        let text = format!(
            "possync-core {}
exported at {} (Unix ms)
outbox {}

# outbox settings
{:#?}

             # engine settings (the device token is redacted)
{:#?}

# status
{snapshot}

             # last {} run(s), oldest first
{}
",
            env!("CARGO_PKG_VERSION"),
            self.shared.outbox.clock().now_ms(),
            self.shared.outbox.path().display(),
            self.shared.outbox.config(),
            self.shared.config,
            runs.len(),
            runs.join("\n"),
        );
        let engine_txt = dir.join("engine.txt");
        std::fs::write(&engine_txt, text).map_err(|e| io(&engine_txt, e))?;
        Ok(vec![copy, engine_txt])
    }

    /// Runs in a row that ended with the link down or failed: the exponent of the engine's backoff
    /// (0 after a run with an answered request that did not end with the link down).
    pub fn failed_runs_in_a_row(&self) -> u32 {
        self.shared.state.lock().offline_failures
    }

    /// Runs started so far (for tests and diagnostics).
    pub fn runs_started(&self) -> u64 {
        self.shared.state.lock().started_runs
    }

    /// Asks the engine to stop and returns at once; [`SyncEngine::await_shutdown`] waits for it. The
    /// batch in flight is still finished and finalized, then the engine stops as
    /// [`SyncEngine::shutdown`] describes.
    pub fn request_shutdown(&self) {
        let mut st = self.shared.state.lock();
        st.shutdown = true;
        self.shared.wake.notify_all();
    }

    /// Waits up to `timeout` for the engine to stop after [`SyncEngine::request_shutdown`]; returns
    /// whether it has stopped (the batch in flight finalized, statuses delivered, threads ended, the
    /// write-ahead log checkpointed). It does not ask the engine to stop.
    pub fn await_shutdown(&self, timeout: Duration) -> bool {
        self.wait_stopped(Instant::now().checked_add(timeout))
    }

    /// Stops the engine and waits for it: the batch in flight is finished and finalized (its HTTP call
    /// is bounded by the request timeout), no further batch starts, pending statuses are delivered,
    /// threads are joined, and the write-ahead log is checkpointed and truncated. Sales not sent stay in
    /// the outbox; leases left behind expire on their own. Idempotent.
    pub fn shutdown(&self) {
        self.request_shutdown();
        self.wait_stopped(None);
    }

    fn wait_stopped(&self, deadline: Option<Instant>) -> bool {
        {
            let mut st = self.shared.state.lock();
            while !st.stopped {
                match deadline {
                    Some(deadline) => {
                        if self.shared.wake.wait_until(&mut st, deadline).timed_out() {
                            return st.stopped;
                        }
                    }
                    None => self.shared.wake.wait(&mut st),
                }
            }
        }
        if let Some(worker) = self.worker.lock().take() {
            // It has finished its work; this only reaps the thread.
            let _ = worker.join();
        }
        true
    }
}

impl Drop for SyncEngine {
    /// Asks the engine to stop and returns at once (the drain thread finishes the batch in flight and
    /// stops by itself); call [`SyncEngine::shutdown`] first to wait for it.
    fn drop(&mut self) {
        self.request_shutdown();
    }
}

/// `Idle` with the outbox's unsent sales now (zero if the outbox cannot be read).
fn idle(outbox: &Outbox) -> SyncStatus {
    idle_with(outbox, &outbox.counts().unwrap_or_default())
}

/// [`idle`] with the outbox's counts already read.
fn idle_with(outbox: &Outbox, counts: &Counts) -> SyncStatus {
    SyncStatus::Idle {
        unsent: counts.unsent(),
        unsent_by_currency: outbox.unsent_by_currency().unwrap_or_default(),
    }
}

/// The end of the drain thread: delivers pending statuses, ends the status thread, truncates the WAL,
/// and marks the engine stopped.
fn stop(shared: &Shared) {
    shared.outbox.on_recorded(None);
    shared.notifier.close();
    match shared.outbox.checkpoint_truncate() {
        Ok(true) => {}
        Ok(false) => log::info!("write-ahead log only partly checkpointed at shutdown (a reader holds it)"),
        Err(e) => log::warn!(error:% = e; "write-ahead log checkpoint at shutdown failed"),
    }
    let mut st = shared.state.lock();
    st.stopped = true;
    shared.wake.notify_all();
}

/// Calls `f` on the engine's shared state if the engine still exists; returns whether it does.
fn with(weak: &Weak<Shared>, f: impl FnOnce(&Shared)) -> bool {
    weak.upgrade().map(|shared| f(&shared)).is_some()
}

/// Takes back what an earlier life of this engine left in flight (see [`EngineConfig::sole_user`]);
/// returns how many sales.
fn reclaim_own_leases(outbox: &Outbox, owner: &str) -> u64 {
    match outbox.reclaim_own_leases(owner) {
        Ok(0) => 0,
        Ok(n) => {
            log::warn!(owner = owner, sales = n; "leases of an earlier life taken back; sent at once");
            n
        }
        Err(e) => {
            log::warn!(error:% = e; "could not take back earlier leases; they expire on their own");
            0
        }
    }
}

fn worker(shared: &Shared) {
    let sync = &shared.config.sync;
    let drainer = if shared.config.sole_user {
        Drainer::with_owner(&shared.outbox, &*shared.transport, sync, sync.device_id.clone())
    } else {
        Drainer::new(&shared.outbox, &*shared.transport, sync)
    };
    let drainer = match drainer {
        Ok(d) => d,
        Err(e) => {
            log::error!(error:% = e; "drain thread cannot start");
            return;
        }
    };
    let mut last_prune: Option<i64> = None;
    loop {
        let Some((reasons, seq)) = next_run(shared) else { return };
        shared.notifier.status(SyncStatus::Draining { done: 0, total: 0 });
        let mut progress = |done, total| shared.notifier.status(SyncStatus::Draining { done, total });
        let stop = || shared.state.lock().shutdown;
        let result = drainer.drain(reasons, DrainHooks { progress: Some(&mut progress), stop: Some(&stop) });
        if let Ok(report) = &result {
            prune_if_due(shared, report, &mut last_prune);
        }
        finish_run(shared, seq, result);
    }
}

/// Prunes sent sales after a run that settled some, at most every `prune_every_ms`.
fn prune_if_due(shared: &Shared, report: &DrainReport, last_prune: &mut Option<i64>) {
    let now = shared.clock.monotonic_ms();
    let every = i64::try_from(shared.config.prune_every_ms).unwrap_or(i64::MAX);
    if report.settled() == 0 || last_prune.is_some_and(|t| now.saturating_sub(t) < every) {
        return;
    }
    *last_prune = Some(now);
    match shared.outbox.prune_sent() {
        Ok(0) => {}
        Ok(n) => log::info!(pruned = n; "sent sales past their retention pruned"),
        Err(e) => {
            *last_prune = None;
            log::warn!(error:% = e; "pruning sent sales failed; tried again after the next run");
        }
    }
}

/// Waits for a run to be due ([`next_step`]); returns its reasons and sequence number, or `None` on
/// shutdown.
fn next_run(shared: &Shared) -> Option<(DrainReasons, u64)> {
    let mut st = shared.state.lock();
    loop {
        if st.shutdown {
            return None;
        }
        let now = shared.clock.monotonic_ms();
        match next_step(&mut st.timers, now, shared.config.interval_ms) {
            Step::Run(reasons) => {
                st.waiting = None;
                st.started_runs += 1;
                return Some((reasons, st.started_runs));
            }
            Step::Wait { at_ms, cause } => {
                st.waiting = Some((at_ms, cause));
                let ms = u64::try_from(at_ms.saturating_sub(now)).unwrap_or(0).max(1);
                shared.wake.wait_for(&mut st, Duration::from_millis(ms));
            }
        }
    }
}

/// How a run ended, for [`plan_after_run`]; reads when the earliest unsent sale is due.
fn summary_of(outbox: &Outbox, result: &Result<DrainReport, StorageError>) -> RunSummary {
    let (end, answered) = match result {
        Ok(report) => {
            let end = match &report.stop {
                Some(DrainStop::Offline { error }) => {
                    RunEnd::LinkDown { retry_after_ms: error.retry_after_ms() }
                }
                Some(DrainStop::AuthFailed { .. } | DrainStop::TlsFailed { .. }) => RunEnd::Failed,
                Some(DrainStop::LeaseLost) | None => RunEnd::Done,
            };
            (end, report.requests_ok > 0)
        }
        Err(_) => (RunEnd::Failed, false),
    };
    let next_due_in_ms = match outbox.next_due_at_ms() {
        Ok(due) => due.map(|due| due.saturating_sub(outbox.clock().now_ms())),
        Err(e) => {
            log::warn!(error:% = e; "cannot read when the next sale is due; the interval decides");
            None
        }
    };
    RunSummary { end, answered, next_due_in_ms }
}

/// Records a finished run, sets the engine's backoff or next due run and its status, wakes `sync_now`
/// callers, notifies. The outbox is read first; the engine's lock is then taken for its own state only.
fn finish_run(shared: &Shared, seq: u64, result: Result<DrainReport, StorageError>) {
    let summary = summary_of(&shared.outbox, &result);
    let (status, last_error) = status_after(&shared.outbox, &result);
    let mut rng = rand::rng();
    let status = {
        let mut st = shared.state.lock();
        let (failures, next) = plan_after_run(st.offline_failures, &summary);
        st.offline_failures = failures;
        let now = shared.clock.monotonic_ms();
        let in_ms = |ms: u64| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
        let status = match next {
            NextRun::BackOff { failures, retry_after_ms } => {
                // Never longer than one interval without a server's Retry-After: a server that is back
                // (a restart, a promoted standby) is found within about one interval.
                let policy = BackoffPolicy {
                    base_ms: shared.config.offline_backoff.base_ms.min(shared.config.interval_ms),
                    cap_ms: shared.config.offline_backoff.cap_ms.min(shared.config.interval_ms),
                };
                let delay = policy.delay_ms(failures, retry_after_ms, &mut rng).max(1);
                st.timers.backoff_until_ms = Some(in_ms(delay));
                st.timers.retry_after_until_ms = retry_after_ms.map(in_ms);
                st.timers.due_at_ms = None;
                let next_retry_at_ms = shared.clock.now_ms().saturating_add(delay as i64);
                match status {
                    StatusAfter::Set(status) => status,
                    StatusAfter::ByPlan { .. } => SyncStatus::Offline { next_retry_at_ms, last_error },
                }
            }
            NextRun::DueIn { ms } => {
                st.timers.backoff_until_ms = None;
                st.timers.retry_after_until_ms = None;
                // Never later than the interval would run anyway.
                st.timers.due_at_ms = Some(in_ms(ms.min(shared.config.interval_ms)));
                status.or_idle()
            }
            NextRun::Interval => {
                st.timers.backoff_until_ms = None;
                st.timers.retry_after_until_ms = None;
                st.timers.due_at_ms = None;
                status.or_idle()
            }
        };
        st.finished_runs = seq;
        st.recent.push_back((seq, result.as_ref().map(Clone::clone).map_err(|e| e.to_string())));
        while st.recent.len() > RECENT_RUNS {
            st.recent.pop_front();
        }
        st.set_status(status.clone());
        shared.wake.notify_all();
        status
    };
    match result {
        Ok(report) => shared.notifier.report(report),
        Err(e) => log::error!(error:% = e; "drain run failed on the outbox"),
    }
    shared.notifier.status(status);
}

/// The cashier's status after a run, as far as the run decides it.
enum StatusAfter {
    /// The run decides it.
    Set(SyncStatus),
    /// The plan after the run decides: `Offline` when the engine backs off, else `idle` (read from the
    /// outbox beforehand, so that the engine's lock is never held across a query).
    ByPlan {
        /// `Idle` with the outbox's unsent sales after the run.
        idle: SyncStatus,
    },
}

impl StatusAfter {
    /// The status when the engine does not back off.
    fn or_idle(self) -> SyncStatus {
        match self {
            StatusAfter::Set(status) | StatusAfter::ByPlan { idle: status } => status,
        }
    }
}

/// The status a run leaves (reading the outbox), and its last error for an `Offline` status.
fn status_after(outbox: &Outbox, result: &Result<DrainReport, StorageError>) -> (StatusAfter, String) {
    let by_plan = || StatusAfter::ByPlan { idle: idle(outbox) };
    match result {
        Ok(report) => match &report.stop {
            Some(DrainStop::Offline { error }) => (by_plan(), error.to_string()),
            Some(DrainStop::AuthFailed { error }) => (
                StatusAfter::Set(SyncStatus::AuthFailed { last_error: error.to_string() }),
                error.to_string(),
            ),
            Some(DrainStop::TlsFailed { error }) => {
                (StatusAfter::Set(SyncStatus::TlsFailed { last_error: error.to_string() }), error.to_string())
            }
            _ => {
                let counts = outbox.counts().unwrap_or_default();
                let status = if counts.conflict + counts.invalid > 0 {
                    SyncStatus::NeedsAttention { conflicts: counts.conflict, invalid: counts.invalid }
                } else {
                    idle_with(outbox, &counts)
                };
                (StatusAfter::Set(status), String::new())
            }
        },
        Err(e) => (by_plan(), e.to_string()),
    }
}
