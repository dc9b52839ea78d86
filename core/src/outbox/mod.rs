//! The durable outbox of finished sales: a SQLite file owned by the library.
//!
//! A sale moves `pending → in_flight → sent | conflict | invalid`. Unsent sales are never deleted;
//! sent ones are pruned after [`OutboxConfig::sent_retention_ms`]. Sending goes through leases:
//!
//! - [`Outbox::claim`] takes due sales in one `BEGIN IMMEDIATE` transaction and one statement (pending
//!   sales due now, or in-flight ones whose lease expired), giving them an owner, a fresh random
//!   fencing token and an expiry, and bumping `attempt`. Two claimers, in threads or processes, never
//!   get the same sale.
//! - [`Outbox::heartbeat`] extends leases by compare-and-swap on `(seq, lease_token)` while a send is in
//!   flight; [`LeaseState::Lost`] means another sender took over.
//! - [`Outbox::finalize`] writes a result by the same CAS; [`Finalized::LeaseLost`] means the result was
//!   stale and was dropped, never written over a newer one.
//!
//! Files: the records in `records.rs`, opening in `open.rs`, claim / heartbeat / finalize in
//! `lease.rs`, a person's decision in `resolve.rs`, the other queries here. All SQL is in `sql.rs`;
//! the schema and migrations in `schema.rs`. One connection per `Outbox`, guarded by a mutex that is
//! never held across a network call or a callback; every query goes through `Outbox::with_conn`
//! or `Outbox::with_tx`, which take the lock and name the file in a storage error.

mod lease;
mod open;
mod records;
mod resolve;
mod schema;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{
    named_params, Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior,
};

use crate::clock::{Clock, Waker};
use crate::config::OutboxConfig;
use crate::error::{SaleError, StorageError};
use crate::protocol::{
    canonical_json_string, payload_sha256, validate_client_tx_id, validate_sale, BacklogReport, Limits,
    SalePayload, PAYLOAD_HASH_VERSION_V1,
};

pub use records::{
    AttentionItem, Claimed, Counts, CurrencyAmount, Enqueued, EntrySummary, Finalized, Lease, LeaseState,
    OutboxEntry, Outcome, Resolution, Resolved, SaleState,
};
pub use schema::LATEST_VERSION as SCHEMA_VERSION;

use records::entry_of_row;

/// Retired sequence numbers are reported for this long after a person retired them (30 days), so a
/// till offline for weeks still reports them; the server records each once.
pub const RETIRED_REPORT_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

/// Most retired sequence numbers in one report (the server's bound).
pub const MAX_RETIRED_REPORTED: i64 = 1000;

/// The outbox. Cheap to share behind an `Arc`; every method is safe from any thread.
pub struct Outbox {
    conn: Mutex<Connection>,
    path: PathBuf,
    config: OutboxConfig,
    clock: Arc<dyn Clock>,
    /// Called after each newly recorded sale (see [`Outbox::on_recorded`]).
    recorded: Mutex<Option<Arc<Waker>>>,
    /// Resolved sequence numbers the server asked for again (see [`Outbox::requeue_acknowledged`]),
    /// to be reported as retired with the next backlog report.
    retired_again: Mutex<Vec<i64>>,
}

/// The connection of an outbox, held by a test (see `Outbox::hold_connection`).
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub struct HeldConnection<'a> {
    _guard: parking_lot::MutexGuard<'a, Connection>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Outbox {
    /// Sets the function called after each sale this outbox newly records (not for a repeated
    /// [`Outbox::enqueue_with_id`] of a stored sale), outside every lock; `None` removes it. The sync
    /// engine sets it to its `SaleRecorded` trigger, so that apps need not trigger a drain per sale.
    pub fn on_recorded(&self, hook: Option<Waker>) {
        *self.recorded.lock() = hook.map(Arc::new);
    }

    /// The file this outbox lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings this outbox was opened with.
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    /// Writes a consistent copy of the whole outbox to `dest` (`VACUUM INTO`: one read transaction, so
    /// a sale recorded meanwhile is either in the copy or not, never half), in rollback-journal mode so
    /// that the copy is one self-contained file. The outbox itself is not changed.
    ///
    /// # Errors
    /// [`StorageError::Io`] when `dest` exists already; a storage error when it cannot be written.
    pub fn copy_to(&self, dest: &Path) -> Result<(), StorageError> {
        if dest.exists() {
            return Err(StorageError::Io { path: dest.to_path_buf(), reason: "exists already".into() });
        }
        let target = dest.to_str().ok_or_else(|| StorageError::Io {
            path: dest.to_path_buf(),
            reason: "the path is not valid UTF-8".into(),
        })?;
        self.with_conn(|conn| conn.execute(sql::VACUUM_INTO, named_params! {":dest": target}))?;
        let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| StorageError::from_sqlite(dest, e))?;
        copy.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
            .map_err(|e| StorageError::from_sqlite(dest, e))?;
        Ok(())
    }

    /// The clock used for leases and ages.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// A SQLite error of this outbox's file, with its path.
    fn err(&self, e: rusqlite::Error) -> StorageError {
        StorageError::from_sqlite(&self.path, e)
    }

    /// Runs `f` on the connection, under its lock, and maps a SQLite error to a [`StorageError`]
    /// naming this outbox's file. The lock is released when `f` returns.
    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StorageError> {
        let conn = self.conn.lock();
        f(&conn).map_err(|e| self.err(e))
    }

    /// Holds this outbox's connection until the guard is dropped, as a slow query on another thread
    /// would: every query of this outbox waits meanwhile. For tests only (feature `test-hooks`).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn hold_connection(&self) -> HeldConnection<'_> {
        HeldConnection { _guard: self.conn.lock() }
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, under the connection's lock, and commits when
    /// it returns `Ok`; an error rolls everything back. SQLite errors are mapped as in
    /// `Outbox::with_conn`.
    fn with_tx<T>(&self, f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>) -> Result<T, StorageError> {
        let mut conn = self.conn.lock();
        let run = |conn: &mut Connection| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run(&mut conn).map_err(|e| self.err(e))
    }

    /// Validates, canonicalizes, hashes and stores a sale under a new UUID v7; returns its id.
    ///
    /// # Errors
    /// [`SaleError::Invalid`] (nothing stored), or [`SaleError::Storage`] ([`StorageError::DiskFull`], ...).
    pub fn enqueue(&self, sale: &SalePayload) -> Result<String, SaleError> {
        Ok(self.enqueue_with_id(&uuid::Uuid::now_v7().to_string(), sale)?.client_tx_id)
    }

    /// Like [`Outbox::enqueue`] with a caller-chosen id. The same sale under the same id again is a
    /// no-op (`created: false`).
    ///
    /// # Errors
    /// [`SaleError::IdConflict`] when the id holds a different sale; otherwise as [`Outbox::enqueue`].
    pub fn enqueue_with_id(&self, client_tx_id: &str, sale: &SalePayload) -> Result<Enqueued, SaleError> {
        validate_client_tx_id(client_tx_id)?;
        validate_sale(sale, &Limits::default())?;
        let canonical = canonical_json_string(sale)?;
        let sha = payload_sha256(canonical.as_bytes());
        let now = self.clock.now_ms();
        // The hash already stored under the id, or `None` when the sale was inserted now.
        let stored: Option<String> = self.with_conn(|conn| {
            let inserted = conn.prepare_cached(sql::INSERT)?.execute(named_params! {
                ":id": client_tx_id, ":payload": canonical, ":sha": sha,
                ":version": PAYLOAD_HASH_VERSION_V1, ":currency": sale.header.currency,
                ":total": sale.header.total_minor, ":now": now,
            })?;
            if inserted == 1 {
                return Ok(None);
            }
            conn.query_row(sql::SELECT_HASH, named_params! {":id": client_tx_id}, |r| r.get(0)).map(Some)
        })?;
        match stored {
            None => {
                let hook = self.recorded.lock().clone();
                if let Some(hook) = hook.filter(|hook| !hook()) {
                    // Whoever it woke is gone: drop it (unless it was replaced meanwhile).
                    let mut current = self.recorded.lock();
                    if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &hook)) {
                        *current = None;
                    }
                }
                Ok(Enqueued { client_tx_id: client_tx_id.to_owned(), created: true })
            }
            Some(stored) if stored == sha => {
                Ok(Enqueued { client_tx_id: client_tx_id.to_owned(), created: false })
            }
            Some(_) => Err(SaleError::IdConflict { client_tx_id: client_tx_id.to_owned() }),
        }
    }

    /// Sales by state.
    ///
    /// # Errors
    /// A storage error.
    pub fn counts(&self) -> Result<Counts, StorageError> {
        let n = |v: i64| v.max(0) as u64;
        self.with_conn(|conn| {
            conn.prepare_cached(sql::COUNT_BY_STATE)?.query_row([], |r| {
                Ok(Counts {
                    pending: n(r.get(0)?),
                    in_flight: n(r.get(1)?),
                    sent: n(r.get(2)?),
                    conflict: n(r.get(3)?),
                    invalid: n(r.get(4)?),
                })
            })
        })
    }

    /// Unsent sales per currency (count and amount), for the cashier's offline banner.
    ///
    /// # Errors
    /// A storage error.
    pub fn unsent_by_currency(&self) -> Result<Vec<CurrencyAmount>, StorageError> {
        self.with_conn(|conn| {
            query_rows(conn, sql::UNSENT_BY_CURRENCY, [], |r| {
                Ok(CurrencyAmount {
                    currency: r.get(0)?,
                    count: r.get::<_, i64>(1)?.max(0) as u64,
                    total_minor: r.get(2)?,
                })
            })
        })
    }

    /// Age of the oldest unsent sale in ms, `None` when everything is sent.
    ///
    /// # Errors
    /// A storage error.
    pub fn oldest_unsent_age_ms(&self) -> Result<Option<i64>, StorageError> {
        let oldest: Option<i64> =
            self.with_conn(|conn| conn.query_row(sql::OLDEST_UNSENT, [], |r| r.get(0)).optional())?;
        Ok(oldest.map(|t| (self.clock.now_ms() - t).max(0)))
    }

    /// The outbox's random identity, made with the file (or when an older file was upgraded) and kept
    /// for its life: a wiped or replaced outbox has a new one. Sent in the backlog report.
    ///
    /// # Errors
    /// A storage error.
    pub fn outbox_id(&self) -> Result<String, StorageError> {
        self.with_conn(|conn| conn.query_row(sql::OUTBOX_ID, [], |r| r.get(0)))
    }

    /// What this outbox still holds, for the backlog report sent with each push: unsent count, oldest
    /// unsent age, unsent amounts per currency, the highest and first sequence numbers, the
    /// sequence numbers a person retired (voided, re-keyed, replaced) in the last
    /// [`RETIRED_REPORT_WINDOW_MS`], at most [`MAX_RETIRED_REPORTED`], and the outbox's identity.
    ///
    /// # Errors
    /// A storage error.
    pub fn backlog_report(&self) -> Result<BacklogReport, StorageError> {
        let counts = self.counts()?;
        let by_currency = self.unsent_by_currency()?;
        let oldest = self.oldest_unsent_age_ms()?;
        let now = self.clock.now_ms();
        let since = now - RETIRED_REPORT_WINDOW_MS;
        let (last_seq, seq_start, kept, retired_seqs, outbox_id) = self.with_conn(|conn| {
            type Bounds = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
            let (last_seq, seq_start, kept_seq, kept_at): Bounds =
                conn.query_row(sql::SEQ_BOUNDS, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            let mut retired_seqs: Vec<i64> = query_rows(
                conn,
                sql::RETIRED_SEQS,
                named_params! {":since": since, ":n": MAX_RETIRED_REPORTED},
                |r| r.get(0),
            )?;
            let again = std::mem::take(&mut *self.retired_again.lock());
            for seq in again {
                if !retired_seqs.contains(&seq) {
                    retired_seqs.push(seq);
                }
            }
            retired_seqs.truncate(MAX_RETIRED_REPORTED as usize);
            let outbox_id: String = conn.query_row(sql::OUTBOX_ID, [], |r| r.get(0))?;
            Ok((last_seq, seq_start, (kept_seq, kept_at), retired_seqs, outbox_id))
        })?;
        let acked_seq = seq_start.map(|s| s - 1).filter(|s| *s > 0);
        Ok(BacklogReport {
            library_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            unsent_count: Some(counts.unsent()),
            oldest_unsent_age_ms: oldest.map(|ms| ms.max(0) as u64),
            unsent_minor: by_currency.into_iter().map(|c| (c.currency, c.total_minor)).collect(),
            last_seq,
            seq_start,
            retired_seqs,
            outbox_id: Some(outbox_id),
            acked_seq,
            kept_seq: kept.0,
            oldest_kept_age_ms: kept.1.map(|at| (now - at).max(0) as u64),
        })
    }

    /// Puts back in the queue the sales of `ranges` (inclusive sequence numbers) that the server
    /// acknowledged and says it no longer holds (its database restored from a backup, a standby
    /// promoted before it had them): sent sales and unresolved conflict or invalid ones become
    /// pending and due now, under their own `client_tx_id` and hash. Resolved ones (voided, re-keyed,
    /// replaced) are never sent again: their numbers go out as retired with the next backlog report.
    /// Returns how many sales were queued again.
    ///
    /// # Errors
    /// A storage error.
    pub fn requeue_acknowledged(&self, ranges: &[(i64, i64)]) -> Result<u64, StorageError> {
        let now = self.clock.now_ms();
        let (queued, resolved) = self.with_tx(|tx| {
            let mut queued = 0u64;
            let mut resolved = Vec::new();
            for &(from, to) in ranges {
                queued += tx.execute(
                    sql::REQUEUE_ACKNOWLEDGED,
                    named_params! {":from": from, ":to": to, ":now": now},
                )? as u64;
                resolved.extend(query_rows(
                    tx,
                    sql::RESOLVED_IN,
                    named_params! {":from": from, ":to": to, ":n": MAX_RETIRED_REPORTED},
                    |r| r.get::<_, i64>(0),
                )?);
            }
            Ok((queued, resolved))
        })?;
        if !resolved.is_empty() {
            let mut again = self.retired_again.lock();
            again.extend(resolved);
            again.sort_unstable();
            again.dedup();
            again.truncate(MAX_RETIRED_REPORTED as usize);
        }
        Ok(queued)
    }

    /// Conflicts and invalid sales, oldest first, with the server's code and message.
    ///
    /// # Errors
    /// A storage error.
    pub fn attention(&self) -> Result<Vec<AttentionItem>, StorageError> {
        self.with_conn(|conn| {
            query_rows(conn, sql::ATTENTION, [], |r| {
                Ok(AttentionItem {
                    client_tx_id: r.get(0)?,
                    state: r.get(1)?,
                    code: r.get(2)?,
                    message: r.get(3)?,
                    payload_sha256: r.get(4)?,
                    created_at_ms: r.get(5)?,
                    attempt: r.get(6)?,
                })
            })
        })
    }

    /// One sale's row, if present.
    ///
    /// # Errors
    /// A storage error.
    pub fn get(&self, client_tx_id: &str) -> Result<Option<OutboxEntry>, StorageError> {
        self.with_conn(|conn| {
            conn.query_row(sql::SELECT_ONE, named_params! {":id": client_tx_id}, entry_of_row).optional()
        })
    }

    /// A page of the most recent sales, newest first: at most `limit` of them, all older than
    /// `before_seq` when given (pass the last page's smallest `seq` to get the next page). Every
    /// state, resolved sales included, as a till's sales screen lists them.
    ///
    /// # Errors
    /// A storage error.
    pub fn recent(&self, limit: u32, before_seq: Option<i64>) -> Result<Vec<OutboxEntry>, StorageError> {
        self.with_conn(|conn| {
            query_rows(
                conn,
                sql::RECENT,
                named_params! {":before": before_seq.unwrap_or(i64::MAX), ":n": i64::from(limit)},
                entry_of_row,
            )
        })
    }

    /// Every sale in the outbox (id, state, hash, attempts), in enqueue order.
    ///
    /// # Errors
    /// A storage error.
    pub fn summaries(&self) -> Result<Vec<EntrySummary>, StorageError> {
        self.with_conn(|conn| {
            query_rows(conn, sql::SUMMARIES, [], |r| {
                Ok(EntrySummary {
                    client_tx_id: r.get(0)?,
                    state: r.get(1)?,
                    payload_sha256: r.get(2)?,
                    attempt: r.get(3)?,
                })
            })
        })
    }

    /// When the next unsent sale is due, Unix ms: the earliest due time of a pending sale or lease
    /// expiry of an in-flight one; `None` when nothing is unsent. The engine schedules its next run
    /// there when a run found nothing due.
    ///
    /// # Errors
    /// A storage error.
    pub fn next_due_at_ms(&self) -> Result<Option<i64>, StorageError> {
        self.with_conn(|conn| conn.query_row(sql::NEXT_DUE, [], |r| r.get(0)))
    }

    /// Takes back the leases `owner` holds from an earlier life (a crash or kill left them in flight):
    /// those sales become pending and due now, their tokens void, so a process of that life that
    /// comes back cannot finalize them. Leases of other owners are untouched. Only for the outbox's
    /// sole user at its start (see `EngineConfig::sole_user`); returns how many were taken back.
    ///
    /// # Errors
    /// A storage error; nothing is changed then.
    pub fn reclaim_own_leases(&self, owner: &str) -> Result<u64, StorageError> {
        let now = self.clock.now_ms();
        let n = self.with_conn(|conn| {
            conn.execute(sql::RECLAIM_OWN_LEASES, named_params! {":now": now, ":owner": owner})
        })?;
        Ok(n as u64)
    }

    /// Makes every pending sale due now, skipping its backoff (never a lease); returns how many moved.
    ///
    /// # Errors
    /// A storage error.
    pub fn make_all_due(&self) -> Result<u64, StorageError> {
        let now = self.clock.now_ms();
        let n = self.with_conn(|conn| conn.execute(sql::MAKE_ALL_DUE, named_params! {":now": now}))?;
        Ok(n as u64)
    }

    /// SQLite's `PRAGMA synchronous` on this outbox's connection (0 `OFF`, 1 `NORMAL`, 2 `FULL`, 3
    /// `EXTRA`): the flush policy in effect, as set from [`OutboxConfig::durability`] at opening. For
    /// diagnostics and tests.
    ///
    /// # Errors
    /// A storage error.
    pub fn synchronous(&self) -> Result<i64, StorageError> {
        self.with_conn(|conn| conn.query_row("PRAGMA synchronous", [], |r| r.get(0)))
    }

    /// Checkpoints the write-ahead log into the file and truncates it to zero bytes
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`); the engine does it at shutdown. Returns whether the
    /// checkpoint was complete (another connection reading an old snapshot can hold part of it back;
    /// then the log is simply kept and checkpointed later).
    ///
    /// # Errors
    /// A storage error.
    pub fn checkpoint_truncate(&self) -> Result<bool, StorageError> {
        let busy: i64 = self.with_conn(|conn| conn.query_row(sql::CHECKPOINT_TRUNCATE, [], |r| r.get(0)))?;
        Ok(busy == 0)
    }

    /// Deletes sent sales older than the retention; returns how many. Unsent sales are never touched.
    ///
    /// # Errors
    /// A storage error.
    pub fn prune_sent(&self) -> Result<u64, StorageError> {
        let cutoff = self.clock.now_ms().saturating_sub(self.config.sent_retention_ms as i64);
        let n = self.with_conn(|conn| conn.execute(sql::PRUNE_SENT, named_params! {":cutoff": cutoff}))?;
        Ok(n as u64)
    }
}

/// Every row of a (cached) statement, each mapped by `map`.
fn query_rows<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?;
    rows.collect()
}
