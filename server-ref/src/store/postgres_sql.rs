//! Every SQL statement of the PostgreSQL store, in one place.
//!
//! Times are `timestamptz`; money and quantities `bigint`. Items and payments are inserted with one
//! multi-row `INSERT .. SELECT .. FROM UNNEST(..)` each, whatever their count.

/// Per-transaction timeouts, in milliseconds (`SET LOCAL` through `set_config(.., true)`).
pub const SET_LOCAL_TIMEOUTS: &str = "SELECT set_config('lock_timeout', $1, true), \
     set_config('statement_timeout', $2, true)";

/// Inserts a header with the server's new `server_tx_id` (`$17`) unless the store already has its
/// `client_tx_id`; returns the `server_tx_id` when it was inserted.
pub const INSERT_HEADER: &str = "INSERT INTO pos_transactions (client_tx_id, payload_sha256, \
     payload_hash_version, store_id, device_id, receipt_number, kind, occurred_at, currency, \
     subtotal_minor, tax_minor, total_minor, change_minor, cashier_id, payload_canonical, correlation_id, \
     server_tx_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, timestamptz 'epoch' + $8::int8 * interval '1 millisecond', $9, \
     $10, $11, $12, $13, $14, $15, $16, $17) \
     ON CONFLICT (store_id, client_tx_id) DO NOTHING RETURNING server_tx_id";

/// The unique index whose violation means two sales drew the same new `server_tx_id`.
pub const SERVER_TX_ID_INDEX: &str = "pos_transactions_server_tx_id";

/// The stored identity of a store's (`$1`) header (`$2`), to tell a replay from a conflict.
pub const SELECT_STORED_HASH: &str = "SELECT server_tx_id, payload_sha256, payload_hash_version \
     FROM pos_transactions WHERE store_id = $1 AND client_tx_id = $2";

/// All items of a sale in one statement.
pub const INSERT_ITEMS: &str = "INSERT INTO pos_transaction_items (store_id, client_tx_id, line_no, sku, \
     name, quantity_milli, unit_price_minor, discount_minor, line_total_minor, refund) \
     SELECT $1, $2, * FROM UNNEST($3::int4[], $4::text[], $5::text[], $6::int8[], $7::int8[], \
     $8::int8[], $9::int8[], $10::bool[])";

/// All payments of a sale in one statement.
pub const INSERT_PAYMENTS: &str = "INSERT INTO pos_transaction_payments (store_id, client_tx_id, \
     payment_no, method, amount_minor, reference) \
     SELECT $1, $2, * FROM UNNEST($3::int4[], $4::text[], $5::int8[], $6::text[])";

/// One audit row.
pub const INSERT_AUDIT: &str = "INSERT INTO pos_transaction_audit (client_tx_id, store_id, device_id, \
     correlation_id, attempt, payload_hash_version, payload_sha256, stored_sha256, outcome, code, message) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Resolves a token hash to its device.
pub const SELECT_TOKEN: &str = "SELECT store_id, device_id, revoked_at IS NOT NULL \
     FROM pos_devices WHERE token_sha256 = $1";

/// Registers a token hash.
pub const INSERT_TOKEN: &str =
    "INSERT INTO pos_devices (token_sha256, store_id, device_id, label) VALUES ($1, $2, $3, $4)";

/// Revokes every live token of a device.
pub const REVOKE_TOKENS: &str = "UPDATE pos_devices SET revoked_at = now() \
     WHERE store_id = $1 AND device_id = $2 AND revoked_at IS NULL";

/// The channel on which revocations are announced to every server instance.
pub const REVOCATION_CHANNEL: &str = "possync_token_revoked";

/// Announces a revocation (delivered when the revoking transaction commits).
pub const NOTIFY_REVOKED: &str = "SELECT pg_notify('possync_token_revoked', $1)";

/// Subscribes a connection to [`REVOCATION_CHANNEL`].
pub const LISTEN_REVOKED: &str = "LISTEN possync_token_revoked";

/// Lists tokens, of one store (`$1`) or all (`$1` NULL).
pub const LIST_TOKENS: &str = "SELECT left(token_sha256, 12), store_id, device_id, label, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
     to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
     FROM pos_devices WHERE $1::text IS NULL OR store_id = $1 ORDER BY store_id, device_id, created_at";

/// Whether the migration history table exists.
pub const HAS_SCHEMA_HISTORY: &str = "SELECT to_regclass('refinery_schema_history') IS NOT NULL";

/// Highest applied migration version (NULL when none ran).
pub const SELECT_SCHEMA_VERSION: &str = "SELECT max(version)::int4 FROM refinery_schema_history";

/// Serializes concurrent `migrate` runs of several server instances.
pub const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_lock(7270420001)";

/// Releases [`LOCK_MIGRATIONS`].
pub const UNLOCK_MIGRATIONS: &str = "SELECT pg_advisory_unlock(7270420001)";

/// The columns of an audit row, in the order of [`super::AuditRecord`]'s fields.
macro_rules! audit_columns {
    () => {
        "audit_id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), store_id, \
         device_id, client_tx_id, correlation_id, attempt, outcome, code, message, payload_hash_version, \
         payload_sha256, stored_sha256"
    };
}

/// Attention items of a store (`$1`): CONFLICT and INVALID attempts at or after `$2` (NULL: all).
pub const SELECT_ATTENTION: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM pos_transaction_audit WHERE store_id = $1 AND outcome IN ('CONFLICT', 'INVALID') \
     AND ($2::timestamptz IS NULL OR at >= $2::timestamptz) ORDER BY at, audit_id"
);

/// Every audit row of one sale (`$2`) pushed by devices of a store (`$1`).
pub const SELECT_AUDIT_TRAIL: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM pos_transaction_audit WHERE store_id = $1 AND client_tx_id = $2 ORDER BY at, audit_id"
);

/// The stored header identity of a sale (`$2`) of a store (`$1`).
pub const SELECT_STORED_SALE: &str = "SELECT server_tx_id, payload_sha256, payload_hash_version, \
     device_id, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
     FROM pos_transactions WHERE store_id = $1 AND client_tx_id = $2";

/// Deletes up to `$2` audit rows older than `$1` days; run until it deletes fewer than `$2`, so each
/// transaction stays short. Keyed by the primary key (not `ctid`), which also works on Citus.
pub const PRUNE_AUDIT_BATCH: &str = "DELETE FROM pos_transaction_audit \
     WHERE (client_tx_id, audit_id) IN (SELECT client_tx_id, audit_id FROM pos_transaction_audit \
     WHERE at < now() - make_interval(days => $1::int4) LIMIT $2::int8)";

/// Stored hashes of a set of sales (`$1` is a text array of client_tx_ids) of one store (`$2`), or of
/// any store (`$2` NULL).
pub const SELECT_HASHES: &str = "SELECT client_tx_id, payload_sha256 FROM pos_transactions \
     WHERE client_tx_id = ANY($1) AND ($2::text IS NULL OR store_id = $2)";

/// Every sale a device pushed to a store.
pub const SELECT_DEVICE_SALES: &str = "SELECT client_tx_id FROM pos_transactions \
     WHERE store_id = $1 AND device_id = $2";
