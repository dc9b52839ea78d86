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
//! All SQL is in `sql.rs`; the schema and migrations in `schema.rs`. One connection per `Outbox`,
//! guarded by a mutex that is never held across a network call or a callback.

mod schema;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::RngCore;
use rusqlite::{named_params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::clock::{Clock, SystemClock, Waker};
use crate::config::{Durability, OutboxConfig};
use crate::error::{SaleError, StorageError};
use crate::protocol::{
    canonical_json_string, payload_sha256, validate_client_tx_id, validate_sale, BacklogReport, Limits,
    SalePayload, PAYLOAD_HASH_VERSION_V1,
};

pub use schema::LATEST_VERSION as SCHEMA_VERSION;

/// Retired sequence numbers are reported for this long after a person retired them (30 days), so a
/// till offline for weeks still reports them; the server records each once.
pub const RETIRED_REPORT_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

/// Most retired sequence numbers in one report (the server's bound).
pub const MAX_RETIRED_REPORTED: i64 = 1000;

/// Where a sale is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaleState {
    /// Waiting to be sent (possibly after a backoff delay).
    Pending,
    /// Claimed by a sender; its lease may have expired.
    InFlight,
    /// On the server (`OK` or `DUPLICATE`).
    Sent,
    /// The server holds another sale under this id; needs a person.
    Conflict,
    /// The server refused the sale as invalid; needs a person.
    Invalid,
}

impl SaleState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SaleState::Pending => "pending",
            SaleState::InFlight => "in_flight",
            SaleState::Sent => "sent",
            SaleState::Conflict => "conflict",
            SaleState::Invalid => "invalid",
        }
    }

    fn parse(s: &str) -> Option<SaleState> {
        Some(match s {
            "pending" => SaleState::Pending,
            "in_flight" => SaleState::InFlight,
            "sent" => SaleState::Sent,
            "conflict" => SaleState::Conflict,
            "invalid" => SaleState::Invalid,
            _ => return None,
        })
    }
}

impl rusqlite::types::FromSql for SaleState {
    /// The stored name; any other text is an error (a file written by a newer build, or damaged),
    /// never silently read as another state.
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        SaleState::parse(text).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown sale state {text:?}").into())
        })
    }
}

impl rusqlite::types::ToSql for SaleState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// Result of [`Outbox::enqueue_with_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The sale's id.
    pub client_tx_id: String,
    /// False when the same sale was already stored under this id (a no-op).
    pub created: bool,
}

/// A claim on one sale: what finalize and heartbeat need to prove ownership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Row id in the outbox.
    pub seq: i64,
    /// The sale's id.
    pub client_tx_id: String,
    /// Fencing token of this claim (32 hex characters, fresh per claim).
    pub token: String,
}

/// A claimed sale, ready to send.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The lease to finalize with.
    pub lease: Lease,
    /// This try's number (from 1).
    pub attempt: u32,
    /// Canonical JSON of the sale (what was hashed).
    pub payload: String,
    /// Hash of `payload`.
    pub payload_sha256: String,
    /// Hash version.
    pub payload_hash_version: u32,
    /// `RETRY` answers the server gave this sale so far: the exponent of its backoff.
    pub server_retries: u32,
}

/// State of a lease after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Still ours; extended.
    Held,
    /// Taken over by another sender (or already settled): stop, do not finalize.
    Lost,
}

/// What the send of one sale came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server has it (`OK`, or `DUPLICATE` when `duplicate`).
    Sent {
        /// True for `DUPLICATE`.
        duplicate: bool,
        /// The server's id of the sale.
        server_tx_id: Option<i64>,
    },
    /// `CONFLICT`: terminal, kept for a person.
    Conflict {
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// `INVALID`: terminal, kept for a person.
    Invalid {
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// Not settled (server `RETRY`, or the request failed): back to pending until `next_attempt_at_ms`.
    Retry {
        /// True when the server answered `RETRY`; false for a transport failure.
        from_server: bool,
        /// Machine-readable reason.
        code: String,
        /// Human-readable reason.
        message: String,
        /// When the sale is due again, Unix ms.
        next_attempt_at_ms: i64,
    },
}

impl Outcome {
    /// The wire name of the answer (`OK`, `DUPLICATE`, `CONFLICT`, `INVALID`, `RETRY`), or
    /// `TRANSPORT` for a failed request; logged as `result`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent { duplicate: false, .. } => "OK",
            Outcome::Sent { duplicate: true, .. } => "DUPLICATE",
            Outcome::Conflict { .. } => "CONFLICT",
            Outcome::Invalid { .. } => "INVALID",
            Outcome::Retry { from_server: true, .. } => "RETRY",
            Outcome::Retry { from_server: false, .. } => "TRANSPORT",
        }
    }

    /// The server's (or the transport's) code; empty for a sale sent.
    pub fn code(&self) -> &str {
        match self {
            Outcome::Conflict { code, .. } | Outcome::Invalid { code, .. } | Outcome::Retry { code, .. } => {
                code
            }
            Outcome::Sent { .. } => "",
        }
    }
}

/// Result of a finalize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Finalized {
    /// The outcome was written.
    Written,
    /// The lease was no longer ours: the outcome was dropped (and logged), nothing written.
    LeaseLost,
}

/// Sales by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting to be sent.
    pub pending: u64,
    /// Being sent (or with an expired lease).
    pub in_flight: u64,
    /// On the server, not yet pruned.
    pub sent: u64,
    /// Conflicts awaiting a person.
    pub conflict: u64,
    /// Invalid sales awaiting a person.
    pub invalid: u64,
}

impl Counts {
    /// Sales not yet on the server (pending + in flight).
    pub fn unsent(&self) -> u64 {
        self.pending + self.in_flight
    }
}

/// Unsent sales of one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyAmount {
    /// ISO 4217 code.
    pub currency: String,
    /// Number of unsent sales.
    pub count: u64,
    /// Sum of their totals, in minor units.
    pub total_minor: i64,
}

/// A sale that needs a person (conflict or invalid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionItem {
    /// The sale's id.
    pub client_tx_id: String,
    /// `Conflict` or `Invalid`.
    pub state: SaleState,
    /// The server's code.
    pub code: Option<String>,
    /// The server's message.
    pub message: Option<String>,
    /// The sale's hash.
    pub payload_sha256: String,
    /// When the sale was recorded, Unix ms.
    pub created_at_ms: i64,
    /// How many sends were tried.
    pub attempt: u32,
}

/// Id, state, hash and attempts of one sale: what verification compares with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySummary {
    /// The sale's id.
    pub client_tx_id: String,
    /// Its state.
    pub state: SaleState,
    /// Its hash.
    pub payload_sha256: String,
    /// Sends tried.
    pub attempt: u32,
}

/// One outbox row, for inspection and a till's sales screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the outbox (grows with each sale recorded); the cursor of [`Outbox::recent`].
    pub seq: i64,
    /// ISO 4217 code of the sale.
    pub currency: String,
    /// The sale's total, in minor units.
    pub total_minor: i64,
    /// When the server's answer made it `sent`, Unix ms.
    pub sent_at_ms: Option<i64>,
    /// `RETRY` answers the server gave this sale (what its backoff grows with; failed requests do not
    /// count).
    pub server_retries: u32,
    /// The sale's id.
    pub client_tx_id: String,
    /// Its state.
    pub state: SaleState,
    /// Sends tried.
    pub attempt: u32,
    /// Canonical JSON of the sale.
    pub payload: String,
    /// Its hash.
    pub payload_sha256: String,
    /// Recorded at, Unix ms.
    pub created_at_ms: i64,
    /// Due at, Unix ms.
    pub next_attempt_at_ms: i64,
    /// `OK`, `DUPLICATE`, `CONFLICT`, `INVALID`, `RETRY` or `TRANSPORT`.
    pub last_result: Option<String>,
    /// Machine-readable reason of the last result.
    pub last_code: Option<String>,
    /// Human-readable reason of the last result.
    pub last_error: Option<String>,
    /// Server id once sent.
    pub server_tx_id: Option<i64>,
    /// Lease owner while in flight.
    pub lease_owner_id: Option<String>,
    /// Fencing token while in flight.
    pub lease_token: Option<String>,
    /// Lease expiry while in flight, Unix ms.
    pub lease_expires_at_ms: Option<i64>,
    /// What a person decided for a conflict or invalid sale (`rekeyed`, `replaced`, `voided`).
    pub resolution: Option<String>,
    /// The person's note with the resolution.
    pub resolution_note: Option<String>,
    /// The sale this one is linked with: the new sale of a resolved one, or the resolved one of a new sale.
    pub linked_client_tx_id: Option<String>,
}

/// What a person decided for a sale that needed attention, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Sent again under a new id ([`Resolution::Rekey`]).
    Rekeyed,
    /// Replaced by a corrected sale under a new id ([`Resolution::Replace`]).
    Replaced,
    /// Not to be sent ([`Resolution::Void`]).
    Voided,
}

impl OutboxEntry {
    /// The stored resolution, if a person resolved this sale.
    pub fn resolved(&self) -> Option<Resolved> {
        match self.resolution.as_deref()? {
            "rekeyed" => Some(Resolved::Rekeyed),
            "replaced" => Some(Resolved::Replaced),
            "voided" => Some(Resolved::Voided),
            _ => None,
        }
    }

    /// The stored sale, read back from its canonical JSON; `None` if the stored text is not a sale
    /// (a damaged row: the drain marks such a sale `invalid` with `corrupt_payload`).
    pub fn sale(&self) -> Option<SalePayload> {
        serde_json::from_str(&self.payload).ok()
    }
}

/// What a person decides for a sale that needs attention. The original sale and its payload are
/// always kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Send the same sale again under a new `client_tx_id` (the fix for a `CONFLICT`: the id clashed).
    Rekey,
    /// Send a corrected sale under a new `client_tx_id` instead (the fix for an `INVALID` sale).
    Replace(SalePayload),
    /// Do not send it; keep it as voided.
    Void,
}

impl Resolution {
    fn as_str(&self) -> &'static str {
        match self {
            Resolution::Rekey => "rekeyed",
            Resolution::Replace(_) => "replaced",
            Resolution::Void => "voided",
        }
    }
}

/// The outbox. Cheap to share behind an `Arc`; every method is safe from any thread.
pub struct Outbox {
    conn: Mutex<Connection>,
    path: PathBuf,
    config: OutboxConfig,
    clock: Arc<dyn Clock>,
    /// Called after each newly recorded sale (see [`Outbox::on_recorded`]).
    recorded: Mutex<Option<Arc<Waker>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Outbox {
    /// Opens (or creates) the outbox file at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] for a file that is not a SQLite database, [`StorageError::IncompatibleVersion`] for a
    /// file of a newer build, [`StorageError::ReadOnly`], [`StorageError::CannotOpen`]; the file is never modified
    /// or deleted on error.
    pub fn open(path: impl AsRef<Path>, config: OutboxConfig) -> Result<Outbox, StorageError> {
        Self::open_with_clock(path, config, Arc::new(SystemClock))
    }

    /// Opens an existing outbox file for reading only: nothing is created, migrated or written (a
    /// write through it fails with [`StorageError::ReadOnly`]). For tools that inspect a file, such as
    /// `possync-server verify` and `possync-till status`.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] for a missing path (nothing is created), [`StorageError::OlderVersion`] for a file
    /// of an older schema (open it once read-write to upgrade), [`StorageError::IncompatibleVersion`] for a
    /// newer one, [`StorageError::Corrupt`] for a file that is not an outbox, [`StorageError::CannotOpen`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Outbox, StorageError> {
        let path = path.as_ref().to_path_buf();
        let config = OutboxConfig::default();
        let conn = open_read_only_connection(&path, &config)?;
        Ok(Outbox::with(conn, path, config, Arc::new(SystemClock)))
    }

    /// [`Outbox::open`] with a custom clock (tests).
    ///
    /// # Errors
    /// As [`Outbox::open`].
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        config: OutboxConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Outbox, StorageError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_connection(&path, &config)?;
        Ok(Outbox::with(conn, path, config, clock))
    }

    fn with(conn: Connection, path: PathBuf, config: OutboxConfig, clock: Arc<dyn Clock>) -> Outbox {
        Outbox { conn: Mutex::new(conn), path, config, clock, recorded: Mutex::new(None) }
    }

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
        {
            let conn = self.conn.lock();
            conn.execute("VACUUM INTO :dest", named_params! {":dest": target}).map_err(|e| self.err(e))?;
        }
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

    fn err(&self, e: rusqlite::Error) -> StorageError {
        StorageError::from_sqlite(&self.path, e)
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
        let conn = self.conn.lock();
        let inserted = conn
            .prepare_cached(sql::INSERT)
            .and_then(|mut s| {
                s.execute(named_params! {
                    ":id": client_tx_id, ":payload": canonical, ":sha": sha,
                    ":version": PAYLOAD_HASH_VERSION_V1, ":currency": sale.header.currency,
                    ":total": sale.header.total_minor, ":now": now,
                })
            })
            .map_err(|e| self.err(e))?;
        if inserted == 1 {
            drop(conn);
            let hook = self.recorded.lock().clone();
            if let Some(hook) = hook.filter(|hook| !hook()) {
                // Whoever it woke is gone: drop it (unless it was replaced meanwhile).
                let mut current = self.recorded.lock();
                if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &hook)) {
                    *current = None;
                }
            }
            return Ok(Enqueued { client_tx_id: client_tx_id.to_owned(), created: true });
        }
        let stored: String = conn
            .query_row(sql::SELECT_HASH, named_params! {":id": client_tx_id}, |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if stored == sha {
            Ok(Enqueued { client_tx_id: client_tx_id.to_owned(), created: false })
        } else {
            Err(SaleError::IdConflict { client_tx_id: client_tx_id.to_owned() })
        }
    }

    /// Claims up to `max` sales that are due now (see the module docs) for `owner`, with a lease of
    /// `lease_ms`. Returns them in outbox order.
    ///
    /// # Errors
    /// A storage error; nothing is claimed then.
    pub fn claim(&self, owner: &str, max: usize, lease_ms: u64) -> Result<Vec<Claimed>, StorageError> {
        self.claim_due_by(owner, max, lease_ms, self.clock.now_ms())
    }

    /// Like [`Outbox::claim`], but takes only pending sales due at or before `due_by_ms` (a drain run
    /// passes its start time, so sales it retried are not taken again within the same run).
    ///
    /// # Errors
    /// A storage error; nothing is claimed then.
    pub fn claim_due_by(
        &self,
        owner: &str,
        max: usize,
        lease_ms: u64,
        due_by_ms: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        let token = new_token();
        let now = self.clock.now_ms();
        let expires = now.saturating_add(lease_ms as i64);
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let mut claimed = {
            let mut stmt = tx.prepare_cached(sql::CLAIM).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(
                    named_params! {
                        ":owner": owner, ":token": token, ":expires": expires, ":now": now,
                        ":due": due_by_ms, ":n": max as i64,
                    },
                    |r| {
                        Ok(Claimed {
                            lease: Lease { seq: r.get(0)?, client_tx_id: r.get(1)?, token: token.clone() },
                            attempt: r.get(2)?,
                            payload: r.get(3)?,
                            payload_sha256: r.get(4)?,
                            payload_hash_version: r.get(5)?,
                            server_retries: r.get(6)?,
                        })
                    },
                )
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))?
        };
        tx.commit().map_err(|e| self.err(e))?;
        claimed.sort_by_key(|c| c.lease.seq);
        Ok(claimed)
    }

    /// Extends each lease to now + `lease_ms` if it is still ours; one transaction for all.
    ///
    /// # Errors
    /// A storage error; the leases keep their old expiry then.
    pub fn heartbeat(&self, leases: &[Lease], lease_ms: u64) -> Result<Vec<LeaseState>, StorageError> {
        let expires = self.clock.now_ms().saturating_add(lease_ms as i64);
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let mut states = Vec::with_capacity(leases.len());
        {
            let mut stmt = tx.prepare_cached(sql::HEARTBEAT).map_err(|e| self.err(e))?;
            for lease in leases {
                let n = stmt
                    .execute(named_params! {":expires": expires, ":seq": lease.seq, ":token": lease.token})
                    .map_err(|e| self.err(e))?;
                states.push(if n == 1 { LeaseState::Held } else { LeaseState::Lost });
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(states)
    }

    /// Writes one outcome if the lease is still ours.
    ///
    /// # Errors
    /// A storage error; the sale stays in flight and is reclaimed after its lease expires.
    pub fn finalize(&self, lease: &Lease, outcome: &Outcome) -> Result<Finalized, StorageError> {
        Ok(self.finalize_all(&[(lease.clone(), outcome.clone())])?[0])
    }

    /// Writes many outcomes in one transaction, each by CAS on its lease.
    ///
    /// # Errors
    /// A storage error; nothing is written then.
    pub fn finalize_all(&self, outcomes: &[(Lease, Outcome)]) -> Result<Vec<Finalized>, StorageError> {
        let now = self.clock.now_ms();
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let mut results = Vec::with_capacity(outcomes.len());
        {
            let mut stmt = tx.prepare_cached(sql::FINALIZE).map_err(|e| self.err(e))?;
            for (lease, outcome) in outcomes {
                let (state, result, code, error, server_tx_id, sent_at, next) = match outcome {
                    Outcome::Sent { duplicate, server_tx_id } => {
                        let result = if *duplicate { "DUPLICATE" } else { "OK" };
                        (SaleState::Sent, result, None, None, *server_tx_id, Some(now), None)
                    }
                    Outcome::Conflict { code, message } => {
                        (SaleState::Conflict, "CONFLICT", Some(code), Some(message), None, None, None)
                    }
                    Outcome::Invalid { code, message } => {
                        (SaleState::Invalid, "INVALID", Some(code), Some(message), None, None, None)
                    }
                    Outcome::Retry { from_server, code, message, next_attempt_at_ms } => {
                        let result = if *from_server { "RETRY" } else { "TRANSPORT" };
                        (
                            SaleState::Pending,
                            result,
                            Some(code),
                            Some(message),
                            None,
                            None,
                            Some(*next_attempt_at_ms),
                        )
                    }
                };
                let n = stmt
                    .execute(named_params! {
                        ":state": state.as_str(), ":result": result, ":code": code, ":error": error,
                        ":server_tx_id": server_tx_id, ":sent_at": sent_at, ":next_attempt_at": next,
                        ":server_retry": i64::from(matches!(outcome, Outcome::Retry { from_server: true, .. })),
                        ":seq": lease.seq, ":token": lease.token,
                    })
                    .map_err(|e| self.err(e))?;
                if n == 1 {
                    results.push(Finalized::Written);
                } else {
                    log::warn!(client_tx_id = lease.client_tx_id.as_str(), lease_token = lease.token.as_str(),
                        result = result; "stale finalize dropped: the lease was taken over");
                    results.push(Finalized::LeaseLost);
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(results)
    }

    /// Sales by state.
    ///
    /// # Errors
    /// A storage error.
    pub fn counts(&self) -> Result<Counts, StorageError> {
        let conn = self.conn.lock();
        let n = |v: i64| v.max(0) as u64;
        let counts = conn
            .prepare_cached(sql::COUNT_BY_STATE)
            .and_then(|mut stmt| {
                stmt.query_row([], |r| {
                    Ok(Counts {
                        pending: n(r.get(0)?),
                        in_flight: n(r.get(1)?),
                        sent: n(r.get(2)?),
                        conflict: n(r.get(3)?),
                        invalid: n(r.get(4)?),
                    })
                })
            })
            .map_err(|e| self.err(e))?;
        Ok(counts)
    }

    /// Unsent sales per currency (count and amount), for the cashier's offline banner.
    ///
    /// # Errors
    /// A storage error.
    pub fn unsent_by_currency(&self) -> Result<Vec<CurrencyAmount>, StorageError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(sql::UNSENT_BY_CURRENCY).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CurrencyAmount {
                    currency: r.get(0)?,
                    count: r.get::<_, i64>(1)?.max(0) as u64,
                    total_minor: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Age of the oldest unsent sale in ms, `None` when everything is sent.
    ///
    /// # Errors
    /// A storage error.
    pub fn oldest_unsent_age_ms(&self) -> Result<Option<i64>, StorageError> {
        let conn = self.conn.lock();
        let oldest: Option<i64> =
            conn.query_row(sql::OLDEST_UNSENT, [], |r| r.get(0)).optional().map_err(|e| self.err(e))?;
        Ok(oldest.map(|t| (self.clock.now_ms() - t).max(0)))
    }

    /// What this outbox still holds, for the backlog report sent with each push: unsent count, oldest
    /// unsent age, unsent amounts per currency, the highest and first sequence numbers, and the
    /// sequence numbers a person retired (voided, re-keyed, replaced) in the last
    /// [`RETIRED_REPORT_WINDOW_MS`], at most [`MAX_RETIRED_REPORTED`].
    ///
    /// # Errors
    /// A storage error.
    pub fn backlog_report(&self) -> Result<BacklogReport, StorageError> {
        let counts = self.counts()?;
        let by_currency = self.unsent_by_currency()?;
        let oldest = self.oldest_unsent_age_ms()?;
        let conn = self.conn.lock();
        let (last_seq, seq_start): (Option<i64>, Option<i64>) =
            conn.query_row(sql::SEQ_BOUNDS, [], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        let since = self.clock.now_ms() - RETIRED_REPORT_WINDOW_MS;
        let mut stmt = conn.prepare_cached(sql::RETIRED_SEQS).map_err(|e| self.err(e))?;
        let retired_seqs = stmt
            .query_map(named_params! {":since": since, ":n": MAX_RETIRED_REPORTED}, |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(BacklogReport {
            library_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            unsent_count: Some(counts.unsent()),
            oldest_unsent_age_ms: oldest.map(|ms| ms.max(0) as u64),
            unsent_minor: by_currency.into_iter().map(|c| (c.currency, c.total_minor)).collect(),
            last_seq,
            seq_start,
            retired_seqs,
        })
    }

    /// Conflicts and invalid sales, oldest first, with the server's code and message.
    ///
    /// # Errors
    /// A storage error.
    pub fn attention(&self) -> Result<Vec<AttentionItem>, StorageError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(sql::ATTENTION).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
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
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// One sale's row, if present.
    ///
    /// # Errors
    /// A storage error.
    pub fn get(&self, client_tx_id: &str) -> Result<Option<OutboxEntry>, StorageError> {
        let conn = self.conn.lock();
        conn.query_row(sql::SELECT_ONE, named_params! {":id": client_tx_id}, entry_of_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A page of the most recent sales, newest first: at most `limit` of them, all older than
    /// `before_seq` when given (pass the last page's smallest `seq` to get the next page). Every
    /// state, resolved sales included, as a till's sales screen lists them.
    ///
    /// # Errors
    /// A storage error.
    pub fn recent(&self, limit: u32, before_seq: Option<i64>) -> Result<Vec<OutboxEntry>, StorageError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(sql::RECENT).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                named_params! {":before": before_seq.unwrap_or(i64::MAX), ":n": i64::from(limit)},
                entry_of_row,
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Resolves a conflict or invalid sale as a person decided, in one transaction: `Rekey` and
    /// `Replace` add a new pending sale under a new id (returned) linked with the old one; `Void` only
    /// marks it. The original row, its payload and its server answer are kept; it leaves the attention
    /// list.
    ///
    /// # Errors
    /// [`SaleError::NotResolvable`] when the sale does not exist, is not a conflict or invalid, or was
    /// resolved already; [`SaleError::Invalid`] for an invalid replacement; [`SaleError::Storage`].
    pub fn resolve(
        &self,
        client_tx_id: &str,
        resolution: &Resolution,
        note: Option<&str>,
    ) -> Result<Option<String>, SaleError> {
        let replacement = match resolution {
            Resolution::Replace(sale) => {
                validate_sale(sale, &Limits::default())?;
                let canonical = canonical_json_string(sale)?;
                let sha = payload_sha256(canonical.as_bytes());
                Some((canonical, sha, sale.header.currency.clone(), sale.header.total_minor))
            }
            _ => None,
        };
        let not = |reason: &str| SaleError::NotResolvable {
            client_tx_id: client_tx_id.to_owned(),
            reason: reason.to_owned(),
        };
        let now = self.clock.now_ms();
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let row = tx
            .query_row(sql::SELECT_FOR_RESOLVE, named_params! {":id": client_tx_id}, |r| {
                Ok((
                    r.get::<_, SaleState>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((state, resolved, payload, sha, version, currency, total)) = row else {
            return Err(not("no such sale"));
        };
        if !matches!(state, SaleState::Conflict | SaleState::Invalid) {
            let state = state.as_str();
            return Err(not(&format!("it is {state}, only conflict and invalid sales are resolved")));
        }
        if let Some(r) = resolved {
            return Err(not(&format!("it was resolved already ({r})")));
        }
        let new_id = match resolution {
            Resolution::Void => None,
            Resolution::Rekey | Resolution::Replace(_) => {
                let id = uuid::Uuid::now_v7().to_string();
                let (payload, sha, currency, total) = replacement.unwrap_or((payload, sha, currency, total));
                tx.execute(
                    sql::INSERT_LINKED,
                    named_params! {
                        ":id": id, ":payload": payload, ":sha": sha, ":version": version,
                        ":currency": currency, ":total": total, ":now": now, ":linked": client_tx_id,
                    },
                )
                .map_err(|e| self.err(e))?;
                Some(id)
            }
        };
        tx.execute(
            sql::MARK_RESOLVED,
            named_params! {
                ":resolution": resolution.as_str(), ":now": now, ":note": note, ":linked": new_id, ":id": client_tx_id,
            },
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        log::info!(client_tx_id = client_tx_id, resolution = resolution.as_str(),
            new_client_tx_id = new_id.as_deref().unwrap_or(""); "sale resolved");
        Ok(new_id)
    }

    /// Every sale in the outbox (id, state, hash, attempts), in enqueue order.
    ///
    /// # Errors
    /// A storage error.
    pub fn summaries(&self) -> Result<Vec<EntrySummary>, StorageError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(sql::SUMMARIES).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(EntrySummary {
                    client_tx_id: r.get(0)?,
                    state: r.get(1)?,
                    payload_sha256: r.get(2)?,
                    attempt: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// When the next unsent sale is due, Unix ms: the earliest due time of a pending sale or lease
    /// expiry of an in-flight one; `None` when nothing is unsent. The engine schedules its next run
    /// there when a run found nothing due.
    ///
    /// # Errors
    /// A storage error.
    pub fn next_due_at_ms(&self) -> Result<Option<i64>, StorageError> {
        let conn = self.conn.lock();
        conn.query_row(sql::NEXT_DUE, [], |r| r.get(0)).map_err(|e| self.err(e))
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
        let conn = self.conn.lock();
        let n = conn
            .execute(sql::RECLAIM_OWN_LEASES, named_params! {":now": now, ":owner": owner})
            .map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    /// Makes every pending sale due now, skipping its backoff (never a lease); returns how many moved.
    ///
    /// # Errors
    /// A storage error.
    pub fn make_all_due(&self) -> Result<u64, StorageError> {
        let now = self.clock.now_ms();
        let conn = self.conn.lock();
        let n = conn.execute(sql::MAKE_ALL_DUE, named_params! {":now": now}).map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    /// Checkpoints the write-ahead log into the file and truncates it to zero bytes
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`); the engine does it at shutdown. Returns whether the
    /// checkpoint was complete (another connection reading an old snapshot can hold part of it back;
    /// then the log is simply kept and checkpointed later).
    ///
    /// # Errors
    /// A storage error.
    pub fn checkpoint_truncate(&self) -> Result<bool, StorageError> {
        let conn = self.conn.lock();
        let busy: i64 =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(busy == 0)
    }

    /// Deletes sent sales older than the retention; returns how many. Unsent sales are never touched.
    ///
    /// # Errors
    /// A storage error.
    pub fn prune_sent(&self) -> Result<u64, StorageError> {
        let cutoff = self.clock.now_ms().saturating_sub(self.config.sent_retention_ms as i64);
        let conn = self.conn.lock();
        let n = conn.execute(sql::PRUNE_SENT, named_params! {":cutoff": cutoff}).map_err(|e| self.err(e))?;
        Ok(n as u64)
    }
}

/// An [`OutboxEntry`] from a row of `sql::ENTRY_COLUMNS`.
fn entry_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        client_tx_id: r.get(0)?,
        state: r.get(1)?,
        attempt: r.get(2)?,
        payload: r.get(3)?,
        payload_sha256: r.get(4)?,
        created_at_ms: r.get(5)?,
        next_attempt_at_ms: r.get(6)?,
        last_result: r.get(7)?,
        last_code: r.get(8)?,
        last_error: r.get(9)?,
        server_tx_id: r.get(10)?,
        lease_owner_id: r.get(11)?,
        lease_token: r.get(12)?,
        lease_expires_at_ms: r.get(13)?,
        resolution: r.get(14)?,
        resolution_note: r.get(15)?,
        linked_client_tx_id: r.get(16)?,
        seq: r.get(17)?,
        currency: r.get(18)?,
        total_minor: r.get(19)?,
        sent_at_ms: r.get(20)?,
        server_retries: r.get(21)?,
    })
}

/// A fresh random fencing token: 128 bits, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn open_connection(path: &Path, config: &OutboxConfig) -> Result<Connection, StorageError> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let err = |e| StorageError::from_sqlite(path, e);
    let mut conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(Duration::from_millis(config.busy_timeout_ms)).map_err(err)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::ReadOnly { path: path.to_path_buf() });
    }
    let sync = match config.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(err)?;
    let limit = i64::try_from(config.wal_size_limit_bytes).unwrap_or(i64::MAX);
    conn.query_row(&format!("PRAGMA journal_size_limit = {limit}"), [], |_| Ok(())).map_err(err)?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(err)?;
    // Checkpoint when the WAL reaches the limit (at least 100 pages), so that it stays near it while
    // the till works too, not only after a checkpoint (SQLite's own default is 1000 pages).
    let checkpoint_pages = (limit / page_size.max(512)).clamp(100, 1_000_000);
    conn.query_row(&format!("PRAGMA wal_autocheckpoint = {checkpoint_pages}"), [], |_| Ok(()))
        .map_err(err)?;
    if let Some(max_bytes) = config.max_size_bytes {
        let pages = (max_bytes as i64 / page_size.max(512)).max(1);
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())).map_err(err)?;
    }
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    migrate(path, &mut conn)?;
    Ok(conn)
}

fn open_read_only_connection(path: &Path, config: &OutboxConfig) -> Result<Connection, StorageError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(StorageError::CannotOpen {
                path: path.to_path_buf(),
                reason: "not a regular file".into(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::NotFound { path: path.to_path_buf() })
        }
        Err(e) => return Err(StorageError::CannotOpen { path: path.to_path_buf(), reason: e.to_string() }),
    }
    // No SQLITE_OPEN_CREATE: SQLite itself refuses to create the file if it vanished meanwhile.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let err = |e| StorageError::from_sqlite(path, e);
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    conn.busy_timeout(Duration::from_millis(config.busy_timeout_ms)).map_err(err)?;
    conn.pragma_update(None, "query_only", true).map_err(err)?;
    let found = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map(|v| v.max(0) as usize)
        .map_err(err)?;
    let has_outbox: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if found == 0 || !has_outbox {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            reason: "a SQLite file without an outbox table".into(),
        });
    }
    if found > schema::LATEST_VERSION {
        return Err(StorageError::IncompatibleVersion {
            path: path.to_path_buf(),
            found,
            supported: schema::LATEST_VERSION,
        });
    }
    if found < schema::LATEST_VERSION {
        return Err(StorageError::OlderVersion {
            path: path.to_path_buf(),
            found,
            supported: schema::LATEST_VERSION,
        });
    }
    Ok(conn)
}

fn migrate(path: &Path, conn: &mut Connection) -> Result<(), StorageError> {
    let version = |conn: &Connection| -> Result<usize, StorageError> {
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as usize)
            .map_err(|e| StorageError::from_sqlite(path, e))
    };
    let found = version(conn)?;
    if found > schema::LATEST_VERSION {
        return Err(StorageError::IncompatibleVersion {
            path: path.to_path_buf(),
            found,
            supported: schema::LATEST_VERSION,
        });
    }
    if found == schema::LATEST_VERSION {
        return Ok(());
    }
    match schema::migrations().to_latest(conn) {
        Ok(()) => Ok(()),
        // Another process may have migrated the same file at the same moment.
        Err(_) if version(conn)? == schema::LATEST_VERSION => Ok(()),
        Err(rusqlite_migration::Error::RusqliteError { err, .. }) => {
            Err(StorageError::from_sqlite(path, err))
        }
        Err(e) => Err(StorageError::CannotOpen {
            path: path.to_path_buf(),
            reason: format!("migration failed: {e}"),
        }),
    }
}
