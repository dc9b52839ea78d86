//! A binary older than the database schema refuses to run: `migrate`, `serve`, the `token` commands and
//! the admin commands exit non-zero with a message saying the database is newer.

mod common;

use common::{db_url, run_cli, TestDb};
use possync_server::store::postgres::{expected_schema_version, PgOptions, PgStore};
use possync_server::store::Store;

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
    assert_eq!(history, 2, "migrate changed nothing");
}
