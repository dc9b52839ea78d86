//! The till side of the shop console, against the real server on PostgreSQL: a draining till sends
//! its backlog report and each sale's outbox sequence number, and sales lost from a till's outbox
//! show on the server as exactly that gap.

use possync_core::config::OutboxConfig;
use possync_core::outbox::Outbox;
use possync_core::reason::DrainReason;
use possync_server::store::AdminStore;
use possync_tests::server::TestServer;
use possync_tests::till::{drain_once, sale, sync_config};

fn drain(outbox: &Outbox, server: &TestServer) {
    drain_for(outbox, server, DrainReason::Manual);
}

/// A drain run for `reason` (`Manual` and `Online` skip per-sale backoff; `Interval` does not).
fn drain_for(outbox: &Outbox, server: &TestServer, reason: DrainReason) {
    drain_once(outbox, &sync_config(&server.base, &server.token, "till-1"), reason);
}

#[test]
fn a_draining_till_reports_its_backlog_and_numbers_its_sales() {
    let _serial = crate::shared();
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let outbox = Outbox::open(dir.path().join("till.db"), OutboxConfig::default()).expect("open");
    // Three batches of 50: the later ones carry the first batch's report, lowered by what settled.
    for i in 0..120 {
        outbox.enqueue(&sale(i, 1)).expect("enqueue");
    }
    let before = outbox.backlog_report().expect("report");
    assert_eq!((before.unsent_count, before.last_seq, before.seq_start), (Some(120), Some(120), Some(1)));
    assert!(before.oldest_unsent_age_ms.is_some() && before.unsent_minor.contains_key("EUR"));
    drain(&outbox, &server);
    server.flush_activity();
    let tills = server.store.tills(0).expect("tills");
    let till = tills.iter().find(|t| t.device_id == "till-1").expect("till-1");
    assert_eq!(till.report.unsent_count, Some(0), "the server took the settled sales off: {till:?}");
    assert_eq!(till.report.library_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!((till.report.last_seq, till.report.seq_start), (Some(120), Some(1)));
    assert_eq!(till.report.oldest_unsent_age_ms, None);
    assert_eq!(till.report.unsent_minor.as_deref(), Some("{}"));
    let mut c = server.db.client();
    let seqs: Vec<i64> = c
        .query("SELECT outbox_seq FROM pos_transactions ORDER BY outbox_seq", &[])
        .expect("seqs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, (1..=120).collect::<Vec<i64>>());
    assert!(server.store.seq_gaps(None).expect("gaps").is_empty());
}

#[test]
fn sales_lost_from_a_tills_outbox_show_as_exactly_that_gap() {
    let _serial = crate::shared();
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("till.db");
    let outbox = Outbox::open(&path, OutboxConfig::default()).expect("open");
    for i in 0..7 {
        outbox.enqueue(&sale(i, 1)).expect("enqueue");
    }
    // Sales 3–5 vanish from the file (a restored backup, a damaged file): no retry can send them.
    let conn = rusqlite::Connection::open(&path).expect("open file");
    assert_eq!(conn.execute("DELETE FROM outbox WHERE seq BETWEEN 3 AND 5", []).expect("delete"), 3);
    drop(conn);
    drain(&outbox, &server);
    server.flush_activity();
    let gaps = server.store.seq_gaps(Some("store-1")).expect("gaps");
    let got: Vec<_> =
        gaps.iter().map(|g| (g.device_id.as_str(), g.from, g.to, g.after_last_received)).collect();
    assert_eq!(got, vec![("till-1", 3, 5, false)]);
}

#[test]
fn a_reinstalled_till_does_not_hide_the_sales_its_wiped_outbox_never_sent() {
    let _serial = crate::shared();
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("till.db");
    let outbox = Outbox::open(&path, OutboxConfig::default()).expect("open");
    for i in 0..150 {
        outbox.enqueue(&sale(i, 1)).expect("enqueue");
    }
    let old_id = outbox.outbox_id().expect("id");
    // Sales 101–150 wait for a later try (backoff): this drain sends 1..100 and reports last_seq 150.
    let conn = rusqlite::Connection::open(&path).expect("open file");
    let later = i64::MAX / 2;
    assert_eq!(
        conn.execute("UPDATE outbox SET next_attempt_at_ms = ?1 WHERE seq > 100", [later]).expect("defer"),
        50
    );
    drop(conn);
    drain_for(&outbox, &server, DrainReason::Interval);
    server.flush_activity();
    let gaps: Vec<_> = server
        .store
        .seq_gaps(None)
        .expect("gaps")
        .into_iter()
        .map(|g| (g.from, g.to, g.after_last_received))
        .collect();
    assert_eq!(gaps, vec![(101, 150, true)], "still on the till");
    // The till is reinstalled: its outbox file is gone with the 50 unsent sales, a new one starts at 1.
    drop(outbox);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let outbox = Outbox::open(&path, OutboxConfig::default()).expect("new outbox");
    let new_id = outbox.outbox_id().expect("id");
    assert_ne!(new_id, old_id);
    for i in 1000..1005 {
        outbox.enqueue(&sale(i, 1)).expect("enqueue");
    }
    drain(&outbox, &server);
    server.flush_activity();
    for _ in 0..2 {
        let gaps: Vec<_> = server
            .store
            .seq_gaps(None)
            .expect("gaps")
            .into_iter()
            .map(|g| (g.from, g.to, g.after_last_received, g.previous_outbox))
            .collect();
        assert_eq!(gaps, vec![(101, 150, false, Some(old_id.clone()))], "lost for good, and kept");
    }
    let till =
        server.store.tills(0).expect("tills").into_iter().find(|t| t.device_id == "till-1").expect("till");
    assert_eq!((till.report.outbox_id, till.report.last_seq), (Some(new_id), Some(5)));
}
