//! The outbox's records: the states, leases, outcomes, counts and rows that its methods take and
//! return, and how a row of `sql::ENTRY_COLUMNS` becomes an [`OutboxEntry`]. Plain data; the queries
//! are on [`Outbox`](super::Outbox).

use crate::protocol::SalePayload;

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

    /// The state stored as `s`; `None` for any other text.
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

/// Result of [`Outbox::enqueue_with_id`](super::Outbox::enqueue_with_id).
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
    /// Position in the outbox (grows with each sale recorded); the cursor of [`Outbox::recent`](super::Outbox::recent).
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
    /// The stored name of this decision (`rekeyed`, `replaced`, `voided`).
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            Resolution::Rekey => "rekeyed",
            Resolution::Replace(_) => "replaced",
            Resolution::Void => "voided",
        }
    }
}

/// An [`OutboxEntry`] from a row of `sql::ENTRY_COLUMNS`.
pub(super) fn entry_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
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
