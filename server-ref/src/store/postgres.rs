//! The PostgreSQL store: one explicit transaction per sale, idempotent by `client_tx_id` + hash.
//! This file holds what is PostgreSQL's own: the pool, migrations, the prepared push path (items
//! and payments in one `UNNEST` statement each), error classification, the revocation listener, and
//! the `Driver` on which the flows written once for both stores run (`flows.rs`; the admin work is
//! [`super::AdminStore`] through it).
//!
//! Per sale: `BEGIN`; `SET LOCAL lock_timeout, statement_timeout`; `INSERT` header
//! `ON CONFLICT DO NOTHING RETURNING`; when no row came back the stored hash decides `DUPLICATE` or
//! `CONFLICT` (nothing overwritten, attempt audited); otherwise items, payments and the audit row,
//! `COMMIT` ⇒ `OK`. Any error rolls the whole transaction back (zero partial rows) and is classified by
//! SQLSTATE, never by message text: deadlock, lock timeout, serialization failure, statement timeout,
//! connection loss ⇒ `RETRY`; integrity or data errors ⇒ `INVALID`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::postgres::error::SqlState;
use ::postgres::types::{ToSql, Type};
use ::postgres::{Client, GenericClient, NoTls, Transaction};
use possync_core::protocol::PushStatus;

use super::driver::{Conn, Driver, Param, Row, Statements};
use super::flows;
use super::pg_pool::{ConnectError, PgManager, Prepared};
use super::postgres_sql as sql;
use super::{
    new_server_tx_id, outcome_of, AckCheck, CheckedSale, ClassifiedError, Device, DeviceActivity,
    FailureKind, PoolState, PushContext, PushStore, RecoveryPlan, Rejection, RevocationSink, SaleOutcome,
    StoreError, TokenLookup, TxError,
};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Connection and timeout settings of [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Largest number of pooled connections.
    pub pool_size: u32,
    /// How long a request waits for a pooled connection before it is answered 503.
    pub pool_timeout: Duration,
    /// TCP connect timeout for new connections.
    pub connect_timeout: Duration,
    /// `lock_timeout` of every push transaction, in milliseconds.
    pub lock_timeout_ms: u64,
    /// `statement_timeout` of every push transaction, in milliseconds.
    pub statement_timeout_ms: u64,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            pool_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            lock_timeout_ms: 2_000,
            statement_timeout_ms: 5_000,
        }
    }
}

type Pool = r2d2::Pool<PgManager>;

/// The PostgreSQL [`super::Store`], over an r2d2 connection pool.
pub struct PgStore {
    pool: Pool,
    /// Where new connections go, for the revocation listener's own connection.
    config: ::postgres::Config,
    lock_timeout: String,
    statement_timeout: String,
}

/// The newest migration version compiled into this binary.
pub fn expected_schema_version() -> i32 {
    embedded::migrations::runner().get_migrations().iter().map(|m| m.version()).max().unwrap_or(0)
}

impl PgStore {
    /// Opens a pool to the database of `config` (one connection is made at once, so a wrong URL or
    /// an unreachable server fails here). A refusal that waiting cannot cure (no such database or
    /// role, a wrong password) fails at once; a server that is down is waited for up to the pool
    /// timeout.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no connection can be made, with the reason in one line.
    pub fn connect(mut config: ::postgres::Config, opts: &PgOptions) -> Result<Self, StoreError> {
        config.connect_timeout(opts.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("possync-server");
        }
        // One connection first: a refusal that waiting cannot cure fails at once, with its reason.
        if let Err(e) = config.connect(NoTls).map_err(ConnectError) {
            if e.is_permanent() {
                return Err(StoreError::Unavailable(e.to_string()));
            }
        }
        let manager = PgManager::new(config.clone());
        let pool = r2d2::Pool::builder()
            .max_size(opts.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(opts.pool_timeout)
            .build(manager)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(PgStore {
            pool,
            config,
            lock_timeout: opts.lock_timeout_ms.to_string(),
            statement_timeout: opts.statement_timeout_ms.to_string(),
        })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<PgManager>, StoreError> {
        self.pool.get().map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Applies pending migrations (all in one transaction, under an advisory lock so that several
    /// instances may run it at once). Returns the names of the migrations applied now.
    ///
    /// # Errors
    /// [`StoreError::Schema`] when a migration fails or the database is newer than this binary.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        conn.execute(sql::LOCK_MIGRATIONS, &[])?;
        let result = self.migrate_locked(&mut conn);
        let unlock = conn.execute(sql::UNLOCK_MIGRATIONS, &[]);
        let applied = result?;
        unlock?;
        Ok(applied)
    }

    fn migrate_locked(&self, conn: &mut Client) -> Result<Vec<String>, StoreError> {
        if let Some(found) = schema_version(conn)? {
            let expected = expected_schema_version();
            if found > expected {
                return Err(StoreError::Schema(format!(
                    "database schema version {found} is newer than this binary's {expected}: \
                     upgrade possync-server before migrating"
                )));
            }
        }
        let report = embedded::migrations::runner()
            .set_grouped(true)
            .run(conn)
            .map_err(|e| StoreError::Schema(format!("migration failed: {e}")))?;
        Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
    }

    /// Stores one sale in one transaction (see the module docs); an error rolls it back.
    fn store_sale_tx(
        &self,
        ctx: &PushContext<'_>,
        sale: &CheckedSale<'_>,
    ) -> Result<SaleOutcome, TxError<::postgres::Error>> {
        let mut conn = self.pool.get().map_err(|e| TxError::Pool(e.to_string()))?;
        let (mut tx, mut prepared) = conn.push_transaction()?;
        self.set_local_timeouts(&mut tx, &mut prepared)?;
        let h = &sale.payload.header;
        let hash_version = sale.payload_hash_version as i32;
        let kind = h.kind.as_str();
        let inserted = prepared.query_opt(
            &mut tx,
            sql::INSERT_HEADER,
            &[
                (&sale.client_tx_id, Type::TEXT),
                (&sale.payload_sha256, Type::TEXT),
                (&hash_version, Type::INT4),
                (&h.store_id, Type::TEXT),
                (&ctx.device.device_id, Type::TEXT),
                (&h.receipt_number, Type::TEXT),
                (&kind, Type::TEXT),
                (&h.occurred_at_ms, Type::INT8),
                (&h.currency, Type::TEXT),
                (&h.subtotal_minor, Type::INT8),
                (&h.tax_minor, Type::INT8),
                (&h.total_minor, Type::INT8),
                (&h.change_minor, Type::INT8),
                (&h.cashier_id, Type::TEXT),
                (&sale.canonical, Type::TEXT),
                (&ctx.correlation_id, Type::TEXT),
                (&new_server_tx_id(), Type::INT8),
                (&sale.outbox_seq, Type::INT8),
                (&ctx.outbox_id, Type::TEXT),
            ],
        )?;
        let Some(row) = inserted else {
            let stored = prepared.query_one(
                &mut tx,
                sql::SELECT_STORED_HASH,
                &[(&h.store_id, Type::TEXT), (&sale.client_tx_id, Type::TEXT)],
            )?;
            let server_tx_id: i64 = stored.get(0);
            let stored_sha: String = stored.get(1);
            let stored_version: i32 = stored.get(2);
            let outcome = SaleOutcome::of_stored(sale, server_tx_id, &stored_sha, i64::from(stored_version));
            let message = outcome.message();
            AuditRow::of_sale(ctx, sale, Some(&stored_sha), &outcome, message.as_deref())
                .insert(&mut tx, &mut prepared)?;
            tx.commit()?;
            return Ok(outcome);
        };
        let server_tx_id: i64 = row.get(0);

        #[cfg(feature = "failpoints")]
        fail::fail_point!("push.after_header", |arg| Err(TxError::Injected(format!(
            "failpoint push.after_header: {}",
            arg.unwrap_or_default()
        ))));

        insert_children(&mut tx, &mut prepared, sale)?;
        let outcome = SaleOutcome::Stored { server_tx_id };
        AuditRow::of_sale(ctx, sale, None, &outcome, None).insert(&mut tx, &mut prepared)?;
        tx.commit()?;
        Ok(outcome)
    }

    /// `SET LOCAL` of the push timeouts, as the transaction's first statement.
    fn set_local_timeouts(
        &self,
        tx: &mut Transaction<'_>,
        prepared: &mut Prepared<'_>,
    ) -> Result<(), ::postgres::Error> {
        prepared.query(
            tx,
            sql::SET_LOCAL_TIMEOUTS,
            &[(&self.lock_timeout, Type::TEXT), (&self.statement_timeout, Type::TEXT)],
        )?;
        Ok(())
    }
}

// Statements of the push path are prepared once per connection (`pg_pool::Prepared`, parameter types
// given), then bound and executed in one round trip each, with no parse or plan on the server.

fn insert_children(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared<'_>,
    sale: &CheckedSale<'_>,
) -> Result<(), ::postgres::Error> {
    let items = &sale.payload.items;
    let line_no: Vec<i32> = items.iter().map(|i| i.line_no as i32).collect();
    let sku: Vec<&str> = items.iter().map(|i| i.sku.as_str()).collect();
    let name: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
    let qty: Vec<i64> = items.iter().map(|i| i.quantity_milli).collect();
    let price: Vec<i64> = items.iter().map(|i| i.unit_price_minor).collect();
    let discount: Vec<i64> = items.iter().map(|i| i.discount_minor).collect();
    let total: Vec<i64> = items.iter().map(|i| i.line_total_minor).collect();
    let refund: Vec<bool> = items.iter().map(|i| i.refund).collect();
    let store_id = &sale.payload.header.store_id;
    prepared.query(
        tx,
        sql::INSERT_ITEMS,
        &[
            (store_id, Type::TEXT),
            (&sale.client_tx_id, Type::TEXT),
            (&line_no, Type::INT4_ARRAY),
            (&sku, Type::TEXT_ARRAY),
            (&name, Type::TEXT_ARRAY),
            (&qty, Type::INT8_ARRAY),
            (&price, Type::INT8_ARRAY),
            (&discount, Type::INT8_ARRAY),
            (&total, Type::INT8_ARRAY),
            (&refund, Type::BOOL_ARRAY),
        ],
    )?;
    let payments = &sale.payload.payments;
    if !payments.is_empty() {
        let no: Vec<i32> = (1..=payments.len() as i32).collect();
        let method: Vec<&str> = payments.iter().map(|p| p.method.as_str()).collect();
        let amount: Vec<i64> = payments.iter().map(|p| p.amount_minor).collect();
        let reference: Vec<Option<&str>> = payments.iter().map(|p| p.reference.as_deref()).collect();
        prepared.query(
            tx,
            sql::INSERT_PAYMENTS,
            &[
                (store_id, Type::TEXT),
                (&sale.client_tx_id, Type::TEXT),
                (&no, Type::INT4_ARRAY),
                (&method, Type::TEXT_ARRAY),
                (&amount, Type::INT8_ARRAY),
                (&reference, Type::TEXT_ARRAY),
            ],
        )?;
    }
    Ok(())
}

/// A counter sent by the till as an `INTEGER` column, capped at its largest value.
fn int4(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// One row of `pos_transaction_audit`.
struct AuditRow<'a> {
    client_tx_id: &'a str,
    ctx: &'a PushContext<'a>,
    attempt: Option<i32>,
    payload_hash_version: Option<i32>,
    payload_sha256: Option<&'a str>,
    stored_sha256: Option<&'a str>,
    outcome: &'static str,
    code: Option<&'a str>,
    message: Option<&'a str>,
    outbox_seq: Option<i64>,
    attempted_payload: Option<&'a str>,
}

impl<'a> AuditRow<'a> {
    /// The audit row of a decided sale (`message` is the outcome's).
    fn of_sale(
        ctx: &'a PushContext<'a>,
        sale: &'a CheckedSale<'a>,
        stored_sha256: Option<&'a str>,
        outcome: &SaleOutcome,
        message: Option<&'a str>,
    ) -> Self {
        AuditRow {
            client_tx_id: sale.client_tx_id,
            ctx,
            attempt: Some(int4(sale.attempt)),
            payload_hash_version: Some(int4(sale.payload_hash_version)),
            payload_sha256: Some(sale.payload_sha256),
            stored_sha256,
            outcome: outcome.status().as_str(),
            code: outcome.code(),
            message,
            outbox_seq: sale.outbox_seq,
            attempted_payload: matches!(outcome, SaleOutcome::Conflict { .. }).then_some(sale.canonical),
        }
    }

    fn insert(&self, tx: &mut Transaction<'_>, prepared: &mut Prepared<'_>) -> Result<(), ::postgres::Error> {
        prepared.query(
            tx,
            sql::INSERT_AUDIT,
            &[
                (&self.client_tx_id, Type::TEXT),
                (&self.ctx.device.store_id, Type::TEXT),
                (&self.ctx.device.device_id, Type::TEXT),
                (&self.ctx.correlation_id, Type::TEXT),
                (&self.attempt, Type::INT4),
                (&self.payload_hash_version, Type::INT4),
                (&self.payload_sha256, Type::TEXT),
                (&self.stored_sha256, Type::TEXT),
                (&self.outcome, Type::TEXT),
                (&self.code, Type::TEXT),
                (&self.message, Type::TEXT),
                (&self.outbox_seq, Type::INT8),
                (&self.attempted_payload, Type::TEXT),
                (&self.ctx.outbox_id, Type::TEXT),
            ],
        )?;
        Ok(())
    }
}

fn schema_version(conn: &mut Client) -> Result<Option<i32>, ::postgres::Error> {
    let has_history: bool = conn.query_one(sql::HAS_SCHEMA_HISTORY, &[])?.get(0);
    if !has_history {
        return Ok(None);
    }
    Ok(conn.query_one(sql::SELECT_SCHEMA_VERSION, &[])?.get(0))
}

/// Keeps a connection listening on the revocation channel until `stop`: every notification empties
/// the sink; while the connection is down the sink is told so (and caches nothing), and the
/// connection is made again after a pause.
fn listen_revocations(config: &::postgres::Config, sink: &dyn RevocationSink, stop: &AtomicBool) {
    let mut pause = Duration::from_millis(100);
    while !stop.load(Ordering::SeqCst) {
        let listened = config.connect(NoTls).and_then(|mut client| {
            client.batch_execute(sql::LISTEN_REVOKED)?;
            sink.announcing(true);
            log::info!(channel = sql::REVOCATION_CHANNEL; "listening for token revocations");
            while !stop.load(Ordering::SeqCst) {
                {
                    let mut notifications = client.notifications();
                    // `None`: no notification within the wait, or the connection is gone (asked below).
                    let mut iter = notifications.timeout_iter(Duration::from_millis(250));
                    while let Some(n) = ::postgres::fallible_iterator::FallibleIterator::next(&mut iter)? {
                        log::info!(revoked = n.payload(); "token revoked; cache emptied");
                        sink.revoked();
                    }
                }
                if client.is_closed() {
                    break;
                }
            }
            Ok(())
        });
        sink.announcing(false);
        if let Err(e) = listened {
            log::warn!(error:% = e, retry_ms = pause.as_millis() as u64;
                "revocation listener lost its connection; tokens are looked up on every request until it is back");
        }
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

impl ClassifiedError for ::postgres::Error {
    fn classify(&self) -> (FailureKind, &'static str) {
        classify(self)
    }
}

/// How a database error settles a sale: `(kind, code)`, by SQLSTATE only.
pub fn classify(err: &::postgres::Error) -> (FailureKind, &'static str) {
    let Some(state) = err.code() else {
        let io = std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>());
        let code = if err.is_closed() || io { "connection_lost" } else { "database_error" };
        return (FailureKind::Transient, code);
    };
    let class = &state.code()[..2];
    let constraint = err.as_db_error().and_then(|e| e.constraint());
    if *state == SqlState::UNIQUE_VIOLATION && constraint == Some(sql::SERVER_TX_ID_INDEX) {
        // Two sales drew the same new server_tx_id: nothing was stored; sent again, it draws another.
        (FailureKind::Transient, "server_tx_id_collision")
    } else if *state == SqlState::T_R_DEADLOCK_DETECTED {
        (FailureKind::Transient, "deadlock")
    } else if *state == SqlState::LOCK_NOT_AVAILABLE {
        (FailureKind::Transient, "lock_timeout")
    } else if *state == SqlState::T_R_SERIALIZATION_FAILURE {
        (FailureKind::Transient, "serialization_failure")
    } else if *state == SqlState::QUERY_CANCELED {
        (FailureKind::Transient, "statement_timeout")
    } else if class == "23" || class == "22" {
        (FailureKind::Rejected, "rejected_by_database")
    } else if matches!(class, "08" | "53" | "57") {
        (FailureKind::Transient, "database_unavailable")
    } else {
        (FailureKind::Transient, "database_error")
    }
}

impl PushStore for PgStore {
    fn lookup_token(&self, token_sha256: &str) -> Result<TokenLookup, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .query_typed_opt(sql::SELECT_TOKEN, &[(&token_sha256, Type::TEXT)])
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(match row {
            None => TokenLookup::Unknown,
            Some(row) if row.get::<_, bool>(2) => TokenLookup::Revoked,
            Some(row) => TokenLookup::Active(Device { store_id: row.get(0), device_id: row.get(1) }),
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
        let mut conn = self.conn()?;
        let (mut tx, mut prepared) = conn.push_transaction()?;
        self.set_local_timeouts(&mut tx, &mut prepared)?;
        for r in rejections {
            let id: String = r.client_tx_id.chars().take(128).collect();
            let sha: Option<String> = r.payload_sha256.map(|s| s.chars().take(128).collect());
            let row = AuditRow {
                client_tx_id: &id,
                ctx,
                attempt: r.attempt.map(int4),
                payload_hash_version: r.payload_hash_version.map(int4),
                payload_sha256: sha.as_deref(),
                stored_sha256: None,
                outcome: PushStatus::Invalid.as_str(),
                code: Some(r.code),
                message: Some(r.message),
                outbox_seq: r.outbox_seq,
                attempted_payload: r.attempted_payload,
            };
            row.insert(&mut tx, &mut prepared)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn check_ready(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let found = schema_version(&mut conn).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let expected = expected_schema_version();
        match found {
            Some(v) if v == expected => Ok(()),
            Some(v) if v > expected => Err(StoreError::Schema(format!(
                "database schema version {v} is newer than this binary's {expected}: upgrade possync-server"
            ))),
            Some(v) => Err(StoreError::Schema(format!(
                "database schema version {v} is older than {expected}: run `possync-server migrate`"
            ))),
            None => {
                Err(StoreError::Schema("database has no possync schema: run `possync-server migrate`".into()))
            }
        }
    }

    fn watch_revocations(
        &self,
        sink: Arc<dyn RevocationSink>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
        let config = self.config.clone();
        std::thread::Builder::new()
            .name("possync-revocations".into())
            .spawn(move || listen_revocations(&config, sink.as_ref(), &stop))
            .map(Some)
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
        let state = self.pool.state();
        PoolState { connections: state.connections, idle: state.idle_connections, max: self.pool.max_size() }
    }
}

/// A PostgreSQL client or transaction as the flows' [`Conn`]. Statements run with `query_typed`
/// (parameter types given: one round trip, no separate prepare).
struct PgClient<'c, C>(&'c mut C);

/// The parameters with their PostgreSQL types.
fn typed<'p>(params: &'p [Param<'_>]) -> Vec<(&'p (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|p| -> (&(dyn ToSql + Sync), Type) {
            match p {
                Param::Text(v) => (v, Type::TEXT),
                Param::Int(v) => (v, Type::INT8),
                Param::Bool(v) => (v, Type::BOOL),
                Param::Texts(v) => (v, Type::TEXT_ARRAY),
                Param::Ints(v) => (v, Type::INT8_ARRAY),
            }
        })
        .collect()
}

impl<C: GenericClient> Conn for PgClient<'_, C> {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        Ok(self.0.execute_typed(sql, &typed(params))?)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for row in self.0.query_typed(sql, &typed(params))? {
            each(&PgRow(&row))?;
        }
        Ok(())
    }
}

/// A PostgreSQL result row as the flows' [`Row`]: integers of any width read as `i64`.
struct PgRow<'r>(&'r ::postgres::Row);

impl PgRow<'_> {
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, ::postgres::Error> {
        let ty = self.0.columns().get(i).map(|c| c.type_().clone());
        match ty {
            Some(Type::INT4) => Ok(self.0.try_get::<_, Option<i32>>(i)?.map(i64::from)),
            Some(Type::INT2) => Ok(self.0.try_get::<_, Option<i16>>(i)?.map(i64::from)),
            _ => self.0.try_get(i),
        }
    }
}

impl Row for PgRow<'_> {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.0.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.0.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_i64(i)?
            .ok_or_else(|| StoreError::Schema(format!("column {i} is NULL where a number is due")))
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.opt_i64(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.0.try_get(i)?)
    }
}

impl Driver for PgStore {
    fn statements(&self) -> &'static Statements {
        &sql::STATEMENTS
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        f(&mut PgClient(&mut **conn))
    }

    fn in_transaction<T>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let value = f(&mut PgClient(&mut tx))?;
        tx.commit()?;
        Ok(value)
    }
}
