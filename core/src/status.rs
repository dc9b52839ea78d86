//! What the cashier sees: the engine's status, and the listener that receives it.
//!
//! Listener calls happen on a dedicated thread (`possync-status`), never while a SQLite transaction is
//! open and never on the drain thread, so a slow listener cannot stall sending. Statuses are coalesced
//! (a slow listener gets the latest one, not a backlog); a panicking listener is caught and logged.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::drain::DrainReport;
use crate::outbox::CurrencyAmount;

/// The engine's state, as a cashier's banner would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// Nothing to do, or waiting for the next trigger; with what is still unsent at that moment (sales
    /// recorded since, or waiting out a per-sale retry), for a banner such as "All sent" or
    /// "3 unsent (EUR 12.00)".
    Idle {
        /// Unsent sales (pending + in flight).
        unsent: u64,
        /// Unsent sales per currency (count and amount).
        unsent_by_currency: Vec<CurrencyAmount>,
    },
    /// A drain run is sending: `done` of `total` unsent sales handled so far.
    Draining {
        /// Sales handled in this run.
        done: u64,
        /// Unsent sales when the run started.
        total: u64,
    },
    /// The server cannot be reached; sales are kept and sent when it can.
    Offline {
        /// When the engine tries again by itself, Unix ms (a manual "Sync now" or "online" tries at once).
        next_retry_at_ms: i64,
        /// What went wrong.
        last_error: String,
    },
    /// The server refuses this till's token or device (401/403): a person must fix the setup.
    AuthFailed {
        /// The server's answer.
        last_error: String,
    },
    /// The server's TLS certificate is not trusted or matches no pin: a person must fix the setup (the
    /// server's certificate, or the app's CA certificates and pins). Sales are kept.
    TlsFailed {
        /// What failed, for a person.
        last_error: String,
    },
    /// Some sales were refused for good and need a person (see the outbox's attention list).
    NeedsAttention {
        /// Sales in `conflict`.
        conflicts: u64,
        /// Sales in `invalid`.
        invalid: u64,
    },
}

/// Receives status changes and run reports. Implemented by the app (through the FFI, from foreign
/// code); called on the engine's status thread.
pub trait StatusListener: Send + Sync {
    /// The status changed.
    fn on_status(&self, status: SyncStatus);
    /// A drain run ended.
    fn on_report(&self, _report: DrainReport) {}
}

/// Most run reports kept for a slow listener; older ones are dropped (and logged).
const MAX_QUEUED_REPORTS: usize = 64;

#[derive(Default)]
struct Queue {
    status: Option<SyncStatus>,
    reports: VecDeque<DrainReport>,
    closed: bool,
}

/// Delivers statuses and reports to one listener on its own thread.
pub(crate) struct Notifier {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Notifier {
    pub(crate) fn start(listener: Option<Arc<dyn StatusListener>>) -> std::io::Result<Notifier> {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let thread = match listener {
            None => None,
            Some(listener) => {
                let q = queue.clone();
                Some(
                    std::thread::Builder::new()
                        .name("possync-status".into())
                        .spawn(move || deliver(&q, &*listener))?,
                )
            }
        };
        Ok(Notifier { queue, thread: Mutex::new(thread) })
    }

    pub(crate) fn status(&self, status: SyncStatus) {
        let mut q = self.queue.0.lock();
        q.status = Some(status);
        self.queue.1.notify_one();
    }

    pub(crate) fn report(&self, report: DrainReport) {
        let mut q = self.queue.0.lock();
        if q.reports.len() >= MAX_QUEUED_REPORTS {
            q.reports.pop_front();
            log::warn!("status listener is slow; an old drain report was dropped");
        }
        q.reports.push_back(report);
        self.queue.1.notify_one();
    }

    /// Delivers what is queued, then stops the thread.
    pub(crate) fn close(&self) {
        self.queue.0.lock().closed = true;
        self.queue.1.notify_one();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn deliver(queue: &(Mutex<Queue>, Condvar), listener: &dyn StatusListener) {
    loop {
        let (status, reports, closed) = {
            let mut q = queue.0.lock();
            while q.status.is_none() && q.reports.is_empty() && !q.closed {
                queue.1.wait(&mut q);
            }
            (q.status.take(), std::mem::take(&mut q.reports), q.closed)
        };
        for report in reports {
            if catch_unwind(AssertUnwindSafe(|| listener.on_report(report))).is_err() {
                log::error!("status listener panicked in on_report; ignored");
            }
        }
        if let Some(status) = status {
            if catch_unwind(AssertUnwindSafe(|| listener.on_status(status))).is_err() {
                log::error!("status listener panicked in on_status; ignored");
            }
        }
        if closed {
            let q = queue.0.lock();
            if q.status.is_none() && q.reports.is_empty() {
                return;
            }
        }
    }
}
