//! Every SQL statement of the embedded SQLite store, in one place.
//!
//! The same statements as [`super::postgres_sql`] in SQLite's dialect: times are integer Unix
//! milliseconds (formatted as RFC 3339 UTC on the way out), items and payments are inserted one
//! prepared (cached) statement per row, arrays become `json_each`.

/// The schema, as versioned migrations run by `rusqlite_migration` (`PRAGMA user_version`).
pub const MIGRATION_V1: &str = include_str!("../../migrations-sqlite/V1__init.sql");

/// Schema v2: the idempotency key scoped to the store.
pub const MIGRATION_V2: &str = include_str!("../../migrations-sqlite/V2__store_scoped_ids.sql");

/// Inserts a header with the server's new `server_tx_id` (`?17`) unless the store already has its
/// `client_tx_id`; returns the `server_tx_id` when it was inserted. (The only UNIQUE constraint it
/// can then violate is `server_tx_id`'s.)
pub const INSERT_HEADER: &str = "INSERT INTO pos_transactions (client_tx_id, payload_sha256, \
     payload_hash_version, store_id, device_id, receipt_number, kind, occurred_at, currency, \
     subtotal_minor, tax_minor, total_minor, change_minor, cashier_id, payload_canonical, correlation_id, \
     server_tx_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
     ON CONFLICT (store_id, client_tx_id) DO NOTHING RETURNING server_tx_id";

/// The stored identity of a store's (`?1`) header (`?2`), to tell a replay from a conflict.
pub const SELECT_STORED_HASH: &str = "SELECT server_tx_id, payload_sha256, payload_hash_version \
     FROM pos_transactions WHERE store_id = ?1 AND client_tx_id = ?2";

/// One item of a sale.
pub const INSERT_ITEM: &str = "INSERT INTO pos_transaction_items (store_id, client_tx_id, line_no, sku, \
     name, quantity_milli, unit_price_minor, discount_minor, line_total_minor, refund) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// One payment of a sale.
pub const INSERT_PAYMENT: &str = "INSERT INTO pos_transaction_payments (store_id, client_tx_id, \
     payment_no, method, amount_minor, reference) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// One audit row.
pub const INSERT_AUDIT: &str = "INSERT INTO pos_transaction_audit (client_tx_id, store_id, device_id, \
     correlation_id, attempt, payload_hash_version, payload_sha256, stored_sha256, outcome, code, message) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// Resolves a token hash to its device.
pub const SELECT_TOKEN: &str = "SELECT store_id, device_id, revoked_at IS NOT NULL \
     FROM pos_devices WHERE token_sha256 = ?1";

/// Registers a token hash.
pub const INSERT_TOKEN: &str =
    "INSERT INTO pos_devices (token_sha256, store_id, device_id, label) VALUES (?1, ?2, ?3, ?4)";

/// Revokes every live token of a device.
pub const REVOKE_TOKENS: &str = "UPDATE pos_devices \
     SET revoked_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) \
     WHERE store_id = ?1 AND device_id = ?2 AND revoked_at IS NULL";

/// Lists tokens, of one store (`?1`) or all (`?1` NULL).
pub const LIST_TOKENS: &str = "SELECT substr(token_sha256, 1, 12), store_id, device_id, label, \
     strftime('%Y-%m-%dT%H:%M:%SZ', created_at / 1000, 'unixepoch'), \
     strftime('%Y-%m-%dT%H:%M:%SZ', revoked_at / 1000, 'unixepoch') \
     FROM pos_devices WHERE ?1 IS NULL OR store_id = ?1 ORDER BY store_id, device_id, created_at";

/// Makes SQLite check the file is a database and readable (a cheap read of the schema page).
pub const PING: &str = "SELECT count(*) FROM sqlite_schema";

/// An RFC 3339 UTC time with milliseconds from a Unix-ms column.
macro_rules! rfc3339_ms {
    ($col:literal) => {
        concat!(
            "strftime('%Y-%m-%dT%H:%M:%S', ",
            $col,
            " / 1000, 'unixepoch') || '.' || printf('%03d', ",
            $col,
            " % 1000) || 'Z'"
        )
    };
}

/// The columns of an audit row, in the order of [`super::AuditRecord`]'s fields.
macro_rules! audit_columns {
    () => {
        concat!(
            "audit_id, ",
            rfc3339_ms!("at"),
            ", store_id, device_id, client_tx_id, correlation_id, attempt, outcome, code, message, \
             payload_hash_version, payload_sha256, stored_sha256"
        )
    };
}

/// Attention items of a store (`?1`): CONFLICT and INVALID attempts at or after `?2` (Unix ms; NULL: all).
pub const SELECT_ATTENTION: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM pos_transaction_audit WHERE store_id = ?1 AND outcome IN ('CONFLICT', 'INVALID') \
     AND (?2 IS NULL OR at >= ?2) ORDER BY at, audit_id"
);

/// Every audit row of one sale (`?2`) pushed by devices of a store (`?1`).
pub const SELECT_AUDIT_TRAIL: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM pos_transaction_audit WHERE store_id = ?1 AND client_tx_id = ?2 ORDER BY at, audit_id"
);

/// The stored header identity of a sale (`?2`) of a store (`?1`).
pub const SELECT_STORED_SALE: &str = concat!(
    "SELECT server_tx_id, payload_sha256, payload_hash_version, device_id, ",
    rfc3339_ms!("received_at"),
    " FROM pos_transactions WHERE store_id = ?1 AND client_tx_id = ?2"
);

/// Deletes up to `?2` audit rows older than `?1` days; run until it deletes fewer than `?2`, so each
/// write transaction stays short.
pub const PRUNE_AUDIT_BATCH: &str = "DELETE FROM pos_transaction_audit WHERE audit_id IN \
     (SELECT audit_id FROM pos_transaction_audit \
     WHERE at < CAST(unixepoch('subsec') * 1000 AS INTEGER) - ?1 * 86400000 LIMIT ?2)";

/// Stored hashes of a set of sales (`?1` is a JSON array of client_tx_ids) of one store (`?2`), or
/// of any store (`?2` NULL).
pub const SELECT_HASHES: &str = "SELECT client_tx_id, payload_sha256 FROM pos_transactions \
     WHERE client_tx_id IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR store_id = ?2)";

/// Every sale a device pushed to a store.
pub const SELECT_DEVICE_SALES: &str = "SELECT client_tx_id FROM pos_transactions \
     WHERE store_id = ?1 AND device_id = ?2";
