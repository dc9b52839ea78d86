//! The PostgreSQL store: one explicit transaction per sale, idempotent by `client_tx_id` + hash.
//!
//! Per sale: `BEGIN`; `SET LOCAL lock_timeout, statement_timeout`; `INSERT` header
//! `ON CONFLICT DO NOTHING RETURNING`; when no row came back the stored hash decides `DUPLICATE` or
//! `CONFLICT` (nothing overwritten, attempt audited); otherwise items, payments and the audit row,
//! `COMMIT` ⇒ `OK`. Any error rolls the whole transaction back (zero partial rows) and is classified by
//! SQLSTATE, never by message text: deadlock, lock timeout, serialization failure, statement timeout,
//! connection loss ⇒ `RETRY`; integrity or data errors ⇒ `INVALID`.

use std::time::{Duration, SystemTime};

use ::postgres::error::SqlState;
use ::postgres::types::Type;
use ::postgres::{Client, GenericClient, NoTls, Transaction};
use possync_core::protocol::PushStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::token_cache::RevocationSink;

use super::pg_pool::{ConnectError, PgManager, Prepared};
use super::postgres_sql as sql;
use super::tills::{self, device_gaps, Acknowledged, GapKind, RecoverySteps};
use super::{
    new_server_tx_id, settle, AckCheck, AdminStore, AttentionEntry, AuditRecord, CheckedSale,
    ClassifiedError, ConsoleSession, Device, DeviceActivity, FailureKind, PoolState, PushContext, PushStore,
    RecoveryPlan, Rejection, SaleOutcome, SaleQuery, SaleRecord, SeqGap, StoreError, StoredSale, TillReport,
    TillStatus, TokenInfo, TokenLookup, TxError,
};

/// Audit rows deleted per transaction by [`Store::prune_audit`].
const PRUNE_BATCH_ROWS: i64 = 10_000;

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

/// The PostgreSQL [`Store`], over an r2d2 connection pool.
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

/// Settled sequence numbers of a device's outbox in (`contiguous`, `upto`], at most `limit`
/// ([`sql::SELECT_SETTLED_SEQS`]).
#[allow(clippy::too_many_arguments)]
fn settled_seqs(
    conn: &mut impl GenericClient,
    store: &str,
    device: &str,
    contiguous: i64,
    outbox_id: Option<&str>,
    replaced: bool,
    upto: i64,
    limit: i64,
) -> Result<Vec<i64>, ::postgres::Error> {
    Ok(conn
        .query(
            sql::SELECT_SETTLED_SEQS,
            &[&store, &device, &contiguous, &outbox_id, &replaced, &upto, &limit],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// When a report newer than the stored one names another outbox than the device's (its outbox was
/// wiped or replaced): keeps what the old outbox never delivered (its gaps and the run up to its last
/// report) as lost runs, and starts the device's sequence bookkeeping from scratch under `new_id`.
/// A device seen without an identity before (an older library) adopts it without a reset.
fn replace_outbox_if_new(
    tx: &mut Transaction<'_>,
    device: &Device,
    new_id: &str,
    reported_ms: i64,
) -> Result<(), ::postgres::Error> {
    let (store, dev) = (&device.store_id, &device.device_id);
    let Some(state) = tx.query_opt(sql::SELECT_OUTBOX_STATE, &[store, dev, &reported_ms])? else {
        return Ok(());
    };
    let old_id: Option<String> = state.get(0);
    let newer: bool = state.get(4);
    let Some(old_id) = old_id.filter(|old| old != new_id && newer) else {
        return Ok(());
    };
    let (contiguous, last_seq, replaced): (i64, Option<i64>, bool) =
        (state.get(1), state.get(2), state.get(3));
    let seqs = settled_seqs(tx, store, dev, contiguous, Some(&old_id), replaced, i64::MAX, i64::MAX)?;
    let (lost, _) = device_gaps(store, dev, &seqs, contiguous, last_seq, Acknowledged::default());
    for run in &lost {
        tx.execute(sql::INSERT_LOST_RUN, &[store, dev, &old_id, &run.from, &run.to, &"replaced"])?;
    }
    tx.execute(sql::REPLACE_OUTBOX, &[store, dev, &new_id])?;
    tx.execute(sql::DELETE_RETIRED_SEQS, &[store, dev])?;
    log::warn!(store_id = store.as_str(), device_id = dev.as_str(), old_outbox = old_id.as_str(),
        new_outbox = new_id, lost_runs = lost.len(); "till's outbox replaced");
    Ok(())
}

/// The acknowledged-sales check's statements in one PostgreSQL transaction.
struct PgRecovery<'t, 'c>(&'t mut Transaction<'c>);

impl RecoverySteps for PgRecovery<'_, '_> {
    type Error = ::postgres::Error;

    fn recovery_state(&mut self, device: &Device) -> Result<Option<tills::RecoveryState>, Self::Error> {
        let row = self.0.query_opt(sql::SELECT_RECOVERY_STATE, &[&device.store_id, &device.device_id])?;
        Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
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
        self.0.execute(
            sql::INSERT_LOST_RUN,
            &[&device.store_id, &device.device_id, &outbox_id, &from, &to, &"pruned"],
        )?;
        Ok(())
    }

    fn upsert_contiguous(
        &mut self,
        device: &Device,
        outbox_id: &str,
        contiguous: i64,
        now_ms: i64,
    ) -> Result<(), Self::Error> {
        self.0.execute(
            sql::UPSERT_CONTIGUOUS,
            &[&device.store_id, &device.device_id, &contiguous, &outbox_id, &now_ms],
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

fn audit_record(row: &::postgres::Row) -> AuditRecord {
    AuditRecord {
        audit_id: row.get(0),
        at: row.get(1),
        store_id: row.get(2),
        device_id: row.get(3),
        client_tx_id: row.get(4),
        correlation_id: row.get(5),
        attempt: row.get(6),
        outcome: row.get(7),
        code: row.get(8),
        message: row.get(9),
        payload_hash_version: row.get(10),
        payload_sha256: row.get(11),
        stored_sha256: row.get(12),
    }
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
        let empty = TillReport::default();
        let report = activity.report.unwrap_or(&empty);
        let retired: Vec<i64> = activity.retired_seqs.to_vec();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        if let (Some(new_id), Some(at)) = (report.outbox_id.as_deref(), activity.reported_ms) {
            replace_outbox_if_new(&mut tx, device, new_id, at)?;
        }
        tx.query_typed(
            sql::RECORD_ACTIVITY,
            &[
                (&device.store_id, Type::TEXT),
                (&device.device_id, Type::TEXT),
                (&retired, Type::INT8_ARRAY),
                (&activity.seen_ms, Type::INT8),
                (&activity.pushed_ms, Type::INT8),
                (&activity.report.and(activity.reported_ms), Type::INT8),
                (&report.library_version, Type::TEXT),
                (&report.unsent_count, Type::INT8),
                (&report.oldest_unsent_age_ms, Type::INT8),
                (&report.unsent_minor, Type::TEXT),
                (&report.last_seq, Type::INT8),
                (&report.seq_start, Type::INT8),
                (&report.outbox_id, Type::TEXT),
                (&report.acked_seq, Type::INT8),
                (&report.kept_seq, Type::INT8),
                (&report.kept_since_ms, Type::INT8),
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn check_acknowledged(
        &self,
        device: &Device,
        check: &AckCheck,
        now_ms: i64,
    ) -> Result<RecoveryPlan, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let plan = tills::check_acknowledged(&mut PgRecovery(&mut tx), device, check, now_ms)?;
        tx.commit()?;
        Ok(plan)
    }

    fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState { connections: state.connections, idle: state.idle_connections, max: self.pool.max_size() }
    }
}

impl AdminStore for PgStore {
    fn create_token(
        &self,
        device: &Device,
        token_sha256: &str,
        label: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn()?
            .execute(sql::INSERT_TOKEN, &[&token_sha256, &device.store_id, &device.device_id, &label])?;
        Ok(())
    }

    fn revoke_tokens(&self, device: &Device) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let revoked = tx.execute(sql::REVOKE_TOKENS, &[&device.store_id, &device.device_id])?;
        if revoked > 0 {
            let what = format!("{}/{}", device.store_id, device.device_id);
            tx.execute(sql::NOTIFY_REVOKED, &[&what])?;
        }
        tx.commit()?;
        Ok(revoked)
    }

    fn list_tokens(&self, store_id: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = self.conn()?.query(sql::LIST_TOKENS, &[&store_id])?;
        Ok(rows
            .into_iter()
            .map(|row| TokenInfo {
                token_sha256_prefix: row.get(0),
                store_id: row.get(1),
                device_id: row.get(2),
                label: row.get(3),
                created_at: row.get(4),
                revoked_at: row.get(5),
            })
            .collect())
    }

    fn attention_items(
        &self,
        store_id: &str,
        since: Option<SystemTime>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = self.conn()?.query(sql::SELECT_ATTENTION, &[&store_id, &since])?;
        Ok(rows.iter().map(audit_record).collect())
    }

    fn audit_trail(&self, store_id: &str, client_tx_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = self.conn()?.query(sql::SELECT_AUDIT_TRAIL, &[&store_id, &client_tx_id])?;
        Ok(rows.iter().map(audit_record).collect())
    }

    fn stored_sale(&self, store_id: &str, client_tx_id: &str) -> Result<Option<StoredSale>, StoreError> {
        let row = self.conn()?.query_opt(sql::SELECT_STORED_SALE, &[&store_id, &client_tx_id])?;
        Ok(row.map(|row| StoredSale {
            server_tx_id: row.get(0),
            payload_sha256: row.get(1),
            payload_hash_version: row.get(2),
            device_id: row.get(3),
            received_at: row.get(4),
        }))
    }

    fn prune_audit(&self, older_than_days: u32) -> Result<u64, StoreError> {
        let days = i32::try_from(older_than_days).unwrap_or(i32::MAX);
        let mut conn = self.conn()?;
        let mut deleted = 0;
        loop {
            let n = conn.execute(sql::PRUNE_AUDIT_BATCH, &[&days, &PRUNE_BATCH_ROWS])?;
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
        let mut conn = self.conn()?;
        let mut found = std::collections::HashMap::with_capacity(client_tx_ids.len());
        for chunk in client_tx_ids.chunks(10_000) {
            for row in conn.query(sql::SELECT_HASHES, &[&chunk, &store_id])? {
                found.insert(row.get(0), row.get(1));
            }
        }
        Ok(found)
    }

    fn device_sales(&self, device: &Device) -> Result<Vec<String>, StoreError> {
        let rows = self.conn()?.query(sql::SELECT_DEVICE_SALES, &[&device.store_id, &device.device_id])?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn tills(&self, day_start_ms: i64) -> Result<Vec<TillStatus>, StoreError> {
        let rows = self.conn()?.query(sql::SELECT_TILLS, &[&day_start_ms])?;
        Ok(rows
            .iter()
            .map(|r| TillStatus {
                store_id: r.get(0),
                device_id: r.get(1),
                label: r.get(2),
                token_active: r.get(3),
                last_seen_ms: r.get(4),
                last_push_ms: r.get(5),
                reported_at_ms: r.get(6),
                report: TillReport {
                    library_version: r.get(7),
                    unsent_count: r.get(8),
                    oldest_unsent_age_ms: r.get(9),
                    unsent_minor: r.get(10),
                    last_seq: r.get(11),
                    seq_start: r.get(12),
                    outbox_id: r.get(14),
                    acked_seq: r.get(15),
                    kept_seq: r.get(16),
                    kept_since_ms: r.get(17),
                },
                sales_today: r.get(13),
            })
            .collect())
    }

    fn seq_gaps(&self, store_id: Option<&str>) -> Result<Vec<SeqGap>, StoreError> {
        let mut conn = self.conn()?;
        let mut gaps: Vec<SeqGap> = conn
            .query(sql::SELECT_LOST_RUNS, &[&store_id])?
            .iter()
            .map(|r| SeqGap {
                store_id: r.get(0),
                device_id: r.get(1),
                previous_outbox: (r.get::<_, String>(5) == "replaced").then(|| r.get(2)),
                from: r.get(3),
                to: r.get(4),
                after_last_received: false,
                kind: GapKind::Lost,
            })
            .collect();
        let states = conn.query(sql::SELECT_SEQ_STATES, &[&store_id])?;
        for state in states {
            let (store, device): (String, String) = (state.get(0), state.get(1));
            let contiguous: i64 = state.get(2);
            let last_seq: Option<i64> = state.get(3);
            let outbox_id: Option<String> = state.get(4);
            let replaced: bool = state.get(5);
            let acked = Acknowledged { acked_seq: state.get(6), kept_seq: state.get(7) };
            let seqs = settled_seqs(
                &mut **conn,
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
                conn.execute(sql::ADVANCE_CONTIGUOUS, &[&store, &device, &new_contiguous, &outbox_id])?;
            }
            gaps.extend(found);
        }
        gaps.sort_by(|a, b| (&a.store_id, &a.device_id).cmp(&(&b.store_id, &b.device_id)));
        Ok(gaps)
    }

    fn recheck_seqs(&self, store_id: Option<&str>) -> Result<u64, StoreError> {
        Ok(self.conn()?.execute(sql::RESET_CONTIGUOUS, &[&store_id])?)
    }

    fn attention_entries(
        &self,
        store_id: Option<&str>,
        include_settled: bool,
        limit: u32,
    ) -> Result<Vec<AttentionEntry>, StoreError> {
        let limit = i64::from(limit);
        let rows =
            self.conn()?.query(sql::SELECT_ATTENTION_ENTRIES, &[&store_id, &include_settled, &limit])?;
        Ok(rows
            .iter()
            .map(|r| AttentionEntry {
                record: audit_record(r),
                outbox_seq: r.get(13),
                attempted_payload: r.get(14),
                stored_payload: r.get(15),
                settled_at_ms: r.get(16),
                settled_by: r.get(17),
                settled_note: r.get(18),
            })
            .collect())
    }

    fn settle_attention(
        &self,
        client_tx_id: &str,
        audit_id: i64,
        admin: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        let n = self.conn()?.execute(sql::SETTLE_ATTENTION, &[&client_tx_id, &audit_id, &admin, &note])?;
        Ok(n > 0)
    }

    fn find_sales(&self, query: &SaleQuery) -> Result<Vec<SaleRecord>, StoreError> {
        let (from, to) = match query.occurred_ms {
            Some((from, to)) => (Some(from), Some(to)),
            None => (None, None),
        };
        let limit = i64::from(query.limit);
        let rows = self
            .conn()?
            .query(sql::FIND_SALES, &[&query.store_id, &query.client_tx_id, &from, &to, &limit])?;
        Ok(rows
            .iter()
            .map(|r| SaleRecord {
                server_tx_id: r.get(0),
                store_id: r.get(1),
                client_tx_id: r.get(2),
                device_id: r.get(3),
                outbox_seq: r.get(4),
                occurred_ms: r.get(5),
                received_ms: r.get(6),
                payload_canonical: r.get(7),
            })
            .collect())
    }

    fn create_admin(&self, name: &str, secret_phc: &str) -> Result<bool, StoreError> {
        Ok(self.conn()?.execute(sql::INSERT_ADMIN, &[&name, &secret_phc])? > 0)
    }

    fn delete_admin(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.conn()?.execute(sql::DELETE_ADMIN, &[&name])? > 0)
    }

    fn admin_secret(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn()?.query_opt(sql::SELECT_ADMIN_SECRET, &[&name])?.map(|r| r.get(0)))
    }

    fn has_admin(&self) -> Result<bool, StoreError> {
        Ok(self.conn()?.query_one(sql::HAS_ADMIN, &[])?.get(0))
    }

    fn create_session(
        &self,
        session_sha256: &str,
        admin: &str,
        csrf_token: &str,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.execute(sql::DELETE_EXPIRED_SESSIONS, &[])?;
        conn.execute(sql::INSERT_SESSION, &[&session_sha256, &admin, &csrf_token, &expires_ms])?;
        Ok(())
    }

    fn session(&self, session_sha256: &str, now_ms: i64) -> Result<Option<ConsoleSession>, StoreError> {
        let row = self.conn()?.query_opt(sql::SELECT_SESSION, &[&session_sha256, &now_ms])?;
        Ok(row.map(|r| ConsoleSession { admin_name: r.get(0), csrf_token: r.get(1) }))
    }

    fn delete_session(&self, session_sha256: &str) -> Result<(), StoreError> {
        self.conn()?.execute(sql::DELETE_SESSION, &[&session_sha256])?;
        Ok(())
    }
}
