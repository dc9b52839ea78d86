//! Audit retention: `audit prune`, the background thread, and `serve --audit-retention-days`.
//! Pruning deletes old audit rows only; stored sales, items and payments are never touched.

use std::time::Duration;

use possync_server::retention::{RetentionPolicy, RetentionThread};
use possync_server::store::AdminStore;
use possync_test_support::{
    age_audit, cli, db_url, envelope, new_id, request, run_cli, sale, ServeProcess, TestServer,
};

/// Pushes `id` twice (OK + DUPLICATE: two audit rows) and returns the number of audit rows.
fn push_twice(server: &TestServer, id: &str, seed: i64) -> i64 {
    let body = request(vec![envelope(id, &sale("store-1", seed, 3))]);
    assert_eq!(server.push(&body).status_of(0), "OK");
    assert_eq!(server.push(&body).status_of(0), "DUPLICATE");
    server.count("pos_transaction_audit", id)
}

#[test]
fn audit_prune_deletes_only_old_audit_rows_never_sales() {
    let server = TestServer::start();
    let (old, recent) = (new_id(), new_id());
    assert_eq!(push_twice(&server, &old, 1), 2);
    assert_eq!(push_twice(&server, &recent, 2), 2);
    age_audit(&server.db, &old, 40);

    assert_eq!(server.store.prune_audit(30).expect("prune"), 2);
    assert_eq!(server.count("pos_transaction_audit", &old), 0, "old audit rows deleted");
    assert_eq!(server.count("pos_transaction_audit", &recent), 2, "recent audit rows kept");
    assert_eq!(server.sale_rows(&old), (1, 3, 2), "the sale itself is never pruned");
    assert_eq!(server.store.prune_audit(30).expect("prune again"), 0);

    let url = db_url(&server.db);
    age_audit(&server.db, &recent, 8);
    let (ok, out, err) = run_cli(&url, &["audit", "prune", "--older-than-days", "10"]);
    assert!(ok && out.contains("pruned 0 audit row(s) older than 10 day(s)"), "{out}{err}");
    let (ok, out, err) = run_cli(&url, &["audit", "prune", "--older-than-days", "7"]);
    assert!(ok && out.contains("pruned 2 audit row(s) older than 7 day(s)"), "{out}{err}");
    assert_eq!(server.sale_rows(&recent), (1, 3, 2));
    assert_eq!(server.total("pos_transactions"), 2);

    let (ok, _, err) = run_cli(&url, &["audit", "prune", "--older-than-days", "0"]);
    assert!(!ok && err.contains("--older-than-days"), "0 days would delete everything: {err}");
}

#[test]
fn retention_thread_prunes_at_start_and_stops_when_asked() {
    let server = TestServer::start();
    let old = new_id();
    push_twice(&server, &old, 1);
    age_audit(&server.db, &old, 100);

    let store: std::sync::Arc<dyn possync_server::store::Store> = server.store.clone();
    let thread = RetentionThread::start(store.clone(), RetentionPolicy::hourly(90)).expect("start");
    let (runs, deleted) = thread.wait_for_runs(1, Duration::from_secs(60));
    assert_eq!((runs, deleted), (1, 2), "the first prune runs at start");
    assert_eq!(server.count("pos_transaction_audit", &old), 0);
    assert_eq!(server.sale_rows(&old), (1, 3, 2));
    // The next prune is an hour away; stop() wakes the thread and joins it.
    thread.stop();

    let again = new_id();
    push_twice(&server, &again, 2);
    age_audit(&server.db, &again, 100);
    let policy = RetentionPolicy { keep_days: 90, interval: Duration::from_millis(10) };
    let thread = RetentionThread::start(store, policy).expect("start");
    let (runs, deleted) = thread.wait_for_runs(3, Duration::from_secs(60));
    assert!(runs >= 3, "it keeps pruning at every interval: {runs} runs");
    assert_eq!(deleted, 2);
    drop(thread);
}

#[test]
fn serve_with_audit_retention_prunes_at_start_and_stops_on_sigterm() {
    let server = TestServer::start();
    let old = new_id();
    push_twice(&server, &old, 1);
    age_audit(&server.db, &old, 31);
    let kept = new_id();
    push_twice(&server, &kept, 2);

    let serve = ServeProcess::spawn(
        cli()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", db_url(&server.db))
            .env("POSSYNC_AUDIT_RETENTION_DAYS", "30")
            .env("POSSYNC_LOG", "info"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server.count("pos_transaction_audit", &old) > 0 {
        assert!(std::time::Instant::now() < deadline, "audit rows older than 30 days not pruned");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, stderr) = serve.terminate();
    assert!(ok, "clean exit on SIGTERM: {stderr}");
    assert!(stderr.contains("audit retention: pruned audit rows"), "{stderr}");
    assert!(stderr.contains("audit retention stopped"), "the thread stops on shutdown: {stderr}");
    assert_eq!(server.count("pos_transaction_audit", &kept), 2);
    assert_eq!(server.sale_rows(&old), (1, 3, 2));
}
