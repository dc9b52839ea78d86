//! `POST /sync/push` request and response bodies.
//!
//! One request carries a batch of sales of one device; the response carries one [`PushResult`] per
//! sale, in the request's order. Request-level failures (bad JSON, bad token, too large, overload)
//! answer a non-200 status with an [`ErrorBody`].

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Path of the push endpoint.
pub const PUSH_PATH: &str = "/sync/push";
/// Header carrying the per-drain correlation id, echoed by the server.
pub const CORRELATION_HEADER: &str = "X-Correlation-Id";

/// Body of `POST /sync/push`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushRequest {
    /// The pushing device; must be the device of the bearer token.
    pub device_id: String,
    /// The sales, each settled on its own.
    pub transactions: Vec<PushTransaction>,
    /// The till's backlog when it sent the request (optional; older servers ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<BacklogReport>,
}

/// What a till still holds, sent with each push so the shop's server can show a till that is behind
/// and sales it recorded and never sent (`docs/protocol.md`, "Optional: backlog report"). Every field
/// is optional on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacklogReport {
    /// possync library version of the till.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library_version: Option<String>,
    /// Sales in the outbox not yet settled by the server (this request's included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsent_count: Option<u64>,
    /// Age of the oldest of them, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_unsent_age_ms: Option<u64>,
    /// Unsent amounts per ISO 4217 currency, in minor units.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unsent_minor: std::collections::BTreeMap<String, i64>,
    /// Highest outbox sequence number assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<i64>,
    /// First outbox sequence number sent with numbering (the server keeps the first it is told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_start: Option<i64>,
    /// Sequence numbers voided, re-keyed or replaced on the till: they will never arrive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_seqs: Vec<i64>,
    /// Random identity of the till's outbox, made with it: a new one tells the server the outbox was
    /// wiped or replaced and its sequence numbers start again (optional; 1 to 64 visible ASCII
    /// characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<String>,
    /// Every sale numbered up to this sequence number was settled by the server as far as the till
    /// knows (sent, conflict or invalid; the oldest unsent sale's number less one). The server answers
    /// with the acknowledged ones it does not hold ([`PushResponse::resend`]), e.g. after its database
    /// was restored from a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_seq: Option<i64>,
    /// Lowest sequence number the till still keeps (older sent sales were pruned past their
    /// retention): the server can get back what it lacks from here on, and what it lacks below is
    /// lost for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_seq: Option<i64>,
    /// Age of the oldest sale the till still keeps, in milliseconds: how far back a restore of the
    /// server's database can be recovered from this till.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_kept_age_ms: Option<u64>,
}

/// One sale inside a push request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushTransaction {
    /// Idempotency key of the sale, chosen by the till.
    pub client_tx_id: String,
    /// Version of the hash in `payload_sha256`; 1 is the only version today.
    pub payload_hash_version: u32,
    /// Hash v1 of `payload`: lowercase hex SHA-256 of its RFC 8785 canonical JSON.
    pub payload_sha256: String,
    /// How many times the till has tried to send this sale, this try included (from 1).
    pub attempt: u32,
    /// The sale (a [`crate::protocol::SalePayload`]), sent as the canonical bytes that were hashed.
    pub payload: Box<RawValue>,
    /// The till's outbox sequence number of the sale (outside the hash; optional on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_seq: Option<i64>,
}

/// Outcome of one sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PushStatus {
    /// Stored by this request.
    Ok,
    /// Already stored with the same hash: a replay; the till treats it as sent.
    Duplicate,
    /// `client_tx_id` already stored with a different hash; nothing overwritten; needs a person.
    Conflict,
    /// Fails validation or its hash does not match; permanent; needs a person.
    Invalid,
    /// Transient failure (lock timeout, deadlock, serialization failure, lost connection); nothing
    /// stored; send again later.
    Retry,
}

impl PushStatus {
    /// The wire name (`"OK"`, `"DUPLICATE"`, ...), also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Ok => "OK",
            PushStatus::Duplicate => "DUPLICATE",
            PushStatus::Conflict => "CONFLICT",
            PushStatus::Invalid => "INVALID",
            PushStatus::Retry => "RETRY",
        }
    }
}

/// Result of one sale, at the same position as the sale in the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    /// The sale's id as sent (empty when the entry had none).
    pub client_tx_id: String,
    /// What happened.
    pub status: PushStatus,
    /// Machine-readable reason for `CONFLICT`, `INVALID` and `RETRY` (see `docs/protocol.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable detail for the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Server id of the stored sale, for `OK` and `DUPLICATE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tx_id: Option<i64>,
}

/// Body of a 200 answer to `POST /sync/push`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    /// One result per sale, in request order.
    pub results: Vec<PushResult>,
    /// Sales the till reported as acknowledged (`report.acked_seq`) that the server does not hold:
    /// the till sends them again (optional; older servers never send it, older tills ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend: Option<Resend>,
}

/// Acknowledged sales the server lacks, by outbox sequence number, for the till to send again under
/// the same `client_tx_id` and hash (they land once: `OK` if missing, `DUPLICATE` if not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resend {
    /// The outbox the ranges belong to (the `outbox_id` of the request's report); a till whose outbox
    /// has another identity ignores them.
    pub outbox_id: String,
    /// Inclusive ranges `[from, to]` of sequence numbers, ascending, at most [`MAX_RESEND_RANGES`].
    pub ranges: Vec<[i64; 2]>,
}

/// Most ranges in one [`Resend`]; more are asked for in later answers.
pub const MAX_RESEND_RANGES: usize = 64;

/// JSON body of every non-200 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code (`malformed_json`, `unauthorized`, `body_too_large`, ...).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
    /// The request's correlation id, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}
