//! The cashier's banner: an idle engine's status says how many sales are unsent as of now. Sales
//! recorded while the engine waits (its start hold, a backoff) update it at once, in `status()` and
//! for the listener, not only at the next run's end.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{sale, TempOutbox, T0};
use parking_lot::Mutex;
use possync_core::clock::ManualClock;
use possync_core::engine::{EngineConfig, SyncEngine};
use possync_core::protocol::{PushRequest, PushResponse};
use possync_core::status::{StatusListener, SyncStatus};
use possync_core::transport::{Transport, TransportError};

/// A server that is down.
struct Down;

impl Transport for Down {
    fn push(&self, _request: &PushRequest, _cid: &str) -> Result<PushResponse, TransportError> {
        Err(TransportError::Unreachable("connection refused".into()))
    }
}

struct Statuses(Mutex<mpsc::Sender<SyncStatus>>);

impl StatusListener for Statuses {
    fn on_status(&self, status: SyncStatus) {
        let _ = self.0.lock().send(status);
    }
}

/// The listener's statuses until one reports `unsent` (panics after a while).
fn wait_for_unsent(statuses: &mpsc::Receiver<SyncStatus>, unsent: u64) {
    loop {
        match statuses.recv_timeout(Duration::from_secs(10)) {
            Ok(SyncStatus::Idle { unsent: n, .. }) if n == unsent => return,
            Ok(_) => {}
            Err(e) => panic!("the listener never heard of {unsent} unsent sale(s): {e}"),
        }
    }
}

#[test]
fn sales_recorded_while_the_engine_waits_update_its_idle_status() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(t.open_with(clock.clone()));
    outbox.enqueue(&sale(0)).expect("enqueue");
    let mut config = EngineConfig::new(crate::common::sync_config("pst_test"));
    // The start waits a hold of up to an hour on a clock that does not move: no run happens.
    config.online_jitter_ms = 3_600_000;
    let (tx, statuses) = mpsc::channel();
    let listener = Arc::new(Statuses(Mutex::new(tx))) as Arc<dyn StatusListener>;
    let engine = SyncEngine::start(outbox.clone(), Arc::new(Down), config, Some(listener)).expect("engine");
    assert!(matches!(engine.status().expect("status").status, SyncStatus::Idle { unsent: 1, .. }));

    for seed in 1..4 {
        outbox.enqueue(&sale(seed)).expect("enqueue with the server down");
    }
    let snapshot = engine.status().expect("status");
    assert_eq!(snapshot.counts.unsent(), 4);
    assert_eq!(
        snapshot.status,
        SyncStatus::Idle { unsent: 4, unsent_by_currency: snapshot.unsent_by_currency.clone() },
        "status() agrees with its counts"
    );
    wait_for_unsent(&statuses, 4);

    // A sale recorded by another process on the same file (no hook here) shows in status() too.
    let other = t.open_with(clock);
    other.enqueue(&sale(4)).expect("enqueue from another handle");
    let snapshot = engine.status().expect("status");
    assert_eq!(snapshot.counts.unsent(), 5);
    assert!(matches!(snapshot.status, SyncStatus::Idle { unsent: 5, .. }), "{:?}", snapshot.status);
    assert_eq!(engine.runs_started(), 0, "all of it while the engine waited");
    engine.shutdown();
}
