//! Records and enums that cross the FFI.
//!
//! The core's types that have the FFI's shape cross as they are: the sale ([`SalePayload`] and its
//! parts), [`Enqueued`], [`DrainReason`], [`SaleState`], [`Durability`] and [`SaleResolution`] (the
//! core's `outbox::Resolved`). Each is declared to uniffi with `#[uniffi::remote(..)]`: the
//! declaration repeats the core's fields or variants (a difference fails to compile) and carries the
//! docs of the generated bindings, but there is no second Rust type and no conversion. They are
//! declared here, not derived in possync-core behind a feature, because a derive would make them a
//! second uniffi component (`possync_core`): a second Kotlin package (two components cannot share one,
//! each file declares the same runtime classes), a second Python module and a second Swift FFI module,
//! which changes every app's imports.
//!
//! The other records and enums mirror a core type whose shape the FFI changes, each said at the type,
//! with a field-for-field conversion: this module decides nothing. Counts, sizes and times cross as `i64`
//! (Kotlin `Long`, Swift `Int64`, never the awkward `ULong`/`UInt64`): `int` widens the core's
//! unsigned values (saturating, never reached in practice), `non_negative` narrows the app's values
//! and refuses a negative one as a config error. The core's bit set of drain reasons becomes a list.

pub use possync_core::config::Durability;
use possync_core::drain as core_drain;
use possync_core::engine as core_engine;
use possync_core::outbox as core_outbox;
pub use possync_core::outbox::{Enqueued, Resolved as SaleResolution, SaleState};
pub use possync_core::protocol::{SaleHeader, SaleItem, SaleKind, SalePayload, SalePayment};
pub use possync_core::reason::DrainReason;
use possync_core::status as core_status;
use possync_core::ConfigError;

/// A count, size or duration of the core as the FFI's `i64` (saturating: never reached in practice).
pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A timeout of the app as a `Duration` (a negative one is zero: do not wait).
pub(crate) fn millis(ms: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A page size of the app as the core's `u32` (negative is an empty page, beyond `u32` the largest).
pub(crate) fn page_size(limit: i64) -> u32 {
    u32::try_from(limit.max(0)).unwrap_or(u32::MAX)
}

/// An `i64` of the app as the core's unsigned value.
///
/// # Errors
/// [`ConfigError`] naming `name` when `v` is negative.
pub(crate) fn non_negative(name: &str, v: i64) -> Result<u64, ConfigError> {
    u64::try_from(v).map_err(|_| ConfigError(format!("{name} must not be negative (got {v})")))
}

/// Whether a receipt is a sale or a refund.
#[uniffi::remote(Enum)]
pub enum SaleKind {
    /// A sale: total is zero or positive.
    Sale,
    /// A refund: total is zero or negative.
    Refund,
}

/// Receipt-level data of a sale. Money in minor units of `currency`, times in Unix ms (UTC).
#[uniffi::remote(Record)]
pub struct SaleHeader {
    /// The shop the sale belongs to; must be the store of this till's token.
    pub store_id: String,
    /// The receipt number printed for the customer.
    pub receipt_number: String,
    /// Sale or refund.
    pub kind: SaleKind,
    /// When the sale was finished on the till, Unix time in milliseconds (UTC).
    pub occurred_at_ms: i64,
    /// ISO 4217 alphabetic code, upper case (`"EUR"`).
    pub currency: String,
    /// Sum of the items' `line_total_minor`.
    pub subtotal_minor: i64,
    /// Tax added on top of the subtotal (0 where prices include tax).
    pub tax_minor: i64,
    /// `subtotal_minor + tax_minor`: what the customer pays (negative for a refund).
    pub total_minor: i64,
    /// Change handed back in cash (0 or positive; only on sales).
    pub change_minor: i64,
    /// Cashier who rang up the sale, if the till knows.
    #[uniffi(default = None)]
    pub cashier_id: Option<String>,
}

/// One line of a receipt.
#[uniffi::remote(Record)]
pub struct SaleItem {
    /// Position on the receipt, unique within the sale, from 1.
    pub line_no: u32,
    /// Article number.
    pub sku: String,
    /// Article name as printed.
    pub name: String,
    /// Quantity in milli-units (1 piece = 1000); negative only on a refund line.
    pub quantity_milli: i64,
    /// Price of one unit in minor units (0 or positive).
    pub unit_price_minor: i64,
    /// Discount on this line in minor units (0 or positive).
    pub discount_minor: i64,
    /// `round(quantity_milli * unit_price_minor / 1000)` (half away from zero) minus the discount.
    pub line_total_minor: i64,
    /// True on a refund line (a returned article).
    pub refund: bool,
}

/// One tender of a sale.
#[uniffi::remote(Record)]
pub struct SalePayment {
    /// Tender type, lower-case ASCII letters, digits and `_` (`"cash"`, `"card"`).
    pub method: String,
    /// Amount tendered in minor units; positive on sales, negative on refunds.
    pub amount_minor: i64,
    /// Terminal or voucher reference, if any.
    #[uniffi(default = None)]
    pub reference: Option<String>,
}

/// One finished sale (or refund) as recorded by the till (protocol v1, see docs/protocol.md).
#[uniffi::remote(Record)]
pub struct SalePayload {
    /// Receipt-level data and totals.
    pub header: SaleHeader,
    /// Sold (or refunded) lines; at least one.
    pub items: Vec<SaleItem>,
    /// Tenders; their sum minus `header.change_minor` equals `header.total_minor`.
    pub payments: Vec<SalePayment>,
}

/// Result of `PossyncEngine::enqueue_with_id`.
#[uniffi::remote(Record)]
pub struct Enqueued {
    /// The sale's id.
    pub client_tx_id: String,
    /// False when the same sale was already stored under this id (a harmless repeat).
    pub created: bool,
}

/// Why a drain runs.
#[uniffi::remote(Enum)]
pub enum DrainReason {
    /// The periodic timer (or the app's periodic background job).
    Interval,
    /// The network came back.
    Online,
    /// The app came to the foreground.
    Focus,
    /// The cashier pressed "Sync now".
    Manual,
    /// The engine started.
    Startup,
    /// The outbox recorded a sale: fired by `enqueue` itself, never needed from the app. Waits out
    /// the engine's backoff, unlike `Manual`.
    SaleRecorded,
}

/// Why a drain run ended before everything due was settled.
//
// Mirror of `drain::DrainStop`: the core carries the transport error, the FFI its code and text.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum DrainStop {
    /// The server could not be reached or sheds load; sales wait and are retried.
    Offline {
        /// Short machine-readable code (`unreachable`, `timeout`, or the server's code).
        code: String,
        /// What went wrong, for a person.
        reason: String,
    },
    /// The server refuses this till's token or device (401/403): a person must fix the setup.
    AuthFailed {
        /// The server's code.
        code: String,
        /// The server's answer, for a person.
        reason: String,
    },
    /// The server's TLS certificate is not trusted or matches no pin: a person must fix the setup.
    TlsFailed {
        /// `tls`.
        code: String,
        /// What failed, for a person.
        reason: String,
    },
    /// Another sender took over some sales (e.g. after a long pause); it carries on.
    LeaseLost,
}

/// What one drain run did.
//
// Mirror of `drain::DrainReport`: counts as `i64`, the reasons' bit set as a list, the stop mirrored.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DrainReport {
    /// Id of the run, sent as `X-Correlation-Id` with each of its requests (find it in server logs).
    pub correlation_id: String,
    /// Why the run happened (merged reasons of coalesced triggers).
    pub reasons: Vec<DrainReason>,
    /// Start, Unix ms.
    pub started_at_ms: i64,
    /// Wall time of the run, in ms.
    pub duration_ms: i64,
    /// Sales stored by the server in this run (`OK`).
    pub sent: i64,
    /// Sales the server already had (`DUPLICATE`), now marked sent.
    pub duplicate: i64,
    /// Sales answered `CONFLICT` (need a person).
    pub conflict: i64,
    /// Sales answered `INVALID` (need a person).
    pub invalid: i64,
    /// Sales put back to pending (server `RETRY` or failed request).
    pub retry: i64,
    /// Results dropped because another sender had taken the sale over.
    pub lease_lost: i64,
    /// Sales the server had acknowledged and no longer held (its database restored from a backup or
    /// failed over), queued again in this run and sent under their own id and hash.
    pub resent: i64,
    /// Unsent sales after the run.
    pub remaining_pending: i64,
    /// Age of the oldest unsent sale after the run, in ms.
    pub oldest_pending_age_ms: Option<i64>,
    /// The last error seen, for a person.
    pub last_error: Option<String>,
    /// Why the run stopped early, if it did.
    pub stop: Option<DrainStop>,
}

/// The engine's state, as a cashier's banner shows it.
//
// Mirror of `status::SyncStatus`: counts as `i64`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SyncStatus {
    /// Nothing to do, or waiting for the next trigger; with what was still unsent at that moment, for
    /// a banner such as "All sent" or "3 unsent (EUR 12.00)".
    Idle {
        /// Unsent sales (pending + in flight).
        unsent: i64,
        /// Unsent sales per currency (count and amount).
        unsent_by_currency: Vec<CurrencyAmount>,
    },
    /// A drain run is sending: `done` of `total` unsent sales handled so far.
    Draining {
        /// Sales handled in this run.
        done: i64,
        /// Unsent sales when the run started.
        total: i64,
    },
    /// The server cannot be reached; sales are kept and sent when it can.
    Offline {
        /// When the engine tries again by itself, Unix ms ("Sync now" or "online" try at once).
        next_retry_at_ms: i64,
        /// What went wrong, for a person.
        last_error: String,
    },
    /// The server refuses this till's token or device: a person must fix the setup.
    AuthFailed {
        /// The server's answer, for a person.
        last_error: String,
    },
    /// The server's TLS certificate is not trusted (unknown CA, expired, wrong name) or matches no pin:
    /// a person must fix the server's certificate or the app's CA certificates and pins. Sales are kept.
    TlsFailed {
        /// What failed, for a person.
        last_error: String,
    },
    /// Some sales were refused for good and need a person (see `attention_items`).
    NeedsAttention {
        /// Sales in `conflict`.
        conflicts: i64,
        /// Sales in `invalid`.
        invalid: i64,
    },
}

/// Sales in the outbox by state.
//
// Mirror of `outbox::Counts`: counts as `i64`, and `unsent` as a field (a method in the core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Counts {
    /// Waiting to be sent.
    pub pending: i64,
    /// Being sent (or left by a sender whose lease will expire).
    pub in_flight: i64,
    /// On the server (kept for the retention period, then pruned).
    pub sent: i64,
    /// Refused as a conflict; need a person.
    pub conflict: i64,
    /// Refused as invalid; need a person.
    pub invalid: i64,
    /// `pending + in_flight`: not yet on the server.
    pub unsent: i64,
}

/// Unsent sales of one currency.
//
// Mirror of `outbox::CurrencyAmount`: the count as `i64`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CurrencyAmount {
    /// ISO 4217 code.
    pub currency: String,
    /// Number of unsent sales.
    pub count: i64,
    /// Sum of their totals, in minor units.
    pub total_minor: i64,
}

/// Where a sale is in its life.
#[uniffi::remote(Enum)]
pub enum SaleState {
    /// Waiting to be sent.
    Pending,
    /// Claimed by a sender.
    InFlight,
    /// On the server.
    Sent,
    /// The server holds another sale under this id; needs a person.
    Conflict,
    /// The server refused the sale as invalid; needs a person.
    Invalid,
}

/// A sale refused for good, which a person must look at.
//
// Mirror of `outbox::AttentionItem`: the attempts as `i64`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttentionItem {
    /// The sale's id.
    pub client_tx_id: String,
    /// `Conflict` or `Invalid`.
    pub state: SaleState,
    /// The server's code (e.g. `totals_mismatch`).
    pub code: Option<String>,
    /// The server's message.
    pub message: Option<String>,
    /// SHA-256 of the stored canonical payload (hex).
    pub payload_sha256: String,
    /// When the sale was recorded, Unix ms.
    pub created_at_ms: i64,
    /// Send attempts made.
    pub attempt: i64,
}

/// Everything a cashier's screen needs, in one call.
//
// Mirror of `engine::StatusSnapshot`: its parts are mirrors.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StatusSnapshot {
    /// The engine's state.
    pub status: SyncStatus,
    /// Sales by state.
    pub counts: Counts,
    /// Unsent sales per currency (count and amount).
    pub unsent_by_currency: Vec<CurrencyAmount>,
    /// Age of the oldest unsent sale, in ms.
    pub oldest_unsent_age_ms: Option<i64>,
    /// The last finished run.
    pub last_report: Option<DrainReport>,
}

/// How hard the outbox flushes each recorded sale to storage.
#[uniffi::remote(Enum)]
pub enum Durability {
    /// `synchronous=FULL` (the default): a sale survives a power cut once `enqueue` returns.
    Full,
    /// `synchronous=NORMAL`: faster; a power cut may lose the last sales recorded (never corrupts
    /// the file). Only for tills with a battery or UPS.
    Normal,
}

/// What a person decides for a sale that needs attention. The original sale is always kept.
//
// Mirror of `outbox::Resolution`: the core's `Replace` holds the sale unnamed, which uniffi would
// name `v1`; here it is `sale`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Resolution {
    /// Send the same sale again under a new id (the fix for a `Conflict`: another sale holds the id).
    Rekey,
    /// Send a corrected sale under a new id instead (the fix for an `Invalid` sale).
    Replace {
        /// The corrected sale.
        sale: SalePayload,
    },
    /// Do not send it; it stays in the outbox as voided and no longer counts as needing attention.
    Void,
}

/// What a person decided for a sale, as the sales screen shows it.
#[uniffi::remote(Enum)]
pub enum SaleResolution {
    /// Sent again under a new id (`linked_client_tx_id`).
    Rekeyed,
    /// Replaced by a corrected sale (`linked_client_tx_id`).
    Replaced,
    /// Not to be sent.
    Voided,
}

/// One sale of the outbox, for a till's sales screen.
//
// Mirror of `outbox::OutboxEntry`: the sale parsed, the resolution decoded, the attempts as `i64`,
// without the core's scheduling fields.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SaleRecord {
    /// The sale's id.
    pub client_tx_id: String,
    /// Position in the outbox (grows with each sale); pass the smallest of a page to
    /// `recent_sales` for the next page.
    pub seq: i64,
    /// Where the sale is.
    pub state: SaleState,
    /// What a person decided, for a conflict or invalid sale that was resolved.
    pub resolution: Option<SaleResolution>,
    /// The person's note with the resolution.
    pub resolution_note: Option<String>,
    /// The linked sale: the new sale of a resolved one, or the resolved one of a new sale.
    pub linked_client_tx_id: Option<String>,
    /// The sale as recorded (`None` only if its stored text is damaged).
    pub sale: Option<SalePayload>,
    /// ISO 4217 code.
    pub currency: String,
    /// The sale's total, in minor units.
    pub total_minor: i64,
    /// When it was recorded, Unix ms.
    pub created_at_ms: i64,
    /// When the server confirmed it, Unix ms.
    pub sent_at_ms: Option<i64>,
    /// Send attempts made.
    pub attempt: i64,
    /// The last answer: `OK`, `DUPLICATE`, `CONFLICT`, `INVALID`, `RETRY` or `TRANSPORT`.
    pub last_result: Option<String>,
    /// Machine-readable reason of the last answer.
    pub last_code: Option<String>,
    /// The last answer's message, for a person.
    pub last_error: Option<String>,
    /// The server's id of the sale once sent.
    pub server_tx_id: Option<i64>,
    /// SHA-256 of the stored canonical payload (hex).
    pub payload_sha256: String,
}

impl From<Resolution> for core_outbox::Resolution {
    fn from(r: Resolution) -> Self {
        match r {
            Resolution::Rekey => core_outbox::Resolution::Rekey,
            Resolution::Replace { sale } => core_outbox::Resolution::Replace(sale),
            Resolution::Void => core_outbox::Resolution::Void,
        }
    }
}

impl From<core_outbox::OutboxEntry> for SaleRecord {
    fn from(e: core_outbox::OutboxEntry) -> Self {
        SaleRecord {
            resolution: e.resolved(),
            sale: e.sale(),
            client_tx_id: e.client_tx_id,
            seq: e.seq,
            state: e.state,
            resolution_note: e.resolution_note,
            linked_client_tx_id: e.linked_client_tx_id,
            currency: e.currency,
            total_minor: e.total_minor,
            created_at_ms: e.created_at_ms,
            sent_at_ms: e.sent_at_ms,
            attempt: e.attempt.into(),
            last_result: e.last_result,
            last_code: e.last_code,
            last_error: e.last_error,
            server_tx_id: e.server_tx_id,
            payload_sha256: e.payload_sha256,
        }
    }
}

impl From<core_drain::DrainStop> for DrainStop {
    fn from(s: core_drain::DrainStop) -> Self {
        match s {
            core_drain::DrainStop::Offline { error } => {
                DrainStop::Offline { code: error.code().to_owned(), reason: error.to_string() }
            }
            core_drain::DrainStop::AuthFailed { error } => {
                DrainStop::AuthFailed { code: error.code().to_owned(), reason: error.to_string() }
            }
            core_drain::DrainStop::TlsFailed { error } => {
                DrainStop::TlsFailed { code: error.code().to_owned(), reason: error.to_string() }
            }
            core_drain::DrainStop::LeaseLost => DrainStop::LeaseLost,
        }
    }
}

impl From<core_drain::DrainReport> for DrainReport {
    fn from(r: core_drain::DrainReport) -> Self {
        DrainReport {
            correlation_id: r.correlation_id,
            reasons: r.reasons.iter().collect(),
            started_at_ms: r.started_at_ms,
            duration_ms: int(r.duration_ms),
            sent: int(r.sent),
            duplicate: int(r.duplicate),
            conflict: int(r.conflict),
            invalid: int(r.invalid),
            retry: int(r.retry),
            lease_lost: int(r.lease_lost),
            resent: int(r.resent),
            remaining_pending: int(r.remaining_pending),
            oldest_pending_age_ms: r.oldest_pending_age_ms,
            last_error: r.last_error,
            stop: r.stop.map(DrainStop::from),
        }
    }
}

impl From<core_status::SyncStatus> for SyncStatus {
    fn from(s: core_status::SyncStatus) -> Self {
        match s {
            core_status::SyncStatus::Idle { unsent, unsent_by_currency } => SyncStatus::Idle {
                unsent: int(unsent),
                unsent_by_currency: unsent_by_currency.into_iter().map(CurrencyAmount::from).collect(),
            },
            core_status::SyncStatus::Draining { done, total } => {
                SyncStatus::Draining { done: int(done), total: int(total) }
            }
            core_status::SyncStatus::Offline { next_retry_at_ms, last_error } => {
                SyncStatus::Offline { next_retry_at_ms, last_error }
            }
            core_status::SyncStatus::AuthFailed { last_error } => SyncStatus::AuthFailed { last_error },
            core_status::SyncStatus::TlsFailed { last_error } => SyncStatus::TlsFailed { last_error },
            core_status::SyncStatus::NeedsAttention { conflicts, invalid } => {
                SyncStatus::NeedsAttention { conflicts: int(conflicts), invalid: int(invalid) }
            }
        }
    }
}

impl From<core_outbox::Counts> for Counts {
    fn from(c: core_outbox::Counts) -> Self {
        Counts {
            pending: int(c.pending),
            in_flight: int(c.in_flight),
            sent: int(c.sent),
            conflict: int(c.conflict),
            invalid: int(c.invalid),
            unsent: int(c.unsent()),
        }
    }
}

impl From<core_outbox::CurrencyAmount> for CurrencyAmount {
    fn from(c: core_outbox::CurrencyAmount) -> Self {
        CurrencyAmount { currency: c.currency, count: int(c.count), total_minor: c.total_minor }
    }
}

impl From<core_outbox::AttentionItem> for AttentionItem {
    fn from(a: core_outbox::AttentionItem) -> Self {
        AttentionItem {
            client_tx_id: a.client_tx_id,
            state: a.state,
            code: a.code,
            message: a.message,
            payload_sha256: a.payload_sha256,
            created_at_ms: a.created_at_ms,
            attempt: a.attempt.into(),
        }
    }
}

impl From<core_engine::StatusSnapshot> for StatusSnapshot {
    fn from(s: core_engine::StatusSnapshot) -> Self {
        StatusSnapshot {
            status: s.status.into(),
            counts: s.counts.into(),
            unsent_by_currency: s.unsent_by_currency.into_iter().map(CurrencyAmount::from).collect(),
            oldest_unsent_age_ms: s.oldest_unsent_age_ms,
            last_report: s.last_report.map(DrainReport::from),
        }
    }
}
