//! The client core against the real reference server on real PostgreSQL: drains converge to `sent`
//! exactly once through timeouts, crashes, concurrent claimers, conflicts and bad tokens.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use possync_core::clock::{Clock, ManualClock, SystemClock};
use possync_core::config::{OutboxConfig, SyncConfig};
use possync_core::drain::{DrainHooks, DrainStop, Drainer};
use possync_core::outbox::{Outbox, SaleState};
use possync_core::reason::DrainReason;
use possync_core::transport::{HttpTransport, TransportError};
use possync_tests::proxy::{FaultProxy, Mode};
use possync_tests::server::TestServer;
use possync_tests::till::{drain_once, sale, sync_config};

fn drain(outbox: &Outbox, config: &SyncConfig) -> possync_core::drain::DrainReport {
    drain_once(outbox, config, DrainReason::Manual)
}

/// Every outbox sale is on the server exactly once, with its items and payments.
fn assert_exactly_once(server: &TestServer, outbox: &Outbox, ids: &[String], items: i64) {
    for id in ids {
        assert_eq!(outbox.get(id).expect("get").expect("row").state, SaleState::Sent, "{id}");
        assert_eq!(server.sale_rows(id), (1, items, 2), "{id} once on the server");
    }
    assert_eq!(server.total("pos_transactions"), ids.len() as i64);
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn drain_sends_a_backlog_in_batches_exactly_once() {
    let _serial = crate::shared();
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let outbox = Outbox::open(dir.path().join("till.db"), OutboxConfig::default()).expect("open");
    let ids: Vec<String> = (0..230).map(|i| outbox.enqueue(&sale(i, 3)).expect("enqueue")).collect();
    let config = sync_config(&server.base, &server.token, "till-1");
    let mut seen = Vec::new();
    let transport = HttpTransport::new(&config);
    let drainer = Drainer::new(&outbox, &transport, &config).expect("drainer");
    let mut progress = |done, total| seen.push((done, total));
    let hooks = DrainHooks { progress: Some(&mut progress), ..DrainHooks::default() };
    let report = drainer.drain(DrainReason::Manual.into(), hooks).expect("drain");
    assert_eq!((report.sent, report.duplicate, report.retry, report.remaining_pending), (230, 0, 0, 0));
    assert_eq!(report.stop, None);
    assert_eq!(seen.last(), Some(&(230, 230)));
    assert_eq!(seen.len(), 5, "batches of 50: {seen:?}");
    assert_exactly_once(&server, &outbox, &ids, 3);
    // The correlation id of the run is in the server's audit trail.
    let mut c = server.db.client();
    let audited: i64 = c
        .query_one(
            "SELECT count(*) FROM pos_transaction_audit WHERE correlation_id = $1",
            &[&report.correlation_id],
        )
        .expect("audit")
        .get(0);
    assert_eq!(audited, 230);
    assert!(drain(&outbox, &config).settled() == 0, "nothing left to send");
}

#[test]
fn timeout_then_replay_converges_to_sent_via_duplicate() {
    let _serial = crate::shared();
    let server = TestServer::start();
    let proxy = FaultProxy::start(server.base.trim_start_matches("http://").parse().expect("addr"));
    let dir = tempfile::tempdir().expect("tmp");
    let outbox = Outbox::open(dir.path().join("till.db"), OutboxConfig::default()).expect("open");
    let ids: Vec<String> = (0..20).map(|i| outbox.enqueue(&sale(i, 2)).expect("enqueue")).collect();
    let mut config = sync_config(&proxy.url(), &server.token, "till-1");
    // One timeout ends the run here (the default goes on to 3 in a row): this test is about the replay.
    config.link.failures_before_backoff = 1;

    // The server commits, but the answer is held past the till's 2 s request timeout.
    proxy.set_mode(Mode::HoldResponse(Duration::from_secs(4)));
    let first = drain(&outbox, &config);
    assert!(
        matches!(first.stop, Some(DrainStop::Offline { error: TransportError::Timeout(_) })),
        "{first:?}"
    );
    assert_eq!((first.sent, first.retry, first.remaining_pending), (0, 20, 20));
    wait_until("the server to commit the lost batch", || server.total("pos_transactions") == 20);
    for id in &ids {
        let entry = outbox.get(id).expect("get").expect("row");
        assert_eq!((entry.state, entry.last_result.as_deref()), (SaleState::Pending, Some("TRANSPORT")));
    }

    proxy.set_mode(Mode::Pass);
    std::thread::sleep(Duration::from_millis(20)); // past the (tiny) test backoff
    let replay = drain(&outbox, &config);
    assert_eq!((replay.sent, replay.duplicate, replay.remaining_pending), (0, 20, 0), "{replay:?}");
    assert_exactly_once(&server, &outbox, &ids, 2);
    assert_eq!(outbox.get(&ids[0]).expect("get").expect("row").attempt, 2);
}

#[test]
fn crash_mid_send_leaves_a_lease_that_expires_and_the_sale_converges() {
    let _serial = crate::shared();
    let server = TestServer::start();
    let proxy = FaultProxy::start(server.base.trim_start_matches("http://").parse().expect("addr"));
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("till.db");
    let outbox = Outbox::open(&path, OutboxConfig::default()).expect("open");
    let ids: Vec<String> = (0..10).map(|i| outbox.enqueue(&sale(i, 1)).expect("enqueue")).collect();

    // A till process sends through a proxy that never answers in time, and is killed mid-send.
    proxy.set_mode(Mode::HoldResponse(Duration::from_secs(60)));
    let mut child = Command::new(env!("CARGO_BIN_EXE_possync-test-drain"))
        .args([path.to_str().expect("utf-8 path"), &proxy.url(), &server.token, "till-1"])
        .spawn()
        .expect("spawn till process");
    wait_until("the till to hold leases", || outbox.counts().expect("counts").in_flight == 10);
    wait_until("the server to commit", || server.total("pos_transactions") == 10);
    child.kill().expect("SIGKILL the till");
    let _ = child.wait();
    proxy.set_mode(Mode::Pass);

    let config = sync_config(&server.base, &server.token, "till-1");
    let before_expiry = drain(&outbox, &config);
    assert_eq!(before_expiry.settled(), 0, "live leases are respected");
    let entry = outbox.get(&ids[0]).expect("get").expect("row");
    assert_eq!(entry.state, SaleState::InFlight);
    let expires = entry.lease_expires_at_ms.expect("lease expiry");

    // Reopen the file with a clock past the lease expiry instead of sleeping through it.
    let clock = Arc::new(ManualClock::new(expires.max(SystemClock.now_ms()) + 1));
    let later = Outbox::open_with_clock(&path, OutboxConfig::default(), clock).expect("reopen");
    let report = drain(&later, &config);
    assert_eq!((report.sent, report.duplicate, report.remaining_pending), (0, 10, 0), "{report:?}");
    assert_exactly_once(&server, &later, &ids, 1);
}

/// Issue 14: a till killed mid-send and started again at once resends its leased sales right away
/// (it is its outbox's sole user and takes its own leases back at start), not after the lease. The
/// lease is 10 minutes here, so arriving at all within the test's wait proves it; no timing asserted.
#[test]
fn killed_till_restarted_at_once_resends_its_leased_sales_before_the_lease_expires() {
    let _serial = crate::shared();
    let server = TestServer::start();
    let proxy = FaultProxy::start(server.base.trim_start_matches("http://").parse().expect("addr"));
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("till.db");
    let outbox = Outbox::open(&path, OutboxConfig::default()).expect("open");
    let ids: Vec<String> = (0..20).map(|i| outbox.enqueue(&sale(i, 1)).expect("enqueue")).collect();
    let lease_ms = "600000";
    let start_till = || {
        Command::new(env!("CARGO_BIN_EXE_possync-test-till"))
            .args([path.to_str().expect("utf-8 path"), &proxy.url(), &server.token, "till-1", lease_ms])
            .spawn()
            .expect("spawn till process")
    };

    // The link swallows every request (the server never sees one): the till holds its leases.
    proxy.set_mode(Mode::StallAll(Duration::from_secs(120)));
    let mut till = start_till();
    let leased = possync_tests::leases::kill_while_leased(&mut till, &path, 20);
    let expiry = leased.earliest_expiry_ms.expect("lease expiry");
    assert!(expiry > SystemClock.now_ms() + 300_000, "the leases run for minutes: {leased:?}");
    assert_eq!(server.total("pos_transactions"), 0, "nothing reached the server");

    // The link is fine again and the till comes straight back.
    proxy.set_mode(Mode::Pass);
    let mut till = start_till();
    wait_until("the leased sales to reach the server", || server.total("pos_transactions") == 20);
    wait_until("the till to mark them sent", || outbox.counts().expect("counts").sent == 20);
    assert!(SystemClock.now_ms() < expiry, "resent before the old leases would have expired");
    let _ = till.kill();
    let _ = till.wait();
    assert_exactly_once(&server, &outbox, &ids, 1);
}

/// A server that lets one device have several pushes in flight: the two senders of one outbox below
/// are on the wire at once on purpose (the lease is what keeps them apart), where the server's rule
/// of one push per device would turn one of them away with 429 and stop its run.
fn server_for_two_senders() -> TestServer {
    let mut http = possync_tests::server::test_http_config();
    http.limits.one_push_per_device = false;
    TestServer::start_with(http, possync_tests::server::test_pg_options())
}

#[test]
fn two_processes_draining_one_file_never_send_a_sale_twice() {
    let _serial = crate::shared();
    let server = server_for_two_senders();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("till.db");
    let outbox = Outbox::open(&path, OutboxConfig::default()).expect("open");
    let ids: Vec<String> = (0..600).map(|i| outbox.enqueue(&sale(i, 1)).expect("enqueue")).collect();
    let mut config = sync_config(&server.base, &server.token, "till-1");
    config.batch_size = 10;

    // The other process sends through a slow proxy, so it still holds its first batch while this one
    // drains: both take part, and neither may take the other's leased sales.
    let proxy = FaultProxy::start(server.base.trim_start_matches("http://").parse().expect("addr"));
    proxy.set_mode(Mode::HoldResponse(Duration::from_millis(300)));
    let child = Command::new(env!("CARGO_BIN_EXE_possync-test-drain"))
        .args([path.to_str().expect("utf-8 path"), &proxy.url(), &server.token, "till-1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn second till process");
    wait_until("the other process to claim", || outbox.counts().expect("counts").in_flight > 0);
    let mut ours = 0;
    loop {
        let report = drain(&outbox, &config);
        ours += report.sent;
        assert_eq!(report.duplicate, 0, "a sale sent twice would come back DUPLICATE");
        if report.settled() == 0 {
            if outbox.counts().expect("counts").in_flight == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50)); // the other process still holds leases
        }
    }
    let out = child.wait_with_output().expect("child");
    assert!(out.status.success());
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("child report");
    assert_eq!(theirs["duplicate"], 0);
    let theirs = theirs["sent"].as_u64().expect("sent");
    assert_eq!(ours + theirs, 600, "ours {ours}, theirs {theirs}");
    eprintln!("sales sent by this process: {ours}, by the other: {theirs}");
    assert!(ours > 0 && theirs > 0, "both processes took part: ours {ours}, theirs {theirs}");
    assert_exactly_once(&server, &outbox, &ids, 1);
    let mut c = server.db.client();
    let attempts: i64 = c.query_one("SELECT count(*) FROM pos_transaction_audit", &[]).expect("audit").get(0);
    assert_eq!(attempts, 600, "exactly one send per sale");
}

#[test]
fn two_threads_draining_with_their_own_connections_never_send_a_sale_twice() {
    let _serial = crate::shared();
    let server = server_for_two_senders();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("till.db");
    let setup = Outbox::open(&path, OutboxConfig::default()).expect("open");
    let ids: Vec<String> = (0..400).map(|i| setup.enqueue(&sale(i, 1)).expect("enqueue")).collect();
    let mut config = sync_config(&server.base, &server.token, "till-1");
    config.batch_size = 4;
    let sent: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (path, config) = (&path, &config);
                s.spawn(move || {
                    let outbox = Outbox::open(path, OutboxConfig::default()).expect("open");
                    let report = drain(&outbox, config);
                    assert_eq!(report.duplicate, 0);
                    report.sent
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("drainer")).sum()
    });
    assert_eq!(sent, 400);
    assert_exactly_once(&server, &setup, &ids, 1);
}

#[test]
fn conflict_and_invalid_become_terminal_with_the_servers_code() {
    let _serial = crate::shared();
    let mut http = possync_tests::server::test_http_config();
    http.push_limits.sale.max_items_per_sale = 3;
    let server = TestServer::start_with(http, possync_tests::server::test_pg_options());
    let dir = tempfile::tempdir().expect("tmp");
    let config = sync_config(&server.base, &server.token, "till-1");

    // Another till already stored a different sale under the id this till will use.
    let other = Outbox::open(dir.path().join("other.db"), OutboxConfig::default()).expect("open");
    other.enqueue_with_id("shared-id-1", &sale(1, 1)).expect("enqueue");
    assert_eq!(drain(&other, &config).sent, 1);

    let outbox = Outbox::open(dir.path().join("till.db"), OutboxConfig::default()).expect("open");
    outbox.enqueue_with_id("shared-id-1", &sale(2, 2)).expect("enqueue");
    let too_big = outbox.enqueue(&sale(3, 4)).expect("enqueue");
    let fine = outbox.enqueue(&sale(4, 1)).expect("enqueue");
    let report = drain(&outbox, &config);
    assert_eq!((report.sent, report.conflict, report.invalid, report.remaining_pending), (1, 1, 1, 0));
    let attention = outbox.attention().expect("attention");
    let codes: HashSet<(String, SaleState, Option<String>)> =
        attention.into_iter().map(|a| (a.client_tx_id, a.state, a.code)).collect();
    assert!(
        codes.contains(&("shared-id-1".into(), SaleState::Conflict, Some("hash_differs".into()))),
        "{codes:?}"
    );
    assert!(codes.contains(&(too_big, SaleState::Invalid, Some("too_many_items".into()))), "{codes:?}");
    assert_eq!(outbox.get(&fine).expect("get").expect("row").state, SaleState::Sent);
    assert_eq!(drain(&outbox, &config).settled(), 0, "terminal sales are not resent");

    // A person re-keys the conflict: the same sale goes to the server under a new id.
    let new_id = outbox
        .resolve("shared-id-1", &possync_core::outbox::Resolution::Rekey, Some("id clash"))
        .expect("resolve")
        .expect("new id");
    assert_eq!(drain(&outbox, &config).sent, 1);
    assert_eq!(server.sale_rows(&new_id), (1, 2, 2));
    assert_eq!(server.sale_rows("shared-id-1"), (1, 1, 2), "the other till's sale is untouched");
}

#[test]
fn revoked_token_stops_the_drain_and_keeps_every_sale() {
    let _serial = crate::shared();
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let outbox = Outbox::open(dir.path().join("till.db"), OutboxConfig::default()).expect("open");
    for i in 0..120 {
        outbox.enqueue(&sale(i, 1)).expect("enqueue");
    }
    let config = sync_config(&server.base, "pst_wrong", "till-1");
    let report = drain(&outbox, &config);
    match &report.stop {
        Some(DrainStop::AuthFailed { error: TransportError::Unauthorized { code, .. } }) => {
            assert_eq!(code, "invalid_token")
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    assert_eq!(report.retry, 50, "one batch tried, then the drain stopped instead of hammering");
    assert_eq!(outbox.counts().expect("counts").pending, 120);
    assert_eq!(server.total("pos_transactions"), 0);

    // With the right token the same sales go through.
    let good = sync_config(&server.base, &server.token, "till-1");
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(drain(&outbox, &good).sent, 120);
}

#[test]
fn unreachable_server_stops_the_run_offline_and_leaves_the_sale_due_without_backoff() {
    let _serial = crate::shared();
    let dir = tempfile::tempdir().expect("tmp");
    let outbox = Outbox::open(dir.path().join("till.db"), OutboxConfig::default()).expect("open");
    let id = outbox.enqueue(&sale(1, 1)).expect("enqueue");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener); // nothing listens there any more
    let mut config = sync_config(&dead, "pst_x", "till-1");
    config.backoff.base_ms = 60_000;
    config.backoff.cap_ms = 60_000;
    let report = drain(&outbox, &config);
    assert!(
        matches!(report.stop, Some(DrainStop::Offline { error: TransportError::Unreachable(_) })),
        "{report:?}"
    );
    // K = 3 refused connections in a row end the run; the engine (not the sale) backs off.
    assert_eq!((report.requests_failed, report.requests_ok), (3, 0), "{report:?}");
    let entry = outbox.get(&id).expect("get").expect("row");
    assert_eq!(entry.state, SaleState::Pending);
    assert_eq!(entry.attempt, 3, "tried once per request");
    assert_eq!(
        entry.next_attempt_at_ms, report.started_at_ms,
        "due again at once: a failed request gives the sale no backoff (its 60 s would apply to a RETRY)"
    );
    assert!(report.last_error.is_some());
}

/// Single flight over real HTTP: one engine, eight threads firing every kind of trigger and
/// `sync_now` at once while sales are recorded; the proxy in front of the real server counts the
/// requests inside it, and never sees two at once from the till. Every sale arrives exactly once.
#[test]
fn overlapping_triggers_never_put_two_requests_of_one_till_on_the_wire() {
    let _serial = crate::shared();
    use possync_core::engine::SyncEngine;
    let server = TestServer::start();
    let proxy = FaultProxy::start(server.base.trim_start_matches("http://").parse().expect("addr"));
    // Each answer is held 20 ms in the proxy, so that a second request would overlap it.
    proxy.set_mode(Mode::HoldResponse(Duration::from_millis(20)));
    let dir = tempfile::tempdir().expect("tmp");
    let outbox = Arc::new(Outbox::open(dir.path().join("till.db"), OutboxConfig::default()).expect("open"));
    let mut config = possync_tests::till::engine_config(&proxy.url(), &server.token, "till-1");
    config.sync.batch_size = 5;
    let engine = SyncEngine::start(outbox.clone(), Arc::new(HttpTransport::new(&config.sync)), config, None)
        .expect("engine");
    let reasons = [DrainReason::Interval, DrainReason::Online, DrainReason::Focus, DrainReason::Manual];
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for k in 0..8 {
            let (engine, outbox, ids) = (&engine, &outbox, &ids);
            s.spawn(move || {
                for i in 0..25 {
                    let id = outbox.enqueue(&sale((k * 100 + i) as i64, 1)).expect("enqueue");
                    ids.lock().expect("ids").push(id);
                    engine.trigger(reasons[(k + i) % 4]);
                    if i % 10 == 9 {
                        let _ = engine.sync_now(Duration::from_secs(30));
                    }
                }
            });
        }
    });
    wait_until("every sale sent", || {
        let _ = engine.sync_now(Duration::from_secs(30));
        outbox.counts().expect("counts").unsent() == 0
    });
    engine.shutdown();
    let passed = proxy.stats().get("pass").copied().unwrap_or(0);
    assert!(passed >= 40, "200 sales in batches of at most 5: {passed} requests");
    assert_eq!(proxy.max_in_flight(), 1, "two requests of one till were on the wire at once");
    let ids = ids.into_inner().expect("ids");
    assert_exactly_once(&server, &outbox, &ids, 1);
}

/// Captures every log record's message and key-value fields (the logger is process-wide: only
/// [`attempt_records_over_real_http_carry_the_seven_fields_for_every_answer`] installs it, reads
/// only the records of its own runs, and turns the level off again when it ends, so that later tests
/// of this binary pay nothing for it).
struct Capture(parking_lot::Mutex<Vec<(String, std::collections::HashMap<String, String>)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        struct Fields<'a>(&'a mut std::collections::HashMap<String, String>);
        impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
            fn visit_pair(
                &mut self,
                k: log::kv::Key<'kvs>,
                v: log::kv::Value<'kvs>,
            ) -> Result<(), log::kv::Error> {
                self.0.insert(k.to_string(), v.to_string());
                Ok(())
            }
        }
        let mut fields = std::collections::HashMap::new();
        let _ = record.key_values().visit(&mut Fields(&mut fields));
        self.0.lock().push((record.args().to_string(), fields));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(parking_lot::Mutex::new(Vec::new()));

/// The seven fields of every send attempt, from a real drain against the real server, for each
/// answer the server gives: OK, DUPLICATE, CONFLICT (another till stored the id first) and RETRY
/// (the server's lock timeout while the sales table is held).
#[test]
fn attempt_records_over_real_http_carry_the_seven_fields_for_every_answer() {
    let _serial = crate::exclusive();
    log::set_logger(&CAPTURE).expect("the only logger of this test binary");
    // A RETRY's send record is DEBUG (its request logs one WARN for it).
    log::set_max_level(log::LevelFilter::Debug);
    let pg = possync_server::store::postgres::PgOptions {
        lock_timeout_ms: 200,
        ..possync_tests::server::test_pg_options()
    };
    let server = TestServer::start_with(possync_tests::server::test_http_config(), pg);
    let config = sync_config(&server.base, &server.token, "till-1");
    let dir = tempfile::tempdir().expect("tmp");
    let other = Outbox::open(dir.path().join("other.db"), OutboxConfig::default()).expect("open");
    let till = Outbox::open(dir.path().join("till.db"), OutboxConfig::default()).expect("open");
    // Another till stores "dup" (the same sale) and "taken" (another sale) first.
    other.enqueue_with_id("dup", &sale(1, 1)).expect("enqueue");
    other.enqueue_with_id("taken", &sale(2, 1)).expect("enqueue");
    assert_eq!(drain(&other, &config).sent, 2);
    let ok = till.enqueue(&sale(3, 1)).expect("enqueue");
    till.enqueue_with_id("dup", &sale(1, 1)).expect("enqueue");
    till.enqueue_with_id("taken", &sale(4, 1)).expect("enqueue");
    let first = drain(&till, &config);
    assert_eq!((first.sent, first.duplicate, first.conflict), (1, 1, 1), "{first:?}");

    // The sales table held past the server's lock timeout: RETRY.
    let retry = till.enqueue(&sale(5, 1)).expect("enqueue");
    let mut locker = server.db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE pos_transactions IN SHARE ROW EXCLUSIVE MODE").expect("lock");
    let second = drain(&till, &config);
    tx.rollback().expect("unlock");
    assert_eq!(second.retry, 1, "{second:?}");

    log::set_max_level(log::LevelFilter::Off);
    let records = std::mem::take(&mut *CAPTURE.0.lock());
    for (report, id, result) in [
        (&first, ok.as_str(), "OK"),
        (&first, "dup", "DUPLICATE"),
        (&first, "taken", "CONFLICT"),
        (&second, retry.as_str(), "RETRY"),
    ] {
        let (_, fields) = records
            .iter()
            .find(|(msg, f)| {
                msg == "send attempt"
                    && f.get("correlation_id") == Some(&report.correlation_id)
                    && f.get("client_tx_id").map(String::as_str) == Some(id)
            })
            .unwrap_or_else(|| panic!("no send record for {id}"));
        let token = fields.get("lease_token").expect("lease_token");
        assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{fields:?}");
        assert!(fields.get("attempt").is_some_and(|a| a.parse::<u32>().is_ok_and(|a| a >= 1)), "{fields:?}");
        assert_eq!(fields.get("drain_reason").map(String::as_str), Some("manual"), "{fields:?}");
        assert!(fields.get("latency_ms").is_some_and(|l| l.parse::<u64>().is_ok()), "{fields:?}");
        assert_eq!(fields.get("result").map(String::as_str), Some(result), "{fields:?}");
    }
}
