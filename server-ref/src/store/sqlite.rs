//! The embedded SQLite store: the same rules as [`super::postgres::PgStore`], for the demo and a
//! one-till shop that runs no database server. This file holds what is SQLite's own: the pool, the
//! migrations, the push path and error classification, and the `Driver` on which the flows written
//! once for both stores run (`flows.rs`; the admin work is [`super::AdminStore`] through it).
//!
//! Per sale: `BEGIN IMMEDIATE` (takes the file's write lock at once, waiting up to the busy timeout);
//! `INSERT` header `ON CONFLICT DO NOTHING RETURNING`; when no row came back the stored hash decides
//! `DUPLICATE` or `CONFLICT` (nothing overwritten, attempt audited in the same transaction); otherwise
//! items, payments and the audit row, `COMMIT` ⇒ `OK`. Any error rolls the whole transaction back
//! (zero partial rows) and is classified by SQLite's result code, never by message text: busy or
//! locked (the busy timeout ran out), interrupted (the statement timeout), I/O and full-disk errors
//! ⇒ `RETRY`; constraint violations ⇒ `INVALID`.
//!
//! The file is opened in WAL mode with `synchronous=FULL` and foreign keys on. Connections come from a
//! small fixed pool ([`SqliteOptions::pool_size`]): readers (token lookups, `/readyz`) run beside a
//! writer, and writers queue on SQLite's own lock with the busy timeout (see `docs/decisions.md`).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use possync_core::protocol::PushStatus;
use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::{
    params, params_from_iter, Connection, ErrorCode, OpenFlags, OptionalExtension, ToSql, Transaction,
    TransactionBehavior,
};
use rusqlite_migration::{Migrations, M};

use super::driver::{Conn, Driver, Param, Row, Statements};
use super::flows;
use super::sqlite_sql as sql;
use super::{
    new_server_tx_id, outcome_of, AckCheck, CheckedSale, ClassifiedError, Device, DeviceActivity,
    FailureKind, PoolState, PushContext, PushStore, RecoveryPlan, Rejection, SaleOutcome, StoreError,
    TokenLookup, TxError,
};

/// The schema's migrations, oldest first (the version lives in `PRAGMA user_version`).
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(sql::MIGRATION_V1),
        M::up(sql::MIGRATION_V2),
        M::up(sql::MIGRATION_V3),
        M::up(sql::MIGRATION_V4),
        M::up(sql::MIGRATION_V5),
    ])
}

/// Names of the migrations, in the order of [`migrations`], for `migrate`'s report.
const MIGRATION_NAMES: [&str; 5] =
    ["V1__init", "V2__store_scoped_ids", "V3__console", "V4__outbox_identity", "V5__acknowledged_recovery"];

/// The newest schema version compiled into this binary.
pub fn expected_schema_version() -> usize {
    MIGRATION_NAMES.len()
}

/// Settings of [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Connections in the pool (at least 1).
    pub pool_size: u32,
    /// How long a request waits for a pooled connection before it is answered 503.
    pub pool_timeout: Duration,
    /// How long a writer waits for the file's write lock (SQLite's busy timeout) before the sale
    /// answers `RETRY` (`lock_timeout`). SQLite has no statement timeout: a sale's statements touch
    /// a handful of rows by key, and the only wait is for the lock.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            pool_size: 4,
            pool_timeout: Duration::from_secs(2),
            busy_timeout: Duration::from_secs(2),
        }
    }
}

/// A fixed set of open connections; [`Pool::get`] waits up to the pool timeout for a free one.
struct Pool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
    max: u32,
    timeout: Duration,
}

/// A connection on loan from the [`Pool`], given back on drop.
struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Invariant: `conn` is `Some` until drop.
        self.conn.as_ref().expect("pooled connection present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("pooled connection present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle.lock().push(conn);
            self.pool.returned.notify_one();
        }
    }
}

impl Pool {
    fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let deadline = Instant::now() + self.timeout;
        let mut idle = self.idle.lock();
        loop {
            if let Some(conn) = idle.pop() {
                return Ok(Pooled { pool: self, conn: Some(conn) });
            }
            if self.returned.wait_until(&mut idle, deadline).timed_out() && idle.is_empty() {
                return Err(StoreError::Unavailable(format!(
                    "no free SQLite connection within {} ms",
                    self.timeout.as_millis()
                )));
            }
        }
    }
}

/// The embedded SQLite [`super::Store`].
pub struct SqliteStore {
    path: PathBuf,
    pool: Pool,
}

fn open_connection(path: &Path, create: bool, opts: &SqliteOptions) -> Result<Connection, rusqlite::Error> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(opts.busy_timeout)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some(format!("cannot switch {} to WAL mode (journal_mode is {mode})", path.display())),
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.query_row(sql::PING, [], |_| Ok(()))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens the pool on `path`. With `create` a missing file is created (for `migrate`); without it
    /// a missing file is an error, so a mistyped path never starts a server on an empty database.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened as a database in WAL mode.
    pub fn open(path: impl AsRef<Path>, create: bool, opts: &SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let max = opts.pool_size.max(1);
        let mut conns = Vec::with_capacity(max as usize);
        for _ in 0..max {
            let conn = open_connection(&path, create, opts)
                .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
            conns.push(conn);
        }
        Ok(SqliteStore {
            path,
            pool: Pool { idle: Mutex::new(conns), returned: Condvar::new(), max, timeout: opts.pool_timeout },
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies pending migrations in one `BEGIN IMMEDIATE` transaction each (the file lock keeps two
    /// processes from migrating at once). Returns the names of the migrations applied now.
    ///
    /// # Errors
    /// [`StoreError::Schema`] when a migration fails or the file is newer than this binary.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.get()?;
        let found = user_version(&conn)?;
        let expected = expected_schema_version();
        if found > expected {
            return Err(StoreError::Schema(format!(
                "database schema version {found} of {} is newer than this binary's {expected}: \
                 upgrade possync-server before migrating",
                self.path.display()
            )));
        }
        migrations()
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Schema(format!("migration of {} failed: {e}", self.path.display())))?;
        let now = user_version(&conn)?;
        Ok(MIGRATION_NAMES[found.min(now)..now].iter().map(|n| (*n).to_owned()).collect())
    }

    /// Stores one sale in one transaction on a pooled connection (see the module docs).
    fn store_sale_tx(
        &self,
        ctx: &PushContext<'_>,
        sale: &CheckedSale<'_>,
    ) -> Result<SaleOutcome, TxError<rusqlite::Error>> {
        let mut conn = self.pool.get().map_err(|e| TxError::Pool(e.to_string()))?;
        store_sale_in(&mut conn, ctx, sale)
    }
}

/// Stores one sale in one `BEGIN IMMEDIATE` transaction (see the module docs); an error rolls it back.
fn store_sale_in(
    conn: &mut Connection,
    ctx: &PushContext<'_>,
    sale: &CheckedSale<'_>,
) -> Result<SaleOutcome, TxError<rusqlite::Error>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let h = &sale.payload.header;
    let hash_version = i64::from(sale.payload_hash_version);
    let inserted: Option<i64> = tx
        .prepare_cached(sql::INSERT_HEADER)?
        .query_row(
            params![
                sale.client_tx_id,
                sale.payload_sha256,
                hash_version,
                h.store_id,
                ctx.device.device_id,
                h.receipt_number,
                h.kind.as_str(),
                h.occurred_at_ms,
                h.currency,
                h.subtotal_minor,
                h.tax_minor,
                h.total_minor,
                h.change_minor,
                h.cashier_id,
                sale.canonical,
                ctx.correlation_id,
                new_server_tx_id(),
                sale.outbox_seq,
                ctx.outbox_id,
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(server_tx_id) = inserted else {
        let (server_tx_id, stored_sha, stored_version): (i64, String, i64) = tx
            .prepare_cached(sql::SELECT_STORED_HASH)?
            .query_row([&h.store_id, sale.client_tx_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let outcome = SaleOutcome::of_stored(sale, server_tx_id, &stored_sha, stored_version);
        audit(&tx, ctx, sale, Some(&stored_sha), &outcome)?;
        tx.commit()?;
        return Ok(outcome);
    };

    #[cfg(feature = "failpoints")]
    fail::fail_point!("push.after_header", |arg| Err(TxError::Injected(format!(
        "failpoint push.after_header: {}",
        arg.unwrap_or_default()
    ))));

    insert_children(&tx, sale)?;
    let outcome = SaleOutcome::Stored { server_tx_id };
    audit(&tx, ctx, sale, None, &outcome)?;
    tx.commit()?;
    Ok(outcome)
}

fn insert_children(tx: &Transaction<'_>, sale: &CheckedSale<'_>) -> Result<(), rusqlite::Error> {
    let mut items = tx.prepare_cached(sql::INSERT_ITEM)?;
    let store_id = &sale.payload.header.store_id;
    for i in &sale.payload.items {
        items.execute(params![
            store_id,
            sale.client_tx_id,
            i.line_no,
            i.sku,
            i.name,
            i.quantity_milli,
            i.unit_price_minor,
            i.discount_minor,
            i.line_total_minor,
            i.refund,
        ])?;
    }
    let mut payments = tx.prepare_cached(sql::INSERT_PAYMENT)?;
    for (no, p) in sale.payload.payments.iter().enumerate() {
        payments.execute(params![
            store_id,
            sale.client_tx_id,
            no as i64 + 1,
            p.method,
            p.amount_minor,
            p.reference
        ])?;
    }
    Ok(())
}

/// Writes the audit row of a decided sale.
fn audit(
    tx: &Transaction<'_>,
    ctx: &PushContext<'_>,
    sale: &CheckedSale<'_>,
    stored_sha256: Option<&str>,
    outcome: &SaleOutcome,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(sql::INSERT_AUDIT)?.execute(params![
        sale.client_tx_id,
        ctx.device.store_id,
        ctx.device.device_id,
        ctx.correlation_id,
        i64::from(sale.attempt),
        i64::from(sale.payload_hash_version),
        sale.payload_sha256,
        stored_sha256,
        outcome.status().as_str(),
        outcome.code(),
        outcome.message(),
        sale.outbox_seq,
        matches!(outcome, SaleOutcome::Conflict { .. }).then_some(sale.canonical),
        ctx.outbox_id,
    ])?;
    Ok(())
}

fn user_version(conn: &Connection) -> Result<usize, StoreError> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(usize::try_from(v).unwrap_or(0))
}

impl ClassifiedError for rusqlite::Error {
    fn classify(&self) -> (FailureKind, &'static str) {
        classify(self)
    }
}

/// How a SQLite error settles a sale: `(kind, code)`, by result code only.
pub fn classify(err: &rusqlite::Error) -> (FailureKind, &'static str) {
    // The header insert resolves (store_id, client_tx_id) with ON CONFLICT and items and payments
    // have primary keys, not UNIQUE constraints: a UNIQUE violation is two sales drawing one new
    // server_tx_id. Nothing was stored; the sale is sent again and draws another.
    if let rusqlite::Error::SqliteFailure(e, _) = err {
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE {
            return (FailureKind::Transient, "server_tx_id_collision");
        }
    }
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (FailureKind::Transient, "lock_timeout"),
        Some(ErrorCode::OperationInterrupted) => (FailureKind::Transient, "interrupted"),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch) => {
            (FailureKind::Rejected, "rejected_by_database")
        }
        Some(
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::OutOfMemory
            | ErrorCode::PermissionDenied,
        ) => (FailureKind::Transient, "database_unavailable"),
        _ => (FailureKind::Transient, "database_error"),
    }
}

impl PushStore for SqliteStore {
    fn lookup_token(&self, token_sha256: &str) -> Result<TokenLookup, StoreError> {
        let conn = self.pool.get()?;
        let row: Option<(String, String, bool)> = conn
            .prepare_cached(sql::SELECT_TOKEN)
            .and_then(|mut s| {
                s.query_row([token_sha256], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()
            })
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(match row {
            None => TokenLookup::Unknown,
            Some((_, _, true)) => TokenLookup::Revoked,
            Some((store_id, device_id, false)) => TokenLookup::Active(Device { store_id, device_id }),
        })
    }

    fn store_sale(&self, ctx: &PushContext<'_>, sale: &CheckedSale<'_>) -> SaleOutcome {
        outcome_of(self, ctx, sale, self.store_sale_tx(ctx, sale))
    }

    fn audit_rejections(
        &self,
        ctx: &PushContext<'_>,
        rejections: &[Rejection<'_>],
    ) -> Result<(), StoreError> {
        if rejections.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for r in rejections {
            let id: String = r.client_tx_id.chars().take(128).collect();
            tx.prepare_cached(sql::INSERT_AUDIT)?.execute(params![
                id,
                ctx.device.store_id,
                ctx.device.device_id,
                ctx.correlation_id,
                r.attempt.map(i64::from),
                r.payload_hash_version.map(i64::from),
                r.payload_sha256.map(|s| s.chars().take(128).collect::<String>()),
                None::<String>,
                PushStatus::Invalid.as_str(),
                r.code,
                r.message,
                r.outbox_seq,
                r.attempted_payload,
                ctx.outbox_id,
            ])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn check_ready(&self) -> Result<(), StoreError> {
        let conn = self.pool.get()?;
        let found = user_version(&conn).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let expected = expected_schema_version();
        let file = self.path.display();
        match found {
            v if v == expected => Ok(()),
            v if v > expected => Err(StoreError::Schema(format!(
                "database schema version {v} of {file} is newer than this binary's {expected}: \
                 upgrade possync-server"
            ))),
            0 => Err(StoreError::Schema(format!(
                "{file} has no possync schema: run `possync-server migrate --sqlite {file}`"
            ))),
            v => Err(StoreError::Schema(format!(
                "database schema version {v} of {file} is older than {expected}: \
                 run `possync-server migrate --sqlite {file}`"
            ))),
        }
    }

    fn record_activity(&self, device: &Device, activity: &DeviceActivity<'_>) -> Result<(), StoreError> {
        flows::record_activity(self, device, activity)
    }

    fn check_acknowledged(
        &self,
        device: &Device,
        check: &AckCheck,
        now_ms: i64,
    ) -> Result<RecoveryPlan, StoreError> {
        flows::check_acknowledged(self, device, check, now_ms)
    }

    fn pool_state(&self) -> PoolState {
        let idle = self.pool.idle.lock().len() as u32;
        PoolState { connections: self.pool.max, idle, max: self.pool.max }
    }
}

/// A SQLite connection (or a transaction on it) as the flows' [`Conn`].
struct LiteConn<'c>(&'c Connection);

/// A [`Param`] as SQLite binds it: lists as JSON text, for `json_each`.
impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let json = |r: serde_json::Result<String>| {
            r.map(|s| ToSqlOutput::Owned(Value::Text(s)))
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
        };
        match self {
            Param::Text(v) => v.to_sql(),
            Param::Int(v) => v.to_sql(),
            Param::Bool(v) => v.to_sql(),
            Param::Texts(v) => json(serde_json::to_string(v)),
            Param::Ints(v) => json(serde_json::to_string(v)),
        }
    }
}

impl Conn for LiteConn<'_> {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let n = self.0.prepare_cached(sql)?.execute(params_from_iter(params))?;
        Ok(n as u64)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let mut rows = stmt.query(params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            each(&LiteRow(row))?;
        }
        Ok(())
    }
}

/// A SQLite result row as the flows' [`Row`].
struct LiteRow<'r, 's>(&'r rusqlite::Row<'s>);

impl Row for LiteRow<'_, '_> {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.0.get(i)?)
    }
}

impl Driver for SqliteStore {
    fn statements(&self) -> &'static Statements {
        &sql::STATEMENTS
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.pool.get()?;
        f(&mut LiteConn(&conn))
    }

    /// `BEGIN IMMEDIATE`: takes the file's write lock at once (waiting up to the busy timeout).
    fn in_transaction<T>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&mut LiteConn(&tx))?;
        tx.commit()?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AdminStore;

    #[test]
    fn migrations_are_valid() {
        assert!(migrations().validate().is_ok());
        assert_eq!(expected_schema_version(), 5);
    }

    #[test]
    fn store_scoped_ids_keep_the_sales_of_schema_v1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v1.db");
        let mut conn = Connection::open(&path).expect("open");
        migrations().to_version(&mut conn, 1).expect("schema v1");
        conn.execute_batch(
            "INSERT INTO pos_transactions (client_tx_id, payload_sha256, payload_hash_version, store_id, \
             device_id, receipt_number, kind, occurred_at, currency, subtotal_minor, tax_minor, total_minor, \
             change_minor, payload_canonical) VALUES ('R-1', printf('%064d', 7), 1, 's1', 'd1', 'R-1', 'sale', \
             0, 'EUR', 100, 0, 100, 0, '{}'); \
             INSERT INTO pos_transaction_items VALUES ('R-1', 1, 'sku', 'n', 1000, 100, 0, 100, 0); \
             INSERT INTO pos_transaction_payments VALUES ('R-1', 1, 'cash', 100, NULL);",
        )
        .expect("v1 rows");
        let v1_id: i64 =
            conn.query_row("SELECT server_tx_id FROM pos_transactions", [], |r| r.get(0)).expect("id");
        drop(conn);
        let store = SqliteStore::open(&path, false, &SqliteOptions::default()).expect("open");
        assert_eq!(
            store.migrate().expect("migrate"),
            vec![
                "V2__store_scoped_ids".to_owned(),
                "V3__console".to_owned(),
                "V4__outbox_identity".to_owned(),
                "V5__acknowledged_recovery".to_owned()
            ]
        );
        let kept = store.stored_sale("s1", "R-1").expect("read").expect("the v1 sale is kept");
        assert_eq!((kept.server_tx_id, kept.payload_sha256.as_str()), (v1_id, format!("{:064}", 7).as_str()));
        let conn = store.pool.get().expect("conn");
        let children: (String, String) = conn
            .query_row(
                "SELECT i.store_id, p.store_id FROM pos_transaction_items i JOIN pos_transaction_payments p \
                 USING (store_id, client_tx_id)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("children keep their sale");
        assert_eq!(children, ("s1".to_owned(), "s1".to_owned()));
    }

    #[test]
    fn outbox_identity_keeps_the_console_data_of_schema_v3() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v3.db");
        let mut conn = Connection::open(&path).expect("open");
        migrations().to_version(&mut conn, 3).expect("schema v3");
        for (id, seq) in [("R-1", 1), ("R-2", 2), ("R-5", 5)] {
            conn.execute(
                "INSERT INTO pos_transactions (client_tx_id, payload_sha256, payload_hash_version, store_id, \
                 device_id, receipt_number, kind, occurred_at, currency, subtotal_minor, tax_minor, total_minor, \
                 change_minor, payload_canonical, outbox_seq, server_tx_id) VALUES (?1, printf('%064d', 7), 1, 's1', 'd1', ?1, \
                 'sale', 0, 'EUR', 100, 0, 100, 0, '{}', ?2, ?2)",
                params![id, seq],
            )
            .expect("v3 sale");
        }
        conn.execute_batch(
            "INSERT INTO pos_device_status (store_id, device_id, first_seen_at, last_seen_at, unsent_count, \
             last_seq, seq_start) VALUES ('s1', 'd1', 0, 0, 2, 7, 1); \
             INSERT INTO pos_device_retired_seqs VALUES ('s1', 'd1', 3);",
        )
        .expect("v3 status");
        drop(conn);
        let store = SqliteStore::open(&path, false, &SqliteOptions::default()).expect("open");
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
        let gaps: Vec<_> = store
            .seq_gaps(None)
            .expect("gaps")
            .into_iter()
            .map(|g| (g.from, g.to, g.previous_outbox))
            .collect();
        assert_eq!(gaps, vec![(4, 4, None), (6, 7, None)], "3 retired, 1, 2 and 5 received");
    }

    #[test]
    fn a_missing_file_is_not_created_unless_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.db");
        let err = SqliteStore::open(&path, false, &SqliteOptions::default()).err().expect("refused");
        assert!(err.to_string().contains("absent.db"), "{err}");
        assert!(!path.exists());
        let store = SqliteStore::open(&path, true, &SqliteOptions::default()).expect("created");
        assert!(matches!(store.check_ready(), Err(StoreError::Schema(_))));
        assert_eq!(
            store.migrate().expect("migrate"),
            vec![
                "V1__init".to_owned(),
                "V2__store_scoped_ids".to_owned(),
                "V3__console".to_owned(),
                "V4__outbox_identity".to_owned(),
                "V5__acknowledged_recovery".to_owned()
            ]
        );
        assert!(store.migrate().expect("again").is_empty());
        store.check_ready().expect("ready");
    }
}
