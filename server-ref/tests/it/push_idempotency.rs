//! The milestone's server safety checklist: idempotency, conflicts, row-count invariants, lock timeouts.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use possync_test_support::{envelope, new_id, request, sale, TestServer};

/// The token of till `till-race-{n}` of `store-1`, and `body` as that till's push.
fn racer(server: &TestServer, n: usize, body: &serde_json::Value) -> (String, serde_json::Value) {
    let device = format!("till-race-{n}");
    let mut body = body.clone();
    body["device_id"] = serde_json::json!(device);
    (server.add_token("store-1", &device), body)
}

#[test]
fn concurrent_same_client_tx_id_gives_one_ok_rest_duplicate() {
    let server = Arc::new(TestServer::start());
    let id = new_id();
    let body = request(vec![envelope(&id, &sale("store-1", 7, 3))]);
    let threads = 12;
    let barrier = Arc::new(Barrier::new(threads));
    // Each racer is a till of its own: a till never has two pushes in flight (the server refuses
    // a second one with 429), so the race for one id is between tills of the store.
    let handles: Vec<_> = (0..threads)
        .map(|n| {
            let (token, body) = racer(&server, n, &body);
            let (server, barrier) = (server.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let reply = server.push_raw(Some(&token), serde_json::to_vec(&body).expect("json"));
                assert_eq!(reply.status, 200, "{}", reply.body);
                (reply.status_of(0).to_owned(), reply.result(0)["server_tx_id"].as_i64())
            })
        })
        .collect();
    let outcomes: Vec<(String, Option<i64>)> =
        handles.into_iter().map(|h| h.join().expect("thread")).collect();
    let ok = outcomes.iter().filter(|(s, _)| s == "OK").count();
    let dup = outcomes.iter().filter(|(s, _)| s == "DUPLICATE").count();
    assert_eq!((ok, dup), (1, threads - 1), "outcomes: {outcomes:?}");
    let server_ids: std::collections::HashSet<_> = outcomes.iter().map(|(_, id)| *id).collect();
    assert_eq!(server_ids.len(), 1, "every answer names the same stored sale: {server_ids:?}");
    assert_eq!(server.sale_rows(&id), (1, 3, 2));
    assert_eq!(server.total("pos_transactions"), 1);
    assert_eq!(server.count("pos_transaction_audit", &id), threads as i64, "every attempt audited");
}

#[test]
fn concurrent_different_payloads_under_one_id_store_exactly_one_and_the_others_conflict() {
    let server = Arc::new(TestServer::start());
    let id = new_id();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    // Each thread sends its own sale (different items, so a different payload hash) under the one id.
    let handles: Vec<_> = (0..threads)
        .map(|n| {
            let body = request(vec![envelope(&id, &sale("store-1", 100 + n as i64, 1 + n % 3))]);
            let (token, body) = racer(&server, n, &body);
            let (server, barrier) = (server.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let reply = server.push_raw(Some(&token), serde_json::to_vec(&body).expect("json"));
                assert_eq!(reply.status, 200, "{}", reply.body);
                (n, reply.status_of(0).to_owned())
            })
        })
        .collect();
    let outcomes: Vec<(usize, String)> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
    let winners: Vec<usize> = outcomes.iter().filter(|(_, s)| s == "OK").map(|(n, _)| *n).collect();
    let conflicts = outcomes.iter().filter(|(_, s)| s == "CONFLICT").count();
    assert_eq!((winners.len(), conflicts), (1, threads - 1), "outcomes: {outcomes:?}");
    // The stored sale is the winner's, whole: its items and its two payments.
    let winner = winners[0];
    assert_eq!(server.sale_rows(&id), (1, (1 + winner % 3) as i64, 2));
    assert_eq!(server.total("pos_transactions"), 1);
    let stored_hash: String = server
        .db
        .client()
        .query_one("SELECT payload_sha256 FROM pos_transactions WHERE client_tx_id = $1", &[&id])
        .expect("stored")
        .get(0);
    let winner_body = request(vec![envelope(&id, &sale("store-1", 100 + winner as i64, 1 + winner % 3))]);
    assert_eq!(serde_json::Value::String(stored_hash), winner_body["transactions"][0]["payload_sha256"]);
}

#[test]
fn same_client_tx_id_different_payload_is_conflict_and_stored_sale_unchanged() {
    let server = TestServer::start();
    let id = new_id();
    let original = sale("store-1", 1, 2);
    assert_eq!(server.push(&request(vec![envelope(&id, &original)])).status_of(0), "OK");
    let stored_before: String = server
        .db
        .client()
        .query_one("SELECT payload_canonical FROM pos_transactions WHERE client_tx_id = $1", &[&id])
        .expect("stored")
        .get(0);

    let other = sale("store-1", 2, 4);
    let reply = server.push(&request(vec![envelope(&id, &other)]));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.status_of(0), "CONFLICT");
    assert_eq!(reply.code_of(0), "hash_differs");

    let mut c = server.db.client();
    let stored_after: String = c
        .query_one("SELECT payload_canonical FROM pos_transactions WHERE client_tx_id = $1", &[&id])
        .expect("stored")
        .get(0);
    assert_eq!(stored_before, stored_after, "the stored sale is never overwritten");
    assert_eq!(server.sale_rows(&id), (1, 2, 2), "children of the original only");
    let audit = c
        .query_one(
            "SELECT count(*) FROM pos_transaction_audit WHERE client_tx_id = $1 AND outcome = 'CONFLICT' \
             AND stored_sha256 IS NOT NULL AND stored_sha256 <> payload_sha256",
            &[&id],
        )
        .expect("audit");
    assert_eq!(audit.get::<_, i64>(0), 1, "the conflicting attempt is audited with both hashes");
}

#[test]
fn mixed_batch_settles_each_sale_and_row_counts_hold() {
    let server = TestServer::start();
    let (a, b, c, d) = (new_id(), new_id(), new_id(), new_id());
    // b is stored first so that the batch replays it, and d is stored so the batch conflicts with it.
    assert_eq!(server.push(&request(vec![envelope(&b, &sale("store-1", 20, 2))])).status_of(0), "OK");
    assert_eq!(server.push(&request(vec![envelope(&d, &sale("store-1", 40, 1))])).status_of(0), "OK");

    let mut bad = sale("store-1", 30, 2);
    bad.header.total_minor += 1;
    let batch = request(vec![
        envelope(&a, &sale("store-1", 10, 5)),
        envelope(&b, &sale("store-1", 20, 2)),
        envelope(&c, &bad),
        envelope(&d, &sale("store-1", 41, 3)),
        envelope(&a, &sale("store-1", 10, 5)),
    ]);
    let reply = server.push(&batch);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let statuses: Vec<&str> = (0..5).map(|i| reply.status_of(i)).collect();
    assert_eq!(statuses, ["OK", "DUPLICATE", "INVALID", "CONFLICT", "DUPLICATE"]);
    assert_eq!(reply.code_of(2), "totals_mismatch");
    for (i, id) in [&a, &b, &c, &d, &a].iter().enumerate() {
        assert_eq!(reply.result(i)["client_tx_id"], id.as_str(), "results in request order");
    }

    assert_eq!(server.sale_rows(&a), (1, 5, 2));
    assert_eq!(server.sale_rows(&b), (1, 2, 2));
    assert_eq!(server.sale_rows(&c), (0, 0, 0));
    assert_eq!(server.sale_rows(&d), (1, 1, 2), "the first version of d stays");
    assert_eq!(server.total("pos_transactions"), 3);
    assert_eq!(server.total("pos_transaction_items"), 8);
    assert_eq!(server.total("pos_transaction_payments"), 6);
}

#[test]
fn lock_timeout_gives_retry_with_nothing_stored() {
    let mut pg = possync_test_support::test_pg_options();
    pg.lock_timeout_ms = 200;
    let server = TestServer::start_with(possync_test_support::test_http_config(), pg);
    let id = new_id();

    let mut locker = server.db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE pos_transactions IN ACCESS EXCLUSIVE MODE").expect("lock");
    let reply = server.push(&request(vec![envelope(&id, &sale("store-1", 5, 2))]));
    tx.rollback().expect("release lock");

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.status_of(0), "RETRY");
    assert_eq!(reply.code_of(0), "lock_timeout");
    assert_eq!(server.sale_rows(&id), (0, 0, 0));
    assert_eq!(server.count("pos_transaction_audit", &id), 0, "a RETRY decides nothing and stores nothing");

    // Once the lock is gone the same sale goes through.
    let again = server.push(&request(vec![envelope(&id, &sale("store-1", 5, 2))]));
    assert_eq!(again.status_of(0), "OK");
    assert_eq!(server.sale_rows(&id), (1, 2, 2));
}

#[test]
fn shutdown_finishes_the_request_in_hand() {
    let mut server = TestServer::start();
    let id = new_id();
    let mut locker = server.db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE pos_transaction_items IN ACCESS EXCLUSIVE MODE").expect("lock");

    let body = request(vec![envelope(&id, &sale("store-1", 9, 2))]);
    let shutdown = server.shutdown_handle();
    let reply = std::thread::scope(|scope| {
        let pusher = scope.spawn(|| server.push(&body));
        // Wait until the push is inside its transaction, blocked on the lock, then ask for shutdown.
        let mut watcher = server.db.client();
        let mut blocked = false;
        for _ in 0..500 {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .expect("pg_stat_activity")
                .get(0);
            if waiting > 0 {
                blocked = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(blocked, "the push never reached the lock");
        shutdown.shutdown();
        tx.rollback().expect("release lock");
        pusher.join().expect("pusher")
    });
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.status_of(0), "OK", "the in-flight sale is committed and answered");
    server.stop();
    assert_eq!(server.sale_rows(&id), (1, 2, 2));
}
