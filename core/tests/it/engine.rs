//! The drain scheduler with instrumented transports: single flight, coalescing, "Sync now",
//! offline → online, shutdown and restart, and listeners that misbehave.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{sale, TempOutbox, T0};
use parking_lot::{Condvar, Mutex};
use possync_core::backoff::BackoffPolicy;
use possync_core::clock::ManualClock;
use possync_core::config::OutboxConfig;
use possync_core::drain::DrainReport;
use possync_core::engine::{EngineConfig, SyncEngine, Waiting};
use possync_core::outbox::{Outbox, SaleState};
use possync_core::protocol::{PushRequest, PushResponse, PushResult, PushStatus};
use possync_core::reason::{DrainReason, DrainReasons};
use possync_core::schedule::WaitCause;
use possync_core::status::{StatusListener, SyncStatus};
use possync_core::transport::{Transport, TransportError};

const WAIT: Duration = Duration::from_secs(30);

/// A transport that answers OK to everything once its gate is open, counting overlapping calls.
#[derive(Default)]
struct Gated {
    open: Mutex<bool>,
    cv: Condvar,
    entered: AtomicUsize,
    inside: AtomicUsize,
    max_inside: AtomicUsize,
    offline: AtomicBool,
}

impl Gated {
    fn closed() -> Arc<Self> {
        Arc::new(Gated::default())
    }

    fn opened() -> Arc<Self> {
        let g = Gated::default();
        *g.open.lock() = true;
        Arc::new(g)
    }

    fn open(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }

    fn close(&self) {
        *self.open.lock() = false;
    }

    fn wait_entered(&self, n: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.entered.load(Ordering::SeqCst) < n {
            assert!(std::time::Instant::now() < deadline, "transport never entered");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Transport for Gated {
    fn push(&self, request: &PushRequest, _cid: &str) -> Result<PushResponse, TransportError> {
        let now_inside = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inside.fetch_max(now_inside, Ordering::SeqCst);
        self.entered.fetch_add(1, Ordering::SeqCst);
        {
            let mut open = self.open.lock();
            while !*open {
                self.cv.wait(&mut open);
            }
        }
        self.inside.fetch_sub(1, Ordering::SeqCst);
        if self.offline.load(Ordering::SeqCst) {
            return Err(TransportError::Unreachable("connection refused".into()));
        }
        let results = request
            .transactions
            .iter()
            .map(|t| PushResult {
                client_tx_id: t.client_tx_id.clone(),
                status: PushStatus::Ok,
                code: None,
                message: None,
                server_tx_id: Some(1),
            })
            .collect();
        Ok(PushResponse { results, resend: None })
    }
}

/// A listener that forwards reports and statuses to channels.
struct Channels {
    reports: Mutex<mpsc::Sender<DrainReport>>,
    statuses: Mutex<mpsc::Sender<SyncStatus>>,
}

impl StatusListener for Channels {
    fn on_status(&self, status: SyncStatus) {
        let _ = self.statuses.lock().send(status);
    }
    fn on_report(&self, report: DrainReport) {
        let _ = self.reports.lock().send(report);
    }
}

fn listener() -> (Arc<Channels>, mpsc::Receiver<DrainReport>, mpsc::Receiver<SyncStatus>) {
    let (rt, rr) = mpsc::channel();
    let (st, sr) = mpsc::channel();
    (Arc::new(Channels { reports: Mutex::new(rt), statuses: Mutex::new(st) }), rr, sr)
}

fn engine_config() -> EngineConfig {
    let mut sync = crate::common::sync_config("pst_test");
    sync.backoff = BackoffPolicy { base_ms: 60_000, cap_ms: 60_000 };
    let mut c = EngineConfig::new(sync);
    c.interval_ms = 3_600_000;
    c.offline_backoff = BackoffPolicy { base_ms: 3_600_000, cap_ms: 3_600_000 };
    c.online_jitter_ms = 0;
    c
}

fn start(outbox: &Arc<Outbox>, transport: &Arc<Gated>, l: Option<Arc<Channels>>) -> SyncEngine {
    let listener = l.map(|l| l as Arc<dyn StatusListener>);
    SyncEngine::start(outbox.clone(), transport.clone(), engine_config(), listener).expect("engine")
}

#[test]
fn overlapping_triggers_are_coalesced_into_one_follow_up_run() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    outbox.enqueue(&sale(1)).expect("enqueue");
    let transport = Gated::closed();
    let (l, reports, _) = listener();
    let engine = start(&outbox, &transport, Some(l));
    transport.wait_entered(1); // the startup run is in flight, held by the gate

    let reasons = [DrainReason::Interval, DrainReason::Online, DrainReason::Focus, DrainReason::Manual];
    std::thread::scope(|s| {
        for k in 0..8 {
            let engine = &engine;
            s.spawn(move || {
                for i in 0..13 {
                    engine.trigger(reasons[(k + i) % 4]);
                }
            });
        }
    });
    transport.open();
    let first = reports.recv_timeout(WAIT).expect("startup run");
    let second = reports.recv_timeout(WAIT).expect("follow-up run");
    assert_eq!(first.reasons, DrainReason::Startup.into());
    let mut merged = DrainReasons::empty();
    reasons.iter().for_each(|r| merged.insert(*r));
    assert_eq!(second.reasons, merged, "the follow-up run carries the union of the reasons");
    engine.shutdown();
    assert_eq!(engine.runs_started(), 2, "104 triggers during a run give exactly one follow-up run");
    assert_eq!(transport.max_inside.load(Ordering::SeqCst), 1, "never two drains at once");
}

#[test]
fn sync_now_during_a_run_returns_a_run_that_started_after_the_call() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    let a = outbox.enqueue(&sale(1)).expect("enqueue");
    let transport = Gated::closed();
    let (l, reports, _) = listener();
    let engine = start(&outbox, &transport, Some(l));
    transport.wait_entered(1);

    let b = outbox.enqueue(&sale(2)).expect("enqueue during the run");
    let called_at = outbox.clock().now_ms();
    let report = std::thread::scope(|s| {
        let waiter = s.spawn(|| engine.sync_now(WAIT));
        transport.open();
        waiter.join().expect("sync_now thread")
    })
    .expect("sync_now");
    let first = reports.recv_timeout(WAIT).expect("first run");
    assert_ne!(report.correlation_id, first.correlation_id, "not the run that was in flight");
    assert!(report.started_at_ms >= called_at);
    assert!(report.reasons.contains(DrainReason::Manual));
    assert_eq!(report.sent, 1, "the run covered the sale recorded before the call");
    for id in [&a, &b] {
        assert_eq!(outbox.get(id).expect("get").expect("row").state, SaleState::Sent);
    }
}

#[test]
fn offline_then_online_sends_without_waiting_for_the_interval() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    let transport = Gated::opened();
    transport.offline.store(true, Ordering::SeqCst);
    for i in 0..5 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let (l, reports, statuses) = listener();
    let engine = start(&outbox, &transport, Some(l));
    let offline = reports.recv_timeout(WAIT).expect("startup run");
    // K = 3 failed requests in a row end the run; the sales are due again, the engine backs off.
    assert_eq!((offline.sent, offline.requests_failed, offline.remaining_pending), (0, 3, 5));
    let status = loop {
        match statuses.recv_timeout(WAIT).expect("status") {
            SyncStatus::Draining { .. } => continue,
            other => break other,
        }
    };
    assert!(matches!(status, SyncStatus::Offline { .. }), "{status:?}");

    // Interval (1 h) and engine backoff (1 h) and per-sale backoff (60 s) are all far away.
    transport.offline.store(false, Ordering::SeqCst);
    engine.trigger(DrainReason::Online);
    let online = reports.recv_timeout(WAIT).expect("online run");
    assert!(online.reasons.contains(DrainReason::Online));
    assert_eq!((online.sent, online.remaining_pending), (5, 0), "{online:?}");
    assert_eq!(
        engine.status().expect("status").status,
        SyncStatus::Idle { unsent: 0, unsent_by_currency: Vec::new() }
    );
}

#[test]
fn shutdown_while_draining_loses_nothing_and_a_restart_resumes() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    let ids: Vec<String> = (0..120).map(|i| outbox.enqueue(&sale(i)).expect("enqueue")).collect();
    let transport = Gated::closed();
    let engine = start(&outbox, &transport, None);
    transport.wait_entered(1); // first batch of 50 on the wire
    engine.request_shutdown();
    transport.open();
    engine.shutdown();
    let counts = outbox.counts().expect("counts");
    assert_eq!(
        (counts.sent, counts.pending, counts.in_flight),
        (50, 70, 0),
        "the batch in flight was finished"
    );
    assert!(matches!(engine.sync_now(WAIT), Err(possync_core::SyncError::ShutDown)));
    drop(engine);

    let reopened = Arc::new(Outbox::open(&t.path, OutboxConfig::default()).expect("reopen"));
    let engine = start(&reopened, &Gated::opened(), None);
    let report = engine.sync_now(WAIT).expect("sync after restart");
    assert_eq!(report.remaining_pending, 0);
    for id in &ids {
        assert_eq!(reopened.get(id).expect("get").expect("row").state, SaleState::Sent);
    }
}

struct Panicky(AtomicUsize);

impl StatusListener for Panicky {
    fn on_status(&self, _status: SyncStatus) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("listener bug");
    }
    fn on_report(&self, _report: DrainReport) {
        std::thread::sleep(Duration::from_millis(200));
        panic!("listener bug");
    }
}

#[test]
fn a_panicking_or_slow_listener_does_not_stall_the_engine() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    let panicky = Arc::new(Panicky(AtomicUsize::new(0)));
    let engine = SyncEngine::start(outbox.clone(), Gated::opened(), engine_config(), Some(panicky.clone()))
        .expect("engine");
    for round in 0..5 {
        outbox.enqueue(&sale(round)).expect("enqueue");
        let report = engine.sync_now(WAIT).expect("sync_now");
        assert_eq!(report.remaining_pending, 0);
    }
    engine.shutdown();
    assert!(panicky.0.load(Ordering::SeqCst) >= 1, "the listener was called");
}

#[test]
fn status_reports_counts_amounts_and_attention_in_one_call() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    let transport = Gated::opened();
    transport.offline.store(true, Ordering::SeqCst);
    outbox.enqueue(&sale(2)).expect("enqueue");
    outbox.enqueue(&sale(4)).expect("enqueue");
    let engine = start(&outbox, &transport, None);
    let report = engine.sync_now(WAIT).expect("sync_now");
    assert!(report.stop.is_some());
    let snapshot = engine.status().expect("status");
    assert!(matches!(snapshot.status, SyncStatus::Offline { .. }));
    assert_eq!(snapshot.counts.pending, 2);
    assert_eq!(snapshot.unsent_by_currency.len(), 1);
    assert_eq!(snapshot.unsent_by_currency[0].total_minor, 2 * 102 + 2 * 104);
    assert!(snapshot.oldest_unsent_age_ms.is_some());
    assert_eq!(snapshot.last_report.map(|r| r.correlation_id), Some(report.correlation_id));
}

fn file_bytes(path: &std::path::Path) -> u64 {
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn sent_sales_are_pruned_after_a_run_at_most_every_prune_interval_and_unsent_stay() {
    let t = TempOutbox::new();
    let config = OutboxConfig { sent_retention_ms: 0, ..OutboxConfig::default() };
    let outbox = Arc::new(Outbox::open(&t.path, config).expect("open"));
    for i in 0..3 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let transport = Gated::opened();
    let engine = start(&outbox, &transport, None);
    engine.sync_now(WAIT).expect("after the startup run");
    // Pruned at the end of the startup run, all but the newest row, which keeps sequence numbers from
    // ever being handed out again (the server finds lost sales by them).
    let counts = outbox.counts().expect("counts");
    assert_eq!((counts.sent, counts.unsent()), (1, 0), "pruned at the end of the run");

    // Within the hour the engine does not prune again; prune_sent() does at once.
    outbox.enqueue(&sale(10)).expect("enqueue");
    engine.sync_now(WAIT).expect("sync");
    assert_eq!(outbox.counts().expect("counts").sent, 2, "at most one automatic prune per interval");
    transport.offline.store(true, Ordering::SeqCst);
    let unsent = outbox.enqueue(&sale(11)).expect("enqueue");
    engine.sync_now(WAIT).expect("sync");
    assert_eq!(engine.prune_sent().expect("prune"), 2, "the unsent sale is now the newest row");
    let counts = outbox.counts().expect("counts");
    assert_eq!((counts.sent, counts.unsent()), (0, 1), "unsent sales stay");
    assert!(outbox.get(&unsent).expect("get").is_some());
    engine.shutdown();
}

#[test]
fn the_file_stays_bounded_after_10k_sent_sales_with_retention_0_and_shutdown_truncates_the_wal() {
    let t = TempOutbox::new();
    let config = OutboxConfig {
        sent_retention_ms: 0,
        durability: possync_core::config::Durability::Normal,
        wal_size_limit_bytes: 256 * 1024,
        ..OutboxConfig::default()
    };
    let outbox = Arc::new(Outbox::open(&t.path, config).expect("open"));
    let transport = Gated::opened();
    let mut c = engine_config();
    c.sync.batch_size = 500;
    let engine = SyncEngine::start(outbox.clone(), transport.clone(), c, None).expect("engine");
    engine.sync_now(WAIT).expect("the startup run is over");
    let mut sizes = Vec::new();
    for round in 0..10 {
        // Held at the gate while the round is recorded, as in a burst: a few runs of full batches
        // instead of a run per sale, so the rounds compare.
        transport.close();
        for i in 0..1_000 {
            outbox.enqueue(&sale(round * 1_000 + i)).expect("enqueue");
        }
        transport.open();
        engine.sync_now(WAIT).expect("sync");
        assert_eq!(outbox.counts().expect("counts").unsent(), 0, "round {round} sent");
        engine.prune_sent().expect("prune");
        sizes.push(file_bytes(&t.path));
    }
    let counts = outbox.counts().expect("counts");
    assert_eq!((counts.sent, counts.unsent()), (1, 0), "everything sent and pruned but the newest row");
    let first = sizes[0].max(sizes[1]);
    let last = *sizes.last().expect("sizes");
    assert!(last <= first + first / 4, "the file grew with the sales sent: {sizes:?}");
    engine.shutdown();
    let wal = std::path::PathBuf::from(format!("{}-wal", t.path.display()));
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0, "the WAL is truncated at shutdown");
}

#[test]
fn idle_carries_the_unsent_count_and_amounts() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    let id = outbox.enqueue(&sale(1)).expect("enqueue");
    // A per-sale RETRY from the server leaves the run Idle with the sale unsent.
    let claimed = outbox.claim("x", 1, 60_000).expect("claim");
    let retry = possync_core::outbox::Outcome::Retry {
        from_server: true,
        code: "busy".into(),
        message: String::new(),
        next_attempt_at_ms: i64::MAX / 2,
    };
    let _ = outbox.finalize(&claimed[0].lease, &retry).expect("finalize");
    let transport = Gated::opened();
    let (l, reports, _) = listener();
    let engine = start(&outbox, &transport, Some(l));
    // Not Manual or Online: those skip the sale's backoff and send it.
    assert_eq!(reports.recv_timeout(WAIT).expect("startup run").sent, 0);
    let total = outbox.get(&id).expect("get").expect("row").total_minor;
    match engine.status().expect("status").status {
        SyncStatus::Idle { unsent, unsent_by_currency } => {
            assert_eq!(unsent, 1);
            assert_eq!(unsent_by_currency.len(), 1);
            assert_eq!((unsent_by_currency[0].count, unsent_by_currency[0].total_minor), (1, total));
        }
        other => panic!("expected Idle, got {other:?}"),
    }
}

#[test]
fn the_engine_answers_while_an_outbox_query_runs() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    let transport = Gated::opened();
    let (l, reports, _) = listener();
    let engine = start(&outbox, &transport, Some(l));
    reports.recv_timeout(WAIT).expect("startup run");
    let (answered_tx, answered) = mpsc::channel();
    std::thread::scope(|s| {
        // As a slow query on another thread would: every query of the outbox waits until it is dropped.
        let held = outbox.hold_connection();
        // An idle engine recounts the unsent sales on a recorded sale: that query waits.
        s.spawn(|| engine.trigger(DrainReason::SaleRecorded));
        std::thread::sleep(Duration::from_millis(200));
        let engine = &engine;
        s.spawn(move || {
            engine.trigger(DrainReason::Focus);
            let _ = (engine.runs_started(), engine.waiting(), engine.failed_runs_in_a_row());
            let _ = answered_tx.send(());
        });
        let in_time = answered.recv_timeout(Duration::from_secs(2)).is_ok();
        drop(held);
        assert!(in_time, "the engine's lock was held across an outbox query");
    });
    match engine.status().expect("status once the query is done").status {
        SyncStatus::Idle { unsent, .. } => assert_eq!(unsent, 0),
        other => panic!("expected Idle, got {other:?}"),
    }
    engine.shutdown();
}

#[test]
fn the_engine_settings_show_the_token_redacted() {
    let config = EngineConfig::new(possync_core::config::SyncConfig::new(
        "http://127.0.0.1:1",
        "pst_very_secret",
        "till-1",
    ));
    let shown = format!("{config:?}");
    assert!(!shown.contains("pst_very_secret") && shown.contains("<redacted>"), "{shown}");
}

#[test]
fn dropping_the_engine_returns_at_once_and_await_shutdown_waits_for_the_batch_in_flight() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    outbox.enqueue(&sale(1)).expect("enqueue");
    let transport = Gated::closed();
    let engine = start(&outbox, &transport, None);
    transport.wait_entered(1); // the startup run's request is held by the gate
    engine.request_shutdown();
    let t0 = std::time::Instant::now();
    assert!(!engine.await_shutdown(Duration::from_millis(100)), "stopped while a request is in flight");
    assert!(t0.elapsed() < Duration::from_secs(5));
    drop(engine); // returns at once; the drain thread goes on with the batch
    assert!(t0.elapsed() < Duration::from_secs(5));
    transport.open();
    let deadline = std::time::Instant::now() + WAIT;
    while outbox.counts().expect("counts").sent != 1 {
        assert!(std::time::Instant::now() < deadline, "the batch in flight was never finalized");
        std::thread::sleep(Duration::from_millis(5));
    }

    let engine = start(&outbox, &Gated::opened(), None);
    engine.request_shutdown();
    assert!(engine.await_shutdown(WAIT), "an idle engine stops at once");
    assert!(matches!(engine.sync_now(WAIT), Err(possync_core::SyncError::ShutDown)));
}

#[test]
fn diagnostics_are_a_consistent_copy_that_opens_read_only_and_settings_without_the_token() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    let transport = Gated::opened();
    let engine = start(&outbox, &transport, None);
    for i in 0..3 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    engine.sync_now(WAIT).expect("sync");
    transport.offline.store(true, Ordering::SeqCst);
    let unsent = outbox.enqueue(&sale(9)).expect("enqueue");
    engine.sync_now(WAIT).expect("every run the sale started is over");
    let dir = t.dir.path().join("diag");
    let files = engine.export_diagnostics(&dir).expect("export");
    assert_eq!(files, vec![dir.join("outbox.db"), dir.join("engine.txt")]);

    let before = std::fs::read(&files[0]).expect("read copy");
    let copy = Outbox::open_read_only(&files[0]).expect("the copy opens read-only");
    let counts = copy.counts().expect("counts");
    assert_eq!((counts.sent, counts.pending), (3, 1));
    assert!(copy.get(&unsent).expect("get").is_some());
    assert_eq!(copy.summaries().expect("summaries"), outbox.summaries().expect("summaries"));
    drop(copy);
    assert_eq!(std::fs::read(&files[0]).expect("read copy"), before, "reading the copy changes nothing");
    let beside: Vec<_> =
        std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(beside.len(), 2, "one self-contained file, no -wal/-shm: {beside:?}");

    let text = std::fs::read_to_string(&files[1]).expect("engine.txt");
    assert!(!text.contains("pst_test"), "the token is in the diagnostics:\n{text}");
    assert!(
        text.contains("<redacted>") && text.contains("batch_size") && text.contains("correlation_id"),
        "{text}"
    );
    assert!(
        matches!(engine.export_diagnostics(&dir), Err(possync_core::StorageError::Io { .. })),
        "an export never overwrites an earlier one"
    );
}

/// A transport that follows a script: `true` answers OK to every sale, `false` fails the request as
/// unreachable; once the script is used up it answers OK.
#[derive(Default)]
struct Script(Mutex<std::collections::VecDeque<bool>>);

impl Script {
    fn new(plan: &[bool]) -> Arc<Self> {
        Arc::new(Script(Mutex::new(plan.iter().copied().collect())))
    }
}

impl Transport for Script {
    fn push(&self, request: &PushRequest, cid: &str) -> Result<PushResponse, TransportError> {
        if !self.0.lock().pop_front().unwrap_or(true) {
            return Err(TransportError::Unreachable("connection refused".into()));
        }
        Gated::opened().push(request, cid)
    }
}

#[test]
fn any_answered_request_resets_the_engine_backoff() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    for i in 0..3 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let f = false;
    // Startup: 3 failures. Run 2: 3 failures. Run 3: one answer, then 3 failures. Run 4: answers.
    let transport = Script::new(&[f, f, f, f, f, f, true, f, f, f]);
    let mut config = engine_config();
    config.sync.batch_size = 1;
    let (l, reports, _) = listener();
    let engine = SyncEngine::start(outbox.clone(), transport, config, Some(l)).expect("engine");
    let first = reports.recv_timeout(WAIT).expect("startup run");
    assert_eq!((first.requests_failed, first.requests_ok), (3, 0), "{first:?}");
    assert_eq!(engine.failed_runs_in_a_row(), 1);
    let second = engine.sync_now(WAIT).expect("run 2");
    assert_eq!(second.requests_failed, 3);
    assert_eq!(engine.failed_runs_in_a_row(), 2, "runs with no answer grow the backoff");
    let third = engine.sync_now(WAIT).expect("run 3");
    assert_eq!((third.requests_ok, third.requests_failed, third.sent), (1, 3, 1), "{third:?}");
    assert_eq!(engine.failed_runs_in_a_row(), 1, "an answer reset it: backing off from the base again");
    let fourth = engine.sync_now(WAIT).expect("run 4");
    assert_eq!((fourth.sent, fourth.remaining_pending), (2, 0));
    assert_eq!(engine.failed_runs_in_a_row(), 0);
    assert!(matches!(engine.status().expect("status").status, SyncStatus::Idle { unsent: 0, .. }));
}

#[test]
fn a_run_that_finds_nothing_due_runs_again_when_the_earliest_sale_is_due() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(t.open_with(clock.clone()));
    let id = outbox.enqueue(&sale(1)).expect("enqueue");
    // The server answered RETRY: the sale waits 300 ms on its own.
    let claimed = outbox.claim("earlier", 1, 60_000).expect("claim");
    let retry = possync_core::outbox::Outcome::Retry {
        from_server: true,
        code: "busy".into(),
        message: String::new(),
        next_attempt_at_ms: T0 + 300,
    };
    let _ = outbox.finalize(&claimed[0].lease, &retry).expect("finalize");
    let (l, reports, _) = listener();
    // The interval (1 h) and the engine backoff (1 h) are far away.
    let engine = start(&outbox, &Gated::opened(), Some(l));
    let first = reports.recv_timeout(WAIT).expect("startup run");
    assert_eq!((first.sent, first.remaining_pending, first.stop), (0, 1, None), "nothing due yet");
    clock.advance(300);
    let t0 = std::time::Instant::now();
    loop {
        let report = reports.recv_timeout(WAIT).expect("a run when the sale is due, not after the interval");
        assert_eq!(report.reasons, DrainReason::Interval.into(), "the due timer's run");
        if report.sent == 1 {
            break;
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(outbox.get(&id).expect("get").expect("row").state, SaleState::Sent);
    engine.shutdown();
}

/// An outbox with four sales: two leased by `till-1` (the engine's device id) in an earlier life that
/// died, one leased by another live process (leases of a minute, not expired), one free.
fn outbox_after_a_crash(t: &TempOutbox) -> (Arc<Outbox>, Vec<possync_core::outbox::Claimed>, String) {
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(t.open_with(clock));
    for i in 0..4 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let own = outbox.claim("till-1", 2, 60_000).expect("claim as the earlier life");
    let other = outbox.claim("other-process", 1, 60_000).expect("claim as another owner");
    assert_eq!((own.len(), other.len()), (2, 1));
    (outbox, own, other[0].lease.client_tx_id.clone())
}

#[test]
fn own_stale_leases_are_taken_back_at_start_and_other_owners_are_not() {
    let t = TempOutbox::new();
    let (outbox, own, other) = outbox_after_a_crash(&t);
    let (l, reports, _) = listener();
    let engine = start(&outbox, &Gated::opened(), Some(l));
    let first = reports.recv_timeout(WAIT).expect("startup run");
    assert_eq!(first.sent, 3, "the earlier life's sales went at once, not after the lease: {first:?}");
    for c in &own {
        assert_eq!(outbox.get(&c.lease.client_tx_id).expect("get").expect("row").state, SaleState::Sent);
        // Fencing: the earlier life, were it to come back, cannot write over the result.
        let stale = possync_core::outbox::Outcome::Sent { duplicate: false, server_tx_id: None };
        assert_eq!(
            outbox.finalize(&c.lease, &stale).expect("finalize"),
            possync_core::outbox::Finalized::LeaseLost
        );
    }
    let entry = outbox.get(&other).expect("get").expect("row");
    assert_eq!((entry.state, entry.lease_owner_id.as_deref()), (SaleState::InFlight, Some("other-process")));
    engine.shutdown();
}

#[test]
fn an_engine_that_shares_its_outbox_waits_out_earlier_leases() {
    let t = TempOutbox::new();
    let (outbox, own, _) = outbox_after_a_crash(&t);
    let mut config = engine_config();
    config.sole_user = false;
    let (l, reports, _) = listener();
    let listener = Some(l as Arc<dyn StatusListener>);
    let engine = SyncEngine::start(outbox.clone(), Gated::opened(), config, listener).expect("engine");
    let first = reports.recv_timeout(WAIT).expect("startup run");
    assert_eq!(first.sent, 1, "only the sale nobody held: {first:?}");
    for c in &own {
        let entry = outbox.get(&c.lease.client_tx_id).expect("get").expect("row");
        assert_eq!((entry.state, entry.lease_owner_id.as_deref()), (SaleState::InFlight, Some("till-1")));
    }
    engine.shutdown();
}

/// A transport that drops about a quarter of its requests (a fixed pseudo-random sequence), alternating
/// refused connections and 502s, and answers OK to the rest.
struct Lossy(Mutex<u64>);

impl Transport for Lossy {
    fn push(&self, request: &PushRequest, cid: &str) -> Result<PushResponse, TransportError> {
        let roll = {
            let mut x = self.0.lock();
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x
        };
        match roll % 8 {
            0 => Err(TransportError::Unreachable("connection reset".into())),
            1 => {
                Err(TransportError::Http { status: 502, code: "bad_gateway".into(), message: String::new() })
            }
            _ => Gated::opened().push(request, cid),
        }
    }
}

#[test]
fn an_unattended_till_keeps_up_on_a_link_that_drops_a_quarter_of_requests() {
    let t = TempOutbox::new();
    let outbox = Arc::new(t.open());
    // Production defaults for backoff (per sale 1 s..5 min, engine 2 s..5 min) and K (3); nobody
    // triggers anything after the start but the interval timer (scaled from 60 s to 300 ms): the till
    // must keep up on its own.
    let mut config = EngineConfig::new(crate::common::sync_config("pst_test"));
    config.interval_ms = 300;
    config.sync.batch_size = 20;
    config.online_jitter_ms = 0;
    let engine =
        SyncEngine::start(outbox.clone(), Arc::new(Lossy(Mutex::new(0x9E37_79B9_7F4A_7C15))), config, None)
            .expect("engine");
    for i in 0..600 {
        outbox.enqueue(&sale(i)).expect("enqueue");
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outbox.counts().expect("counts").unsent() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "fell behind: {:?} after {} runs",
            outbox.counts().expect("counts"),
            engine.runs_started()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(outbox.counts().expect("counts").sent, 600);
    let waiting = outbox.summaries().expect("summaries");
    assert!(waiting.iter().all(|s| s.state == SaleState::Sent));
    engine.shutdown();
}

/// Polls until the engine waits for `cause` (the worker has parked on it).
fn parked_on(engine: &SyncEngine, cause: WaitCause) -> Waiting {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match engine.waiting() {
            Some(w) if w.cause == cause => return w,
            other => assert!(std::time::Instant::now() < deadline, "never waited for {cause:?}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn online_and_the_start_wait_a_random_hold_on_the_engine_clock_and_sync_now_does_not() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(t.open_with(clock.clone()));
    let mut config = engine_config();
    config.online_jitter_ms = 5_000;
    let (l, reports, _) = listener();
    let engine = SyncEngine::start(outbox.clone(), Gated::opened(), config, Some(l)).expect("engine");

    let start_hold = parked_on(&engine, WaitCause::Jitter);
    assert!((1..=5_000).contains(&start_hold.remaining_ms), "{start_hold:?}");
    assert_eq!(engine.runs_started(), 0, "the first run waits its hold");
    clock.advance(start_hold.remaining_ms);
    assert_eq!(reports.recv_timeout(WAIT).expect("startup run").reasons, DrainReason::Startup.into());

    engine.trigger(DrainReason::Online);
    let hold = parked_on(&engine, WaitCause::Jitter);
    assert!((1..=5_000).contains(&hold.remaining_ms), "{hold:?}");
    engine.trigger(DrainReason::Focus);
    engine.trigger(DrainReason::Online); // a second Online does not restart the hold
    clock.advance(hold.remaining_ms - 1);
    assert_eq!(parked_on(&engine, WaitCause::Jitter).remaining_ms, 1);
    assert_eq!(engine.runs_started(), 1, "Focus waits with the hold");
    clock.advance(1);
    let online = reports.recv_timeout(WAIT).expect("online run");
    assert!(online.reasons.contains(DrainReason::Online) && online.reasons.contains(DrainReason::Focus));

    engine.trigger(DrainReason::Online);
    parked_on(&engine, WaitCause::Jitter);
    let report = engine.sync_now(WAIT).expect("sync_now does not wait for the hold");
    assert!(report.reasons.contains(DrainReason::Manual) && report.reasons.contains(DrainReason::Online));
    assert_eq!(engine.runs_started(), 3);
    engine.shutdown();
}

#[test]
fn a_recorded_sale_starts_a_run_by_itself_but_waits_out_the_engine_backoff() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(t.open_with(clock.clone()));
    let transport = Gated::opened();
    let (l, reports, _) = listener();
    let engine =
        SyncEngine::start(outbox.clone(), transport.clone(), engine_config(), Some(l)).expect("engine");
    assert_eq!(reports.recv_timeout(WAIT).expect("startup run").requests_ok, 0, "nothing to send");

    // Recorded with the link up: sent at once, no trigger from the app.
    let first = outbox.enqueue(&sale(1)).expect("enqueue");
    let report = reports.recv_timeout(WAIT).expect("a run for the recorded sale");
    assert_eq!((report.reasons, report.sent), (DrainReason::SaleRecorded.into(), 1));
    assert_eq!(outbox.get(&first).expect("get").expect("row").state, SaleState::Sent);

    // The link goes down: the next sale's run fails K = 3 times and the engine backs off (1 h).
    transport.offline.store(true, Ordering::SeqCst);
    outbox.enqueue(&sale(2)).expect("enqueue");
    let failed = reports.recv_timeout(WAIT).expect("the failing run");
    assert_eq!((failed.requests_failed, failed.remaining_pending), (3, 1));
    let backoff = parked_on(&engine, WaitCause::Backoff);
    transport.offline.store(false, Ordering::SeqCst);
    let entered = transport.entered.load(Ordering::SeqCst);

    // Sales recorded during the backoff start no request: each would hit a dead server.
    for i in 3..8 {
        outbox.enqueue(&sale(i)).expect("enqueue during the backoff");
    }
    let still = parked_on(&engine, WaitCause::Backoff);
    assert!(still.remaining_ms <= backoff.remaining_ms);
    assert_eq!(engine.runs_started(), 3, "no run during the backoff");
    assert_eq!(transport.entered.load(Ordering::SeqCst), entered, "no request during the backoff");

    // The backoff's end sends them all in one run.
    clock.advance(still.remaining_ms);
    let after = reports.recv_timeout(WAIT).expect("the run at the backoff's end");
    assert!(after.reasons.contains(DrainReason::SaleRecorded), "{after:?}");
    assert_eq!((after.sent, after.remaining_pending), (6, 0), "{after:?}");
    engine.shutdown();
}

/// Answers the first request with 503 and `Retry-After: 30`, then OK.
struct BusyOnce(AtomicBool);

impl Transport for BusyOnce {
    fn push(&self, request: &PushRequest, cid: &str) -> Result<PushResponse, TransportError> {
        if !self.0.swap(true, Ordering::SeqCst) {
            return Err(TransportError::Overloaded {
                status: 503,
                code: "overloaded".into(),
                message: "busy".into(),
                retry_after_ms: Some(30_000),
            });
        }
        Gated::opened().push(request, cid)
    }
}

#[test]
fn online_goes_through_the_engine_backoff_but_not_through_the_servers_retry_after() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(t.open_with(clock.clone()));
    let id = outbox.enqueue(&sale(1)).expect("enqueue");
    let (l, reports, _) = listener();
    let transport = Arc::new(BusyOnce(AtomicBool::new(false)));
    let engine = SyncEngine::start(outbox.clone(), transport, engine_config(), Some(l)).expect("engine");
    let shed = reports.recv_timeout(WAIT).expect("startup run");
    assert_eq!((shed.requests_failed, shed.remaining_pending), (1, 1), "a Retry-After ends the run");
    // The wait is the server's 30 s plus jitter (not the engine's 1 h backoff).
    let backoff = parked_on(&engine, WaitCause::Backoff);
    assert!((30_000..=60_000).contains(&backoff.remaining_ms), "{backoff:?}");

    engine.trigger(DrainReason::Online);
    let floor = parked_on(&engine, WaitCause::Backoff);
    assert!(floor.remaining_ms <= 30_000, "Online waits only for the Retry-After: {floor:?}");
    clock.advance(floor.remaining_ms - 1);
    assert_eq!(parked_on(&engine, WaitCause::Backoff).remaining_ms, 1);
    assert_eq!(engine.runs_started(), 1, "not before the server's Retry-After");
    clock.advance(1);
    let online = reports.recv_timeout(WAIT).expect("the Online run");
    assert!(online.reasons.contains(DrainReason::Online), "{online:?}");
    assert_eq!(online.sent, 1);
    assert_eq!(outbox.get(&id).expect("get").expect("row").state, SaleState::Sent);
    engine.shutdown();
}

#[test]
fn after_a_crash_the_first_run_waits_at_most_a_second_whatever_the_jitter() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(t.open_with(clock.clone()));
    for i in 0..2 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    // An earlier life of this till (device till-1) died with both sales on the wire.
    assert_eq!(outbox.claim("till-1", 2, 60_000).expect("claim").len(), 2);
    let mut config = engine_config();
    config.online_jitter_ms = 5_000;
    let (l, reports, _) = listener();
    let engine = SyncEngine::start(outbox.clone(), Gated::opened(), config, Some(l)).expect("engine");
    let hold = parked_on(&engine, WaitCause::Jitter);
    assert!((1..=1_000).contains(&hold.remaining_ms), "{hold:?}");
    clock.advance(hold.remaining_ms);
    let first = reports.recv_timeout(WAIT).expect("startup run");
    assert_eq!(first.sent, 2, "{first:?}");
    engine.shutdown();
}
