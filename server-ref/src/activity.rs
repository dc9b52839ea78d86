//! Device activity (last seen, last push, backlog report, retired outbox sequence numbers) recorded off
//! the push path: a push notes its device's news in memory ([`ActivityRecorder::note`], a map insert
//! under a mutex) and a thread of its own (`possync-activity`) writes what accumulated every
//! [`ActivityRecorder`] interval, one statement per device that had news, whatever the number of
//! requests. Pushes from the same device in one interval are merged: the latest times and report, the
//! union of retired numbers.
//!
//! A push therefore costs the database nothing more than before. The console and `/metrics` see a
//! push at most one interval late, and a crash loses at most one interval of status: the next request
//! of each till writes it again, and tills re-send retired numbers for 30 days.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::store::{Device, DeviceActivity, PushStore, TillReport};

/// Retired sequence numbers kept per device between two writes (more are dropped; the till re-sends).
const MAX_PENDING_RETIRED: usize = 10_000;

/// What one device did since the last write.
#[derive(Debug, Default)]
struct Pending {
    seen_ms: i64,
    pushed_ms: Option<i64>,
    report: Option<(TillReport, i64)>,
    retired: BTreeSet<i64>,
}

struct Shared {
    pending: Mutex<HashMap<Device, Pending>>,
    wake: Condvar,
    stop: AtomicBool,
    store: Arc<dyn PushStore>,
    every: Duration,
}

/// Collects device activity and writes it on its own thread.
pub struct ActivityRecorder {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ActivityRecorder {
    /// Starts the writer thread, writing every `every` (at least 10 ms).
    ///
    /// # Errors
    /// The OS error when the thread cannot be spawned.
    pub fn start(store: Arc<dyn PushStore>, every: Duration) -> std::io::Result<ActivityRecorder> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            store,
            every: every.max(Duration::from_millis(10)),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new().name("possync-activity".into()).spawn(move || {
            while !worker.stop.load(Ordering::SeqCst) {
                {
                    let mut pending = worker.pending.lock();
                    if !worker.stop.load(Ordering::SeqCst) {
                        worker.wake.wait_for(&mut pending, worker.every);
                    }
                }
                write(&worker);
            }
            write(&worker);
        })?;
        Ok(ActivityRecorder { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Notes a request of `device` at `now_ms`: `pushed` when it carried sales, its backlog `report`
    /// and retired sequence numbers.
    pub fn note(
        &self,
        device: &Device,
        now_ms: i64,
        pushed: bool,
        report: Option<TillReport>,
        retired: &[i64],
    ) {
        let mut pending = self.shared.pending.lock();
        let p = pending.entry(device.clone()).or_default();
        p.seen_ms = p.seen_ms.max(now_ms);
        if pushed {
            p.pushed_ms = Some(now_ms);
        }
        if let Some(report) = report {
            let pending_outbox = p.report.as_ref().and_then(|(r, _)| r.outbox_id.as_deref());
            if pending_outbox.is_some()
                && report.outbox_id.is_some()
                && pending_outbox != report.outbox_id.as_deref()
            {
                // The till's outbox was replaced within this interval: the numbers retired by the old
                // one mean nothing to the new one.
                p.retired.clear();
            }
            p.report = Some((report, now_ms));
        }
        for seq in retired {
            if p.retired.len() >= MAX_PENDING_RETIRED {
                break;
            }
            p.retired.insert(*seq);
        }
    }

    /// Writes everything noted so far, now, on the calling thread (tests, shutdown).
    pub fn flush(&self) {
        write(&self.shared);
    }

    /// Writes what is pending and stops the thread.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ActivityRecorder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes and forgets what is pending; a device whose write fails is logged (its next request brings
/// the news again).
fn write(shared: &Shared) {
    let batch = std::mem::take(&mut *shared.pending.lock());
    for (device, p) in batch {
        let retired: Vec<i64> = p.retired.into_iter().collect();
        let activity = DeviceActivity {
            seen_ms: p.seen_ms,
            pushed_ms: p.pushed_ms,
            report: p.report.as_ref().map(|(r, _)| r),
            reported_ms: p.report.as_ref().map(|(_, at)| *at),
            retired_seqs: &retired,
        };
        if let Err(e) = shared.store.record_activity(&device, &activity) {
            log::warn!(store_id = device.store_id.as_str(), device_id = device.device_id.as_str(), error:% = e;
                "device activity not recorded");
        }
    }
}
