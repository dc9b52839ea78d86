//! The embedded SQLite store: the same rules as [`super::postgres::PgStore`] in one file, for the demo
//! and a one-till shop that runs no database server.
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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use possync_core::protocol::PushStatus;
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use rusqlite_migration::{Migrations, M};

use super::sqlite_sql as sql;
use super::tills::{self, device_gaps, Acknowledged, GapKind, RecoverySteps};
use super::{
    new_server_tx_id, settle, AckCheck, AdminStore, AttentionEntry, AuditRecord, CheckedSale,
    ClassifiedError, ConsoleSession, Device, DeviceActivity, FailureKind, PoolState, PushContext, PushStore,
    RecoveryPlan, Rejection, SaleOutcome, SaleQuery, SaleRecord, SeqGap, StoreError, StoredSale, TillReport,
    TillStatus, TokenInfo, TokenLookup, TxError,
};

/// Audit rows deleted per transaction by [`Store::prune_audit`].
const PRUNE_BATCH_ROWS: i64 = 10_000;

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

/// The embedded SQLite [`Store`].
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

fn now_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
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

/// Settled sequence numbers of a device's outbox in (`contiguous`, `upto`], at most `limit`
/// ([`sql::SELECT_SETTLED_SEQS`]).
#[allow(clippy::too_many_arguments)]
fn settled_seqs(
    conn: &Connection,
    store: &str,
    device: &str,
    contiguous: i64,
    outbox_id: Option<&str>,
    replaced: bool,
    upto: i64,
    limit: i64,
) -> Result<Vec<i64>, rusqlite::Error> {
    conn.prepare_cached(sql::SELECT_SETTLED_SEQS)?
        .query_map(params![store, device, contiguous, outbox_id, replaced, upto, limit], |r| r.get(0))?
        .collect()
}

/// When a report newer than the stored one names another outbox than the device's (its outbox was
/// wiped or replaced): keeps what the old outbox never delivered (its gaps and the run up to its last
/// report) as lost runs, and starts the device's sequence bookkeeping from scratch under `new_id`.
/// A device seen without an identity before (an older library) adopts it without a reset.
fn replace_outbox_if_new(
    tx: &Transaction<'_>,
    device: &Device,
    new_id: &str,
    reported_ms: i64,
) -> Result<(), rusqlite::Error> {
    let (store, dev) = (&device.store_id, &device.device_id);
    type State = (Option<String>, i64, Option<i64>, bool, bool);
    let state: Option<State> = tx
        .prepare_cached(sql::SELECT_OUTBOX_STATE)?
        .query_row(params![store, dev, reported_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0, r.get::<_, i64>(4)? != 0))
        })
        .optional()?;
    let Some((Some(old_id), contiguous, last_seq, replaced, true)) = state else {
        return Ok(());
    };
    if old_id == new_id {
        return Ok(());
    }
    let seqs = settled_seqs(tx, store, dev, contiguous, Some(&old_id), replaced, i64::MAX, i64::MAX)?;
    let (lost, _) = device_gaps(store, dev, &seqs, contiguous, last_seq, Acknowledged::default());
    for run in &lost {
        tx.prepare_cached(sql::INSERT_LOST_RUN)?
            .execute(params![store, dev, old_id, run.from, run.to, "replaced"])?;
    }
    tx.prepare_cached(sql::REPLACE_OUTBOX)?.execute(params![store, dev, new_id])?;
    tx.prepare_cached(sql::DELETE_RETIRED_SEQS)?.execute(params![store, dev])?;
    log::warn!(store_id = store.as_str(), device_id = dev.as_str(), old_outbox = old_id.as_str(),
        new_outbox = new_id, lost_runs = lost.len(); "till's outbox replaced");
    Ok(())
}

/// The acknowledged-sales check's statements in one SQLite transaction.
struct LiteRecovery<'t, 'c>(&'t Transaction<'c>);

impl RecoverySteps for LiteRecovery<'_, '_> {
    type Error = rusqlite::Error;

    fn recovery_state(&mut self, device: &Device) -> Result<Option<tills::RecoveryState>, Self::Error> {
        self.0
            .prepare_cached(sql::SELECT_RECOVERY_STATE)?
            .query_row(params![device.store_id, device.device_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0))
            })
            .optional()
    }

    fn settled_seqs(
        &mut self,
        device: &Device,
        outbox_id: &str,
        replaced: bool,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<i64>, Self::Error> {
        settled_seqs(
            self.0,
            &device.store_id,
            &device.device_id,
            after,
            Some(outbox_id),
            replaced,
            upto,
            limit,
        )
    }

    fn insert_pruned_run(
        &mut self,
        device: &Device,
        outbox_id: &str,
        from: i64,
        to: i64,
    ) -> Result<(), Self::Error> {
        self.0.prepare_cached(sql::INSERT_LOST_RUN)?.execute(params![
            device.store_id,
            device.device_id,
            outbox_id,
            from,
            to,
            "pruned"
        ])?;
        Ok(())
    }

    fn upsert_contiguous(
        &mut self,
        device: &Device,
        outbox_id: &str,
        contiguous: i64,
        now_ms: i64,
    ) -> Result<(), Self::Error> {
        self.0.prepare_cached(sql::UPSERT_CONTIGUOUS)?.execute(params![
            device.store_id,
            device.device_id,
            contiguous,
            outbox_id,
            now_ms
        ])?;
        Ok(())
    }
}

fn user_version(conn: &Connection) -> Result<usize, StoreError> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(usize::try_from(v).unwrap_or(0))
}

fn audit_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        audit_id: row.get(0)?,
        at: row.get(1)?,
        store_id: row.get(2)?,
        device_id: row.get(3)?,
        client_tx_id: row.get(4)?,
        correlation_id: row.get(5)?,
        attempt: row.get(6)?,
        outcome: row.get(7)?,
        code: row.get(8)?,
        message: row.get(9)?,
        payload_hash_version: row.get(10)?,
        payload_sha256: row.get(11)?,
        stored_sha256: row.get(12)?,
    })
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
        settle(self, ctx, sale, self.store_sale_tx(ctx, sale))
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
        let empty = TillReport::default();
        let report = activity.report.unwrap_or(&empty);
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let (Some(new_id), Some(at)) = (report.outbox_id.as_deref(), activity.reported_ms) {
            replace_outbox_if_new(&tx, device, new_id, at)?;
        }
        if !activity.retired_seqs.is_empty() {
            let retired = serde_json::to_string(activity.retired_seqs).unwrap_or_else(|_| "[]".into());
            tx.prepare_cached(sql::INSERT_RETIRED_SEQS)?.execute(params![
                device.store_id,
                device.device_id,
                retired
            ])?;
        }
        tx.prepare_cached(sql::RECORD_ACTIVITY)?.execute(params![
            device.store_id,
            device.device_id,
            activity.seen_ms,
            activity.pushed_ms,
            activity.report.and(activity.reported_ms),
            report.library_version,
            report.unsent_count,
            report.oldest_unsent_age_ms,
            report.unsent_minor,
            report.last_seq,
            report.seq_start,
            report.outbox_id,
            report.acked_seq,
            report.kept_seq,
            report.kept_since_ms,
        ])?;
        tx.commit()?;
        Ok(())
    }

    fn check_acknowledged(
        &self,
        device: &Device,
        check: &AckCheck,
        now_ms: i64,
    ) -> Result<RecoveryPlan, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let plan = tills::check_acknowledged(&mut LiteRecovery(&tx), device, check, now_ms)?;
        tx.commit()?;
        Ok(plan)
    }

    fn pool_state(&self) -> PoolState {
        let idle = self.pool.idle.lock().len() as u32;
        PoolState { connections: self.pool.max, idle, max: self.pool.max }
    }
}

impl AdminStore for SqliteStore {
    fn create_token(
        &self,
        device: &Device,
        token_sha256: &str,
        label: Option<&str>,
    ) -> Result<(), StoreError> {
        self.pool.get()?.prepare_cached(sql::INSERT_TOKEN)?.execute(params![
            token_sha256,
            device.store_id,
            device.device_id,
            label
        ])?;
        Ok(())
    }

    fn revoke_tokens(&self, device: &Device) -> Result<u64, StoreError> {
        let n = self
            .pool
            .get()?
            .prepare_cached(sql::REVOKE_TOKENS)?
            .execute(params![device.store_id, device.device_id])?;
        Ok(n as u64)
    }

    fn list_tokens(&self, store_id: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::LIST_TOKENS)?;
        let rows = stmt.query_map([store_id], |row| {
            Ok(TokenInfo {
                token_sha256_prefix: row.get(0)?,
                store_id: row.get(1)?,
                device_id: row.get(2)?,
                label: row.get(3)?,
                created_at: row.get(4)?,
                revoked_at: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn attention_items(
        &self,
        store_id: &str,
        since: Option<SystemTime>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::SELECT_ATTENTION)?;
        let rows = stmt.query_map(params![store_id, since.map(now_ms)], audit_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn audit_trail(&self, store_id: &str, client_tx_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::SELECT_AUDIT_TRAIL)?;
        let rows = stmt.query_map(params![store_id, client_tx_id], audit_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn stored_sale(&self, store_id: &str, client_tx_id: &str) -> Result<Option<StoredSale>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::SELECT_STORED_SALE)?;
        let sale = stmt
            .query_row(params![store_id, client_tx_id], |row| {
                Ok(StoredSale {
                    server_tx_id: row.get(0)?,
                    payload_sha256: row.get(1)?,
                    payload_hash_version: row.get(2)?,
                    device_id: row.get(3)?,
                    received_at: row.get(4)?,
                })
            })
            .optional()?;
        Ok(sale)
    }

    fn prune_audit(&self, older_than_days: u32) -> Result<u64, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::PRUNE_AUDIT_BATCH)?;
        let mut deleted = 0;
        loop {
            let n = stmt.execute(params![i64::from(older_than_days), PRUNE_BATCH_ROWS])? as u64;
            deleted += n;
            if n < PRUNE_BATCH_ROWS as u64 {
                return Ok(deleted);
            }
        }
    }

    fn sale_hashes(
        &self,
        store_id: Option<&str>,
        client_tx_ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::SELECT_HASHES)?;
        let mut found = std::collections::HashMap::with_capacity(client_tx_ids.len());
        for chunk in client_tx_ids.chunks(10_000) {
            let ids = serde_json::to_string(chunk)
                .map_err(|e| StoreError::Unavailable(format!("cannot encode sale ids: {e}")))?;
            let rows = stmt.query_map(params![ids, store_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (id, hash) = row?;
                found.insert(id, hash);
            }
        }
        Ok(found)
    }

    fn device_sales(&self, device: &Device) -> Result<Vec<String>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::SELECT_DEVICE_SALES)?;
        let rows = stmt.query_map(params![device.store_id, device.device_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn tills(&self, day_start_ms: i64) -> Result<Vec<TillStatus>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::SELECT_TILLS)?;
        let rows = stmt.query_map([day_start_ms], |r| {
            Ok(TillStatus {
                store_id: r.get(0)?,
                device_id: r.get(1)?,
                label: r.get(2)?,
                token_active: r.get::<_, i64>(3)? != 0,
                last_seen_ms: r.get(4)?,
                last_push_ms: r.get(5)?,
                reported_at_ms: r.get(6)?,
                report: TillReport {
                    library_version: r.get(7)?,
                    unsent_count: r.get(8)?,
                    oldest_unsent_age_ms: r.get(9)?,
                    unsent_minor: r.get(10)?,
                    last_seq: r.get(11)?,
                    seq_start: r.get(12)?,
                    outbox_id: r.get(14)?,
                    acked_seq: r.get(15)?,
                    kept_seq: r.get(16)?,
                    kept_since_ms: r.get(17)?,
                },
                sales_today: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn seq_gaps(&self, store_id: Option<&str>) -> Result<Vec<SeqGap>, StoreError> {
        let conn = self.pool.get()?;
        let mut gaps: Vec<SeqGap> = conn
            .prepare_cached(sql::SELECT_LOST_RUNS)?
            .query_map([store_id], |r| {
                Ok(SeqGap {
                    store_id: r.get(0)?,
                    device_id: r.get(1)?,
                    previous_outbox: (r.get::<_, String>(5)? == "replaced").then(|| r.get(2)).transpose()?,
                    from: r.get(3)?,
                    to: r.get(4)?,
                    after_last_received: false,
                    kind: GapKind::Lost,
                })
            })?
            .collect::<Result<_, _>>()?;
        type State = (String, String, i64, Option<i64>, Option<String>, bool, Acknowledged);
        let states: Vec<State> = conn
            .prepare_cached(sql::SELECT_SEQ_STATES)?
            .query_map([store_id], |r| {
                let acked = Acknowledged { acked_seq: r.get(6)?, kept_seq: r.get(7)? };
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, i64>(5)? != 0, acked))
            })?
            .collect::<Result<_, _>>()?;
        for (store, device, contiguous, last_seq, outbox_id, replaced, acked) in states {
            let seqs = settled_seqs(
                &conn,
                &store,
                &device,
                contiguous,
                outbox_id.as_deref(),
                replaced,
                i64::MAX,
                i64::MAX,
            )?;
            let (found, new_contiguous) = device_gaps(&store, &device, &seqs, contiguous, last_seq, acked);
            if new_contiguous > contiguous {
                conn.prepare_cached(sql::ADVANCE_CONTIGUOUS)?.execute(params![
                    store,
                    device,
                    new_contiguous,
                    outbox_id
                ])?;
            }
            gaps.extend(found);
        }
        gaps.sort_by(|a, b| (&a.store_id, &a.device_id).cmp(&(&b.store_id, &b.device_id)));
        Ok(gaps)
    }

    fn recheck_seqs(&self, store_id: Option<&str>) -> Result<u64, StoreError> {
        let conn = self.pool.get()?;
        let devices = conn.prepare_cached(sql::RESET_CONTIGUOUS)?.execute([store_id])?;
        Ok(devices as u64)
    }

    fn attention_entries(
        &self,
        store_id: Option<&str>,
        include_settled: bool,
        limit: u32,
    ) -> Result<Vec<AttentionEntry>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::SELECT_ATTENTION_ENTRIES)?;
        let rows = stmt.query_map(params![store_id, include_settled, limit], |r| {
            Ok(AttentionEntry {
                record: audit_record(r)?,
                outbox_seq: r.get(13)?,
                attempted_payload: r.get(14)?,
                stored_payload: r.get(15)?,
                settled_at_ms: r.get(16)?,
                settled_by: r.get(17)?,
                settled_note: r.get(18)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn settle_attention(
        &self,
        client_tx_id: &str,
        audit_id: i64,
        admin: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        let conn = self.pool.get()?;
        let n = conn.prepare_cached(sql::SETTLE_ATTENTION)?.execute(params![
            client_tx_id,
            audit_id,
            admin,
            note
        ])?;
        Ok(n > 0)
    }

    fn find_sales(&self, query: &SaleQuery) -> Result<Vec<SaleRecord>, StoreError> {
        let (from, to) = match query.occurred_ms {
            Some((from, to)) => (Some(from), Some(to)),
            None => (None, None),
        };
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql::FIND_SALES)?;
        let rows =
            stmt.query_map(params![query.store_id, query.client_tx_id, from, to, query.limit], |r| {
                Ok(SaleRecord {
                    server_tx_id: r.get(0)?,
                    store_id: r.get(1)?,
                    client_tx_id: r.get(2)?,
                    device_id: r.get(3)?,
                    outbox_seq: r.get(4)?,
                    occurred_ms: r.get(5)?,
                    received_ms: r.get(6)?,
                    payload_canonical: r.get(7)?,
                })
            })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn create_admin(&self, name: &str, secret_phc: &str) -> Result<bool, StoreError> {
        let conn = self.pool.get()?;
        let n = conn.prepare_cached(sql::INSERT_ADMIN)?.execute(params![name, secret_phc])?;
        Ok(n > 0)
    }

    fn delete_admin(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(sql::DELETE_ADMIN_SESSIONS)?.execute([name])?;
        let n = tx.prepare_cached(sql::DELETE_ADMIN)?.execute([name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn admin_secret(&self, name: &str) -> Result<Option<String>, StoreError> {
        let conn = self.pool.get()?;
        let secret =
            conn.prepare_cached(sql::SELECT_ADMIN_SECRET)?.query_row([name], |r| r.get(0)).optional()?;
        Ok(secret)
    }

    fn has_admin(&self) -> Result<bool, StoreError> {
        let conn = self.pool.get()?;
        let exists = conn.prepare_cached(sql::HAS_ADMIN)?.query_row([], |r| r.get(0))?;
        Ok(exists)
    }

    fn create_session(
        &self,
        session_sha256: &str,
        admin: &str,
        csrf_token: &str,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let conn = self.pool.get()?;
        conn.prepare_cached(sql::DELETE_EXPIRED_SESSIONS)?.execute([now_ms(SystemTime::now())])?;
        conn.prepare_cached(sql::INSERT_SESSION)?.execute(params![
            session_sha256,
            admin,
            csrf_token,
            expires_ms
        ])?;
        Ok(())
    }

    fn session(&self, session_sha256: &str, now_ms: i64) -> Result<Option<ConsoleSession>, StoreError> {
        let conn = self.pool.get()?;
        let session = conn
            .prepare_cached(sql::SELECT_SESSION)?
            .query_row(params![session_sha256, now_ms], |r| {
                Ok(ConsoleSession { admin_name: r.get(0)?, csrf_token: r.get(1)? })
            })
            .optional()?;
        Ok(session)
    }

    fn delete_session(&self, session_sha256: &str) -> Result<(), StoreError> {
        let conn = self.pool.get()?;
        conn.prepare_cached(sql::DELETE_SESSION)?.execute([session_sha256])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
