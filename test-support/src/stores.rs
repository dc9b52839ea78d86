//! Store factories of the conformance suite: each test function is generic over [`Harness`] and runs
//! once per store. PostgreSQL: a fresh database per test (`crate::TestDb`); SQLite: a file in a fresh
//! temporary directory. Rows are counted through a connection of the test's own, not the store.

// `new()` creates a database or a file: not what a `Default` value should do.
#![allow(clippy::new_without_default)]

use std::sync::Arc;

use possync_core::protocol::{canonical_json, payload_sha256, PushResult, SalePayload};
use possync_server::store::postgres::PgStore;
use possync_server::store::sqlite::{SqliteOptions, SqliteStore};
use possync_server::store::{CheckedSale, Device, PushContext, Store};

use crate::{test_pg_options, TestDb};

/// One store under test and a side door to its tables.
pub trait Harness {
    /// Name for assertion messages.
    fn name(&self) -> &'static str;
    /// The store under test (migrated, empty).
    fn store(&self) -> &dyn Store;
    /// Rows of `table` for `client_tx_id`.
    fn count(&self, table: &str, client_tx_id: &str) -> i64;
    /// Rows of `table` in all.
    fn total(&self, table: &str) -> i64;
    /// Moves every audit row of `client_tx_id` `days` days into the past.
    fn age_audit(&self, client_tx_id: &str, days: i64);

    /// Header, items and payments rows of one sale.
    fn sale_rows(&self, client_tx_id: &str) -> (i64, i64, i64) {
        (
            self.count("pos_transactions", client_tx_id),
            self.count("pos_transaction_items", client_tx_id),
            self.count("pos_transaction_payments", client_tx_id),
        )
    }
}

/// PostgreSQL: a fresh migrated database.
pub struct Pg {
    store: Arc<PgStore>,
    db: TestDb,
}

impl Pg {
    pub fn new() -> Pg {
        let db = TestDb::create();
        let store = Arc::new(PgStore::connect(db.config.clone(), &test_pg_options()).expect("connect store"));
        store.migrate().expect("migrate");
        Pg { store, db }
    }
}

impl Harness for Pg {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn store(&self) -> &dyn Store {
        &*self.store
    }
    fn count(&self, table: &str, client_tx_id: &str) -> i64 {
        self.db
            .client()
            .query_one(&format!("SELECT count(*) FROM {table} WHERE client_tx_id = $1"), &[&client_tx_id])
            .expect("count")
            .get(0)
    }
    fn total(&self, table: &str) -> i64 {
        self.db.client().query_one(&format!("SELECT count(*) FROM {table}"), &[]).expect("count").get(0)
    }
    fn age_audit(&self, client_tx_id: &str, days: i64) {
        crate::age_audit(&self.db, client_tx_id, days as i32);
    }
}

/// SQLite: a fresh migrated file in a temporary directory.
pub struct Lite {
    store: Arc<SqliteStore>,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Lite {
    pub fn new() -> Lite {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shop.db");
        let store = Arc::new(SqliteStore::open(&path, true, &SqliteOptions::default()).expect("open sqlite"));
        store.migrate().expect("migrate");
        Lite { store, path, _dir: dir }
    }

    fn conn(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.path).expect("open sqlite side connection");
        conn.busy_timeout(std::time::Duration::from_secs(5)).expect("busy timeout");
        conn
    }
}

impl Harness for Lite {
    fn name(&self) -> &'static str {
        "sqlite"
    }
    fn store(&self) -> &dyn Store {
        &*self.store
    }
    fn count(&self, table: &str, client_tx_id: &str) -> i64 {
        self.conn()
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE client_tx_id = ?1"),
                [client_tx_id],
                |r| r.get(0),
            )
            .expect("count")
    }
    fn total(&self, table: &str) -> i64 {
        self.conn().query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).expect("count")
    }
    fn age_audit(&self, client_tx_id: &str, days: i64) {
        self.conn()
            .execute(
                "UPDATE pos_transaction_audit SET at = at - ?2 * 86400000 WHERE client_tx_id = ?1",
                rusqlite::params![client_tx_id, days],
            )
            .expect("age audit rows");
    }
}

/// A sale ready for [`PushStore::store_sale`](possync_server::store::PushStore::store_sale): its canonical JSON and hash, as the push endpoint makes them.
pub struct Prepared {
    pub id: String,
    pub payload: SalePayload,
    pub canonical: String,
    pub sha: String,
    pub seq: Option<i64>,
}

impl Prepared {
    pub fn new(id: &str, payload: SalePayload) -> Prepared {
        let bytes = canonical_json(&payload).expect("canonical");
        let sha = payload_sha256(&bytes);
        let canonical = String::from_utf8(bytes).expect("utf-8");
        Prepared { id: id.to_owned(), payload, canonical, sha, seq: None }
    }

    /// The same sale carrying outbox sequence number `seq`.
    pub fn with_seq(mut self, seq: i64) -> Prepared {
        self.seq = Some(seq);
        self
    }

    pub fn checked(&self) -> CheckedSale<'_> {
        CheckedSale {
            client_tx_id: &self.id,
            payload_hash_version: 1,
            payload_sha256: &self.sha,
            attempt: 1,
            payload: &self.payload,
            canonical: &self.canonical,
            outbox_seq: self.seq,
        }
    }
}

/// The device `store-1` / `till-1`.
pub fn till1() -> Device {
    Device { store_id: "store-1".into(), device_id: "till-1".into() }
}

/// Stores `sale` as `device` with correlation id `corr`; the answer the push endpoint gives.
pub fn push(h: &dyn Harness, device: &Device, corr: &str, sale: &Prepared) -> PushResult {
    let outcome =
        h.store().store_sale(&PushContext { device, correlation_id: corr, outbox_id: None }, &sale.checked());
    possync_server::push::push_result(&sale.id, &outcome)
}
