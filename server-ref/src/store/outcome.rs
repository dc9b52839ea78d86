//! What storing one sale came to, as data: [`SaleOutcome`], and the plumbing both stores share to
//! reach it. A store's transaction either decides the sale (stored now, a replay, a conflict) or
//! fails and rolls back ([`TxError`]); [`outcome_of`] turns such a failure into a transient or a
//! rejected outcome the same way for both stores, its message cut by [`capped`]. Only the push
//! module turns an outcome into the protocol's `PushResult`.

use possync_core::protocol::PushStatus;

use super::{CheckedSale, PushContext, PushStore, Rejection};

/// What storing one sale came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleOutcome {
    /// Stored now, in one transaction with its audit row (`OK`).
    Stored {
        /// The server's id of the sale.
        server_tx_id: i64,
    },
    /// Its id was stored already with the same hash and hash version: a replay, answered with the
    /// stored id (`DUPLICATE`). Only the audit row was written.
    Replayed {
        /// The server's id of the stored sale.
        server_tx_id: i64,
    },
    /// Its id was stored already with another hash or hash version (`CONFLICT`): nothing was
    /// overwritten; the attempt was audited.
    Conflict {
        /// Hash of the sale stored under the id.
        stored_sha256: String,
        /// Its hash version.
        stored_version: i64,
    },
    /// The database refused the sale's rows (`INVALID`): nothing stored, the attempt audited as a
    /// refusal. Sent again unchanged it is refused again.
    Rejected(Failure),
    /// A transient failure (`RETRY`): nothing stored, nothing audited. Sent again it may be stored.
    Transient(Failure),
}

/// Why a sale was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Machine-readable reason (`lock_timeout`, `database_unavailable`, `rejected_by_database`, ...).
    pub code: &'static str,
    /// Human-readable reason.
    pub message: String,
}

impl SaleOutcome {
    /// The outcome of a sale whose id is stored already, from the stored hash and hash version: the
    /// same ones are a replay, others a conflict.
    pub(crate) fn of_stored(
        sale: &CheckedSale<'_>,
        server_tx_id: i64,
        stored_sha256: &str,
        stored_version: i64,
    ) -> SaleOutcome {
        if stored_sha256 == sale.payload_sha256 && stored_version == i64::from(sale.payload_hash_version) {
            SaleOutcome::Replayed { server_tx_id }
        } else {
            SaleOutcome::Conflict { stored_sha256: stored_sha256.to_owned(), stored_version }
        }
    }

    /// The status the till is answered and the audit trail records.
    pub fn status(&self) -> PushStatus {
        match self {
            SaleOutcome::Stored { .. } => PushStatus::Ok,
            SaleOutcome::Replayed { .. } => PushStatus::Duplicate,
            SaleOutcome::Conflict { .. } => PushStatus::Conflict,
            SaleOutcome::Rejected(_) => PushStatus::Invalid,
            SaleOutcome::Transient(_) => PushStatus::Retry,
        }
    }

    /// The machine-readable reason, for every outcome but a stored sale and a replay.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            SaleOutcome::Stored { .. } | SaleOutcome::Replayed { .. } => None,
            SaleOutcome::Conflict { .. } => Some("hash_differs"),
            SaleOutcome::Rejected(f) | SaleOutcome::Transient(f) => Some(f.code),
        }
    }

    /// The human-readable reason, for every outcome but a stored sale and a replay (the same text
    /// in the answer and in the audit row).
    pub fn message(&self) -> Option<String> {
        match self {
            SaleOutcome::Stored { .. } | SaleOutcome::Replayed { .. } => None,
            SaleOutcome::Conflict { stored_sha256, stored_version } => Some(format!(
                "client_tx_id already stored with payload_sha256 {stored_sha256} (v{stored_version}); \
                 nothing was overwritten"
            )),
            SaleOutcome::Rejected(f) | SaleOutcome::Transient(f) => Some(f.message.clone()),
        }
    }

    /// Whether the database could not be reached: a transient failure with code
    /// `database_unavailable` (then a push stops storing its lane there).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SaleOutcome::Transient(f) if f.code == "database_unavailable")
    }

    /// The server's id of the sale, when it is stored (now or before).
    pub fn server_tx_id(&self) -> Option<i64> {
        match self {
            SaleOutcome::Stored { server_tx_id } | SaleOutcome::Replayed { server_tx_id } => {
                Some(*server_tx_id)
            }
            _ => None,
        }
    }
}

/// Longest message of a result (and of its audit row), in bytes; a longer one is cut and marked.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message` cut to [`MAX_MESSAGE_BYTES`] (at a character boundary) with the cut marked, so that input
/// quoted by a parser (an unknown field name of megabytes) is neither stored whole nor echoed.
pub fn capped(mut message: String) -> String {
    const MARK: &str = "… (cut)";
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES - MARK.len();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(MARK);
    }
    message
}

/// How a database error settles a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth sending again (a lock, a timeout, a lost connection, ...): `RETRY`.
    Transient,
    /// The database refused the sale's rows (an integrity or data error): `INVALID`.
    Rejected,
}

/// A store's database error, classified by its code (SQLSTATE, SQLite result code), never by its
/// message text.
pub(crate) trait ClassifiedError: std::fmt::Display {
    /// How the error settles the sale, and the machine-readable code of the answer.
    fn classify(&self) -> (FailureKind, &'static str);
}

/// Why a sale's transaction did not commit; it rolled back, so nothing of the sale is stored.
pub(crate) enum TxError<E> {
    /// The database answered a statement with an error.
    Db(E),
    /// No pooled connection could be had in time.
    Pool(String),
    /// A failpoint fired (builds with the `failpoints` feature).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    Injected(String),
}

impl<E: ClassifiedError> From<E> for TxError<E> {
    fn from(e: E) -> Self {
        TxError::Db(e)
    }
}

/// The outcome of a sale from the result of its transaction, the same for both stores: a decided
/// outcome as it is; no connection is `database_unavailable` and a failpoint `injected_failure`
/// (both transient); a database error as [`ClassifiedError::classify`] says, its message cut to
/// [`MAX_MESSAGE_BYTES`]. A rejected sale is audited (in a transaction of its own, as
/// its own rolled back); an unexpected error (`database_error`) is logged.
pub(crate) fn outcome_of<S, E>(
    store: &S,
    ctx: &PushContext<'_>,
    sale: &CheckedSale<'_>,
    result: Result<SaleOutcome, TxError<E>>,
) -> SaleOutcome
where
    S: PushStore + ?Sized,
    E: ClassifiedError,
{
    let err = match result {
        Ok(outcome) => return outcome,
        Err(TxError::Pool(message)) => {
            return SaleOutcome::Transient(Failure { code: "database_unavailable", message })
        }
        Err(TxError::Injected(message)) => {
            return SaleOutcome::Transient(Failure { code: "injected_failure", message })
        }
        Err(TxError::Db(err)) => err,
    };
    let (kind, code) = err.classify();
    if code == "database_error" {
        log::error!(client_tx_id = sale.client_tx_id, error:% = err; "unexpected database error");
    }
    let failure = Failure { code, message: capped(err.to_string()) };
    if kind == FailureKind::Transient {
        return SaleOutcome::Transient(failure);
    }
    let rejection = Rejection {
        client_tx_id: sale.client_tx_id,
        attempt: Some(sale.attempt),
        payload_hash_version: Some(sale.payload_hash_version),
        payload_sha256: Some(sale.payload_sha256),
        code,
        message: &failure.message,
        outbox_seq: sale.outbox_seq,
        attempted_payload: Some(sale.canonical),
    };
    if let Err(e) = store.audit_rejections(ctx, std::slice::from_ref(&rejection)) {
        log::error!(client_tx_id = sale.client_tx_id, error:% = e; "audit of a refused sale failed");
    }
    SaleOutcome::Rejected(failure)
}

#[cfg(test)]
mod tests {
    use super::{capped, MAX_MESSAGE_BYTES};

    #[test]
    fn long_messages_are_cut_and_marked() {
        assert_eq!(capped("short".into()), "short");
        let cut = capped("é".repeat(2000));
        assert!(cut.len() <= MAX_MESSAGE_BYTES && cut.ends_with("(cut)"), "{}", cut.len());
    }
}
