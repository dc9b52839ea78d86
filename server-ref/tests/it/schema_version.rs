//! A binary older than the database schema refuses to run: `migrate`, `serve`, the `token` commands and
//! the admin commands exit non-zero with a message saying the database is newer.

use possync_server::store::postgres::{expected_schema_version, PgOptions, PgStore};
use possync_server::store::{AdminStore, PushStore};
use possync_test_support::{db_url, run_cli, TestDb};

#[test]
fn binary_older_than_the_schema_refuses_to_migrate_serve_or_create_tokens() {
    let db = TestDb::create();
    let store = PgStore::connect(db.config.clone(), &PgOptions::default()).expect("connect");
    store.migrate().expect("migrate");
    let newer = expected_schema_version() + 1;
    db.client()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES ($1, 'from_a_newer_release', '2030-01-01T00:00:00Z', '0')",
            &[&newer],
        )
        .expect("record a newer migration");
    let err = store.check_ready().expect_err("not ready");
    assert!(err.to_string().contains("newer than this binary"), "{err}");

    let url = db_url(&db);
    let expected = format!("database schema version {newer} is newer than this binary's");
    for args in [
        &["migrate"][..],
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["token", "create", "--store", "s1", "--device", "d1"][..],
        &["token", "list"][..],
        &["token", "revoke", "--store", "s1", "--device", "d1"][..],
        &["attention", "list", "--store", "s1"][..],
        &["audit", "prune", "--older-than-days", "30"][..],
    ] {
        let (ok, out, err) = run_cli(&url, args);
        assert!(!ok, "{args:?} must fail: {out}");
        assert!(err.contains(&expected) && err.contains("upgrade possync-server"), "{args:?}: {err}");
    }
    let history: i64 =
        db.client().query_one("SELECT count(*) FROM refinery_schema_history", &[]).expect("count").get(0);
    assert_eq!(history, i64::from(expected_schema_version()) + 1, "migrate changed nothing");
}

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Schema v2 scopes the idempotency key to the store; the sales stored under v1 are kept whole, with
/// their server_tx_id, and new sales are stored next to them.
#[test]
fn store_scoped_ids_keep_the_sales_of_schema_v1() {
    let db = TestDb::create();
    let mut client = db.client();
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(1))
        .run(&mut client)
        .expect("schema v1");
    client
        .batch_execute(
            "INSERT INTO pos_transactions (client_tx_id, payload_sha256, payload_hash_version, store_id, \
             device_id, receipt_number, kind, occurred_at, currency, subtotal_minor, tax_minor, total_minor, \
             change_minor, payload_canonical) VALUES ('R-1', repeat('7', 64), 1, 's1', 'd1', 'R-1', 'sale', \
             now(), 'EUR', 100, 0, 100, 0, '{}'); \
             INSERT INTO pos_transaction_items VALUES ('R-1', 1, 'sku', 'n', 1000, 100, 0, 100, false); \
             INSERT INTO pos_transaction_payments VALUES ('R-1', 1, 'cash', 100, NULL);",
        )
        .expect("v1 rows");
    let v1_id: i64 = client.query_one("SELECT server_tx_id FROM pos_transactions", &[]).expect("id").get(0);
    let store = PgStore::connect(db.config.clone(), &PgOptions::default()).expect("connect");
    assert_eq!(store.migrate().expect("migrate").len(), 4, "v2, v3, v4 and v5 applied");
    store.check_ready().expect("ready");
    let kept = store.stored_sale("s1", "R-1").expect("read").expect("the v1 sale is kept");
    assert_eq!((kept.server_tx_id, kept.payload_sha256), (v1_id, "7".repeat(64)));
    let children: (String, String) = {
        let row = client
            .query_one(
                "SELECT i.store_id, p.store_id FROM pos_transaction_items i JOIN pos_transaction_payments p \
                 USING (store_id, client_tx_id)",
                &[],
            )
            .expect("children keep their sale");
        (row.get(0), row.get(1))
    };
    assert_eq!(children, ("s1".to_owned(), "s1".to_owned()));
}

/// Schema v4 adds the till's outbox identity; the sales, device status and retired numbers of schema
/// v3 are kept, and their gaps read as before (sales without an identity count for their device).
#[test]
fn outbox_identity_keeps_the_console_data_of_schema_v3() {
    let db = TestDb::create();
    let mut client = db.client();
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(3))
        .run(&mut client)
        .expect("schema v3");
    let sale = |id: &str, seq: i64| {
        format!(
            "INSERT INTO pos_transactions (client_tx_id, payload_sha256, payload_hash_version, store_id, \
             device_id, receipt_number, kind, occurred_at, currency, subtotal_minor, tax_minor, total_minor, \
             change_minor, payload_canonical, outbox_seq, server_tx_id) VALUES ('{id}', repeat('7', 64), 1, 's1', 'd1', \
             '{id}', 'sale', now(), 'EUR', 100, 0, 100, 0, '{{}}', {seq}, {seq});"
        )
    };
    client
        .batch_execute(&format!(
            "{}{}{} INSERT INTO pos_device_status (store_id, device_id, unsent_count, last_seq, seq_start) \
             VALUES ('s1', 'd1', 2, 7, 1); INSERT INTO pos_device_retired_seqs VALUES ('s1', 'd1', 3);",
            sale("R-1", 1),
            sale("R-2", 2),
            sale("R-5", 5)
        ))
        .expect("v3 rows");
    let store = PgStore::connect(db.config.clone(), &PgOptions::default()).expect("connect");
    assert_eq!(
        store.migrate().expect("migrate"),
        vec!["V4__outbox_identity".to_owned(), "V5__acknowledged_recovery".to_owned()]
    );
    store.check_ready().expect("ready");
    assert!(store.stored_sale("s1", "R-5").expect("read").is_some(), "the v3 sale is kept");
    let till = store.tills(0).expect("tills").into_iter().find(|t| t.device_id == "d1").expect("d1");
    assert_eq!(
        (till.report.unsent_count, till.report.last_seq, till.report.outbox_id),
        (Some(2), Some(7), None)
    );
    let gaps: Vec<_> =
        store.seq_gaps(None).expect("gaps").into_iter().map(|g| (g.from, g.to, g.previous_outbox)).collect();
    assert_eq!(gaps, vec![(4, 4, None), (6, 7, None)], "3 retired, 1, 2 and 5 received");
}
